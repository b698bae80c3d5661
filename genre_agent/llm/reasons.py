"""The model writes each item's reason from that item's facts, one call per item, and each is checked.

One call per item (`reason_system.j2`, then `reason_item.j2`: static instructions, the user and the request,
the item last, so llama.cpp reuses the common prefix) makes the first reason arrive after one short answer
instead of the whole list. A reason is kept only if it is grounded (`grounding.reason_problem`) and
informative (`grounding.uninformative`); otherwise the item keeps its evidence sentence. Past the deadline,
or when the model is unavailable, the remaining items keep theirs too: the list never waits on the model.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from genre_agent.errors import BackendUnavailableError, ContextLengthError, TurnCancelled
from genre_agent.llm.backends import Backend
from genre_agent.llm.backends.base import cancel_event, cancellable
from genre_agent.llm.contexts import WritingContext
from genre_agent.llm.grounding import shown_problem
from genre_agent.llm.prompts import Prompts
from genre_agent.schemas import Candidate


@dataclass
class Written:
    """What the model wrote for the items it was asked about."""

    reasons: dict[str, str] = field(default_factory=dict)  # kept reasons by id (grounded and informative)
    verdicts: list[tuple[str, str, str | None]] = field(default_factory=list)  # (id, reason, problem or None)
    prompt_tokens: int = 0
    llm_ms: float = 0.0
    timed_out: bool = False  # the deadline passed before every item had its answer
    error: str | None = None  # the backend failed (unavailable, context too long): the rest keep evidence


def reason_schema(max_chars: int) -> dict[str, Any]:
    """One reason, bounded (llama.cpp turns the bound into the grammar, so it cannot ramble)."""
    return {"type": "object", "properties": {"reason": {"type": "string", "minLength": 10,
                                                        "maxLength": max_chars}},
            "required": ["reason"]}


def parse_reason(text: str) -> str | None:
    """The reason of an answer `{"reason": "..."}`, or None if the answer is not that."""
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    reason = answer.get("reason") if isinstance(answer, dict) else None
    return reason.strip() if isinstance(reason, str) else None


def check(reason: str | None, item: Candidate, max_chars: int, history_titles: list[str]) -> str | None:
    """Why a written reason is not shown (None: it is)."""
    if reason is None:
        return "the answer is not JSON of the form {\"reason\": \"...\"}"
    return shown_problem(reason, item, max_chars, history_titles)


@contextmanager
def _until(deadline: float) -> Iterator[threading.Event]:
    """Model calls inside stop at `deadline` (perf_counter) or when the turn is cancelled; the event yielded is
    set then."""
    turn, stop, done = cancel_event(), threading.Event(), threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            if time.perf_counter() >= deadline or (turn is not None and turn.is_set()):
                stop.set()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with cancellable(stop):
            yield stop
    finally:
        done.set()
        watcher.join()


def write_reasons(backend: Callable[[], Backend], prompts: Prompts, context: WritingContext,
                  items: list[Candidate], *, max_chars: int, deadline_s: float,
                  on_reason: Callable[[str, str], None] | None = None) -> Written:
    """The model's reason for each item, in order, each checked; a kept reason also goes to
    `on_reason(item_id, reason)` at once. Stops at `deadline_s` (the reasons so far are kept); a cancelled turn
    raises TurnCancelled (the caller keeps what `on_reason` was told)."""
    written = Written()
    history_titles = [h.title for h in context.history]
    turn = cancel_event()
    deadline = time.perf_counter() + deadline_s
    schema = reason_schema(max_chars)
    max_tokens = max_chars // 2 + 16  # a token is 3-4 characters of English; room for the JSON around it
    for item in items:
        if time.perf_counter() >= deadline:
            written.timed_out = True
            break
        messages = prompts.writing_messages(context.model_copy(update={"item": item}))
        started = time.perf_counter()
        try:
            with _until(deadline):
                completion = backend().complete(messages, schema, max_tokens)
        except TurnCancelled:
            if turn is not None and turn.is_set():
                raise
            written.timed_out = True
            break
        except (ContextLengthError, BackendUnavailableError) as exc:
            written.error = str(exc)
            break
        finally:
            written.llm_ms += (time.perf_counter() - started) * 1000
        written.prompt_tokens += completion.prompt_tokens
        reason = parse_reason(completion.text)
        problem = check(reason, item, max_chars, history_titles)
        written.verdicts.append((item.item_id, reason if reason is not None else completion.text, problem))
        if problem is None and reason is not None:
            written.reasons[item.item_id] = reason
            if on_reason is not None:
                on_reason(item.item_id, reason)
    return written
