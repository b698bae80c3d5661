"""Reading that keeps the whole request (issue 23): the issue's own messages, read by the rules against the
shipped MovieLens catalog (newest year 2018), over several turns of one session; and a conflict named, on the
tiny catalog where the counts are known."""

from __future__ import annotations

from pathlib import Path

from genre_agent.chat.agent import Agent
from genre_agent.chat.genres import GenreWords
from genre_agent.chat.titles import TitleIndex
from genre_agent.chat.years import read_years
from genre_agent.filters import Filters
from genre_agent.llm.backends import FakeBackend

from conftest import tiny_settings
from helpers import NEWEST, talk


def test_refinements_add_up_and_a_restatement_replaces(movielens: tuple[TitleIndex, GenreWords]) -> None:
    assert talk(movielens, "Something funny please.", "Make it animated.").filters.require_genres == \
        ["Comedy", "Animation"]
    assert talk(movielens, "I like romantic comedies.").filters.require_genres == ["Romance", "Comedy"]
    years = talk(movielens, "Something funny please.", "Actually, from the 90s.", "Now from the 80s.").filters
    assert (years.require_genres, years.year_min, years.year_max) == (["Comedy"], 1980, 1989)
    assert talk(movielens, "A drama.", "Actually, a comedy instead.").filters.require_genres == ["Comedy"]
    assert talk(movielens, "Sci-fi please.", "No action.").filters.exclude_genres == ["Action"]
    either = talk(movielens, "Comedies or dramas tonight.").filters
    assert (either.include_genres, either.require_genres) == (["Comedy", "Drama"], [])


def test_eras_count_from_the_newest_year_and_a_denied_bound_flips(
        movielens: tuple[TitleIndex, GenreWords]) -> None:
    recent = talk(movielens, "Recent comedies, from the last few years please.").filters
    assert (recent.require_genres, recent.year_min, recent.year_max) == (["Comedy"], 2014, None)
    western = talk(movielens, "I'm in the mood for a classic western, the older the better.").filters
    assert (western.require_genres, western.year_max, western.years_order) == (["Western"], 1988, "older")
    later = talk(movielens, "I like romantic comedies.", "Nothing made before 2000, please.").filters
    assert (later.require_genres, later.year_min, later.year_max) == (["Romance", "Comedy"], 2000, None)
    assert talk(movielens, "Movies between 1995 and 2000.").filters.year_min == 1995
    assert talk(movielens, "A thriller, but nothing after 1990.").filters.year_max == 1990


def test_years_are_words_not_guesses() -> None:
    praised = Filters()
    read_years("die hard is a classic, and my 5 year old loves it", praised, NEWEST)
    assert praised.year_max is None and praised.year_min is None
    undated = Filters()
    read_years("something recent", undated, None)  # a catalog without years: no era
    assert undated.year_min is None
    newer = Filters()
    read_years("something newer", newer, NEWEST, shown=[1990, 1994, 2000])
    assert newer.year_min == 1995  # newer than the middle of the list just shown


def test_seen_is_excluded_not_disliked_and_it_is_the_title_just_named(
        movielens: tuple[TitleIndex, GenreWords]) -> None:
    titles, _ = movielens
    state = talk(movielens, "I've already seen Toy Story. Recommend something like it.")
    assert [titles.title_of(i) for i in state.seen] == ["Toy Story (1995)"]
    assert [titles.title_of(i) for i in state.anchors] == ["Toy Story (1995)"] and state.disliked == []
    assert state.seen[0] in state.request().filters.exclude_items


def test_genre_words_are_not_titles_and_negations_reach_over_filler(
        movielens: tuple[TitleIndex, GenreWords]) -> None:
    state = talk(movielens, "Adventure, no animation.")  # "Adventure" is also L'avventura's English title
    assert (state.filters.require_genres, state.filters.exclude_genres, state.anchors) == \
        (["Adventure"], ["Animation"], [])
    assert talk(movielens, "I don't want anything animated, just a good comedy.").filters.exclude_genres == \
        ["Animation"]
    assert talk(movielens, "Animated horror for toddlers.").filters.require_genres == \
        ["Animation", "Horror", "Children"]


def test_too_few_fits_name_the_constraint_to_drop_and_none_is_never_silent(tmp_path: Path) -> None:
    agent = Agent.from_config(tiny_settings(tmp_path, k=2), backend=FakeBackend())
    reply = agent.chat("s", "A sci-fi horror please.")  # no tiny item is both
    assert reply.intent == "conflict" and not reply.recommendations.recommendations  # type: ignore[union-attr]
    assert reply.text == ("No movie in the catalog fits all of: Sci-Fi, Horror. To see more, drop one of them "
                          "(without Horror: 3 movies; without Sci-Fi: 1 movie).")
    one = agent.chat("t", "A horror movie please.")  # one horror film, two asked for
    assert one.intent == "conflict" and one.text.startswith("Only 1 movie in the catalog fits all of: Horror.")
    assert [r.title for r in one.recommendations.recommendations] == ["Night Terror (1985)"]  # type: ignore[union-attr]
    enough = agent.chat("u", "A comedy please.")
    assert enough.intent == "refine" and len(enough.recommendations.recommendations) == 2  # type: ignore[union-attr]


def test_the_older_the_better_orders_what_fits_by_year(tmp_path: Path) -> None:
    agent = Agent.from_config(tiny_settings(tmp_path, k=3), backend=FakeBackend())
    older = agent.chat("s", "Sci-fi please, the older the better.")
    assert older.recommendations is not None
    assert [r.title for r in older.recommendations.recommendations] == [
        "Star Quest (1990)", "Star Quest II (1992)", "Deep Space Comedy (2001)"]
    newer = agent.chat("t", "Sci-fi please, the newer the better.")
    assert newer.recommendations is not None
    assert [r.title for r in newer.recommendations.recommendations] == [
        "Deep Space Comedy (2001)", "Star Quest II (1992)", "Star Quest (1990)"]


def test_filters_name_each_constraint_and_the_filters_without_it() -> None:
    f = Filters(require_genres=["Comedy", "Romance"], exclude_genres=["Horror"], year_min=2000)
    assert [(label, looser.require_genres, looser.exclude_genres, looser.year_min)
            for label, looser in f.without_each()] == [
        ("Comedy", ["Romance"], ["Horror"], 2000), ("Romance", ["Comedy"], ["Horror"], 2000),
        ("no Horror", ["Comedy", "Romance"], [], 2000), ("from 2000", ["Comedy", "Romance"], ["Horror"], None)]
    added = f.revised(Filters(require_genres=["Animation"], exclude_genres=["Romance"]))
    assert (added.require_genres, added.exclude_genres) == (["Comedy", "Animation"], ["Horror", "Romance"])


def test_a_one_shot_query_is_read_as_chat_reads_a_first_message(tmp_path: Path) -> None:
    """`recommend --query`, the Python API, MCP and LangChain: a named title is liked and never comes back, the
    query's genres are constraints, and too few fits come with the note that names what to relax."""
    agent = Agent.from_config(tiny_settings(tmp_path, k=2), backend=FakeBackend())
    loved = agent.recommend(query="I loved Star Quest (1990), what else?")
    titles = [r.title for r in loved.recommendations]
    assert "Star Quest (1990)" not in titles and titles[0] == "Star Quest II (1992)"
    assert loved.query == "I loved Star Quest (1990), what else?" and loved.note is None
    horror = agent.recommend(query="A horror movie please.")
    assert [r.title for r in horror.recommendations] == ["Night Terror (1985)"]
    assert horror.note is not None and horror.note.startswith("Only 1 movie in the catalog fits all of: Horror.")
    given = agent.recommend(query="a comedy", filters=Filters(year_min=2000))  # the caller's filters still hold
    assert [r.title for r in given.recommendations] == ["Deep Space Comedy (2001)"]
    assert agent.recommend(query="space").recommendations  # words the reading does not place: a search query
