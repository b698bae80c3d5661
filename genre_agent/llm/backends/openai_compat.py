"""Any OpenAI-compatible server (hosted API, `python -m llama_cpp.server`, vLLM …) via the `openai` client."""

from __future__ import annotations

from typing import Any

from genre_agent.errors import BackendUnavailableError
from genre_agent.llm.backends.base import Completion, Message

# Structured-output request forms, most standard first; the first one a server accepts is remembered.
_FORMATS = ("json_schema", "json_object_schema", "json_object", "plain")


class OpenAIBackend:
    name = "openai"

    def __init__(self, model: str, base_url: str | None, api_key: str | None,
                 temperature: float = 0.0, timeout_s: float = 120.0) -> None:
        import openai

        self._openai = openai
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s,
                                    max_retries=1)
        self.model = model
        self.temperature = temperature
        self._formats = list(_FORMATS)

    @staticmethod
    def _response_format(kind: str, schema: dict[str, Any]) -> dict[str, Any]:
        if kind == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "ranking", "schema": schema}}
        if kind == "json_object_schema":  # llama.cpp server's own form
            return {"type": "json_object", "schema": schema}
        if kind == "json_object":
            return {"type": "json_object"}
        return {}

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        last_error: Exception | None = None
        for kind in list(self._formats) if schema else ["plain"]:
            fmt = self._response_format(kind, schema or {})
            extra: dict[str, Any] = {"response_format": fmt} if fmt else {}
            try:
                request: dict[str, Any] = dict(model=self.model, messages=messages,
                                               temperature=self.temperature, max_tokens=max_tokens, **extra)
                out = self.client.chat.completions.create(**request)
            except (self._openai.BadRequestError, self._openai.InternalServerError,
                    self._openai.UnprocessableEntityError) as exc:
                last_error = exc
                if kind == "plain":
                    break
                self._formats.remove(kind)  # this server rejects this form; try the next one
                continue
            except self._openai.APIConnectionError as exc:
                raise BackendUnavailableError(
                    f"Cannot reach the OpenAI-compatible server at {self.client.base_url} ({exc}). "
                    "Start it or fix backend.base_url."
                ) from exc
            except self._openai.AuthenticationError as exc:
                raise BackendUnavailableError(
                    "The server rejected the API key: set GENRE_AGENT_BACKEND__API_KEY."
                ) from exc
            usage = out.usage
            return Completion(text=out.choices[0].message.content or "",
                              prompt_tokens=usage.prompt_tokens if usage else 0,
                              completion_tokens=usage.completion_tokens if usage else 0)
        raise BackendUnavailableError(f"The server rejected the request: {last_error}")
