"""Catalog loading, cleaning and the errors a user gets for bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from genre_agent.data.catalog import load_catalog
from genre_agent.errors import CatalogError


def test_tiny_catalog_is_loaded_and_cleaned(tiny_dir: Path) -> None:
    cat = load_catalog(str(tiny_dir))
    assert list(cat.items.index) == ["1", "2", "3", "4", "5", "6"]
    assert cat.items.at["2", "year"] == 1992
    assert cat.items.at["2", "name"] == "Star Quest II"
    assert cat.items.at["6", "genres"] == ("Sci-Fi", "Comedy")
    assert cat.items.at["2", "tags"] == ("sequel", "space")
    assert cat.items.at["2", "text"] == "Star Quest II. Genres: Sci-Fi, Adventure. Tags: sequel, space."
    assert len(cat.interactions) == 15
    assert cat.has_user("alice") and not cat.has_user("zed")


def test_unknown_items_and_duplicates_are_dropped_and_counted(tiny_dir: Path) -> None:
    with (tiny_dir / "ratings.csv").open("a") as fh:
        fh.write("a,999,5,9\nb,1000,3,9\na,1,3,10\n")
    with (tiny_dir / "items.csv").open("a") as fh:
        fh.write("3,Laugh Riot (1995),Comedy\n")
    cat = load_catalog(str(tiny_dir))
    assert cat.report.unknown_item_interactions_dropped == 2
    assert cat.report.duplicate_interactions_dropped == 1
    assert cat.report.duplicate_items_dropped == 1
    latest = cat.interactions[(cat.interactions.user_id == "a") & (cat.interactions.item_id == "1")]
    assert latest.rating.tolist() == [3.0]  # the later rating wins


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_jsonl_and_parquet_files_load_like_csv(tiny_dir: Path, fmt: str) -> None:
    for name in ("items", "ratings"):
        df = pd.read_csv(tiny_dir / f"{name}.csv", dtype=str)
        (tiny_dir / f"{name}.csv").unlink()
        if fmt == "jsonl":
            df.to_json(tiny_dir / f"{name}.jsonl", orient="records", lines=True)
        else:
            df.to_parquet(tiny_dir / f"{name}.parquet")
    toml = (tiny_dir / "catalog.toml").read_text()
    toml = toml.replace("items.csv", f"items.{fmt}").replace("ratings.csv", f"ratings.{fmt}")
    (tiny_dir / "catalog.toml").write_text(toml)
    cat = load_catalog(str(tiny_dir))
    assert cat.items.at["2", "title"] == "Star Quest II (1992)"
    assert len(cat.interactions) == 15


def test_movielens_layout_needs_no_catalog_toml(tmp_path: Path) -> None:
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,A (2000),Drama\n2,B (2001),(no genres listed)\n")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n7,1,4.5,100\n7,2,2.0,101\n")
    (tmp_path / "tags.csv").write_text("userId,movieId,tag,timestamp\n7,1,moody,100\n")
    cat = load_catalog(str(tmp_path))
    assert cat.name == tmp_path.name
    assert cat.items.at["2", "genres"] == ()
    assert cat.items.at["1", "tags"] == ("moody",)
    assert cat.interactions.rating.tolist() == [4.5, 2.0]


def _without_time(tiny_dir: Path, order: str) -> pd.DataFrame:
    toml = (tiny_dir / "catalog.toml").read_text()
    toml = re.sub(r'timestamp = "ts"|order = "\w+"', f'order = "{order}"', toml)
    (tiny_dir / "catalog.toml").write_text(toml)
    return load_catalog(str(tiny_dir)).interactions


def test_without_timestamps_the_file_order_or_a_seeded_random_order_stands_in_for_time(tiny_dir: Path) -> None:
    ratings = pd.read_csv(tiny_dir / "ratings.csv", dtype=str)
    alice_file = ratings[ratings.user == "alice"].item.tolist()
    by_file = _without_time(tiny_dir, "file")
    assert by_file[by_file.user_id == "alice"].item_id.tolist() == alice_file
    shuffled = _without_time(tiny_dir, "unknown")
    again = _without_time(tiny_dir, "unknown")
    assert sorted(shuffled[shuffled.user_id == "alice"].item_id) == sorted(alice_file)
    assert shuffled.equals(again)  # seeded: the same order (and the same held-out items) every load
    assert not shuffled.timestamp.equals(by_file.timestamp)


def test_order_with_a_timestamp_column_is_an_error(tiny_dir: Path) -> None:
    toml = (tiny_dir / "catalog.toml").read_text()
    toml = toml.replace('timestamp = "ts"', 'timestamp = "ts"\norder = "unknown"')
    (tiny_dir / "catalog.toml").write_text(toml)
    _expect(tiny_dir, "'order' applies only without a 'timestamp' column")


def _expect(tiny_dir: Path, *fragments: str) -> None:
    with pytest.raises(CatalogError) as info:
        load_catalog(str(tiny_dir))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_missing_column_names_file_and_column(tiny_dir: Path) -> None:
    (tiny_dir / "items.csv").write_text("id,name,genres\n1,X (1990),Drama\n")
    _expect(tiny_dir, "items.csv", "column 'title' not found", "[items].title")


def test_duplicate_ids_with_different_titles_name_the_rows(tiny_dir: Path) -> None:
    with (tiny_dir / "items.csv").open("a") as fh:
        fh.write("2,Another Film (1999),Drama\n")
    _expect(tiny_dir, "items.csv", "id '2'", "row 2 (line 3)", "row 7 (line 8)")


def test_non_numeric_rating_names_the_row(tiny_dir: Path) -> None:
    with (tiny_dir / "ratings.csv").open("a") as fh:
        fh.write("a,3,five,9\n")
    _expect(tiny_dir, "ratings.csv", "column 'rating'", "'five'", "row 16 (line 17)")


def test_empty_file(tiny_dir: Path) -> None:
    (tiny_dir / "ratings.csv").write_text("")
    _expect(tiny_dir, "ratings.csv", "empty")


def test_header_only_file(tiny_dir: Path) -> None:
    (tiny_dir / "ratings.csv").write_text("user,item,rating,ts\n")
    _expect(tiny_dir, "ratings.csv", "no rows")


def test_unreadable_file(tiny_dir: Path) -> None:
    (tiny_dir / "items.csv").write_bytes(b"\xff\xfe\x00\x01garbage\x00\n\xff")
    _expect(tiny_dir, "items.csv")


def test_missing_file_and_bad_toml(tiny_dir: Path) -> None:
    (tiny_dir / "tags.csv").unlink()
    _expect(tiny_dir, "tags.csv", "file not found")
    (tiny_dir / "catalog.toml").write_text("name = [broken")
    _expect(tiny_dir, "catalog.toml", "cannot parse")


def test_unknown_text_field_is_an_error(tiny_dir: Path) -> None:
    toml = (tiny_dir / "catalog.toml").read_text().replace("{name}. Genres", "{plot}. Genres")
    (tiny_dir / "catalog.toml").write_text(toml)
    _expect(tiny_dir, "[text].template", "{plot}")


def test_unknown_catalog_name_lists_shipped_ones() -> None:
    with pytest.raises(CatalogError) as info:
        load_catalog("no-such-catalog")
    assert "movielens" in str(info.value)


def test_shipped_movielens_counts() -> None:
    cat = load_catalog("movielens")
    assert len(cat.items) == 9742
    assert len(cat.interactions) == 100_836
    assert cat.interactions.user_id.nunique() == 610
    assert json.dumps(cat.report.lines()) == "[]"
