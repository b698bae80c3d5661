"""The grounding check of model-written reasons: known answers, and real SmolLM2 reasons labelled by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genre_agent.llm.grounding import reason_problem, shown_problem, uninformative
from genre_agent.schemas import Candidate, Evidence, Scores

T2 = Candidate(
    item_id="589", title="Terminator 2: Judgment Day (1991)", genres=["Action", "Sci-Fi"], year=1991,
    tags=["apocalypse", "arnold schwarzenegger", "time travel"],
    scores=Scores(vector=0.5, cf=0.5, fused=0.9),
    evidence=Evidence(shared_genres=["Action", "Sci-Fi"], similar_liked=["Demolition Man (1993)"],
                      fans_also_liked=["Braveheart (1995)"], tags=["apocalypse", "arnold schwarzenegger",
                                                                   "time travel"], liked_by=120),
    facts=["like Demolition Man (1993) (user liked)", "fans of Braveheart (1995) liked it",
           "shares Action, Sci-Fi with the user's favourite movies", "tags: apocalypse, arnold schwarzenegger",
           "from 1991"],
    why="Close to Demolition Man (1993), which you rated highly; fans of Braveheart (1995) loved it; Action "
        "and Sci-Fi like your favourites.",
)
HISTORY = ["Demolition Man (1993)", "Braveheart (1995)", "Fugitive, The (1993)"]
LABELLED = Path(__file__).parent / "data" / "reasons_smollm2.jsonl"


@pytest.mark.parametrize("reason", [
    "Close to Demolition Man (1993), which you rated highly.",
    "Fans of Braveheart (1995) loved it, and it is tagged time travel.",
    "If you liked Fugitive, The (1993), this Action and Sci-Fi film from 1991 fits your taste.",
    "Like Demolition Man (1993), it shares Action and Sci-Fi with your favourites.",
])
def test_reasons_built_from_the_listed_facts_pass(reason: str) -> None:
    assert reason_problem(reason, T2, 140, HISTORY) is None


@pytest.mark.parametrize("reason, why", [
    ("You like Braveheart, a film about a dystopian future.", "'dystopian', 'future'"),
    ("Fans of Braveheart (1995) loved it; a Comedy like your favourites.", "'comedy'"),
    ("Close to Demolition Man (1993) and to Aliens (1986), which you rated highly.", "1986"),
    ("Close to Demolition Man (1993), which you rated highly; 1993, 1994, 1994, 1994.", "1994"),
    ("Close to Demolition Man (1993); like Blade Runner, which you rated highly.", "'blade', 'runner'"),
    ("Action, Sci-Fi", "only repeats the title or genres"),
    ("Terminator 2: Judgment Day is a film you rated highly.", "restates the item's own title"),
    ("Close to Demolition Man (1993); see https://evil.example.com/x for more.", "'https', 'evil'"),  # issue 13
])
def test_reasons_that_claim_anything_unlisted_are_rejected(reason: str, why: str) -> None:
    problem = reason_problem(reason, T2, 140, HISTORY)
    assert problem is not None and why in problem


def test_no_labelled_ungrounded_smollm2_reason_is_accepted() -> None:
    """Real reasons SmolLM2-135M wrote during `genre-agent calibrate` (MovieLens and goodbooks), each labelled
    by hand as grounded (every claim is a listed fact of that item or a title of the user's history) or not."""
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    bad = [r for r in rows if not r["grounded"]]
    assert len(rows) == 82 and len(bad) == 81
    accepted = [r for r in rows if reason_problem(r["reason"], Candidate.model_validate(r["candidate"]), 400,
                                                  r["history_titles"]) is None]
    assert [(r["reason"], r["grounded"]) for r in accepted] == [("Fans of The Glass Castle loved it", True)]


ITEMS = Path(__file__).parent / "data" / "reasons_items.jsonl"


def test_on_the_labelled_item_by_item_reasons_the_checks_show_one_known_false_accept() -> None:
    """Reasons the local models wrote one item at a time (benchmarks/reasons.py and calibrate, MovieLens), each
    labelled by hand: grounded (every claim a listed fact of that item, the user's history or the request),
    informative (it says a fact its evidence sentence does not), spoiler (it gives away more than the summary's
    opening). The numbers are in docs/models.md (`python scripts/grounding_report.py --labelled ...`). The one
    reason shown that should not be is a word-level blind spot: every word is listed, the claim is not ("The
    Sunset Boulevard mansion ... is a fitting film about a chess prodigy": the request's words, its summary's)."""
    rows = [json.loads(line) for line in ITEMS.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 110 and not any(r["spoiler"] for r in rows)
    shown = [r for r in rows if shown_problem(r["reason"], Candidate.model_validate(r["candidate"]), 400,
                                              r["history_titles"]) is None]
    wrong = [r["title"] for r in shown if not (r["grounded"] and r["informative"])]
    assert len(shown) == 6 and wrong == ["Sunset Blvd. (a.k.a. Sunset Boulevard) (1950)"]


@pytest.mark.parametrize("reason, informative", [
    ("Close to Demolition Man (1993), which you rated highly.", False),  # the evidence sentence's own words
    ("Fans of Braveheart (1995) loved it, like Demolition Man (1993).", False),
    ("Tagged time travel, close to Demolition Man (1993), which you rated highly.", True),  # a listed tag
    ("Terminator 2: Judgment Day is Action and Sci-Fi.", False),  # its title and shared genres: nothing new
])
def test_a_reason_is_informative_when_it_says_a_fact_the_evidence_sentence_does_not(reason: str,
                                                                                   informative: bool) -> None:
    assert (uninformative(reason, T2) is None) is informative
