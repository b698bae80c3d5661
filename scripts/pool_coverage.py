"""How many ReDial requests have an answer in the learned ranker's pool, for a pool size (a diagnostic).

    python scripts/pool_coverage.py --pool 500 --cf-pool 100 [--dialogues FILE]

The requests are exactly those `genre-agent fit --training-dialogues FILE` learns conversations from
(`conversation_examples`: each dialogue read with the mentions of the other folds), on the bundled movielens
catalog in GENRE_AGENT_DATA_DIR; the pool's mean size counts the requests that hold an answer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from genre_agent.eval.conversation_fit import conversation_examples
from genre_agent.pipeline import served_catalog
from genre_agent.settings import load_settings

TRAIN = Path("../shared/datasets/redial-train-500/train_data.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, required=True)
    parser.add_argument("--cf-pool", type=int, required=True)
    parser.add_argument("--dialogues", type=Path, default=TRAIN)
    args = parser.parse_args()
    settings = load_settings(catalog="movielens", **{
        "rank.pool": args.pool, "rank.cf_pool": args.cf_pool, "rank.training_dialogues": [args.dialogues],
        "rank.dialogues": [], "rank.requests": []})
    started = time.perf_counter()
    examples, _ = conversation_examples(settings, served_catalog(settings))
    print(f"pool {args.pool}, cf_pool {args.cf_pool}: {len(examples.groups)} of {examples.sources} requests have "
          f"an answer in the pool (mean pool {len(examples.y) / len(examples.groups):.0f} items); "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
