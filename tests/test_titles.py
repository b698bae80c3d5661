"""Catalog titles as people write them: normalising, exact and fuzzy lookup, titles found in free text."""

from __future__ import annotations

import pandas as pd
import pytest

from genre_agent.chat.titles import TitleIndex, normalise

TITLES = {"1": "Matrix, The (1999)", "2": "Alien (1979)", "3": "Aliens (1986)", "4": "Star Quest (1990)",
          "5": "Star Quest II (1992)", "6": "Up (2009)", "7": "Matrix, The (2021)"}
ITEMS = pd.DataFrame({"title": list(TITLES.values())}, index=pd.Index(list(TITLES), name="item_id"))


@pytest.fixture
def titles() -> TitleIndex:
    return TitleIndex(ITEMS, pd.Series({"1": 10, "7": 2, "2": 5}))


@pytest.mark.parametrize("written, normalised", [
    ("Matrix, The (1999)", "the matrix"),
    ("Seven (a.k.a. Se7en) (1995)", "seven"),
    ("Dr. Strangelove (1964)", "dr strangelove"),
    ("  STAR   Quest!  ", "star quest"),
    ("Pianist, Le (2002)", "le pianist"),
    ("(1999)", ""),
])
def test_normalise(written: str, normalised: str) -> None:
    assert normalise(written) == normalised


def test_resolve_exact_fuzzy_and_unknown(titles: TitleIndex) -> None:
    assert titles.resolve("the Matrix") == "1"
    assert titles.resolve("The Matrx") == "1"  # one letter off: fuzzy
    assert titles.resolve("Aliens") == "3" and titles.resolve("alien") == "2"
    assert titles.resolve("Titanic") is None
    assert titles.resolve("matrix") == "1"  # people drop the article
    assert titles.resolve("(1999)") is None


def test_the_more_popular_item_keeps_a_shared_name() -> None:
    assert TitleIndex(ITEMS, pd.Series({"1": 10, "7": 2})).resolve("The Matrix") == "1"
    assert TitleIndex(ITEMS, pd.Series({"1": 2, "7": 10})).resolve("The Matrix") == "7"


def test_find_in_text_takes_longest_mentions_in_order_of_appearance(titles: TitleIndex) -> None:
    assert titles.find_in_text("Star Quest II was better than Star Quest") == ["5", "4"]
    assert titles.find_in_text("I loved The Matrix and Alien, then Aliens") == ["1", "2", "3"]
    assert titles.find_in_text("then we looked it up") == []  # single short words are not titles
    assert titles.find_in_text("nothing here") == []


def test_title_of(titles: TitleIndex) -> None:
    assert titles.title_of("3") == "Aliens (1986)"
    assert titles.title_of("99") == "99"


def test_volumes_are_found_written_with_vol_volume_or_neither() -> None:
    """ReDial seekers wrote "Kill Bill: Volume 2 (2004)" and "Guardians of the Galaxy Vol. 2 (2017)", which
    MovieLens lists as "Kill Bill: Vol. 2 (2004)" and "Guardians of the Galaxy 2 (2017)"; missed, the agent
    recommended them back to the person who had just named them."""
    titles = ["Kill Bill: Vol. 2 (2004)", "Guardians of the Galaxy 2 (2017)", "Apollo 13 (1995)",
              "Kill Bill: Vol. 1 (2003)"]
    items = pd.DataFrame({"title": titles}, index=pd.Index(["k2", "g2", "a13", "k1"], name="item_id"))
    index = TitleIndex(items)
    said = ("I really enjoy Reservoir Dogs (1992) , Django Unchained (2012) , Kill Bill , and Kill Bill: Volume 2 "
            "(2004). But I did like the music in Guardians of the Galaxy Vol. 2 (2017) ! And Apollo 13.")
    assert index.find_in_text(said) == ["k1", "k2", "g2", "a13"]
    assert index.find_in_text("i want movies like Kill Bill") == ["k1"]  # a first volume by its bare name
    assert index.resolve("Guardians of the Galaxy Volume 2") == "g2" and index.resolve("Kill Bill 2") == "k2"


def test_what_a_film_is_about_in_lower_case_is_not_a_title() -> None:
    about = {"r": "Road Trip (2000)", "h": "Home Alone (1990)", "t": "About Time (2013)", "a": "Aliens (1986)"}
    index = TitleIndex(pd.DataFrame({"title": list(about.values())}, index=list(about)))
    assert index.find_in_text("A film about a family road trip in a van.") == []
    assert index.find_in_text("Movies about aliens invading Earth") == []
    assert index.find_in_text("Something like Aliens, about a crew fighting monsters") == ["a"]
    assert index.find_in_text("A movie about a kid left home alone.") == []
    assert index.find_in_text("A movie about time travel.") == []
    assert index.find_in_text("I loved road trip and about time") == ["r", "t"]
    assert index.find_in_text("A movie about a kid, like Home Alone") == ["h"]
