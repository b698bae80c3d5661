"""One chat turn on a working copy of its session: kept only when it finished, or when its first answer was
shown before it was cancelled."""

from __future__ import annotations

import threading
from collections.abc import Callable

from genre_agent.chat.replies import Listeners, Reply, so_far
from genre_agent.chat.session import SessionState
from genre_agent.errors import TurnCancelled
from genre_agent.llm.backends.base import cancellable
from genre_agent.schemas import Recommendation

Writes = list[tuple[str, str]]  # a turn's feedback rows: (item id, kind)
# a turn on the working copy: its feedback rows go to the list, its answers to the listeners (when streamed)
Answer = Callable[[SessionState, Writes, Listeners | None], Reply]


def run_turn(state: SessionState, answer: Answer, keep: Callable[[SessionState, Writes], None], *,
             cancel: threading.Event | None = None, on_first: Callable[[Reply], None] | None = None,
             on_reason: Callable[[Recommendation], None] | None = None) -> Reply:
    """Run `answer` on a copy of `state`; the session takes the copy, and `keep` is given it and its feedback
    rows, only when the turn finishes and was not cancelled. A model call running when `cancel` is set stops
    and raises TurnCancelled.

    With `on_first`, an answer in which the model ranks or writes reasons is given twice: first at once
    without the model (retrieval order, evidence reasons, `pending` says what follows) to `on_first`, then
    the model's answer is returned. With `on_reason` too, each reason the model writes for that first list
    goes to `on_reason` as soon as it is written and checked (the item at its rank in the first list). A
    turn cancelled after its first answer keeps that answer with the reasons written so far: the session
    and feedback are kept as they were when it was shown, and it is returned."""
    working = state.model_copy(deep=True)
    writes: Writes = []
    shown: list[tuple[Reply, SessionState]] = []
    written: list[Recommendation] = []

    def first(reply: Reply) -> None:
        shown.append((reply, working.model_copy(deep=True)))
        assert on_first is not None
        on_first(reply)

    def reason(rec: Recommendation) -> None:
        written.append(rec)
        if on_reason is not None:
            on_reason(rec)

    working.turns += 1
    try:
        with cancellable(cancel):  # a model call of this turn stops when `cancel` is set (TurnCancelled)
            reply = answer(working, writes, Listeners(first, reason) if on_first else None)
    except TurnCancelled:
        if not shown:
            raise
        reply, working = so_far(shown[0][0], written), shown[0][1]
    if cancel is not None and cancel.is_set():
        if not shown:
            return reply  # nobody waits for it: nothing is kept
        reply, working = so_far(shown[0][0], written), shown[0][1]
    keep(working, writes)
    state.take(working)  # the session becomes the turn's working copy
    return reply
