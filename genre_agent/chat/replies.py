"""What the agent answers with: a reply, the list it shows (and what a streamed turn showed before it stopped),
why an item fits, and what debug mode adds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from genre_agent.chat.session import SessionState
from genre_agent.pipeline import Run
from genre_agent.schemas import Candidate, Recommendation, Recommendations


class Reply(BaseModel):
    """One answer of the agent; JSON-serialisable (the HTTP server returns it as `genre_agent`)."""

    session_id: str
    intent: str
    text: str = Field(description="the readable answer")
    recommendations: Recommendations | None = None
    explained_item: str | None = None
    filters: list[str] = []
    debug: dict[str, Any] | None = Field(None, description="prompt, candidates and timings when asked for")

    def listed(self, replaced: dict[str, str] | None = None) -> list[tuple[str, str]]:
        """What the reply shows: its items and their reasons, in order (with the `replaced` reasons by id)."""
        rec, replaced = self.recommendations, replaced or {}
        return [(r.item_id, replaced.get(r.item_id, r.reason)) for r in rec.recommendations] if rec else []


@dataclass
class Listeners:
    """What a streaming front-end is told during a turn: the list shown at once, then each model reason."""

    first: Callable[[Reply], None]
    reason: Callable[[Recommendation], None] | None = None


def so_far(first: Reply, written: list[Recommendation]) -> Reply:
    """The list shown at once with the reasons the model wrote for it before the turn stopped."""
    if first.recommendations is None or not written:
        return first
    by_id = {r.item_id: r for r in written}
    recs, text = first.recommendations, first.text
    for r in recs.recommendations:
        if r.item_id in by_id:
            text = text.replace(f"{r.rank}. {r.title} \u2014 {r.reason}",
                                f"{r.rank}. {r.title} \u2014 {by_id[r.item_id].reason}")
    kept = recs.model_copy(update={"pending": [], "llm_roles": ["reasons"], "recommendations": [
        by_id.get(r.item_id, r) for r in recs.recommendations]})
    return first.model_copy(update={"recommendations": kept, "text": text})


def listing(state: SessionState, intent: str, run: Run, note: str | None, debug: dict[str, Any] | None) -> Reply:
    """The reply showing an answer, one "N. Title — reason" line per item (`transcript.ShownReader` reads them
    back); what it shows becomes the session's latest list."""
    result = run.result
    ids = [r.item_id for r in result.recommendations]
    state.shown += [i for i in ids if i not in state.shown]
    state.last = ids
    state.focus = None
    if ids:
        text = "\n".join(f"{r.rank}. {r.title} \u2014 {r.reason}" for r in result.recommendations)
    elif note:
        text = ""
    else:
        text = "Nothing left that fits these filters: try /filters and /reset, or loosen a filter."
    text = "\n".join(t for t in (note, text) if t)
    return Reply(session_id=state.session_id, intent=intent, text=text, recommendations=result,
                 filters=state.describe(), debug=debug)


def why(state: SessionState, c: Candidate) -> Reply:
    """Why the candidate `c` fits the session's user, from its metadata and the user's history; it becomes the
    session's focus."""
    state.focus = c.item_id
    genres = ", ".join(c.genres) or "no genre listed"
    facts = "; ".join(c.facts) if c.facts else "no facts tie it to your history yet"
    text = f"{c.title} ({genres}): {c.why} Evidence: {facts}."
    return Reply(session_id=state.session_id, intent="why", text=text, explained_item=c.item_id,
                 filters=state.describe())


def debug_of(run: Run, routes: str) -> dict[str, Any]:
    """What debug mode adds to a reply: the routes, the calibration, the prompt, the candidates and timings."""
    return {"routes": routes, "calibration": run.result.calibration, "messages": run.messages,
            "candidates": [{"item_id": c.item_id, "title": c.title, **c.scores.model_dump()}
                           for c in run.candidates],
            "timings_ms": run.result.timings_ms.model_dump()}
