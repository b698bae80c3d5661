"""The fusion of retrieval signals and the user's taste vector: one formula for serving and for evaluation.

fused = Σ weight × (signal min-max-normalised over the allowed items), over the signals a request has:
popularity (log of how many users liked the item; for a user the catalog has no history of, likes
weighed by how recent they are, with its own weight), similarity to the query, similarity to the user's taste
vector, and CF. The taste vector is the normalised mean embedding of the user's first PROFILE_ITEMS liked
items, best rated and most recent first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pandas as pd

from genre_agent.settings import RetrievalSettings

PROFILE_ITEMS = 50  # liked items that form the user's taste vector
Id = TypeVar("Id", str, int)  # an item id (serving) or a matrix column (evaluation)


def minmax(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the min and max over the masked entries (all zeros if they are constant)."""
    sub = values[mask]
    if sub.size == 0:
        return np.zeros_like(values)
    lo, hi = float(sub.min()), float(sub.max())
    return np.zeros_like(values) if hi <= lo else (values - lo) / (hi - lo)


def unit_mean(vectors: np.ndarray) -> np.ndarray | None:
    """The mean of the rows scaled to length 1 (None if there are none or it is zero)."""
    if len(vectors) == 0:
        return None
    mean = vectors.mean(0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else None


def taste_vector(vectors: Callable[[list[Id]], np.ndarray], liked: list[Id]) -> np.ndarray | None:
    """The user's taste: the unit mean embedding of their first PROFILE_ITEMS liked items (`liked` is best
    rated, most recent first); None for a user who liked nothing."""
    return unit_mean(vectors(liked[:PROFILE_ITEMS])) if liked else None


def popularity(liked_by: np.ndarray) -> np.ndarray:
    """The popularity signal: log(1 + users who liked the item)."""
    return np.log1p(np.asarray(liked_by, dtype=np.float64))


# a like's age is counted from the time by which all but this share of the likes had happened, so that a
# burst of likes after a quiet spell (a chat's feedback stored years after the catalog's files end) counts as
# recent, not as all that is recent
NOW_SHARE = 0.01


def recent_popularity(item_ids: pd.Index, item_of_like: pd.Series, time_of_like: pd.Series,
                      half_life_days: float) -> np.ndarray:
    """The popularity signal of what is liked now: log(1 + Σ 2^-(age / half-life)) over an item's likes, a
    like's age counted from the time by which 99% of the likes had happened (`NOW_SHARE`; newer likes count
    whole), so the signal neither fades as the data gets older nor lets a few new likes outweigh it all."""
    seconds = time_of_like.to_numpy(dtype=np.float64)
    if not len(seconds):
        return np.zeros(len(item_ids))
    now = np.quantile(seconds, 1.0 - NOW_SHARE, method="higher")
    weight = np.exp2(-np.maximum(now - seconds, 0.0) / (half_life_days * 86400.0))
    summed = pd.Series(weight, index=item_of_like.to_numpy()).groupby(level=0).sum()
    return np.log1p(summed.reindex(item_ids, fill_value=0.0).to_numpy(dtype=np.float64))


def new_user_popularity_weight(weights: RetrievalSettings, named: int) -> float:
    """Popularity's weight for a user the catalog has no history of, who named `named` titles (liked or "more
    like"): a prior that fades as they say more, `weight_popularity_new_user / (1 + named)`."""
    return weights.weight_popularity_new_user / (1 + named)


def fuse(weights: RetrievalSettings, mask: np.ndarray, popular: np.ndarray, *, query: np.ndarray | None = None,
         profile: np.ndarray | None = None, cf: np.ndarray | None = None,
         popularity_weight: float | None = None, new_user: bool = False) -> np.ndarray:
    """The weighted sum of the min-max-normalised signals a request has (None = absent), every item scored;
    the caller drops the items outside `mask`. Popularity weighs `popularity_weight` when given (a new user,
    see `new_user_popularity_weight`), else `weight_popularity`; the taste profile of a `new_user` (made of
    what they said they liked) weighs `weight_profile_new_user`."""
    w_pop = weights.weight_popularity if popularity_weight is None else popularity_weight
    w_profile = weights.weight_profile_new_user if new_user else weights.weight_profile
    fused = w_pop * minmax(popular, mask)
    for weight, signal in ((weights.weight_query, query), (w_profile, profile), (weights.weight_cf, cf)):
        if signal is not None:
            fused += weight * minmax(signal, mask)
    return fused
