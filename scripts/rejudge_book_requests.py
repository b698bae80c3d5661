"""Judge the lists of a books request report again with the shelves of this checkout's books catalog.

    python scripts/rejudge_book_requests.py REPORT_JSON [REQUESTS_JSONL]

A report written before the books catalog shipped its shelves was judged by the catalog of its day (shelves for
400 memoirs only); this judges its top 10s (matched by title) by today's genres and tags, so before and after are
compared under one judge. It also counts the requests answered only with memoirs or biographies that did not ask
for one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from genre_agent.data.catalog import load_catalog
from genre_agent.eval.requests import Judge, load_requests

ROOT = Path(__file__).resolve().parent.parent
LIFE = {"memoir", "biography"}


def main(report: Path, requests_file: Path = ROOT / "tests" / "data" / "requests" / "books.jsonl") -> None:
    items = load_catalog("goodbooks").items
    by_title = dict(zip(items.title, items.index, strict=True))
    judge = Judge(items)
    requests = {r.id: r for r in load_requests(requests_file)}
    shares: dict[str, list[float]] = {"dev": [], "test": []}
    only_life = []
    for row in json.loads(report.read_text(encoding="utf-8"))["requests"]:
        ids = [by_title[t] for t in row["titles"]]
        request = requests[row["id"]]
        shares[row["split"]].append(sum(judge.satisfies(request, i) for i in ids) / 10)
        if ids and not LIFE & set(request.genres) and all(LIFE & set(items.at[i, "genres"]) for i in ids):
            only_life.append(row["request"])
    for split, values in shares.items():
        print(f"{split}: {len(values)} requests, mean share {np.mean(values):.3f}")
    print(f"all: mean share {np.mean(shares['dev'] + shares['test']):.3f}")
    print(f"answered only with memoirs or biographies, not asked for: {len(only_life)} {only_life}")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:3]))
