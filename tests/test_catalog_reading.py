"""Reading catalog files: in chunks where rows are mostly dropped, and a byte that is not UTF-8 named by its
file, row and column (issue 41.3)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from genre_agent.data.catalog import load_catalog
from genre_agent.data.reading import chunks, read_table
from genre_agent.errors import CatalogError


def test_a_byte_that_is_not_utf8_is_named_by_file_row_and_column(tiny_dir: Path) -> None:
    """Issue 41.3: "'utf-8' codec can't decode byte 0xff in position 35", with no file, column or row."""
    items = tiny_dir / "items.csv"
    lines = items.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b"Laugh", b"La\xffugh")  # the third item's title
    items.write_bytes(b"".join(lines))
    with pytest.raises(CatalogError) as bad:
        load_catalog(str(tiny_dir))
    assert str(bad.value).startswith(f"{items}: row 3 (line 4), column 'title' is not UTF-8 (byte 0xff)")


def test_a_byte_that_is_not_utf8_in_a_gzipped_jsonl_file_is_named_too(tmp_path: Path) -> None:
    rows = [json.dumps({"item": str(n), "summary": f"story {n}"}).encode() for n in range(5)]
    rows[2] = rows[2].replace(b"story", b"st\xc3ory")
    path = tmp_path / "descriptions.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(rows) + b"\n"))
    with pytest.raises(CatalogError) as bad:
        list(chunks(path, ["item", "summary"]))
    assert str(bad.value).startswith(f"{path}: row 3 (line 3), column 'summary' is not UTF-8 (byte 0xc3)")


@pytest.mark.parametrize("name", ["d.csv", "d.jsonl", "d.csv.gz", "d.parquet"])
def test_chunks_hold_the_rows_of_the_whole_file_in_order(tmp_path: Path, name: str) -> None:
    table = pd.DataFrame({"item": [str(n) for n in range(1000)], "summary": [f" text {n} " for n in range(1000)],
                          "other": ["x"] * 1000})
    path = tmp_path / name
    if name.endswith(".parquet"):
        table.to_parquet(path)
    elif ".csv" in name:
        table.to_csv(path, index=False)
    else:
        table.to_json(path, orient="records", lines=True)
    read = list(chunks(path, ["item", "summary"], chunk_bytes=2000))
    assert len(read) > 5  # about 2000 bytes each
    assert [start for start, _ in read] == list(pd.Series([len(c) for _, c in read]).cumsum().shift(fill_value=0))
    whole = pd.concat([chunk for _, chunk in read], ignore_index=True)
    assert list(whole.columns) == ["item", "summary"]
    assert whole.equals(read_table(path)[["item", "summary"]])
    assert whole.summary[7] == "text 7"  # stripped, as a whole table is


def test_a_jsonl_key_missing_from_some_rows_is_empty_there_and_one_no_row_has_is_named(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [{"item": str(n), **({"plot": f"plot {n}"} if n >= 500 else {})} for n in range(1000)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    read = pd.concat([c for _, c in chunks(path, ["item", "plot"], chunk_bytes=2000)], ignore_index=True)
    assert read["plot"][0] == "" and read["plot"][999] == "plot 999"
    *_, (_, last) = chunks(path, ["item", "summary"], chunk_bytes=2000)
    assert last.empty and list(last.columns) == ["item", "plot"]  # what the file has, for the error message


def test_a_descriptions_file_read_in_chunks_keeps_the_known_items_and_names_the_rest(tiny_dir: Path) -> None:
    rows = [{"item": f"x{n}", "summary": f"An unknown film {n}."} for n in range(3000)]
    rows[1500:1500] = [{"item": "5", "summary": "A family moves into a haunted house."},
                       {"item": "5", "summary": "Another description of it."}]
    (tiny_dir / "descriptions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with (tiny_dir / "catalog.toml").open("a") as toml:
        toml.write('\n[descriptions]\npath = "descriptions.jsonl"\nitem = "item"\nsummary = "summary"\n')
    cat = load_catalog(str(tiny_dir))
    assert cat.items.at["5", "summary"] == "A family moves into a haunted house."
    assert cat.items.at["1", "summary"] == ""
    notes = "\n".join(cat.report.lines())
    assert "descriptions of unknown ids skipped at: row 1, row 2, row 3, row 4, row 5 (+2995 more)" in notes
    assert "repeated descriptions skipped (the first is kept) at: row 1502" in notes
