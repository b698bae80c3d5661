"""What conversations say about items: which titles people name together, and how often each is named.

`fit` learns it from the dialogues it is given (their dev parts: the catalog ids each dialogue mentions, seeker
and recommender alike) and keeps it with the ranker of conversations. Two features come from it: how often an
item is named in conversations (what people ask about and suggest, which is not what a catalog's raters rate
most), and how often it is named in the same conversation as the titles a request names (what a person who
mentions The Matrix is likely to be suggested). Its items also join the ranking pool, so an item that
conversations pair with the named titles is ranked even when the catalog's own signals missed it.

While learning, a dialogue's own mentions must not explain its answers: `fit` builds the table of each fold of
the dialogues from the other folds (`Mentions.without`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

FOLDS = 5  # the dialogues' folds while learning: each fold's features come from the other four
# an item "often comes up" in conversations that mention a title when at least this many dialogues name both, and
# at least this share of the dialogues naming the title
BESIDE_DIALOGUES = 2
BESIDE_SHARE = 0.05


def fold_of(dialogue_id: str) -> int:
    """The fold of a dialogue while learning (deterministic, independent of the file order)."""
    return int(hashlib.sha256(f"fold:{dialogue_id}".encode()).hexdigest()[:8], 16) % FOLDS


@dataclass(frozen=True)
class Mentions:
    """The catalog ids each learnt-from dialogue mentions, by dialogue id."""

    dialogues: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, dialogues: Iterable[tuple[str, Iterable[str]]]) -> Mentions:
        return cls({str(d): tuple(dict.fromkeys(str(i) for i in ids)) for d, ids in dialogues})

    def without(self, fold: int) -> Mentions:
        """The dialogues outside one fold (what a dialogue of that fold is learnt with)."""
        return Mentions({d: ids for d, ids in self.dialogues.items() if fold_of(d) != fold})

    def as_json(self) -> dict[str, list[str]]:
        return {d: list(ids) for d, ids in self.dialogues.items()}

    def table(self, index: pd.Index) -> MentionTable:
        """The counts over a catalog's items (`index`: its item ids in row order; unknown ids are skipped)."""
        rows, cols = [], []
        for n, ids in enumerate(self.dialogues.values()):
            found = index.get_indexer(list(ids))
            found = np.unique(found[found >= 0])
            rows += [n] * len(found)
            cols += found.tolist()
        m = sp.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)),
                          shape=(len(self.dialogues), len(index)))
        together = (m.T @ m).tocsr()
        together.setdiag(0)
        together.eliminate_zeros()
        return MentionTable(np.asarray(m.sum(0)).ravel(), together, len(self.dialogues))


@dataclass(frozen=True)
class MentionTable:
    """Mention counts per catalog row, and how many dialogues name two rows together."""

    counts: np.ndarray  # dialogues naming each item
    together: sp.csr_matrix  # items x items, zero diagonal
    dialogues: int

    def share(self) -> np.ndarray:
        """log of the share of dialogues naming each item (+1 smoothed): the same scale at any number of
        dialogues."""
        return np.log((self.counts + 1.0) / (self.dialogues + 1.0))

    def often_beside(self, named: np.ndarray, rows: np.ndarray) -> list[list[int]]:
        """For each of `rows`, the `named` rows that dialogues often mention beside it (in at least
        `BESIDE_DIALOGUES` dialogues and `BESIDE_SHARE` of those naming the named row), most often first."""
        if len(named) == 0:
            return [[] for _ in rows]
        together = self.together[named][:, rows].toarray()  # named x rows
        share = together / (self.counts[named] + 1.0)[:, None]
        out = []
        for col in range(len(rows)):
            often = np.flatnonzero((together[:, col] >= BESIDE_DIALOGUES) & (share[:, col] >= BESIDE_SHARE))
            out.append([int(named[i]) for i in often[np.argsort(-share[often, col], kind="stable")]])
        return out

    def with_named(self, named: np.ndarray) -> np.ndarray | None:
        """Per catalog row, the summed share of the dialogues naming each of the `named` rows that also name
        it (how likely it comes up beside them); None when nothing is named."""
        if len(named) == 0:
            return None
        weights = 1.0 / (self.counts[named] + 1.0)
        return np.asarray(self.together[named].T @ weights, dtype=np.float64).ravel()
