"""Reading real chat messages (the wording of issue 10, from ReDial dialogues) against the shipped MovieLens
catalog: titles as people write them, a stance per mention, years only from explicit constraints, descriptive
query words, and "why" only as a question about an item."""

from __future__ import annotations

from pathlib import Path

import pytest

from genre_agent.chat.agent import Agent
from genre_agent.chat.genres import GenreWords
from genre_agent.chat.session import SessionState
from genre_agent.chat.titles import TitleIndex
from genre_agent.chat.understanding import StateUpdate, parse_rules
from genre_agent.llm.backends import FakeBackend

from conftest import tiny_settings


def read(movielens: tuple[TitleIndex, GenreWords], message: str) -> tuple[StateUpdate, dict[str, list[str]]]:
    titles, genres = movielens
    update = parse_rules(message, SessionState(session_id="s"), genres, titles, years=[1995, 2005])
    named = {kind: [titles.title_of(i) for i in getattr(update, kind)]
             for kind in ("like", "dislike", "seen", "anchors")}
    return update, named


def test_years_written_after_titles_are_not_filters(movielens: tuple[TitleIndex, GenreWords]) -> None:
    update, named = read(movielens, "something like Deadpool (2016) or Drive (2011) \u2026 Predator (1987)")
    assert update.filters.year_min is None and update.filters.year_max is None
    assert named["anchors"] == ["Deadpool (2016)", "Drive (2011)", "Predator (1987)"]
    explicit, _ = read(movielens, "something like Deadpool (2016) but from after 2000")
    assert explicit.filters.year_min == 2001 and explicit.filters.year_max is None


def test_the_query_keeps_only_descriptive_words(movielens: tuple[TitleIndex, GenreWords]) -> None:
    update, _ = read(movielens, "Hi! I'm in the mood to see a tear jerker, I think")
    assert update.query == "tear jerker"  # no "m" from "I'm", no "mood", "see", "think"


def test_titles_as_people_write_them(movielens: tuple[TitleIndex, GenreWords]) -> None:
    titles, _ = movielens
    assert titles.title_of(titles.resolve("Dumb and Dumber") or "") == "Dumb & Dumber (1994)"
    assert titles.title_of(titles.resolve("Matrix (1999)") or "") == "The Matrix (1999)"
    assert titles.resolve("Love Story (1990)") is None  # the catalog's Love Story is from 1970
    update, named = read(movielens, "Hi! I'm in the mood for a tear jerker. Something kind of like Steel "
                                    "Magnolias (1989)")
    assert named["anchors"] == ["Steel Magnolias (1989)"] and update.query == "tear jerker"
    _, named = read(movielens, "I'm in the mood for a dumb and dumber kind of movie")
    assert named["anchors"] == ["Dumb & Dumber (1994)"]


def test_why_only_when_the_message_asks_why_about_an_item(movielens: tuple[TitleIndex, GenreWords]) -> None:
    update, _ = read(movielens, "I love horror movies but I'm kind of a baby. "
                                "Don't know why I'm afraid of heights!")
    assert update.intent == "refine" and update.why is None and update.filters.require_genres == ["Horror"]
    question, _ = read(movielens, "why Fargo?")
    assert question.intent == "why" and movielens[0].title_of(question.why or "") == "Fargo (1996)"


def test_negation_and_plain_likes_per_mention(movielens: tuple[TitleIndex, GenreWords]) -> None:
    _, named = read(movielens, "I like romance, but not Love Story (1970)")
    assert named["dislike"] == ["Love Story (1970)"] and named["like"] == []
    _, named = read(movielens, "i like Zombieland (2009) and Super Troopers (2001)")
    assert named["like"] == ["Zombieland (2009)", "Super Troopers (2001)"]
    _, named = read(movielens, "I don't like movies like Scary Movie (2000) . Don't like nasty jokes")
    assert named["dislike"] == ["Scary Movie (2000)"] and named["anchors"] == []
    _, named = read(movielens, "I loved The Fifth Element but hated Alien")
    assert named["like"] == ["The Fifth Element (1997)"] and named["dislike"] == ["Alien (1979)"]
    _, named = read(movielens, "I have seen The Matrix (1999), it was great")
    assert named["like"] == ["The Matrix (1999)"]


def test_common_words_are_not_titles(movielens: tuple[TitleIndex, GenreWords]) -> None:
    titles, _ = movielens
    assert titles.find_in_text("I'd drive to see it up there, how about the one with her") == []
    assert [titles.title_of(i) for i in titles.find_in_text("I liked Drive (2011) and Up (2009)")] == \
        ["Drive (2011)", "Up (2009)"]


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    return Agent.from_config(tiny_settings(tmp_path, k=3), backend=FakeBackend())


def _ids(reply) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.item_id for r in reply.recommendations.recommendations]


def test_named_movies_seed_cf_and_never_come_back(agent: Agent) -> None:
    reply = agent.chat("s", "How about something like Star Quest (1990)")
    assert _ids(reply)[0] == "2" and "1" not in _ids(reply)  # fans of Star Quest love Star Quest II
    plain = agent.chat("t", "i like Star Quest (1990) and Laugh Riot (1995)")
    assert plain.recommendations is not None and {"1", "3"}.isdisjoint(_ids(plain))
    assert agent.session("t").liked == ["1", "3"]


def test_a_title_named_twice_does_not_crash(agent: Agent) -> None:
    reply = agent.chat("s", "I loved Star Quest (1990). Star Quest (1990) is the best")
    assert reply.recommendations is not None and "1" not in _ids(reply)
    assert agent.recommender.retriever.index.vectors(["1", "1"]).shape == (2, 384)


def test_only_a_disliked_title_asks_instead_of_failing(agent: Agent) -> None:
    reply = agent.chat("s", "not Night Terror (1985)")
    assert reply.intent == "clarify" and agent.session("s").disliked == ["5"]


def test_ordinals_inside_titles_are_titles_not_list_positions(movielens: tuple[TitleIndex, GenreWords]) -> None:
    """Issue 13, point 3: after a list of ten, "I loved The Fifth Element" liked the 5th item shown."""
    titles, genres = movielens
    shown = [titles.resolve(t) for t in ("Matrix (1999)", "Fight Club (1999)", "Alien (1979)", "Heat (1995)",
                                         "Fargo (1996)", "Casino (1995)", "Seven (1995)", "Jaws (1975)")]
    state = SessionState(session_id="s", last=[i for i in shown if i])
    assert len(state.last) == 8
    for message, liked in (("I loved The Fifth Element", "The Fifth Element (1997)"),
                           ("I loved the sixth sense", "The Sixth Sense (1999)")):
        update = parse_rules(message, state, genres, titles)
        assert [titles.title_of(i) for i in update.like] == [liked]
    update = parse_rules("I loved the fifth one", state, genres, titles)
    assert [titles.title_of(i) for i in update.like] == ["Fargo (1996)"]  # a real list reference still binds
