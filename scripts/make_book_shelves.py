"""Make the bundled books catalog's shelves from goodbooks' own (../shared/datasets/goodbooks-shelves).

    python scripts/make_book_shelves.py [SHELVES_DIR] [OUT_CSV_GZ]

Each source shelf is dropped as noise, merged into a genre or renamed as a tag by catalogs/goodbooks/
shelf-mapping.toml (the reviewable mapping); the readers of merged shelves are summed per book. A genre is kept
for a book only when its readers reach [rule].min_share of the book's most shelved specific genre. Writes
`book_id,shelf,count` (shelves.csv.gz), each book's shelves by readers, most first; catalog.toml names the
genres among them. The licence notice (catalogs/goodbooks/SHELVES-LICENSE.md) ships beside the file.
Deterministic: the same input gives the same bytes (gzip without a timestamp).
"""

from __future__ import annotations

import gzip
import io
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SHELVES = ROOT.parent / "shared" / "datasets" / "goodbooks-shelves"
CATALOG = ROOT / "catalogs" / "goodbooks"
OUT = CATALOG / "shelves.csv.gz"


def mapping(path: Path = CATALOG / "shelf-mapping.toml") -> dict[str, Any]:
    """The mapping file: [rule], [genres], [tags], [noise]."""
    return tomllib.loads(path.read_text(encoding="utf-8"))


def classify(names: list[str], spec: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each source shelf name that is not noise -> ("genre" | "tag", the name it is merged into)."""
    noise = set(spec["noise"]["shelves"])
    patterns = [re.compile(p) for p in spec["noise"]["patterns"]]
    genre_of = {shelf: genre for genre, shelves in spec["genres"].items() for shelf in shelves}
    out: dict[str, tuple[str, str]] = {}
    for name in names:
        if not name or name in noise or any(p.fullmatch(name) for p in patterns):
            continue
        out[name] = ("genre", genre_of[name]) if name in genre_of else ("tag", spec["tags"].get(name, name))
    return out


def shelves(book_tags: pd.DataFrame, tag_names: pd.DataFrame, book_ids: set[int],
            spec: dict[str, Any]) -> pd.DataFrame:
    """book_id, shelf, kind, count: the source rows of known books mapped, merged and filtered by the rule."""
    names = tag_names.drop_duplicates("tag_id").set_index("tag_id").tag_name.str.strip().str.lower()
    rows = book_tags[book_tags.book_id.isin(book_ids)].assign(source=lambda d: d.tag_id.map(names).fillna(""))
    kinds = classify(sorted(set(rows.source)), spec)
    rows = rows[rows.source.isin(kinds)]
    rows = rows.assign(kind=rows.source.map(lambda s: kinds[s][0]), shelf=rows.source.map(lambda s: kinds[s][1]))
    # a shelf in two genres' lists ("biography-memoir") counts for both; the same source shelf twice (goodbooks
    # has two tag ids named "owned") is counted once per book, by its larger count
    rows = rows.sort_values("count", ascending=False).drop_duplicates(["book_id", "source", "shelf"])
    merged = rows.groupby(["book_id", "shelf", "kind"], as_index=False)["count"].sum()
    rule = spec["rule"]
    genres = merged[(merged.kind == "genre") & ~merged.shelf.isin(rule["broad"])]
    reference = genres.groupby("book_id")["count"].max()
    weak = (merged.kind == "genre") & ~merged.shelf.isin(rule["broad"]) & (
        merged["count"] < rule["min_share"] * merged.book_id.map(reference))
    merged = merged[~weak]
    return merged.sort_values(["book_id", "count", "shelf"], ascending=[True, False, True], kind="mergesort")


def main(source: Path = SHELVES, out: Path = OUT) -> None:
    spec = mapping()
    book_tags = pd.read_csv(source / "book_tags_reduced.csv")
    tag_names = pd.read_csv(source / "tags_reduced.csv", dtype={"tag_name": str}, keep_default_na=False)
    book_ids = set(pd.read_csv(CATALOG / "books.csv", usecols=["book_id"]).book_id)
    table = shelves(book_tags, tag_names, book_ids, spec)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        gz.write(table[["book_id", "shelf", "count"]].to_csv(index=False).encode("utf-8"))
    out.write_bytes(buffer.getvalue())
    with_genre = table[table.kind == "genre"].book_id.nunique()
    print(f"wrote {out}: {len(table)} rows, {table.book_id.nunique()} of {len(book_ids)} books "
          f"({with_genre} with a genre), {table[table.kind == 'genre'].shelf.nunique()} genres, "
          f"{table[table.kind == 'tag'].shelf.nunique()} tags, {out.stat().st_size / 2**10:.0f} KB")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:3]))
