"""The validate / re-ask / fall back loop, driven by the fake backend with every kind of bad output."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genre_agent.llm.backends import FakeBackend
from genre_agent.llm.ranking import answer_schema, rank

from helpers import CANDIDATES

MESSAGES = [{"role": "system", "content": "sys"}, {"role": "user", "content": "rank please"}]
GOOD = json.dumps({"recommendations": [
    {"item_id": "20", "reason": "Fans of Terminator, The (1984) will enjoy this Sci-Fi film."},
    {"item_id": "10", "reason": "Close to Alien (1979), which you rated highly, with more Action."},
]})


def _rank(backend: FakeBackend, k: int = 2, retries: int = 2):  # type: ignore[no-untyped-def]
    return rank(backend, MESSAGES, CANDIDATES, k, retries=retries, reason_max_chars=140, max_tokens=300)


def test_valid_answer_is_used_in_the_model_order() -> None:
    backend = FakeBackend([GOOD])
    outcome = _rank(backend)
    assert not outcome.fallback and outcome.reasks == 0
    assert [i.item_id for i in outcome.items] == ["20", "10"]
    assert outcome.items[1].reason == "Close to Alien (1979), which you rated highly, with more Action."
    assert backend.calls == [MESSAGES]


def _bad(items: list[dict[str, str]]) -> str:
    return json.dumps({"recommendations": items})


R = "Close to Alien (1979), which you rated highly, with more Action."
BAD_OUTPUTS = {
    "not json": ("Sure! Here are my picks: Aliens, Predator", "Invalid JSON"),
    "truncated json": ('{"recommendations": [{"item_id": "10", "reason": "Close to Ali', "EOF while parsing"),
    "unknown id": (_bad([{"item_id": "999", "reason": R}, {"item_id": "10", "reason": R}]),
                   "id '999' is not one of the candidate ids"),
    "duplicate id": (_bad([{"item_id": "10", "reason": R}, {"item_id": "10", "reason": R}]),
                     "id '10' is listed twice"),
    "too few items": (_bad([{"item_id": "10", "reason": R}]), "there are 1 items; exactly 2 are required"),
    "empty reason": (_bad([{"item_id": "10", "reason": " "}, {"item_id": "20", "reason": R}]),
                     "item 1 (10): its reason is empty"),
    "bare genre": (_bad([{"item_id": "10", "reason": "Sci-Fi"}, {"item_id": "20", "reason": R}]),
                   "its reason only repeats the title or genres"),
    "restated title": (_bad([{"item_id": "10", "reason": "Aliens is a film you should watch tonight."},
                             {"item_id": "20", "reason": R}]), "restates the item's own title"),
    "no fact": (_bad([{"item_id": "10", "reason": "A wonderful ride for the whole evening."},
                      {"item_id": "20", "reason": R}]), "cites none of the facts"),
    "bare liked title": (_bad([{"item_id": "10", "reason": "Alien (1979)"}, {"item_id": "20", "reason": R}]),
                         "bare list of names"),
    "missing field": (_bad([{"item_id": "10"}, {"item_id": "20", "reason": R}]), "Field required"),
}


@pytest.mark.parametrize("case", sorted(BAD_OUTPUTS))
def test_bad_output_is_re_asked_with_the_exact_error_then_accepted(case: str) -> None:
    bad, expected_error = BAD_OUTPUTS[case]
    backend = FakeBackend([bad, GOOD])
    outcome = _rank(backend)
    assert not outcome.fallback and outcome.reasks == 1
    assert [i.item_id for i in outcome.items] == ["20", "10"]
    assert expected_error in outcome.errors[0]
    reask = backend.calls[1]
    assert reask[:2] == MESSAGES
    assert reask[2] == {"role": "assistant", "content": bad}
    assert reask[3]["role"] == "user" and outcome.errors[0] in reask[3]["content"]


NOTHING_USABLE = {"not json", "truncated json", "missing field"}


@pytest.mark.parametrize("case", sorted(NOTHING_USABLE))
def test_persistent_unusable_output_falls_back_to_retrieval_order(case: str) -> None:
    bad, _ = BAD_OUTPUTS[case]
    backend = FakeBackend([bad] * 3)
    outcome = _rank(backend, retries=2)
    assert outcome.fallback and outcome.reasks == 2 and len(backend.calls) == 3
    assert [i.item_id for i in outcome.items] == ["10", "20"]
    assert outcome.items[0].reason == CANDIDATES[0].why and not outcome.model_reasons


@pytest.mark.parametrize("case", sorted(set(BAD_OUTPUTS) - NOTHING_USABLE))
def test_persistent_partly_bad_output_keeps_its_valid_items(case: str) -> None:
    """One bad item no longer throws the answer away: valid ids keep the model's order, grounded reasons
    are kept, every other place gets its evidence reason."""
    bad, _ = BAD_OUTPUTS[case]
    backend = FakeBackend([bad] * 3)
    outcome = _rank(backend, retries=2)
    assert not outcome.fallback and outcome.reasks == 2
    named = [item["item_id"] for item in json.loads(bad)["recommendations"] if item["item_id"] in {"10", "20"}]
    assert [i.item_id for i in outcome.items][: len(set(named))] == list(dict.fromkeys(named))
    by_id = {c.item_id: c for c in CANDIDATES}
    for item in outcome.items:
        expected = R if item.item_id in outcome.model_reasons else by_id[item.item_id].why
        assert item.reason == expected


def test_no_item_outside_the_candidates_is_ever_returned() -> None:
    outcome = _rank(FakeBackend([]), k=5, retries=0)  # k larger than the candidate list
    assert outcome.fallback
    assert [i.item_id for i in outcome.items] == ["10", "20", "30"]


def test_schema_restricts_ids_count_and_reason_length() -> None:
    schema = answer_schema(CANDIDATES, 2, 120)
    recs = schema["properties"]["recommendations"]
    assert recs["minItems"] == recs["maxItems"] == 2
    assert recs["items"]["properties"]["item_id"]["enum"] == ["10", "20", "30"]
    assert recs["items"]["properties"]["reason"]["maxLength"] == 120


def test_fake_backend_records_the_schema_it_was_given() -> None:
    backend = FakeBackend([GOOD])
    _rank(backend)
    assert backend.schemas[0] == answer_schema(CANDIDATES, 2, 140)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.text(max_size=80),
    st.builds(lambda items: json.dumps({"recommendations": items}), st.lists(st.fixed_dictionaries({
        "item_id": st.sampled_from(["10", "20", "30", "40", "", "10 "]),
        "reason": st.sampled_from(["", "Sci-Fi", R, "Close to Splash (1984), which you rated highly."]),
    }), max_size=4)),
), min_size=1, max_size=3), st.integers(1, 4))
def test_whatever_the_model_says_only_candidates_come_out(answers: list[str], k: int) -> None:
    outcome = _rank(FakeBackend(answers), k=k, retries=len(answers) - 1)
    ids = [i.item_id for i in outcome.items]
    assert len(ids) == min(k, len(CANDIDATES)) and len(set(ids)) == len(ids)
    assert set(ids) <= {c.item_id for c in CANDIDATES}
    assert all(i.reason.strip() for i in outcome.items)
