"""Any LangChain chat model as a backend (e.g. `init_chat_model("openai:gpt-4o-mini")`).

LangChain has no portable way to constrain decoding by a JSON schema, so the schema is passed to the
model as `response_format` only when it is an OpenAI-style chat model (output mode json_schema); for any
other model the output mode is prompt: validation and re-asks do the rest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr

from genre_agent.llm.backends.base import (
    Backend,
    BackendOptions,
    Capabilities,
    Completion,
    Message,
    OutputMode,
    heard,
    raise_if_cancelled,
)

if TYPE_CHECKING:
    from genre_agent.settings import Settings



class LangChainOptions(BackendOptions):
    """Options of the langchain backend (`init_chat_model`)."""

    base_url: str | None = None
    api_key: SecretStr | None = Field(None, description="set with GENRE_AGENT_BACKEND__LANGCHAIN__API_KEY")


_ROLES = {"system": "SystemMessage", "user": "HumanMessage", "assistant": "AIMessage"}


class LangChainBackend(Backend):
    name = "langchain"
    Options = LangChainOptions

    def __init__(self, chat_model: Any, model_name: str | None = None) -> None:
        self.chat_model = chat_model
        self.model = model_name or getattr(chat_model, "model_name", None) or type(chat_model).__name__
        openai_style = type(chat_model).__name__ == "ChatOpenAI"
        self.capabilities = Capabilities(output_mode=OutputMode.JSON_SCHEMA if openai_style else OutputMode.PROMPT)

    @classmethod
    def from_settings(cls, settings: Settings) -> LangChainBackend:
        from langchain.chat_models import init_chat_model

        b, options = settings.backend, settings.backend.options(LangChainOptions)
        kwargs: dict[str, Any] = {"temperature": b.temperature, "max_tokens": settings.ranking.max_tokens}
        if options.base_url:
            kwargs["base_url"] = options.base_url
        if options.api_key:
            kwargs["api_key"] = options.api_key.get_secret_value()
        return cls(init_chat_model(b.model, **kwargs), b.model)

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        from langchain_core import messages as lc

        raise_if_cancelled()  # a cancelled turn sends no request
        converted = [getattr(lc, _ROLES[m["role"]])(content=m["content"]) for m in messages]
        model = self.chat_model
        if schema and self.capabilities.output_mode is OutputMode.JSON_SCHEMA:
            model = model.bind(response_format={"type": "json_schema",
                                                "json_schema": {"name": "ranking", "schema": schema}})
        reply = model.invoke(converted)
        usage = getattr(reply, "usage_metadata", None) or {}
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        heard(text)  # the whole answer at once
        return Completion(text=text, prompt_tokens=int(usage.get("input_tokens", 0)),
                          completion_tokens=int(usage.get("output_tokens", 0)))
