"""Any LangChain chat model as a backend (e.g. `init_chat_model("openai:gpt-4o-mini")`).

LangChain has no portable way to constrain decoding by a JSON schema, so the schema is passed to the
model as `response_format` only when it is an OpenAI-style chat model; validation and re-asks do the rest."""

from __future__ import annotations

from typing import Any

from genre_agent.llm.backends.base import Completion, Message

_ROLES = {"system": "SystemMessage", "user": "HumanMessage", "assistant": "AIMessage"}


class LangChainBackend:
    name = "langchain"

    def __init__(self, chat_model: Any, model_name: str | None = None) -> None:
        self.chat_model = chat_model
        self.model = model_name or getattr(chat_model, "model_name", None) or type(chat_model).__name__

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        from langchain_core import messages as lc

        converted = [getattr(lc, _ROLES[m["role"]])(content=m["content"]) for m in messages]
        model = self.chat_model
        if schema and type(model).__name__ == "ChatOpenAI":
            model = model.bind(response_format={"type": "json_schema",
                                                "json_schema": {"name": "ranking", "schema": schema}})
        reply = model.invoke(converted)
        usage = getattr(reply, "usage_metadata", None) or {}
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        return Completion(text=text, prompt_tokens=int(usage.get("input_tokens", 0)),
                          completion_tokens=int(usage.get("output_tokens", 0)))
