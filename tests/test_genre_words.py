"""The words a message uses for genres come from the catalog: its genre names as people write them and the
synonyms it declares ([genres] in catalog.toml), so a books catalog understands "no YA" and "sci-fi books"
with no movie word list in the code. Known answers on tiny data."""

from __future__ import annotations

from pathlib import Path

import pytest

from genre_agent.chat.agent import Agent
from genre_agent.chat.session import SessionState
from genre_agent.chat.titles import TitleIndex
from genre_agent.chat.understanding import genre_words, parse_rules
from genre_agent.data.catalog import load_catalog
from genre_agent.errors import CatalogError
from genre_agent.filters import Filters
from genre_agent.llm.backends import FakeBackend
from genre_agent.settings import load_settings

BOOKS = Path(__file__).parent / "data" / "tiny-books"
SHELVES = {"romance": ["romance", "romantic", "love"], "young-adult": ["young-adult", "ya", "teen"],
           "science-fiction": ["science-fiction", "sci-fi", "sf"], "humor": ["humor", "comedy", "funny"]}
WORDS = genre_words(["fantasy", "fiction", "humor", "romance", "science-fiction", "young-adult"], SHELVES)
NO_TITLES = TitleIndex(load_catalog(str(BOOKS)).items.iloc[0:0])


def _filters(message: str) -> Filters:
    return parse_rules(message, SessionState(session_id="s"), WORDS, NO_TITLES).filters


@pytest.mark.parametrize(("message", "filters"), [
    ("No romance, please.", Filters(exclude_genres=["romance"])),
    ("Nothing young adult.", Filters(exclude_genres=["young-adult"])),
    ("not YA", Filters(exclude_genres=["young-adult"])),
    ("Some sci-fi books?", Filters(require_genres=["science-fiction"])),
    ("science fiction, not fiction in general", Filters(require_genres=["science-fiction"],
                                                        exclude_genres=["fiction"])),
    ("Something funny for the beach", Filters(require_genres=["humor"])),
    ("I love fantasy", Filters(require_genres=["fantasy"])),  # "love" is a shelf of romance, not a wish for one
    ("Something to cheer me up", Filters(include_genres=["humor"])),  # a mood's "comedy" is this catalog's humor
])
def test_genres_are_read_in_the_catalogs_own_words(message: str, filters: Filters) -> None:
    assert _filters(message) == filters


def test_the_longest_spelling_wins_and_plurals_need_no_list() -> None:
    assert WORDS.mentions("science fiction") == {"science-fiction": 0}
    assert WORDS.mentions("romances and comedies") == {"romance": 0, "humor": 13}
    assert WORDS.genre_of("Sci-Fi") == "science-fiction" and WORDS.genre_of("western") is None


def test_the_books_catalog_declares_its_shelves_as_genre_words() -> None:
    catalog = load_catalog(str(BOOKS))
    assert "sci-fi" in catalog.genre_aliases["science-fiction"]
    assert "ya" in load_catalog("goodbooks").genre_aliases["young-adult"]
    assert "scary" in load_catalog("movielens").genre_aliases["Horror"]


def test_a_genre_words_file_that_is_not_a_table_of_lists_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "books"
    folder.mkdir()
    for name in ("books.csv", "ratings.csv", "shelves.csv", "catalog.toml"):
        (folder / name).write_bytes((BOOKS / name).read_bytes())
    (folder / "genre-words.toml").write_text('[genres]\nfantasy = "magic"\n')
    with pytest.raises(CatalogError, match="genre-words.toml"):
        load_catalog(str(folder))


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    settings = load_settings(catalog=str(BOOKS), data_dir=tmp_path_factory.mktemp("books"),
                             **{"backend.name": "fake", "retrieval.match_pool": 2})
    return Agent.from_config(settings, backend=FakeBackend())


def test_a_reader_asking_by_shelf_names_gets_those_books(agent: Agent) -> None:
    dune = "8"
    reply = agent.chat("sf", "Some sci-fi books?")
    assert reply.recommendations is not None and reply.recommendations.recommendations[0].item_id == dune
    reply = agent.chat("no-sf", "A classic, but no sf please.")
    listed = [r.item_id for r in reply.recommendations.recommendations] if reply.recommendations else []
    assert listed and dune not in listed
