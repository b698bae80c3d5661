"""The evaluation protocol of the reference `tests/reference/baselines.py`: the split and the candidates.

Ratings >= 4 are positives; each user's last positive (by time, ties by item id) is held out; users with at
least 5 positives are evaluated. `full` ranks the test item against every item the user had not rated before
it; `sampled` against 19 items the user never rated (seeded, users in ascending id order).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genre_agent.data.catalog import Catalog

N_NEG = 19


def _id_order(ids: pd.Series) -> np.ndarray:
    """Sorted unique ids: numerically when every id is a number (as the reference sorts them)."""
    unique = ids.unique()
    numeric = pd.to_numeric(pd.Series(unique), errors="coerce")
    if numeric.notna().all():
        return unique[np.argsort(numeric.to_numpy(), kind="stable")]
    return np.sort(unique)


@dataclass
class Split:
    items: np.ndarray  # item ids, the column order
    users: np.ndarray  # user ids, the row order of X
    X: sp.csr_matrix  # training positives
    rows: np.ndarray  # rows of X that are evaluated
    test_item: np.ndarray  # column of each evaluated user's held-out item
    seen: sp.csr_matrix  # evaluated users x items: rated before the test item (excluded in `full`)
    cands: np.ndarray  # evaluated users x 20: test item first, then 19 negatives
    before: pd.DataFrame  # every rating before the test item (or all, for users not evaluated)
    info: dict[str, int] = field(default_factory=dict)

    def training_interactions(self) -> pd.DataFrame:
        """The interactions the split trains on (every rating before each evaluated user's test item;
        everything for the others), with the catalog's columns."""
        before = self.before
        training = before.assign(user_id=self.users[before.u], item_id=self.items[before.i])
        return training[["user_id", "item_id", "rating", "timestamp"]].reset_index(drop=True)

    def subsample(self, n: int | None, seed: int) -> np.ndarray:
        """Positions (into `rows`) of n evaluated users drawn with the seed; all of them if n is None."""
        if n is None or n >= len(self.rows):
            return np.arange(len(self.rows))
        return np.sort(np.random.default_rng(seed).choice(len(self.rows), n, replace=False))


def make_split(interactions: pd.DataFrame, positive_min: float = 4.0, min_pos: int = 5,
               seed: int = 0) -> Split:
    """The reference split (`baselines.split`, mode pos4) on a catalog's interactions."""
    items, users = _id_order(interactions.item_id), _id_order(interactions.user_id)
    iidx = pd.Series(np.arange(len(items)), index=items)
    uidx = pd.Series(np.arange(len(users)), index=users)
    d = interactions.assign(u=uidx[interactions.user_id].to_numpy(), i=iidx[interactions.item_id].to_numpy())
    d = d.sort_values(["u", "timestamp", "i"], kind="mergesort").reset_index(drop=True)
    d["pos"] = d.rating >= positive_min
    d["seq"] = d.groupby("u").cumcount()
    pos = d[d.pos]
    npos = pos.groupby("u").size()
    rows = np.sort(npos.index[npos >= min_pos].to_numpy())
    test = pos.groupby("u").tail(1).set_index("u").loc[rows]
    cut = d.u.map(pd.Series(test.seq.to_numpy(), index=rows)).fillna(np.inf).to_numpy()
    before_mask = d.seq.to_numpy() < cut
    train = d[d.pos.to_numpy() & before_mask]
    X = sp.csr_matrix((np.ones(len(train), dtype=np.float32), (train.u.to_numpy(), train.i.to_numpy())),
                      shape=(len(users), len(items)))
    before = d[before_mask]
    ev = pd.Series(np.arange(len(rows)), index=rows)
    sb = before[before.u.isin(rows)]
    seen = sp.csr_matrix((np.ones(len(sb), dtype=bool), (ev[sb.u].to_numpy(), sb.i.to_numpy())),
                         shape=(len(rows), len(items)))
    ever = sp.csr_matrix((np.ones(len(d), dtype=bool), (d.u.to_numpy(), d.i.to_numpy())),
                         shape=(len(users), len(items)))[rows]
    rng = np.random.default_rng(seed)
    cands = np.empty((len(rows), 1 + N_NEG), dtype=np.int64)
    all_items = np.arange(len(items))
    test_item = test.i.to_numpy()
    for r in range(len(rows)):
        pool = np.setdiff1d(all_items, ever.indices[ever.indptr[r]:ever.indptr[r + 1]], assume_unique=True)
        cands[r, 0] = test_item[r]
        cands[r, 1:] = rng.choice(pool, N_NEG, replace=False)
    info = {"users": len(users), "items": len(items), "eval_users": len(rows), "train_nnz": int(X.nnz)}
    return Split(items, users, X, rows, test_item, seen, cands, before, info)


def validation_split(split: Split, positive_min: float, seed: int = 0) -> Split:
    """A split of the training data of `split` only: every evaluated user's last training positive is held
    out, so nothing tuned on it has seen a test item."""
    return make_split(split.training_interactions(), positive_min, seed=seed)


def training_catalog(catalog: Catalog, split: Split) -> Catalog:
    """The catalog with only the split's training interactions (every rating before each evaluated user's
    test item; everything for the others), in the order a catalog loaded from them has (by user id, then
    time), so the two have the same fingerprint and find the same trained models."""
    training = split.training_interactions().sort_values(["user_id", "timestamp"], kind="mergesort")
    return replace(catalog, interactions=training.reset_index(drop=True))
