"""The classical methods and the served retrieval, scored for the evaluated users of one split.

Every method is trained on the split's training positives only. `vector` and `hybrid` use the serving
building blocks of `retrieval.fusion`: the same taste vector (the user's liked items in the order serving
lists them) and the same fusion formula, with the configured weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from genre_agent.data.catalog import Catalog
from genre_agent.eval.metrics import rank_metrics
from genre_agent.eval.protocol import Split
from genre_agent.retrieval.cf import make_cf
from genre_agent.retrieval.fusion import fuse, popularity, taste_vector
from genre_agent.settings import RetrievalSettings, Settings

PROFILE_GRID = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)
POPULARITY_GRID = (0.0, 0.02, 0.05, 0.1)


class Scorer:
    """Scores of every method for the evaluated users, on one split (all trained on split.X only)."""

    def __init__(self, split: Split, catalog: Catalog, vectors: Callable[[list[str]], np.ndarray],
                 settings: Settings, pos: np.ndarray) -> None:
        self.split, self.catalog, self.settings, self.pos = split, catalog, settings, pos
        self.rows = split.rows[pos]
        self._vectors = vectors
        self.cache: dict[str, np.ndarray] = {}
        self.extras: dict[str, dict[str, Any]] = {}  # columns of methods computed outside `scores`
        self.pop = np.asarray(split.X.sum(0)).ravel().astype(np.float64)

    def scores(self, method: str) -> np.ndarray:
        if method not in self.cache:
            self.cache[method] = getattr(self, f"_{method}")()
        return self.cache[method]

    @functools.cached_property
    def rated(self) -> dict[int, pd.DataFrame]:
        """Each evaluated user's training ratings in the order serving lists them: best rated, most recent
        first (columns i = split column, rating, pos)."""
        before = self.split.before
        mine = before[before.u.isin(self.rows)].sort_values(["u", "rating", "timestamp"],
                                                             ascending=[True, False, False], kind="mergesort")
        return {int(u): group for u, group in mine.groupby("u")}

    def liked(self, row: int) -> list[int]:
        """The split columns a user liked in training, in serving order."""
        mine = self.rated[row]
        return [int(i) for i in mine[mine.pos].i]

    def _random(self) -> np.ndarray:
        return np.zeros((len(self.rows), len(self.split.items)))

    def _pop(self) -> np.ndarray:
        return np.tile(self.pop, (len(self.rows), 1))

    def _cf(self, name: str) -> np.ndarray:
        model = make_cf(name)
        model.fit(self.split.X)
        return model.score(self.rows, self.split.X[self.rows])

    def _itemknn(self) -> np.ndarray:
        return self._cf("itemknn")

    def _ease(self) -> np.ndarray:
        return self._cf("ease")

    def _als(self) -> np.ndarray:
        return self._cf("als")

    def _vector(self) -> np.ndarray:
        """Cosine to the user's taste vector, as served."""
        emb = self._vectors(list(self.split.items))
        profiles = np.zeros((len(self.rows), emb.shape[1]), dtype=np.float32)
        for n, row in enumerate(self.rows):
            taste = taste_vector(lambda cols: emb[cols], self.liked(row))
            if taste is not None:
                profiles[n] = taste
        return profiles @ emb.T

    def _hybrid(self) -> np.ndarray:
        return self.fused(self.settings.retrieval)

    def fused(self, weights: RetrievalSettings) -> np.ndarray:
        """The served fusion of CF, taste-vector similarity and popularity (no query here), every item allowed."""
        everything = np.ones(len(self.split.items), dtype=bool)
        cf = self.scores(weights.cf_model)
        vec = self.scores("vector")
        popular = popularity(self.pop)
        return np.array([fuse(weights, everything, popular, profile=vec[n], cf=cf[n])
                         for n in range(len(self.rows))])


def tune_fusion(val: Split, catalog: Catalog, settings: Settings, vectors: Callable[[list[str]], np.ndarray]
                ) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Pick the fusion weights (CF weight fixed at 1) by sampled NDCG@10 on the validation split."""
    pos = np.arange(len(val.rows))
    scorer = Scorer(val, catalog, vectors, settings, pos)
    table = []
    for w_profile in PROFILE_GRID:
        for w_pop in POPULARITY_GRID:
            weights = settings.retrieval.model_copy(update={"weight_cf": 1.0, "weight_profile": w_profile,
                                                            "weight_popularity": w_pop})
            _, sampled = rank_metrics(scorer.fused(weights), val, pos, (10,))
            table.append({"weight_profile": w_profile, "weight_popularity": w_pop,
                          "val_NDCG@10": float(sampled["NDCG@10"].mean())})
    best = max(table, key=lambda r: r["val_NDCG@10"])
    return {"weight_profile": best["weight_profile"], "weight_popularity": best["weight_popularity"]}, table
