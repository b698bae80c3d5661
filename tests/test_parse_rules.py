"""Reading a chat message without the LLM (`parse_rules`), and keeping only what the message grounds of the
LLM's reading (`merge`); on a six-title catalog in memory."""

from __future__ import annotations

import pandas as pd
import pytest

from genre_agent.chat.session import SessionState, StateUpdate
from genre_agent.chat.titles import TitleIndex
from genre_agent.chat.understanding import ModelUpdate, genre_words, merge, parse_rules
from genre_agent.filters import Filters

ITEMS = pd.DataFrame(
    {"title": ["Star Quest (1990)", "Star Quest II (1992)", "Laugh Riot (1995)", "Laugh Riot Again (1997)",
               "Night Terror (1985)", "Deep Space Comedy (2001)"]},
    index=pd.Index(["1", "2", "3", "4", "5", "6"], name="item_id"),
)
GENRES = genre_words(["Adventure", "Comedy", "Crime", "Horror", "Sci-Fi", "War"], {"Horror": ["scary"]})
TITLES = TitleIndex(ITEMS)


def _read(message: str, last: list[str] | None = None, focus: str | None = None,
          years: list[int] | None = None) -> StateUpdate:
    state = SessionState(session_id="s", last=last or [], focus=focus)
    return parse_rules(message, state, GENRES, TITLES, years)


def test_a_liked_title_and_a_genre_to_avoid() -> None:
    assert _read("I loved Star Quest, no comedy please") == StateUpdate(
        intent="refine", like=["1"], named=["1"], filters=Filters(exclude_genres=["Comedy"]))


def test_more_like_an_item_of_the_last_list() -> None:
    assert _read("more like the second one", last=["2", "5"]) == StateUpdate(intent="refine", anchors=["5"])


def test_why_points_at_the_focus_or_the_top_of_the_last_list() -> None:
    assert _read("why that one?", last=["2", "5"]) == StateUpdate(intent="why", why="2")
    assert _read("why that one?", last=["2", "5"], focus="5").why == "5"
    assert _read("why Laugh Riot?", last=["2", "5"]).why == "3"


def test_feedback_on_an_ordinal() -> None:
    assert _read("I hated the first one", last=["2", "5"]) == StateUpdate(intent="feedback", dislike=["2"])
    assert _read("seen the 2nd", last=["2", "5"]) == StateUpdate(intent="feedback", seen=["5"])


@pytest.mark.parametrize("message, filters", [
    ("something after 2000", Filters(year_min=2001)),
    ("from 1990", Filters(year_min=1990)),
    ("before 1990", Filters(year_max=1989)),
    ("up to 1990", Filters(year_max=1990)),
    ("something from the 80s", Filters(year_min=1980, year_max=1989)),
    ("only sci-fi", Filters(include_genres=["Sci-Fi"])),
    ("nothing too violent", Filters(exclude_genres=["Horror"])),  # a degree: crime and war films stay
])
def test_filters_said_in_words(message: str, filters: Filters) -> None:
    update = _read(message)
    assert update.filters == filters and update.intent == "refine"


def test_older_and_newer_are_relative_to_the_last_list() -> None:
    assert _read("older ones", years=[2001, 1990, 1992]).filters == Filters(year_max=1991)
    assert _read("something newer", years=[2001, 1990, 1992]).filters == Filters(year_min=1993)


def test_reset_more_and_a_plain_wish() -> None:
    assert _read("Start over!") == StateUpdate(intent="reset")
    assert _read("/more").intent == "more"
    assert _read("a heist with a twist") == StateUpdate(intent="recommend", query="heist twist")


def test_the_llm_reading_is_kept_only_where_the_message_grounds_it() -> None:
    message = "Laugh Riot, Titanic"
    rules = _read(message)
    model = ModelUpdate(intent="feedback", liked_titles=["Laugh Riot", "Titanic"], exclude_genres=["Horror"],
                        year_min=1990)
    merged = merge(rules, model, message, TITLES, GENRES)
    assert merged.like + merged.anchors == ["3"]  # Titanic is not in the catalog
    assert merged.filters == Filters()  # neither Horror nor 1990 is in the message
    assert merged.intent == rules.intent  # the rules read an intent: it stays


def test_the_llm_may_add_a_genre_and_a_year_the_message_names() -> None:
    message = "horror is not my thing, made in 1990 or later"
    model = ModelUpdate(intent="refine", exclude_genres=["Horror", "War"], year_min=1990)
    merged = merge(_read(message), model, message, TITLES, GENRES)
    assert merged.filters.exclude_genres == ["Horror"] and merged.filters.year_min == 1990
    assert merge(_read(message), None, message, TITLES, GENRES) == _read(message)
