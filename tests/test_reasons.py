"""The model's reasons item by item (llm/reasons.py), driven by the fake backend: one call per item, every
kind of bad answer falls back for that item only, a stalled model leaves the list with evidence reasons."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from genre_agent.errors import BackendUnavailableError, TurnCancelled
from genre_agent.llm.backends import FakeBackend
from genre_agent.llm.backends.base import Completion, Message, cancel_event, cancellable, raise_if_cancelled
from genre_agent.llm.contexts import WritingContext
from genre_agent.llm.prompts import Prompts, resolve_prompts_dir
from genre_agent.llm.reasons import reason_schema, write_reasons
from genre_agent.schemas import HistoryItem

from helpers import CANDIDATES

ALIENS, PREDATOR, BIG = CANDIDATES
CHESS = ALIENS.model_copy(update={"summary": "A young chess player is torn between two teachers."})
CONTEXT = WritingContext(item_noun="movie", item_noun_plural="movies", reason_max_chars=140,
                         history=[HistoryItem(item_id="1", title="Alien (1979)", genres=["Sci-Fi"], year=1979,
                                              rating=5.0)],
                         query=None, item=ALIENS)
GOOD = {  # grounded, and each says a fact its evidence sentence does not
    "10": "More Action, close to Alien (1979), which you rated highly.",
    "20": "A Sci-Fi film close to Terminator, The (1984), which you rated highly.",
    "30": "A Comedy with Tom Hanks, close to Splash (1984), which you rated highly.",
}


def _answer(reason: str) -> str:
    return json.dumps({"reason": reason})


def _write(backend: Any, prompts: Prompts | None = None, deadline_s: float = 30.0,
           shown: list[tuple[str, str]] | None = None) -> Any:
    return write_reasons(lambda: backend, prompts or Prompts(resolve_prompts_dir("default")), CONTEXT,
                         CANDIDATES, max_chars=140, deadline_s=deadline_s,
                         on_reason=(lambda i, r: shown.append((i, r))) if shown is not None else None)


def test_each_item_is_asked_alone_static_part_first_and_its_reason_handed_over_at_once() -> None:
    backend = FakeBackend([_answer(GOOD[c.item_id]) for c in CANDIDATES])
    shown: list[tuple[str, str]] = []
    written = _write(backend, shown=shown)
    assert written.reasons == GOOD and shown == list(GOOD.items())
    assert [p for _, _, p in written.verdicts] == [None, None, None]
    systems = {call[0]["content"] for call in backend.calls}
    assert len(systems) == 1  # the same static instructions for every item: llama.cpp reuses them
    firsts = {call[1]["content"].split("The movie:")[0] for call in backend.calls}
    assert len(firsts) == 1 and "Alien (1979)" in firsts.pop()  # the user's part too; the item comes last
    assert "The movie: Big (1988)" in backend.calls[2][1]["content"]
    assert "Tags: tom hanks" in backend.calls[2][1]["content"]
    assert backend.schemas == [reason_schema(140)] * 3


def test_a_reason_from_the_items_summary_is_kept() -> None:
    backend = FakeBackend([_answer("A young chess player is torn between two teachers.")])
    written = write_reasons(lambda: backend, Prompts(resolve_prompts_dir("default")), CONTEXT, [CHESS],
                            max_chars=140, deadline_s=30.0)
    assert written.reasons == {"10": "A young chess player is torn between two teachers."}
    assert "Summary: A young chess player is torn between two teachers." in backend.calls[0][1]["content"]


BAD = {
    "invalid json": ('Sure! {"reason": "A Sci-Fi film', "not JSON"),
    "not the answer's form": (json.dumps({"why": GOOD["20"]}), "not JSON"),
    "wrong language": (_answer("Un film de science-fiction proche de Terminator, The (1984), que vous adorez."),
                       "which no fact listed for it supports"),
    "2,000 characters": (_answer("A Sci-Fi film close to Terminator, The (1984). " * 44), "the limit is 140"),
    "another item's facts": (_answer(GOOD["30"]), "which no fact listed for it supports"),
    "the evidence sentence copied": (_answer(PREDATOR.why), "says nothing the evidence sentence does not"),
    "its own title": (_answer("Predator is a Sci-Fi film for you."), "restates the item's own title"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_answer_falls_back_for_that_item_only(case: str) -> None:
    text, problem = BAD[case]
    backend = FakeBackend([_answer(GOOD["10"]), text, _answer(GOOD["30"])])
    shown: list[tuple[str, str]] = []
    written = _write(backend, shown=shown)
    assert written.reasons == {"10": GOOD["10"], "30": GOOD["30"]}  # the others keep theirs
    assert [i for i, _ in shown] == ["10", "30"]
    (item_id, _, why), = [v for v in written.verdicts if v[2] is not None]
    assert item_id == "20" and problem in why


class Stalls(FakeBackend):
    """Answers the first item, then hangs until the call is cancelled (as a local model decoding does)."""

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        if self.calls:
            event = cancel_event()
            assert event is not None
            event.wait(10)
            raise_if_cancelled()
        return super().complete(messages, schema, max_tokens)


def test_a_stalled_model_leaves_the_reasons_written_so_far_after_the_deadline() -> None:
    written = _write(Stalls([_answer(GOOD["10"])]), deadline_s=0.5)
    assert written.timed_out and written.reasons == {"10": GOOD["10"]} and len(written.verdicts) == 1


def test_a_cancelled_turn_stops_the_model_and_says_so() -> None:
    cancel = threading.Event()
    shown: list[tuple[str, str]] = []
    backend = Stalls([_answer(GOOD["10"])])
    threading.Timer(0.3, cancel.set).start()
    with cancellable(cancel), pytest.raises(TurnCancelled):
        _write(backend, shown=shown)
    assert shown == [("10", GOOD["10"])]  # what the front-end was told before stays with it


def test_an_unavailable_model_leaves_every_item_its_evidence() -> None:
    class Gone(FakeBackend):
        def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
            raise BackendUnavailableError("the server is gone")

    written = _write(Gone())
    assert written.reasons == {} and written.error == "the server is gone"


@pytest.mark.parametrize("instruction", ["One short sentence, mention the year.", "Write the reason in French."])
def test_a_copied_template_set_changes_what_the_model_is_asked(tmp_path: Path, instruction: str) -> None:
    own = tmp_path / "mine"
    own.mkdir()
    (own / "profile.toml").write_text('extends = "default"\n')
    default = Prompts(resolve_prompts_dir("default")).path_of("reason_system.j2").read_text()
    (own / "reason_system.j2").write_text(default.replace("Rules:", f"{instruction}\nRules:"))
    backend = FakeBackend([_answer(GOOD[c.item_id]) for c in CANDIDATES])
    _write(backend, Prompts(own))
    assert all(instruction in call[0]["content"] for call in backend.calls)


def test_the_french_set_asks_for_french_reasons() -> None:
    backend = FakeBackend()
    _write(backend, Prompts(resolve_prompts_dir("fr")))
    assert "en français" in backend.calls[0][0]["content"]
    assert "Le titre : Aliens (1986)" in backend.calls[0][1]["content"]
