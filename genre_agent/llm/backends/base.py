"""The one protocol every LLM backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


class Backend(Protocol):
    name: str
    model: str

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        """One chat completion. With a schema, decoding is constrained to it where the backend can."""
        ...


@runtime_checkable
class Scoring(Protocol):
    """A backend that can read the model's next-token distribution (llama.cpp, the fake): one forward pass
    scores every option, with no decoding."""

    def option_logprobs(self, messages: list[Message], options: list[str]) -> list[float]:
        """Log-probability that the assistant's answer starts with each option (a one-token label)."""
        ...
