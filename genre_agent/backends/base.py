"""The one protocol every LLM backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

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
