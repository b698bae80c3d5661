"""The conversational evaluation (`genre-agent eval --dialogues`) on two ReDial-format dialogues about the
tiny catalog, where the right answers are known."""

from __future__ import annotations

from pathlib import Path

import pytest

from genre_agent.chat.agent import Agent
from genre_agent.chat.session import SessionState
from genre_agent.chat.titles import TitleIndex
from genre_agent.chat.understanding import genre_words, parse_rules
from genre_agent.data.catalog import load_catalog
from genre_agent.errors import CatalogError
from genre_agent.eval.dialogues import (
    build_cases,
    evaluate_dialogues,
    load_dialogues,
    markdown,
    message_text,
    reading_gains,
    split_of,
)
from genre_agent.llm.backends import Completion, FakeBackend
from genre_agent.pipeline import Recommender

from conftest import tiny_settings

DIALOGUES = Path(__file__).parent / "data" / "dialogues" / "tiny.jsonl"


@pytest.fixture
def titles(tiny_recommender: Recommender) -> TitleIndex:
    return TitleIndex(tiny_recommender.catalog.items)


def test_cases_are_new_suggestions_not_disliked_mapped_to_the_catalog(titles: TitleIndex) -> None:
    found = build_cases(load_dialogues(DIALOGUES), titles, split="all")
    # dialogue 1: @2 (year off by one) is a case; @9 is not in the catalog; @3 was disliked; @1 was named
    # before; @6 was not suggested. Dialogue 2: the seeker's form is empty, the recommender's stands in.
    assert [(c.dialogue_id, c.target) for c in found.cases] == [("1", "2"), ("2", "4")]
    assert found.unmapped_targets == 1 and found.dialogues == 2
    first = found.cases[0]
    assert first.turns == ["Hi", "I loved Star Quest (1990) anything in that vein"]  # lines in a row: one turn
    assert first.mentioned == ["1"]


def test_split_is_by_dialogue_deterministic_and_holds_out_about_30_percent() -> None:
    parts = [split_of(str(n)) for n in range(2000)]
    assert parts == [split_of(str(n)) for n in range(2000)]
    assert 0.27 < parts.count("test") / len(parts) < 0.33


def test_a_file_that_is_not_redial_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n')
    with pytest.raises(CatalogError, match="bad.jsonl:1"):
        load_dialogues(bad)


def test_agent_and_baselines_are_scored_on_the_same_cases(tiny_recommender: Recommender, data_dir: Path) -> None:
    settings = tiny_settings(data_dir, **{"conversation.understand_with_llm": False})
    steps: list[tuple[str, int, int]] = []
    report = evaluate_dialogues(settings, DIALOGUES, "all", progress=lambda *s: steps.append(s),
                                recommender=tiny_recommender)
    assert report["counts"]["cases"] == 2 and steps[-1] == ("dialogue cases", 2, 2)
    results = report["results"]
    # fans of Star Quest love Star Quest II: item-kNN seeded by the named title gets it first
    assert results["itemknn"]["Recall@1"]["value"] == 1.0
    assert results["agent"]["Recall@10"]["value"] == 1.0
    assert report["agent"]["errors"] == 0 and report["agent"]["named_titles_re_recommended"] == 0
    assert report["agent"]["turn_p95_s"] >= report["agent"]["turn_p50_s"] > 0
    assert "| agent (rules only) |" in markdown(report)


REDIAL = Path(__file__).parent / "data" / "redial" / "valid_data.jsonl.gz"


def test_every_redial_seeker_message_is_read_without_an_exception() -> None:
    """All 901 dialogues through the rules reading against the MovieLens titles (the full agent with Chroma
    would take minutes here; a sample of them goes through it in the next test)."""
    catalog = load_catalog("movielens")
    titles = TitleIndex(catalog.items, catalog.interactions.groupby("item_id").size())
    genres = genre_words(sorted({g for gs in catalog.items["genres"] for g in gs}), catalog.genre_aliases)
    dialogues = load_dialogues(REDIAL)
    assert len(dialogues) == 901
    read = 0
    for dialogue in dialogues:
        state = SessionState(session_id=str(dialogue["conversationId"]))
        for message in dialogue["messages"]:
            if message["senderWorkerId"] == dialogue["initiatorWorkerId"]:
                text = message_text(message["text"], dialogue["movieMentions"])
                update = parse_rules(text, state, genres, titles)
                state.liked += update.like
                read += 1
    assert read > 8000


def test_a_sample_of_redial_conversations_runs_through_the_agent(tmp_path: Path) -> None:
    agent = Agent.from_config(tiny_settings(tmp_path, k=3), backend=FakeBackend())
    dialogues = load_dialogues(REDIAL)[::60]
    for dialogue in dialogues:
        for message in dialogue["messages"]:
            if message["senderWorkerId"] == dialogue["initiatorWorkerId"]:
                reply = agent.chat(str(dialogue["conversationId"]),
                                   message_text(message["text"], dialogue["movieMentions"]))
                assert reply.text


class _SameReading(FakeBackend):
    """Reads every message the same way: a request with a Comedy filter the messages never mention."""

    def complete(self, messages: list[dict[str, str]], schema: object, max_tokens: int) -> Completion:
        self.calls.append(messages)
        return Completion('{"intent": "recommend", "include_genres": ["Comedy"], "year_min": 1995}', 10, 10)


def test_reading_gains_compare_each_field_with_rules_on_the_same_cases(tiny_recommender: Recommender) -> None:
    backend = _SameReading()
    rec = tiny_recommender.with_backend(backend)
    steps: list[tuple[str, int, int]] = []
    reading = reading_gains(rec, DIALOGUES, None, progress=lambda *s: steps.append(s))
    assert reading.measured and reading.cases == 1 and reading.rules_recall == 1.0  # dev part: dialogue 2
    assert set(reading.per_field) == {"intent", "titles", "genres", "years"}
    # nothing the model proposes is in the messages: the grounded merge keeps none of it, so no gain
    assert all(g.gain == 0.0 and g.ci95 == (0.0, 0.0) for g in reading.per_field.values())
    assert reading.fields == [] and steps[-1] == ("reading (dev dialogues)", 1, 1)
    assert len(backend.calls) == 1  # its one seeker turn, read once for the four field variants
    assert rec.pinned_routes is None  # the measurement pins the routes of its own copy only


def test_lists_the_seeker_never_saw_do_not_count_as_shown(tiny_recommender: Recommender, tmp_path: Path) -> None:
    """Replayed turn by turn, the agent answers "sci-fi please" with the Star Quest films, so after "I loved
    Star Quest (1990)" Star Quest II counts as shown and is left out — though the seeker wrote to a human and
    never saw that list. The evaluation answers as the stateless server does: earlier turns restored, the last
    one answered, and Star Quest II (what every fan of Star Quest also loved) leads."""
    from genre_agent.data.feedback import SQLiteStore
    from genre_agent.eval.dialogues import Case, run_agent

    agent = Agent(tiny_recommender, SQLiteStore(tmp_path / "feedback.sqlite3"))
    case = Case("d", 1, ["sci-fi please", "I loved Star Quest (1990)"], ["1"], "2")
    fed = run_agent(agent, case, "fed", every_turn=True)
    restored = run_agent(agent, case, "restored")
    assert "2" not in fed.ids and len(fed.turn_seconds) == 2
    assert restored.ids[0] == "2" and "1" not in restored.ids and len(restored.turn_seconds) == 1
    assert restored.error is None and "restored" not in agent.session_ids()  # the eval's sessions are forgotten
    assert not restored.asked
    greeting = run_agent(agent, Case("g", 1, ["Hi there, how are you?"], [], "2"), "greeting")
    assert greeting.ids == [] and greeting.asked  # nothing to recommend from: it asks for a taste
