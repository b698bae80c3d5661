"""The one filter model on its own: merge, revise, describe, the column check and the item mask (no Chroma)."""

from __future__ import annotations

import pandas as pd
import pytest

from genre_agent.errors import ConfigError
from genre_agent.filters import Filters
from genre_agent.retrieval.rules import ItemMasks
from genre_agent.schemas import RecommendRequest

ITEMS = pd.DataFrame(
    {"title": ["Star Quest (1990)", "Laugh Riot (1995)", "Night Terror (1985)", "Star Quest (1990)",
               "Mystery Film"],
     "genres": [("Sci-Fi", "Adventure"), ("Comedy",), ("Horror",), ("Sci-Fi", "Adventure"), ("Drama",)],
     "year": pd.array([1990, 1995, 1985, 1990, None], dtype="Int64"),
     "language": ["en", "EN", "fr", "en", "en"]},
    index=pd.Index(["1", "2", "3", "4", "5"], name="item_id"),
)


def _ids(filters: Filters, seen: set[str] | None = None) -> list[str]:
    return list(ITEMS.index[ItemMasks(ITEMS).allowed(filters, seen or set())])


def test_merge_adds_lists_up_and_keeps_the_stricter_years() -> None:
    standing = Filters(exclude_genres=["Comedy"], year_max=2000, where={"lang": "en"}, exclude_items=["9"])
    request = Filters(exclude_genres=["Horror", "Comedy"], include_genres=["Drama"], year_min=1986,
                      year_max=2010, where={"lang": "fr", "country": "uk"}, exclude_seen=False,
                      exclude_items=["1", "9"])
    merged = standing.merge(request)
    assert merged == Filters(exclude_seen=False, include_genres=["Drama"], exclude_genres=["Comedy", "Horror"],
                             year_min=1986, year_max=2000, where={"lang": "fr", "country": "uk"},
                             exclude_items=["9", "1"])
    assert Filters().merge(Filters()) == Filters()


def test_revised_lets_a_newer_statement_replace_what_it_contradicts() -> None:
    before = Filters(include_genres=["Comedy"], exclude_genres=["Horror", "War"], year_min=2000, year_max=2010)
    after = before.revised(Filters(include_genres=["Horror"], exclude_genres=["Comedy"], year_min=1980))
    assert after.include_genres == ["Horror"]
    assert after.exclude_genres == ["War", "Comedy"]
    assert (after.year_min, after.year_max) == (1980, 2010)  # replaced (even looser), kept
    assert before.merge(Filters(year_min=1980)).year_min == 2000  # where merge keeps the stricter bound


def test_a_genre_both_included_and_excluded_by_one_statement_ends_up_included() -> None:
    after = Filters(include_genres=["Drama"]).revised(Filters(include_genres=["Drama"], exclude_genres=["Drama"]))
    assert after.include_genres == ["Drama"] and after.exclude_genres == []


def test_describe_for_the_chat_and_for_the_prompt() -> None:
    f = Filters(include_genres=["Comedy", "Drama"], exclude_genres=["Horror"], year_min=1990, year_max=1999,
                where={"language_code": "eng"})
    assert f.describe() == ["only Comedy, Drama", "no Horror", "from 1990", "up to 1999", "language_code = eng"]
    assert Filters(year_min=2015, year_max=2015).describe() == ["from 2015 only"]  # "best movies of 2015"
    assert f.describe(for_prompt=True) == ["already-rated items are excluded", "only genres: Comedy, Drama",
                                           "no Horror", "from 1990 on", "up to 1999", "language_code = eng"]
    assert Filters().describe() == []
    assert Filters(exclude_seen=False).describe(for_prompt=True) == []


def test_an_unknown_where_column_is_a_config_error_naming_the_columns() -> None:
    Filters(where={"language": "en"}).check_columns(ITEMS.columns)
    with pytest.raises(ConfigError, match=r"no item column 'director'.*title, genres, year, language"):
        Filters(where={"language": "en", "director": "x"}).check_columns(ITEMS.columns)


@pytest.mark.parametrize("filters, expected", [
    (Filters(), ["1", "2", "3", "4", "5"]),
    (Filters(include_genres=["sci-fi", "DRAMA"]), ["1", "4", "5"]),
    (Filters(exclude_genres=["comedy", "Horror"]), ["1", "4", "5"]),
    (Filters(year_min=1986), ["1", "2", "4"]),  # an unknown year never passes a year bound
    (Filters(year_min=1986, year_max=1994), ["1", "4"]),
    (Filters(where={"language": "en"}), ["1", "2", "4", "5"]),  # case-insensitive
    (Filters(exclude_items=["2", "5"]), ["1", "3", "4"]),
])
def test_the_item_mask(filters: Filters, expected: list[str]) -> None:
    assert _ids(filters) == expected


def test_seen_items_are_masked_by_id_and_by_a_duplicate_title() -> None:
    assert _ids(Filters(), seen={"1"}) == ["2", "3", "5"]  # "4" is the same title under another id
    assert _ids(Filters(exclude_seen=False), seen={"1"}) == ["1", "2", "3", "4", "5"]


def test_a_request_normalises_its_query_and_checks_k() -> None:
    assert RecommendRequest(query="  heist  ").query == "heist"
    assert RecommendRequest(query="   ").query is None
    assert RecommendRequest().filters == Filters()
    with pytest.raises(ValueError, match="k"):
        RecommendRequest(k=0)
    with pytest.raises(ValueError, match="colour"):
        RecommendRequest(colour="red")  # type: ignore[call-arg]
