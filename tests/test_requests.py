"""The request-set judge: every constraint a request states, on the tiny catalog where the answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genre_agent.data.catalog import load_catalog
from genre_agent.errors import ConfigError
from genre_agent.eval.requests import Judge, Request, load_requests

from conftest import TINY


@pytest.fixture(scope="module")
def judge() -> Judge:
    return Judge(load_catalog(str(TINY)).items)


def _request(**judge: object) -> Request:
    return Request(id="r", category="c", split="dev", turns=["x"], **judge)  # type: ignore[arg-type]


def test_every_stated_constraint_must_hold(judge: Judge) -> None:
    pair = _request(all_genres=["sci-fi", "comedy"])
    assert [i for i in "123456" if judge.satisfies(pair, i)] == ["6"]  # Deep Space Comedy only
    years = _request(genres=["comedy"], year_min=1996)
    assert [i for i in "123456" if judge.satisfies(years, i)] == ["4", "6"]
    no_horror = _request(exclude_genres=["horror"], year_max=1990)
    assert [i for i in "123456" if judge.satisfies(no_horror, i)] == ["1"]
    not_back = _request(genres=["sci-fi"], exclude_titles=["Star Quest (1990)"])
    assert [i for i in "123456" if judge.satisfies(not_back, i)] == ["2", "6"]


def test_share_counts_the_top_ten_and_a_conflict_only_by_the_reply(judge: Judge) -> None:
    assert judge.share(_request(all_genres=["comedy"]), ["3", "4", "5"], conflict_named=False) == 0.2
    impossible = _request(conflict=True)
    assert judge.share(impossible, ["3", "4"], conflict_named=False) == 0.0
    assert judge.share(impossible, [], conflict_named=True) == 1.0


def test_a_title_the_catalog_lacks_or_a_request_without_checks_is_refused(judge: Judge, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'Star Quest' is not a title of this catalog"):
        judge.check(_request(exclude_titles=["Star Quest"]))
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": "x", "turns": ["hi"], "judge": {}}) + "\n")
    with pytest.raises(ConfigError, match="line 1: a request needs turns and something to judge by"):
        load_requests(path)


def test_the_shipped_intent_set_loads_and_holds_a_third_out() -> None:
    requests = load_requests(Path(__file__).parent / "data" / "requests" / "intents.jsonl")
    assert len(requests) >= 150
    categories = {r.category for r in requests}
    assert categories == {"genre", "genre pair", "era", "mood", "like X", "negation", "seen", "refinement",
                          "conflict"}
    for category in categories:
        inside = [r for r in requests if r.category == category]
        assert sum(r.split == "test" for r in inside) == len(inside) // 3
