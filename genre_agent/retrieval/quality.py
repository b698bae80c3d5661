"""Quality and popularity as orders ("the best", "hidden gems", "the most popular"), from the catalog's ratings.

An item's quality is its mean rating pulled toward the catalog's mean by as many average ratings as the item at
the PRIOR_SHARE quantile of rating counts has (a Bayesian average: three 5-star ratings do not beat three hundred
4.5s). Hidden gems are the best of the items rated by fewer people than the most rated tenth of the catalog, and
by at least as many as the median rated item.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

POPULAR_SHARE = 0.9  # "hidden": rated by fewer people than the items of the top (1 - this) of rating counts
PRIOR_SHARE = 0.75  # the prior's weight: the rating count of the item at this quantile


class Quality:
    """Per catalog row: how many rated the item and its Bayesian average rating."""

    def __init__(self, index: pd.Index, interactions: pd.DataFrame) -> None:
        stats = interactions.groupby("item_id").rating.agg(["count", "mean"]).reindex(index)
        self.count = stats["count"].fillna(0).to_numpy(dtype=np.float64)
        mean = stats["mean"].to_numpy(dtype=np.float64)
        rated = self.count > 0
        self.prior = float(np.quantile(self.count[rated], PRIOR_SHARE)) if rated.any() else 1.0
        self.least = float(np.median(self.count[rated])) if rated.any() else 1.0
        overall = float(interactions.rating.mean()) if len(interactions) else 0.0
        self.average = np.where(rated, (np.nan_to_num(mean) * self.count + self.prior * overall)
                                / (self.count + self.prior), overall)
        self.mean = np.where(rated, np.nan_to_num(mean), np.nan)
        self.famous = float(np.quantile(self.count[rated], POPULAR_SHARE)) if rated.any() else 0.0

    def order(self, kind: str, mask: np.ndarray, popularity: np.ndarray) -> np.ndarray:
        """Scores to sort the allowed items of `mask` by (-inf outside it): "best", "hidden" or "popular"."""
        if kind == "popular":
            score = popularity.astype(np.float64)
        elif kind == "hidden":
            gems = (self.count >= self.least) & (self.count < self.famous)
            score = np.where(gems, self.average, self.average - 10.0)  # the little known first, others after
        else:
            score = self.average
        return np.where(mask, score, -np.inf)
