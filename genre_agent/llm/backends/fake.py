"""A deterministic backend for tests: returns queued responses and records every prompt it got."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genre_agent.llm.backends.base import (
    Backend,
    Capabilities,
    Completion,
    Message,
    OutputMode,
    heard,
    raise_if_cancelled,
)

if TYPE_CHECKING:
    from genre_agent.settings import Settings


class FakeBackend(Backend):
    """Answers with the queued responses in order; an empty queue answers "" (not JSON).

    `responses` may also be a path to a text file with one response per line (for the CLI)."""

    name = "fake"
    capabilities = Capabilities(logprobs=True, output_mode=OutputMode.JSON_SCHEMA)

    def __init__(self, responses: Iterable[str] | Path = ()) -> None:
        if isinstance(responses, Path):
            responses = [line for line in responses.read_text(encoding="utf-8").splitlines() if line.strip()]
        self.model = "fake"
        self.queue: deque[str] = deque(responses)
        self.calls: list[list[Message]] = []
        self.schemas: list[dict[str, Any] | None] = []
        self.preferred: list[str] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> FakeBackend:
        """`backend.model` may name an answers file (one response per line)."""
        path = Path(settings.backend.model)
        return cls(path if path.is_file() else ())

    def option_logprobs(self, messages: list[Message], options: list[str]) -> list[float]:
        """Deterministic scores for tests: options whose line in the prompt names a title in `preferred`
        get log-probability 0, the rest -5; the call is recorded like a completion."""
        raise_if_cancelled()
        self.calls.append([dict(m) for m in messages])
        self.schemas.append(None)
        lines = messages[-1]["content"].splitlines()
        liked = lambda o: any(line.startswith(f"{o}.") and any(p in line for p in self.preferred)  # noqa: E731
                              for line in lines)
        return [0.0 if liked(o) else -5.0 for o in options]

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        """The next queued answer, handed to a listener 8 characters at a time as a streaming model would."""
        raise_if_cancelled()
        self.calls.append([dict(m) for m in messages])
        self.schemas.append(schema)
        text = self.queue.popleft() if self.queue else ""
        for start in range(0, len(text), 8):  # decoded as a stream, a few characters at a time
            heard(text[start:start + 8])
        prompt_words = sum(len(m["content"].split()) for m in messages)
        return Completion(text=text, prompt_tokens=prompt_words, completion_tokens=len(text.split()))
