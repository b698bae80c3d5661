"""The one base class every LLM backend implements, with the capabilities it declares.

A backend is a small class with one job (`complete`); what it can do beyond that is declared, not guessed:
`capabilities.logprobs` (it reads the next-token distribution, so `option_logprobs` works),
`capabilities.output_mode` (how it asks for structured output) and `capabilities.local_tokenizer` (it counts
prompt tokens exactly, without a server). Each backend names its own options model (a section of the
settings, `[backend.<name>]`, built from the registered backends) and builds itself from the settings in
`from_settings`. A backend is registered by an entry point in the group `genre_agent.backends` (docs/backends.md).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from genre_agent.errors import ConfigError, TurnCancelled

if TYPE_CHECKING:
    from genre_agent.settings import Settings

Message = dict[str, str]
_cancel: ContextVar[threading.Event | None] = ContextVar("genre_agent_turn_cancel", default=None)
_listener: ContextVar[Callable[[str], None] | None] = ContextVar("genre_agent_text_listener", default=None)


@contextmanager
def cancellable(event: threading.Event | None) -> Iterator[None]:
    """Model calls made inside (in this thread) stop when `event` is set: before they start, and for backends
    that decode locally between two tokens; they then raise TurnCancelled."""
    token = _cancel.set(event)
    try:
        yield
    finally:
        _cancel.reset(token)


def cancel_event() -> threading.Event | None:
    """The cancel event of the turn this thread is running, if any."""
    return _cancel.get()


def raise_if_cancelled() -> None:
    event = _cancel.get()
    if event is not None and event.is_set():
        raise TurnCancelled("the turn was cancelled; nothing of it was kept")


@contextmanager
def listening(listener: Callable[[str], None]) -> Iterator[None]:
    """Completions made inside (in this thread) hand `listener` each piece of text as it is decoded, where the
    backend decodes as a stream (llamacpp, fake, openai); langchain hands it the whole text at the end."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def heard(text: str) -> None:
    """A backend reports decoded text to the listener of this thread's call, if any."""
    listener = _listener.get()
    if listener is not None and text:
        listener(text)


def estimate_tokens(messages: list[Message]) -> int:
    """Prompt tokens estimated from words (x 1.3), for a backend whose tokenizer is not local."""
    return round(sum(len(m["content"].split()) for m in messages) * 1.3)


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


class OutputMode(StrEnum):
    """How a backend asks for structured output (like instructor's Mode): declared per backend."""

    GRAMMAR = "grammar"  # the JSON schema compiled to a grammar that constrains decoding (llama.cpp)
    JSON_SCHEMA = "json_schema"  # OpenAI's response_format {"type": "json_schema", ...}
    JSON_OBJECT_SCHEMA = "json_object_schema"  # llama.cpp server's {"type": "json_object", "schema": ...}
    JSON_OBJECT = "json_object"  # JSON mode: valid JSON, the schema not enforced
    PROMPT = "prompt"  # nothing sent: the prompt shows the answer form, validation and re-asks do the rest
    AUTO = "auto"  # tried in the order above on the first request; the first form the server takes is kept


@dataclass(frozen=True)
class Capabilities:
    logprobs: bool = False  # option_logprobs: label log-probabilities in one forward pass
    output_mode: OutputMode = OutputMode.PROMPT
    local_tokenizer: bool = False  # count_tokens is exact (else an estimate)


class BackendOptions(BaseModel):
    """The base of a backend's options model (its settings sub-table, `[backend.<name>]`); as it is, the
    options of a backend that has none."""

    model_config = ConfigDict(extra="forbid")


class Backend(ABC):
    """One chat model behind one method. Subclasses set `name` (their entry point's name in the group
    `genre_agent.backends`), `capabilities` and `Options` (a subclass of BackendOptions)."""

    name: str
    capabilities: Capabilities = Capabilities()
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    model: str

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> Backend:
        """The backend the settings describe (its options are `settings.backend.<name>`)."""

    @abstractmethod
    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        """One chat completion. With a schema, output is asked for in the backend's `output_mode`."""

    def option_logprobs(self, messages: list[Message], options: list[str]) -> list[float]:
        """Log-probability that the assistant's answer starts with each option (a one-token label); only
        for backends whose `capabilities.logprobs` is true."""
        raise ConfigError(f"The {self.name} backend cannot read next-token probabilities: use the llamacpp "
                          "(or fake) backend.")

    @classmethod
    def count_tokens(cls, settings: Settings, messages: list[Message]) -> tuple[int, str]:
        """Prompt tokens of the messages for the configured model, and what counted them. Exact (chat
        template included) where `capabilities.local_tokenizer`; else an estimate."""
        return estimate_tokens(messages), f"estimate (words x 1.3): the {cls.name} backend's tokenizer is " \
                                          "not local"


class Wrapper(Backend):
    """A backend around another one (recording, caching, timing): same name, model and capabilities; it
    passes every call through unless it overrides one."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.capabilities = inner.capabilities

    @classmethod
    def from_settings(cls, settings: Settings) -> Backend:
        raise ConfigError("A wrapper is built around a backend, not from settings.")

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        return self.inner.complete(messages, schema, max_tokens)

    def option_logprobs(self, messages: list[Message], options: list[str]) -> list[float]:
        return self.inner.option_logprobs(messages, options)
