"""Books as a second domain, on a tiny books catalog where the right answer is obvious (tests/data/tiny-books):
series named by their name, loved books seeding the list, the request's genres deciding what is ranked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genre_agent.chat.agent import Agent
from genre_agent.chat.titles import TitleIndex, series_of
from genre_agent.llm.backends import FakeBackend
from genre_agent.retrieval.needs import NeedLexicon
from genre_agent.settings import load_settings

BOOKS = Path(__file__).parent / "data" / "tiny-books"
HARRY_POTTER, HOBBIT, FELLOWSHIP = {"1", "2"}, "3", "4"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    # a gate pool of 2: in eight books, two carriers of a genre are already "many" (20 in a real catalog)
    settings = load_settings(catalog=str(BOOKS), data_dir=tmp_path_factory.mktemp("books"),
                             **{"backend.name": "fake", "retrieval.match_pool": 2})
    return Agent.from_config(settings, backend=FakeBackend())


def _ids(reply) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.item_id for r in reply.recommendations.recommendations]


def test_series_names_are_read_from_goodreads_titles() -> None:
    assert series_of("Harry Potter and the Sorcerer's Stone (Harry Potter, #1)") == [("harry potter", 1.0)]
    assert series_of("Dune Messiah (Dune Chronicles #2)") == [("dune chronicles", 2.0)]
    assert series_of("Harry Potter Boxset (Harry Potter, #1-7)") == [("harry potter", 1.0)]
    assert series_of("A Darkness More Than Night (Harry Bosch, #7; Terry McCaleb, #2)") == [
        ("harry bosch", 7.0), ("terry mccaleb", 2.0)]
    assert series_of("The Fellowship of the Ring (The Lord of the Rings, #1)") == [
        ("the lord of the rings", 1.0), ("lord of the rings", 1.0)]
    assert series_of("The Hobbit") == [] and series_of("Heat (1995)") == []


def test_a_series_name_means_every_book_of_it_and_a_title_wins_over_a_series() -> None:
    items = pd.DataFrame({"title": ["Harry Potter and the Chamber of Secrets (Harry Potter, #2)",
                                    "Harry Potter and the Sorcerer's Stone (Harry Potter, #1)",
                                    "Twilight (Twilight, #1)", "New Moon (Twilight, #2)", "The Hobbit"],
                          "year": [1998, 1997, 2005, 2006, 1937]}, index=["hp2", "hp1", "tw1", "tw2", "hob"])
    titles = TitleIndex(items)
    (potter,) = titles.mentions("I loved Harry Potter!")
    assert potter.items == ("hp1", "hp2") and potter.text == "Harry Potter"  # first book first
    assert titles.find_in_text("Twilight and The Hobbit") == ["tw1", "hob"]  # the book named Twilight only


def test_loved_series_and_book_are_liked_and_never_recommended(agent: Agent) -> None:
    reply = agent.chat("hp", "I loved Harry Potter and The Hobbit, what should I read next?")
    state = agent.session("hp")
    assert HARRY_POTTER | {HOBBIT} <= set(state.liked)
    assert not (HARRY_POTTER | {HOBBIT}) & set(_ids(reply))
    assert _ids(reply)[0] == FELLOWSHIP  # the readers who loved both loved it, not the most rated memoirs
    assert "movie" not in reply.text and "film" not in reply.text


def test_a_genre_request_ranks_only_books_of_that_genre(agent: Agent) -> None:
    fantasy = agent.chat("fantasy", "An epic fantasy novel.")
    assert set(_ids(fantasy)) == {"1", "2", "3", "4"}  # though the memoirs are rated far more
    memoir = agent.chat("memoir", "A memoir, please.")
    assert set(_ids(memoir)) == {"5", "6"}
    # one book carries it: a genre asked for is a constraint, so the reply lists that book and says which
    # constraint to relax for more
    science_fiction = agent.chat("sf", "Some science fiction, please.")
    assert _ids(science_fiction) == ["8"] and science_fiction.intent == "conflict"
    assert "science-fiction" in science_fiction.text


def test_a_word_pair_spelling_a_genre_means_only_that_genre() -> None:
    axes = ["science", "fiction", "science-fiction", "graphic-novels"]
    same = {"science fiction": "science-fiction", "graphic novel": "graphic-novels"}

    def embed(texts: list[str]) -> np.ndarray:  # a fake sentence model: one axis per genre, spelled or named
        return np.array([np.eye(len(axes))[axes.index(same.get(t, t))] if same.get(t, t) in axes
                         else np.zeros(len(axes)) for t in texts])

    items = pd.DataFrame({"genres": [("science",), ("fiction",), ("science-fiction",), ("graphic-novels",)],
                          "tags": [()] * 4})
    lexicon = NeedLexicon(items, embed)
    assert [n.name for n in lexicon.match("science fiction")] == ["science-fiction"]
    assert [n.name for n in lexicon.match("a graphic novel")] == ["graphic-novels"]
    assert {n.name for n in lexicon.match("science and fiction")} == {"science", "fiction"}


def test_a_series_takes_the_books_titled_by_its_name_first() -> None:
    items = pd.DataFrame({"title": ["Harry Potter and the Sorcerer's Stone (Harry Potter, #1)",
                                    "Harry Potter Schoolbooks Box Set", "Death: The High Cost of Living",
                                    "Mort (Death, #1)"], "year": [1997, 2001, 1993, 1987]},
                         index=["hp1", "box", "gaiman", "mort"])
    titles = TitleIndex(items)
    assert titles.series["harry potter"] == ["hp1", "box"]
    assert titles.series["death"] == ["mort"]  # a one-word series takes only its numbered books


def test_a_word_naming_part_of_a_tag_does_not_mean_the_tag() -> None:
    def embed(texts: list[str]) -> np.ndarray:  # a fake sentence model: "cult" is close to "cult film"
        axis = {"cult": 0, "cult film": 0, "cults": 1, "space": 2}
        return np.array([np.eye(3)[axis[t]] if t in axis else np.zeros(3) for t in texts])

    items = pd.DataFrame({"genres": [()] * 2, "tags": [("cult film", "cults"), ("cult film", "cults")]})
    assert NeedLexicon(items, embed).match("cult") == []  # a cult classic is not a film about a cult
