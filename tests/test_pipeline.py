"""The whole pipeline on the tiny catalog with real Chroma and the real embedding model; the fake LLM."""

from __future__ import annotations

import json

import pytest

from genre_agent.errors import ConfigError, UnknownUserError
from genre_agent.filters import Filters
from genre_agent.llm.backends import FakeBackend
from genre_agent.pipeline import Recommender
from genre_agent.schemas import RecommendRequest


def test_known_answer_top1_for_a_star_quest_fan(tiny_recommender: Recommender, fake: FakeBackend) -> None:
    result = tiny_recommender.recommend("alice", k=1)
    assert result.fallback  # the fake has nothing queued: retrieval order with evidence reasons
    assert [r.item_id for r in result.recommendations] == ["2"]
    assert "Star Quest (1990)" in result.recommendations[0].reason


def test_more_like_a_title_never_answers_with_that_title(tiny_recommender: Recommender) -> None:
    ids = [r.item_id for r in tiny_recommender.run(RecommendRequest(anchors=["1"], k=3)).result.recommendations]
    assert ids and "1" not in ids and ids[0] == "2"  # Star Quest II, not Star Quest itself


def test_model_answer_is_validated_against_the_candidates(tiny_recommender: Recommender,
                                                          fake: FakeBackend) -> None:
    fake.queue.append(json.dumps({"recommendations": [  # each says a fact its evidence sentence does not
        {"item_id": "1", "reason": "An Adventure tagged space, rated highly by 4 users."},
        {"item_id": "6", "reason": "A Sci-Fi film close to Laugh Riot Again (1997), which you rated highly."},
    ]}))
    result = tiny_recommender.recommend("d", k=2)
    assert not result.fallback and result.reasks == 0
    assert [r.item_id for r in result.recommendations] == ["1", "6"]
    assert [r.rank for r in result.recommendations] == [1, 2]
    schema = fake.schemas[0]
    ids = schema["properties"]["recommendations"]["items"]["properties"]["item_id"]["enum"]
    assert "3" not in ids and "4" not in ids  # d rated 3 and 4: never candidates


def test_prompt_carries_history_candidates_and_rules(tiny_recommender: Recommender, fake: FakeBackend) -> None:
    tiny_recommender.recommend("alice", query="space", k=2, filters=Filters(exclude_genres=["comedy"]))
    system, user = fake.calls[0]
    assert system["role"] == "system" and "movie recommender" in system["content"]
    assert "- Star Quest (1990): 5.0/5" in user["content"]
    assert "[2] Star Quest II (1992) | Sci-Fi, Adventure" in user["content"]
    assert "[6]" not in user["content"] and "[3]" not in user["content"]  # comedies excluded
    assert 'The user asks for: "space"' in user["content"]
    assert "no comedy" in user["content"]


@pytest.mark.parametrize("rules, allowed", [
    (Filters(include_genres=["Comedy"]), {"3", "4", "6"}),
    (Filters(exclude_genres=["sci-fi", "COMEDY"]), set()),
    (Filters(year_min=1995, year_max=1999), {"3", "4"}),
    (Filters(exclude_seen=False, year_max=1990), {"1", "5"}),
    (Filters(where={"name": "laugh riot"}), {"3"}),
])
def test_business_rules(tiny_recommender: Recommender, fake: FakeBackend, rules: Filters,
                        allowed: set[str]) -> None:
    result = tiny_recommender.recommend("alice", k=6, filters=rules)
    assert {r.item_id for r in result.recommendations} == allowed


def test_an_unknown_where_column_is_a_config_error(tiny_recommender: Recommender) -> None:
    with pytest.raises(ConfigError, match="no item column 'director'"):
        tiny_recommender.recommend("alice", filters=Filters(where={"director": "x"}))


def test_run_answers_a_request_with_its_candidates_and_prompt(tiny_recommender: Recommender,
                                                               fake: FakeBackend) -> None:
    run = tiny_recommender.run(RecommendRequest(user_id="alice", query="  space ", k=2))
    assert run.result.query == "space" and run.result.fallback  # nothing queued: retrieval order
    assert [r.item_id for r in run.result.recommendations] == [c.item_id for c in run.candidates][:2]
    assert run.messages == fake.calls[0] == tiny_recommender.render(RecommendRequest(user_id="alice",
                                                                                     query="space", k=2))


def test_the_package_exports_resolve() -> None:
    import genre_agent

    for name in genre_agent.__all__:
        assert getattr(genre_agent, name).__name__ == name


def test_unknown_user_without_query_is_an_error(tiny_recommender: Recommender) -> None:
    with pytest.raises(UnknownUserError, match="--query"):
        tiny_recommender.recommend("nobody")


def test_unknown_user_with_query_is_a_cold_start(tiny_recommender: Recommender, fake: FakeBackend) -> None:
    result = tiny_recommender.recommend("nobody", query="funny comedy", k=2)
    assert result.user_id == "nobody"
    assert {r.item_id for r in result.recommendations} <= {"3", "4", "6"}
    assert "The user is new" in fake.calls[0][1]["content"]


def test_output_contract(tiny_recommender: Recommender, fake: FakeBackend) -> None:
    data = json.loads(tiny_recommender.recommend("alice", query="space", k=3).model_dump_json())
    assert set(data) >= {"user_id", "query", "k", "backend", "model", "fallback", "llm_roles", "ranked_by",
                         "calibration", "recommendations", "timings_ms", "prompt_tokens"}
    assert set(data["timings_ms"]) == {"retrieve", "prompt", "llm", "total"}
    first = data["recommendations"][0]
    assert set(first) == {"rank", "item_id", "title", "reason", "reason_from", "evidence", "scores"}
    assert set(first["scores"]) == {"vector", "cf", "fused"}
    assert data["backend"] == "fake" and data["k"] == 3 and data["query"] == "space"
