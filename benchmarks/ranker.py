"""What the learned ranker adds to a request's retrieval time, against the hand-weighted order in the same run.

For each sampled catalog user: `recommend` (k = 10, no words, the fake backend so no model is called) once
with the ranker and once without; the retrieval ms of each (Chroma + CF + features + the model's scoring)
are printed as p50 / p95 and the ratio. Run `genre-agent fit` first (the ranker must be trained).

    python benchmarks/ranker.py [--users 50] [--catalog movielens]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import numpy as np

from genre_agent.llm.backends import FakeBackend
from genre_agent.pipeline import Recommender
from genre_agent.settings import load_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--catalog", default="movielens")
    args = ap.parse_args()
    fake: dict[str, Any] = {"backend.name": "fake"}
    ranked = Recommender.open(load_settings(None, catalog=args.catalog, **fake), backend=FakeBackend())
    if ranked.retriever.ranker is None:
        raise SystemExit("no learned ranker for this catalog: run `genre-agent fit` first")
    hand = load_settings(None, catalog=args.catalog, **fake, **{"rank.enabled": False})
    plain = Recommender.open(hand, backend=FakeBackend())
    users = sorted(ranked.catalog.interactions.user_id.unique())
    chosen = np.random.default_rng(0).choice(users, min(args.users, len(users)), replace=False)
    times: dict[str, list[float]] = {"hand-weighted": [], "ranker": []}
    for user in chosen:
        for name, rec in (("hand-weighted", plain), ("ranker", ranked)):
            times[name].append(rec.recommend(user_id=str(user), k=10).timings_ms.retrieve)
    print(f"{len(chosen)} users of {args.catalog}, retrieval ms per request")
    print("| order | p50 | p95 |\n|---|---:|---:|")
    for name, ms in times.items():
        print(f"| {name} | {statistics.median(ms):.1f} | {np.percentile(ms, 95):.1f} |")
    added = statistics.median(np.subtract(times["ranker"], times["hand-weighted"]))
    print(f"ranker adds {added:.1f} ms per request (median of paired differences)")


if __name__ == "__main__":
    main()
