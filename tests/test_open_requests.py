"""Open requests (issue 37): who made an item, where and how long ([credits]), read from what people write —
people by the words of their names, places, length, quality orders, denied words, contrast and restatement — on
tiny data where the answer is known, and the issue's own messages against the shipped MovieLens catalog."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genre_agent.chat.agent import Agent
from genre_agent.chat.facets import read_length
from genre_agent.chat.genres import GenreWords
from genre_agent.chat.people import PeopleIndex
from genre_agent.chat.session import SessionState
from genre_agent.chat.titles import TitleIndex
from genre_agent.chat.understanding import common_words
from genre_agent.data.catalog import Catalog, load_catalog, natural_title
from genre_agent.data.credits import minutes
from genre_agent.errors import CatalogError
from genre_agent.filters import Filters
from genre_agent.llm.backends import FakeBackend
from genre_agent.retrieval.quality import Quality
from genre_agent.retrieval.rules import ItemMasks
from genre_agent.settings import load_settings

from conftest import tiny_settings
from helpers import talk

CREDITS = """
[credits]
path = "people.jsonl"
item = "id"
people = { director = "directors", cast = "cast" }
countries = "countries"
duration = "runtime"
"""
PEOPLE = [
    {"id": "1", "directors": ["Ann Lee"], "cast": ["Bo Park", "José Álvarez"], "countries": ["United States"],
     "runtime": "2h 10m"},
    {"id": "2", "directors": ["Ann Lee"], "cast": ["Chan-wook Kim"], "countries": ["South Korea"], "runtime": 95},
    {"id": "3", "directors": ["Carl Stone"], "cast": ["Jose Alvarez"], "countries": ["France", "United States"],
     "runtime": "-5"},
    {"id": "4", "directors": [], "cast": [f"Extra {n}" for n in range(10_000)], "countries": ["France"],
     "runtime": "1:45"},
    {"id": "5", "directors": ["Дмитрий Петров"], "cast": ["Kim Chan Wook"], "countries": ["Japan"],
     "runtime": "two hours"},
    {"id": "99", "directors": ["Nobody"], "cast": [], "countries": ["Peru"], "runtime": 80},
]


@pytest.fixture
def credited_dir(tiny_dir: Path) -> Path:
    (tiny_dir / "catalog.toml").write_text((tiny_dir / "catalog.toml").read_text() + CREDITS)
    (tiny_dir / "people.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in PEOPLE))
    return tiny_dir


def test_credits_are_loaded_normalised_or_skipped_with_the_rows_named(credited_dir: Path) -> None:
    catalog = load_catalog(str(credited_dir))
    items, notes = catalog.items, " | ".join(catalog.report.notes)
    assert items.at["1", "people"] == {"director": ("Ann Lee",), "cast": ("Bo Park", "José Álvarez")}
    assert items.at["2", "countries"] == ("South Korea",)
    assert list(items["minutes"].astype("Float64").fillna(-1)) == [130, 95, -1, 105, -1, -1]
    assert len(items.at["4", "people"]["cast"]) == 40  # cut to [credits].max_names
    assert items.at["5", "people"]["director"] == ("Дмитрий Петров",)  # another script is a name like any
    assert "credits of unknown ids skipped at: row 6" in notes
    assert "durations that are no length (left unknown) at: row 3, row 5" in notes
    assert "more than 40 names (cut) at: row 4" in notes


def test_a_credits_column_that_clashes_or_is_missing_is_a_catalog_error(credited_dir: Path) -> None:
    toml = credited_dir / "catalog.toml"
    toml.write_text(toml.read_text().replace('duration = "runtime"', 'duration = "length"'))
    with pytest.raises(CatalogError, match="column 'length' not found"):
        load_catalog(str(credited_dir))


@pytest.mark.parametrize(("written", "expected"), [("136", 136), ("2h 10m", 130), ("1:45", 105),
                                                   ("90 min", 90), ("", None)])
def test_durations_as_people_write_them(written: str, expected: int | None) -> None:
    assert minutes(written) == expected


@pytest.mark.parametrize("written", ["-5", "0", "two hours", "99999"])
def test_what_is_no_length_is_refused(written: str) -> None:
    with pytest.raises(ValueError):
        minutes(written)


def test_people_by_the_words_of_their_names_in_any_order_and_without_accents(credited_dir: Path) -> None:
    people = PeopleIndex(load_catalog(str(credited_dir)).items, {"comedy"})
    found = people.find("anything with jose alvarez")
    assert [(p.name, p.role) for p in found] == [("José Álvarez", "cast")]
    assert [p.name for p in people.find("Kim Chan-wook films")] == ["Chan-wook Kim"]
    denied = people.find("a comedy, but no Ann Lee please")
    assert [(p.name, p.negated) for p in denied] == [("Ann Lee", True)]
    unknown = people.find("something starring Zed Quorum")
    assert [(p.name, p.text) for p in unknown] == [(None, "Zed Quorum")]


def test_the_filters_of_credits_places_and_length(credited_dir: Path) -> None:
    items = load_catalog(str(credited_dir)).items
    masks = ItemMasks(items)

    def ids(**filters: object) -> list[str]:
        return list(items.index[masks.allowed(Filters(**filters), set())])  # type: ignore[arg-type]

    assert ids(people=["Lee Ann"]) == ["1", "2"]
    assert ids(exclude_people=["jose alvarez"]) == ["2", "4", "5", "6"]
    assert ids(countries=["France"]) == ["4"]  # a US co-production is no French film
    assert ids(exclude_countries=["United States"]) == ["2", "4", "5"]  # an unknown country is not "foreign"
    assert ids(minutes_max=100) == ["2"] and ids(minutes_min=100) == ["1", "4"]


def test_a_denied_word_leaves_out_every_form_of_it_and_a_phrase_as_said() -> None:
    items = pd.DataFrame({"title": ["A", "B", "C", "D"], "genres": [()] * 4,
                          "year": pd.array([None] * 4, "Int64"),
                          "tags": [("dystopia",), (), (), ()],
                          "description": ["", "A dystopian city.", "Set in World War II.", "A robot."],
                          "summary": [""] * 4}, index=pd.Index(["1", "2", "3", "4"], name="item_id"))
    masks = ItemMasks(items)
    assert list(items.index[masks.allowed(Filters(exclude_words=["dystopian"]), set())]) == ["3", "4"]
    assert list(items.index[masks.allowed(Filters(exclude_words=["world war ii"]), set())]) == ["1", "2", "4"]


def test_quality_orders_by_a_bayesian_average_and_hidden_gems_leave_out_the_famous() -> None:
    fillers = [f"f{n}" for n in range(7)]
    index = pd.Index(["famous", "gem", "fluke", *fillers])
    counts = {"famous": (100, 4.0), "gem": (20, 4.6), "fluke": (1, 5.0), **{f: (20, 3.0) for f in fillers}}
    ratings = pd.DataFrame([(item, rating) for item, (n, rating) in counts.items() for _ in range(n)],
                           columns=["item_id", "rating"])
    quality = Quality(index, ratings)
    mask = np.ones(len(index), dtype=bool)
    popularity = np.array([counts[i][0] for i in index], dtype=np.float64)
    best = dict(zip(index, quality.order("best", mask, popularity), strict=True))
    assert best["gem"] > best["famous"] > best["fluke"]  # one 5-star rating is no proof
    hidden = dict(zip(index, quality.order("hidden", mask, popularity), strict=True))
    assert max(hidden, key=hidden.__getitem__) == "gem" and hidden["famous"] < hidden["f0"]
    assert quality.order("popular", mask, popularity).argmax() == 0


@pytest.mark.parametrize(("filed", "shown"), [
    ("Matrix, The (1999)", "The Matrix (1999)"), ("Host, The (Gwoemul) (2006)", "The Host (2006)"),
    ("Amelie (Fabuleux destin d'Amélie Poulain, Le) (2001)", "Amelie (2001)"), ("The", "The"),
    ("(Untitled)", "(Untitled)"), ("Toy Story (1995)", "Toy Story (1995)"), ("x" * 200, "x" * 200)])
def test_titles_as_people_write_them(filed: str, shown: str) -> None:
    assert natural_title(filed) == shown


@pytest.fixture(scope="module")
def people(movielens_catalog: Catalog, movielens: tuple[TitleIndex, GenreWords]) -> PeopleIndex:
    return PeopleIndex(movielens_catalog.items, common_words(movielens[1]))


def test_the_issues_messages_keep_their_whole_meaning(movielens: tuple[TitleIndex, GenreWords],
                                                      people: PeopleIndex) -> None:
    def read(*turns: str) -> SessionState:
        return talk(movielens, *turns, people=people)

    hanks = read("Any good Tom Hanks movies?")
    assert hanks.filters.people == ["Tom Hanks"] and hanks.query is None  # never "tom hank" as plot words
    nolan = read("Any good Tom Hanks movies?", "Something directed by Christopher Nolan instead.")
    assert nolan.filters.people == ["Christopher Nolan"] and nolan.query is None
    ai = read("A movie about artificial intelligence that isn't dystopian").filters
    assert ai.exclude_words == ["dystopian"] and not ai.require_genres
    chill = read("I usually like action movies but tonight I want something chill").filters
    assert "Action" not in chill.require_genres + chill.include_genres
    best = read("Best movies of 2015?").filters
    assert (best.year_min, best.year_max, best.order) == (2015, 2015, "best")
    korean = read("I loved Parasite and Oldboy. Any other Korean thrillers?")
    assert korean.filters.countries == ["South Korea"] and "Thriller" in korean.filters.require_genres
    titles = movielens[0]
    assert "Old Boy (2003)" in [titles.title_of(i) for i in korean.liked]  # the one people mean: the most rated
    notebook = read("Something like The Notebook but less sappy, and not too long please").filters
    assert notebook.minutes_max == 120 and notebook.exclude_words == ["sappy"]
    assert read("No, I haven't. I think I will check it out").filters.people == []  # not T.I.
    assert read("samuel l jackson movies").filters.people == ["Samuel L. Jackson"]
    for said in ("I liked Harry Potter", "Bob Fleming... Mission"):  # a surname beside a capital is no person
        assert read(said).filters.people == []
    potter = read("I liked Harry Potter")  # the first title that goes on from what was said
    assert [titles.title_of(i) for i in potter.liked] == ["Harry Potter and the Sorcerer's Stone (2001)"]
    assert read("not seeing it, I do like slashers").filters.exclude_words == []  # a verb denied
    ocean = read("I liked Ocean's Eleven, the one with George Clooney.")  # which one, no wish
    assert [titles.title_of(i) for i in ocean.liked] == ["Ocean's Eleven (2001)"] and ocean.filters.people == []
    kong = read("Something like King Kong, the one from 1933.")
    assert [titles.title_of(i) for i in kong.anchors] == ["King Kong (1933)"]


def test_a_person_a_title_the_catalog_lacks_and_length_are_said_in_the_reply(credited_dir: Path,
                                                                             tmp_path: Path) -> None:
    settings = load_settings(catalog=str(credited_dir), data_dir=tmp_path / "d", k=3, **{"backend.name": "fake"})
    agent = Agent.from_config(settings, backend=FakeBackend())
    reply = agent.chat("s", "Movies with Bo Park please")
    assert reply.recommendations is not None
    assert [r.title for r in reply.recommendations.recommendations] == ["Star Quest (1990)"]
    assert reply.recommendations.recommendations[0].evidence.startswith("Starring Bo Park")
    unknown = agent.chat("u", "A comedy starring Zed Quorum")
    assert "I don't know anyone called Zed Quorum" in unknown.text and unknown.recommendations is not None
    which = agent.chat("w", "Something like Star Quest, the one with Carl Stone")  # he made Laugh Riot only
    assert "I don't have the Star Quest with Carl Stone in the catalog" in which.text
    missing = agent.chat("m", "I loved The Galaxy Wars Saga, any sci-fi like it?")
    assert "I don't have The Galaxy Wars Saga in the catalog" in missing.text
    short = agent.chat("l", "Sci-fi under 100 minutes")
    assert "I know the length of 3 of the 6 movies" in short.text


def test_a_long_week_or_an_epic_fantasy_says_nothing_of_length() -> None:
    for said in ("after a long week at work", "a long flight tonight", "an epic fantasy novel"):
        filters = Filters()
        read_length(said, filters)
        assert (filters.minutes_min, filters.minutes_max) == (None, None), said
    epic = Filters()
    read_length("a long, epic adventure", epic)
    assert epic.minutes_min == 150


def test_a_catalog_without_lengths_says_it_cannot_check_them(tmp_path: Path) -> None:
    agent = Agent.from_config(tiny_settings(tmp_path / "d", k=3), backend=FakeBackend())
    reply = agent.chat("s", "A comedy, not too long")
    assert "does not say how long its movies are" in reply.text
    assert reply.recommendations is not None and len(reply.recommendations.recommendations) == 3  # answered



def test_what_a_dialogue_says_in_passing_is_no_wish(movielens: tuple[TitleIndex, GenreWords],
                                                    people: PeopleIndex) -> None:
    """Real seekers' lines (ReDial dev) that left nothing to recommend, or recommended a named title back."""
    def read(*turns: str) -> SessionState:
        return talk(movielens, *turns, people=people)

    titles = movielens[0]
    assert read("Hiya, I like musicals kinda like La La Land (2016) with Gosling and Stone").filters.people == []
    assert read("I'm not all that into animated movies").filters.exclude_genres == ["Animation"]
    assert read("I'm not a big fan of comedies, any thrillers?").filters.exclude_genres == ["Comedy"]
    mind = read("I don't mind horror").filters
    assert mind.require_genres == ["Horror"] and mind.exclude_genres == []
    dancing = read("Not a fan but love Dirty Dancing Can you help me with that kind of movie")
    assert [titles.title_of(i) for i in dancing.named] == ["Dirty Dancing (1987)"]
    notting = read("I'm also more of a Notting Hill and A Walk to Remember (2002) kind of girl too")
    assert "Notting Hill (1999)" in [titles.title_of(i) for i in notting.named]
    told = read("I only watched about 20 minutes of that movie").filters
    assert (told.minutes_min, told.minutes_max) == (None, None)
    liked = read("I generally like comedy", "I like some action too, just not too violent").filters
    assert (liked.include_genres, liked.require_genres) == (["Comedy", "Action"], [])  # tastes, not both at once
    also = read("I'm Erica, I like documentaries", "also dramas are great").filters
    assert (also.include_genres, also.require_genres) == (["Documentary", "Drama"], [])
    assert read("a comedy", "also make it animated").filters.require_genres == ["Comedy", "Animation"]
    praised = read("Forrest Gump (1994) is an epic classic. Tom Hanks killed that role").filters
    assert praised.year_max is None  # what the film is, not "up to 1988"
    assert read("some classic westerns please").filters.year_max == 1988


def test_wishes_of_earlier_turns_give_way_when_nothing_fits_them_all(credited_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(catalog=str(credited_dir), data_dir=tmp_path / "d", k=3, **{"backend.name": "fake"})
    agent = Agent.from_config(settings, backend=FakeBackend())
    agent.restore("s", [("user", "Movies with Bo Park please")])  # he is in Star Quest only
    reply = agent.chat("s", "any horror?")
    assert reply.recommendations is not None
    assert [r.title for r in reply.recommendations.recommendations] == ["Night Terror (1985)"]
    assert ("No movie in the catalog fits everything asked for in this conversation (Horror, with Bo Park), so "
            "I went by your latest message.") in reply.text
    assert agent.session("s").filters.people == []
    alone = agent.chat("t", "a horror movie with Bo Park")  # one message asks the impossible: it is said
    assert "No movie in the catalog fits all of: Horror, with Bo Park." in alone.text
    assert agent.session("t").filters.people == ["Bo Park"]


def test_an_article_last_catalog_shows_titles_as_people_write_them_and_reasons_quote_nothing(
        tiny_dir: Path, tmp_path: Path) -> None:
    toml = (tiny_dir / "catalog.toml").read_text().replace('year_from_title = true',
                                                          'year_from_title = true\ntitles = "article-last"')
    (tiny_dir / "catalog.toml").write_text(toml)
    items = (tiny_dir / "items.csv").read_text().replace("Laugh Riot Again (1997)", "\"Riot Again, The (1997)\"")
    (tiny_dir / "items.csv").write_text(items)
    settings = load_settings(catalog=str(tiny_dir), data_dir=tmp_path / "d", k=3, **{"backend.name": "fake"})
    agent = Agent.from_config(settings, backend=FakeBackend())
    reply = agent.chat("s", "I loved Laugh Riot, usually a comedy fan")
    assert reply.recommendations is not None
    assert "The Riot Again (1997)" in [r.title for r in reply.recommendations.recommendations]
    assert "Riot Again, The" not in reply.text and "Fits \u201c" not in reply.text
    assert agent.chat("t", "I loved The Riot Again").recommendations is not None
    assert agent.session("t").liked == ["4"]  # matching still takes the form a person types
