"""Shelves as genres and tags: the books catalog's mapping script, and a shelf file with bad rows."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType

import pandas as pd

from genre_agent.data.catalog import load_catalog

ROOT = Path(__file__).resolve().parent.parent
BOOKS = ROOT / "catalogs" / "goodbooks"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_book_shelves", ROOT / "scripts" / "make_book_shelves.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shelf_catalog(folder: Path, tags: str, names: str) -> Path:
    (folder / "books.csv").write_text("book_id,title\n1,Dragon Road\n2,Cold Case\n")
    (folder / "book_tags.csv").write_text(tags)
    (folder / "tags.csv").write_text(names)
    (folder / "catalog.toml").write_text(
        'name = "shelves"\nitem_noun = "book"\nitem_noun_plural = "books"\n'
        '[items]\npath = "books.csv"\nid = "book_id"\ntitle = "title"\n'
        '[tags]\npath = "book_tags.csv"\nitem = "book_id"\ntag = "tag_id"\ncount = "count"\ntop = 1\n'
        'names = { path = "tags.csv", id = "tag_id", name = "tag_name" }\ngenres = ["fantasy", "mystery"]\n')
    return folder


def test_a_shelf_file_with_bad_rows_loads_with_notes_naming_them(tmp_path: Path) -> None:
    folder = _shelf_catalog(
        tmp_path,
        "book_id,tag_id,count\n1,10,500\n1,11,499\n1,12,300\n99,10,200\n2,13,100\n2,14,50\n",
        "tag_id,tag_name\n10,owned\n11,owned\n12,fantasy\n13,\n14,mystery\n")
    books = load_catalog(str(folder))
    notes = books.report.notes
    assert "book_tags.csv: tags of unknown items skipped at: row 4 (line 5)" in notes
    assert "book_tags.csv: tags without a name skipped at: row 5 (line 6)" in notes
    assert "tags.csv: empty tag names at: row 4 (line 5)" in notes
    assert "tags.csv: tag names given to several ids (read as one tag) at: row 1 (line 2), row 2 (line 3)" in notes
    assert books.report.unknown_item_tags_dropped == 1
    assert books.items.at["1", "tags"] == ("owned",)  # the two "owned" ids are one shelf of 500, not 999
    assert books.items.at["1", "genres"] == ("fantasy",)  # a genre below the top tags is still a genre
    assert books.items.at["2", "genres"] == ("mystery",)


def test_a_clean_shelf_file_has_no_notes(tmp_path: Path) -> None:
    folder = _shelf_catalog(tmp_path, "book_id,tag_id,count\n1,12,300\n2,14,50\n",
                            "tag_id,tag_name\n12,fantasy\n14,mystery\n")
    assert load_catalog(str(folder)).report.lines() == []


def test_mapping_drops_noise_merges_synonyms_and_weak_genres() -> None:
    script = _script()
    spec = script.mapping()
    names = pd.DataFrame({"tag_id": [1, 2, 3, 4, 5, 6, 7, 8, 9],
                          "tag_name": ["to-read", "sci-fi", "science-fiction", "sf", "fantasy", "vampire",
                                       "vampires", "read-in-2016", "fiction"]})
    rows = pd.DataFrame({"book_id": [1] * 9 + [2],
                         "tag_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 5],
                         "count": [9000, 300, 500, 200, 99, 120, 130, 400, 5000, 10]})
    table = script.shelves(rows, names, {1}, spec)
    got = {(r.shelf, r.kind): r.count for r in table.itertuples()}
    # sci-fi + science-fiction + sf = 1,000; fantasy (99) is under 10 % of it; fiction is broad and kept;
    # vampire + vampires merged into one tag; to-read and read-in-2016 are noise; book 2 is not in the catalog
    assert got == {("science-fiction", "genre"): 1000, ("fiction", "genre"): 5000, ("vampires", "tag"): 250}


def test_the_books_catalog_lists_exactly_the_mapped_genres() -> None:
    mapped = tomllib.loads((BOOKS / "shelf-mapping.toml").read_text(encoding="utf-8"))["genres"]
    listed = tomllib.loads((BOOKS / "catalog.toml").read_text(encoding="utf-8"))["tags"]["genres"]
    assert listed == list(mapped)


def test_the_shipped_shelves_give_books_their_genres() -> None:
    books = load_catalog("goodbooks")
    by_title = books.items.set_index("title")
    assert {"fantasy", "classics"} <= set(by_title.at["The Hobbit", "genres"])
    assert "science-fiction" not in by_title.at["The Hobbit", "genres"]  # 2 % of its readers: a stray shelf
    assert "science-fiction" in by_title.at["Dune (Dune Chronicles #1)", "genres"]
    assert "horror" in by_title.at["The Shining (The Shining #1)", "genres"]
    assert not any(t in {"to-read", "owned", "sci-fi", "ya"} for ts in books.items.tags for t in ts)
    assert (books.items.genres.str.len() > 0).sum() >= 4300
