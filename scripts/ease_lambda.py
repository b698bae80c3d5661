"""Sampled NDCG@10 of popularity and of EASE at several regularisations, on a catalog's validation split (the
training part's own last positives: no test item is read): EASE on the positives, and EASE on every rating of
the items at least two users rated, fed every item the user rated (the ranker's `ease_rated`). A diagnostic of
how far CF alone goes.

    python scripts/ease_lambda.py [--catalog goodbooks] [--users 3000]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genre_agent.data.catalog import load_catalog
from genre_agent.data.interactions import InteractionMatrix
from genre_agent.eval.protocol import make_split, validation_split
from genre_agent.rank.features import RATED_MIN_USERS
from genre_agent.retrieval.cf import EASE

LAMBDAS = (20, 50, 100, 200, 500, 1000, 2000)


def ndcg_at_10(scores: np.ndarray) -> float:
    """Mean NDCG@10 of column 0 (the held-out item) among each row's candidates, ties counted half."""
    target = scores[:, :1]
    rank = (scores[:, 1:] > target).sum(1) + 0.5 * (scores[:, 1:] == target).sum(1)
    return float(np.where(rank < 10, 1 / np.log2(rank + 2), 0).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default="goodbooks")
    parser.add_argument("--users", type=int, default=3000)
    args = parser.parse_args()
    catalog = load_catalog(args.catalog)
    val = validation_split(make_split(catalog.interactions, catalog.positive_min), catalog.positive_min)
    picked = val.subsample(args.users, 0)
    rows, cands = val.rows[picked], val.cands[picked]
    before = val.before  # every rating the validation split trains on
    every = sp.csr_matrix((np.ones(len(before), dtype=np.float32), (before.u.to_numpy(), before.i.to_numpy())),
                          shape=val.X.shape)
    every.data[:] = 1.0
    rated = InteractionMatrix(every, pd.Index(val.users), pd.Index(val.items))
    shared = rated.shared(RATED_MIN_USERS).matrix
    print(f"popularity: {ndcg_at_10(np.asarray(val.X.sum(0)).ravel()[cands]):.3f}")
    for lam in LAMBDAS:
        model = EASE(lam)
        model.fit(val.X)
        positives = ndcg_at_10(np.take_along_axis(model.score(rows, val.X[rows]), cands, 1))
        model = EASE(lam)
        model.fit(shared)
        ratings = ndcg_at_10(np.take_along_axis(model.score(rows, every[rows]), cands, 1))
        print(f"EASE lambda {lam}: positives {positives:.3f}, every rating {ratings:.3f}")


if __name__ == "__main__":
    main()
