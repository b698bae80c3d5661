"""How many catalog items satisfy each request's judge: a request needs enough right answers to be fair.

    python scripts/request_satisfiable.py tests/data/requests/open.jsonl [--catalog movielens]
        [--movie-people /work/shared/datasets/movie-people/movie_people.jsonl.gz]
    python scripts/request_satisfiable.py tests/data/requests/open-books.jsonl --catalog goodbooks --authors

Prints one line per request (satisfying items, id, split, the turns), then the minimum and median per category.
The count uses the real catalog loader and the real Judge (genre_agent.eval.requests). A catalog that does not
declare people, countries, language and runtime has none of those columns, and then nothing satisfies a rule
about them; --movie-people fills the missing columns from that file (directors, cast, countries, language,
runtime_min by movieId) so the movielens sets can be checked before the catalog declares them, and --authors
credits the books' `authors` column ("A, B": each an author) the same way.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
from pathlib import Path

import pandas as pd

from genre_agent.data.catalog import load_catalog
from genre_agent.eval.requests import Judge, load_requests


def with_people(items: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The items with people, countries, language and minutes from a movie-people file, where they lack them."""
    rows = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            raw = json.loads(line)
            rows[str(raw["movieId"])] = raw
    known = [rows.get(str(i), {}) for i in items.index]
    filled = {"people": [{"director": tuple(r.get("directors", ())), "cast": tuple(r.get("cast", ()))}
                         for r in known],
              "countries": [tuple(r.get("countries", ())) for r in known],
              "language": [str(r.get("language", "")) for r in known],
              "minutes": pd.array([r.get("runtime_min") for r in known], dtype="Int64")}
    out = items.copy()
    for column, values in filled.items():
        if column not in out.columns:
            out[column] = values
    return out


def with_authors(items: pd.DataFrame) -> pd.DataFrame:
    """The items with people {"author": the names of the `authors` column}, where they lack people."""
    if "people" in items.columns:
        return items
    out = items.copy()
    out["people"] = [{"author": tuple(n.strip() for n in str(a).split(",") if n.strip())} for a in out["authors"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("requests", type=Path)
    parser.add_argument("--catalog", default="movielens")
    parser.add_argument("--movie-people", type=Path, help="fill people, countries, language, minutes from it")
    parser.add_argument("--authors", action="store_true", help="credit the authors column as people (books)")
    args = parser.parse_args()
    catalog = load_catalog(args.catalog)
    items = with_people(catalog.items, args.movie_people) if args.movie_people else catalog.items
    items = with_authors(items) if args.authors else items
    judge = Judge(items, catalog.interactions)
    per_category: dict[str, list[int]] = {}
    for request in load_requests(args.requests):
        judge.check(request)
        n = sum(judge.satisfies(request, str(i)) for i in items.index)
        shown = "conflict" if request.conflict else str(n)
        print(f"{shown:>8}  {request.id:<18} {request.split:<5} {' / '.join(request.turns)}")
        if not request.conflict:
            per_category.setdefault(request.category, []).append(n)
    print("\ncategory: requests, fewest satisfying items, median")
    for category, counts in per_category.items():
        print(f"{category}: {len(counts)}, {min(counts)}, {statistics.median(counts):g}")


if __name__ == "__main__":
    main()
