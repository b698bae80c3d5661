"""The binary user x item matrix of the interactions a CF model trains on: the positives, or every rating
(what each model trains on is declared in `rank/cf_sources.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass
class InteractionMatrix:
    """The ratings at or above a threshold (the catalog's `positive_min`: its positives; -inf: every rating) as
    a binary CSR matrix; rows are every user who rated anything, items aligned with the catalog's item order."""

    matrix: sp.csr_matrix
    user_index: pd.Index
    item_index: pd.Index

    @classmethod
    def build(cls, interactions: pd.DataFrame, item_ids: pd.Index, positive_min: float) -> InteractionMatrix:
        positives = interactions[interactions.rating >= positive_min]
        users = pd.Index(sorted(interactions.user_id.unique()))
        rows = users.get_indexer(positives.user_id)
        cols = item_ids.get_indexer(positives.item_id)
        matrix = sp.csr_matrix(
            (np.ones(len(positives), dtype=np.float32), (rows, cols)), shape=(len(users), len(item_ids))
        )
        return cls(matrix=matrix, user_index=users, item_index=item_ids)

    def shared(self, min_users: int) -> InteractionMatrix:
        """The same matrix with only the items at least `min_users` users interacted with (the others' columns
        emptied)."""
        kept = (np.asarray(self.matrix.sum(0)).ravel() >= min_users).astype(np.float32)
        matrix = (self.matrix @ sp.diags(kept)).tocsr()
        matrix.eliminate_zeros()
        return InteractionMatrix(matrix=matrix, user_index=self.user_index, item_index=self.item_index)

    def user_row(self, user_id: str) -> int:
        """Row of a training user, or -1 if the user has no interactions."""
        return int(self.user_index.get_indexer([user_id])[0])

    def history(self, item_ids: list[str], weight: float = 1.0) -> sp.csr_matrix:
        """A one-row matrix marking the given items with `weight` (a fold-in history)."""
        cols = np.unique(self.item_index.get_indexer(item_ids))
        cols = cols[cols >= 0]
        return sp.csr_matrix(
            (np.full(len(cols), weight, dtype=np.float32), (np.zeros(len(cols), dtype=np.int64), cols)),
            shape=(1, len(self.item_index)),
        )
