"""Any OpenAI-compatible server (hosted API, `python -m llama_cpp.server`, vLLM …) via the `openai` client.

The structured-output form is `backend.openai.output_mode`. Set it when you know the server (json_schema for
the OpenAI API and vLLM, json_object_schema for llama.cpp's server); `auto` (the default) tries the forms
most standard first on the first request and keeps the first one the server accepts.

Answers are streamed (`stream: true`): each piece of text reaches the listener as the server sends it, and a
cancelled turn (deadline, client gone, Ctrl-C) closes the connection between two pieces, which stops a
server that watches for it (llama.cpp's server does) instead of letting it decode to the end.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr

from genre_agent.errors import BackendUnavailableError, ConfigError
from genre_agent.llm.backends.base import (
    Backend,
    BackendOptions,
    Capabilities,
    Completion,
    Message,
    OutputMode,
    cancel_event,
    estimate_tokens,
    heard,
    raise_if_cancelled,
)

if TYPE_CHECKING:
    import httpx

    from genre_agent.settings import Settings

_PROBE = (OutputMode.JSON_SCHEMA, OutputMode.JSON_OBJECT_SCHEMA, OutputMode.JSON_OBJECT, OutputMode.PROMPT)


class OpenAIOptions(BackendOptions):
    """Options of the openai backend (any OpenAI-compatible server)."""

    base_url: str | None = Field(None, description="the server's URL, e.g. http://127.0.0.1:8080/v1; unset = "
                                 "the hosted OpenAI API")
    api_key: SecretStr | None = Field(None, description="set with GENRE_AGENT_BACKEND__OPENAI__API_KEY")
    timeout_s: float = 120.0
    max_retries: int = Field(2, ge=0, le=10, description="retries of a request that failed to connect, timed "
                             "out or got 408/409/429/5xx, with exponential backoff that honours Retry-After")
    output_mode: Literal["auto", "json_schema", "json_object_schema", "json_object", "prompt"] = Field(
        "auto", description="structured-output form the server takes; auto = try json_schema, then "
        "json_object_schema, json_object, prompt, and keep the first one accepted")
    cooldown_s: float = Field(30.0, ge=0, description="after the server failed (unreachable, busy past the "
                              "retries, stalled), answers skip the model for this long and come from retrieval")


class OpenAIBackend(Backend):
    name = "openai"
    Options = OpenAIOptions

    def __init__(self, model: str, base_url: str | None, api_key: str | None,
                 temperature: float = 0.0, timeout_s: float = 120.0,
                 output_mode: OutputMode = OutputMode.AUTO, max_retries: int = 2,
                 cooldown_s: float = 30.0, http_client: httpx.Client | None = None) -> None:
        """`http_client` is the HTTP client requests go through (e.g. one with an `httpx.MockTransport` in
        tests); unset, the openai package makes its own."""
        import openai

        self._openai = openai
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s,
                                    max_retries=max_retries,  # the client's backoff, Retry-After honoured
                                    http_client=http_client)  # type: ignore[arg-type]  # httpx or httpx2
        self.model = model
        self.temperature = temperature
        self.capabilities = Capabilities(output_mode=output_mode)
        self._modes: tuple[OutputMode, ...] = _PROBE if output_mode is OutputMode.AUTO else (output_mode,)
        self._modes_lock = threading.Lock()  # concurrent first calls probe and narrow `_modes` together
        self.cooldown_s = cooldown_s
        self._failed: tuple[float, str] | None = None  # when the server last failed, and how

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIBackend:
        b, options = settings.backend, settings.backend.options(OpenAIOptions)
        if not options.base_url and not options.api_key:
            raise ConfigError("The openai backend needs backend.openai.base_url (a local server) or an API key "
                              "(GENRE_AGENT_BACKEND__OPENAI__API_KEY) for the hosted API.")
        return cls(b.model, options.base_url, options.api_key.get_secret_value() if options.api_key else None,
                   b.temperature, options.timeout_s, OutputMode(options.output_mode), options.max_retries,
                   options.cooldown_s)

    @staticmethod
    def _response_format(mode: OutputMode, schema: dict[str, Any]) -> dict[str, Any]:
        if mode is OutputMode.JSON_SCHEMA:
            return {"type": "json_schema", "json_schema": {"name": "ranking", "schema": schema}}
        if mode is OutputMode.JSON_OBJECT_SCHEMA:  # llama.cpp server's own form
            return {"type": "json_object", "schema": schema}
        if mode is OutputMode.JSON_OBJECT:
            return {"type": "json_object"}
        return {}

    def _accepted(self, mode: OutputMode) -> None:
        """The server took this form: keep it for every later request."""
        with self._modes_lock:
            if self.capabilities.output_mode is OutputMode.AUTO:
                self._modes = (mode,)
                self.capabilities = Capabilities(output_mode=mode)

    def _rejected(self, mode: OutputMode) -> None:
        """auto: the server rejects this form; later requests do not try it (unless it is the last left)."""
        with self._modes_lock:
            if len(self._modes) > 1:
                self._modes = tuple(m for m in self._modes if m is not mode)

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        """One streamed completion. A server that failed within `cooldown_s` is not asked again: the call raises
        BackendUnavailableError at once (the answer comes from retrieval), so a dead server costs one timeout,
        not one per model call."""
        raise_if_cancelled()  # a cancelled turn sends no request
        if self._failed is not None and time.monotonic() - self._failed[0] < self.cooldown_s:
            raise BackendUnavailableError(f"{self._failed[1]} (not asked again for {self.cooldown_s:g} s: "
                                          "backend.openai.cooldown_s)")
        try:
            return self._complete(messages, schema, max_tokens)
        except BackendUnavailableError as exc:
            self._failed = (time.monotonic(), str(exc))
            raise

    def _complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        last_error: Exception | None = None
        modes = self._modes if schema else (OutputMode.PROMPT,)
        for mode in modes:
            fmt = self._response_format(mode, schema or {})
            extra: dict[str, Any] = {"response_format": fmt} if fmt else {}
            try:
                request: dict[str, Any] = dict(model=self.model, messages=messages,
                                               temperature=self.temperature, max_tokens=max_tokens, **extra)
                stream = self.client.chat.completions.create(**request, stream=True)
            except (self._openai.BadRequestError, self._openai.InternalServerError,
                    self._openai.UnprocessableEntityError) as exc:
                if exc.status_code in (502, 503, 504):  # busy or gone (after the client's retries), not a form
                    raise self._still_busy(exc.status_code) from exc
                last_error = exc
                if mode is OutputMode.PROMPT or len(modes) == 1:
                    break
                self._rejected(mode)  # auto: try the next form
                continue
            except self._openai.APIConnectionError as exc:
                raise BackendUnavailableError(
                    f"Cannot reach the OpenAI-compatible server at {self.client.base_url} ({exc}). "
                    "Start it or fix backend.openai.base_url."
                ) from exc
            except self._openai.RateLimitError as exc:
                raise self._still_busy(429, " (rate limited)") from exc
            except self._openai.AuthenticationError as exc:
                raise ConfigError(
                    "The server rejected the API key: set GENRE_AGENT_BACKEND__OPENAI__API_KEY."
                ) from exc
            completion = self._read(stream, messages)
            if schema:
                self._accepted(mode)
            return completion
        hint = "" if self.capabilities.output_mode is OutputMode.AUTO else (
            f" If it does not take output_mode '{self.capabilities.output_mode}', set backend.openai.output_mode "
            "to another (json_schema, json_object_schema, json_object, prompt) or to auto.")
        raise BackendUnavailableError(f"The server rejected the request: {last_error}.{hint}")

    def _still_busy(self, status: int, what: str = "") -> BackendUnavailableError:
        return BackendUnavailableError(
            f"The server at {self.client.base_url} kept answering {status}{what} after {self.client.max_retries} "
            "retries with backoff: retry later, or raise backend.openai.max_retries.")

    def _read(self, stream: Any, messages: list[Message]) -> Completion:
        """The streamed answer, piece by piece: each piece to the listener; the connection closed as soon as
        the turn is cancelled. Token counts are the server's where it sends usage in the stream unasked (no
        `stream_options` is sent: not every server takes it), else the number of pieces (one token each on
        llama.cpp's server) and an estimate of the prompt."""
        import httpx

        event = cancel_event()
        parts: list[str] = []
        usage = None
        with stream:
            try:
                for chunk in stream:
                    if event is not None and event.is_set():
                        stream.close()
                        raise_if_cancelled()
                    usage = chunk.usage or usage
                    piece = chunk.choices[0].delta.content if chunk.choices else None
                    if piece:
                        parts.append(piece)
                        heard(piece)
            except (httpx.HTTPError, self._openai.APIError) as exc:
                raise BackendUnavailableError(
                    f"The server at {self.client.base_url} stopped in the middle of its answer ({exc!r}). "
                    "Retry; if it is slow, raise backend.openai.timeout_s (the longest wait for the next piece)."
                ) from exc
        if usage is not None:
            return Completion("".join(parts), usage.prompt_tokens, usage.completion_tokens)
        return Completion("".join(parts), estimate_tokens(messages), len(parts))
