"""How many ReDial requests have an answer in the learned ranker's pool, for a pool size (a diagnostic).

    python scripts/pool_coverage.py --pool 500 --cf-pool 100 [--requests 500] [--dialogues FILE]

Reads the dialogues as `genre-agent fit` reads a training file (each dialogue with the mentions of the other
folds), on the bundled movielens catalog in GENRE_AGENT_DATA_DIR.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from genre_agent.chat.agent import Agent
from genre_agent.data.feedback import SQLiteStore
from genre_agent.eval.conversation_fit import _dialogue_requests, _read, read_mentions
from genre_agent.llm.backends import FakeBackend
from genre_agent.llm.routing import Routes
from genre_agent.pipeline import Recommender, build, served_catalog
from genre_agent.rank.mentions import FOLDS
from genre_agent.settings import load_settings

TRAIN = Path("../shared/datasets/redial-train-500/train_data.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, required=True)
    parser.add_argument("--cf-pool", type=int, required=True)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--dialogues", type=Path, default=TRAIN)
    args = parser.parse_args()
    settings = load_settings(catalog="movielens", **{"rank.pool": args.pool, "rank.cf_pool": args.cf_pool,
                                                      "backend.name": "fake"})
    catalog = served_catalog(settings)
    retriever, _ = build(settings, catalog, None)
    rec = Recommender(settings, catalog, retriever, FakeBackend())
    rec.pinned_routes = Routes(ranking_weight=0.0, ranking_method="json", permutations=1, reasons=False,
                               reading=frozenset(), calibration="pinned: a diagnostic")
    column = retriever.items.index
    files = [(args.dialogues, "all")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        agent = Agent(rec, SQLiteStore(Path(tmp) / "feedback.sqlite3"))
        mentions = read_mentions(agent, files)
        tables = {fold: mentions.without(fold).table(column) for fold in range(FOLDS)}
        hit = read = size = 0
        asked = list(_dialogue_requests(agent, files))[: args.requests]
        for n, (earlier, _, last, answers, fold) in enumerate(asked):
            retriever.mentions = tables[fold]
            request = _read(agent, f"probe-{n}", earlier, False, last)
            if request is None:
                continue
            read += 1
            for rows, _ in rec.rank_examples(request):
                size += len(rows)
                hit += any(answers(str(item)) for item in column[rows])
    print(f"pool {args.pool}, cf_pool {args.cf_pool}: {hit} of {read} requests have an answer in the pool; "
          f"mean pool {size / max(read, 1):.0f} items; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
