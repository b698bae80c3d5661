"""Collaborative-filtering scorers behind one contract: `fit(user_items)` and `score(users, user_items)`.

`user_items` is a binary users x items CSR matrix of positive interactions. `score` returns one row of
item scores per requested user; `users[i] = -1` means "not a training user": the model folds in the given
history row instead (a session's likes, a new user). EASE, item-kNN and ALS follow the formulas of
`shared/baselines.py` exactly, so evaluation can reproduce its numbers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Protocol

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genre_agent.errors import ConfigError


class CFModel(Protocol):
    name: ClassVar[str]

    def fit(self, user_items: sp.csr_matrix) -> None: ...

    def score(self, users: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...

    def load(self, directory: Path) -> None: ...


class EASE:
    """Embarrassingly shallow autoencoder (Steck 2019), closed form on the items that have positives."""

    name: ClassVar[str] = "ease"

    def __init__(self, lam: float = 500.0) -> None:
        self.lam = lam
        self.active = np.zeros(0, dtype=np.int64)
        self.B = np.zeros((0, 0), dtype=np.float32)
        self.n_items = 0

    def fit(self, user_items: sp.csr_matrix) -> None:
        from scipy.linalg import lapack

        self.n_items = user_items.shape[1]
        self.active = np.flatnonzero(np.asarray(user_items.sum(0)).ravel() > 0)
        _check_memory_for_ease(len(self.active))
        Xa = user_items[:, self.active].astype(np.float64)
        G = (Xa.T @ Xa).toarray()
        G[np.diag_indices_from(G)] += self.lam
        c, info = lapack.dpotrf(G, lower=0, overwrite_a=1)
        if info != 0:
            raise ConfigError(f"EASE: the Gram matrix is not positive definite (info={info}); raise lambda.")
        P, info = lapack.dpotri(c, lower=0, overwrite_c=1)
        P = np.triu(P) + np.triu(P, 1).T
        B = P / (-np.diag(P))
        B[np.diag_indices_from(B)] = 0.0
        self.B = B

    def score(self, users: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        X = user_items[:, self.active].tocsr().astype(np.float64)
        S = np.zeros((X.shape[0], self.n_items))
        for r in range(X.shape[0]):  # row-wise gather of B: far faster than sparse @ dense on a memory map
            cols = X.indices[X.indptr[r] : X.indptr[r + 1]]
            S[r, self.active] = X.data[X.indptr[r] : X.indptr[r + 1]] @ np.asarray(self.B[cols], dtype=np.float64)
        return S

    def save(self, directory: Path) -> None:
        np.save(directory / "ease_B.npy", self.B.astype(np.float32))
        np.save(directory / "ease_active.npy", np.append(self.active, self.n_items))

    def load(self, directory: Path) -> None:
        self.B = np.load(directory / "ease_B.npy", mmap_mode="r")
        stored = np.load(directory / "ease_active.npy")
        self.active, self.n_items = stored[:-1], int(stored[-1])


EASE_DENSE_COPIES = 4  # n x n float64: the Gram matrix (inverted in place) and the copies symmetrising makes


def _check_memory_for_ease(n: int) -> None:
    """EASE holds dense n x n matrices: refuse, with what to do instead, when they cannot fit in this
    machine's available memory (100k items need about 300 GB) rather than be killed half-way."""
    need = EASE_DENSE_COPIES * n * n * 8
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not every platform reports it: then try
        return
    if need > available:
        raise ConfigError(
            f"EASE over {n:,} items with interactions needs about {need / 2**30:,.1f} GiB of memory (dense "
            f"{n:,} x {n:,} matrices); {available / 2**30:,.1f} GiB are available. Set retrieval.cf_model = "
            '"itemknn" or "als" (GENRE_AGENT_RETRIEVAL__CF_MODEL=itemknn), which scale with the interactions.')


class ItemKNN:
    """Item-item cosine similarity over the binary interaction matrix."""

    name: ClassVar[str] = "itemknn"

    def __init__(self) -> None:
        self.sim = sp.csr_matrix((0, 0))

    def fit(self, user_items: sp.csr_matrix) -> None:
        Xc = user_items.tocsc().astype(np.float64)
        norms = np.sqrt(np.asarray(Xc.multiply(Xc).sum(0)).ravel())
        norms[norms == 0] = 1.0
        Xn = Xc @ sp.diags(1.0 / norms)
        sim = (Xn.T @ Xn).tocsr()
        sim.setdiag(0)
        sim.eliminate_zeros()
        self.sim = sim

    def score(self, users: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return np.asarray((user_items.astype(np.float64) @ self.sim).toarray())

    def save(self, directory: Path) -> None:
        sp.save_npz(directory / "itemknn_sim.npz", self.sim)

    def load(self, directory: Path) -> None:
        self.sim = sp.load_npz(directory / "itemknn_sim.npz").tocsr()


class ALS:
    """Implicit-feedback ALS from the `implicit` package (same parameters as the reference baselines)."""

    name: ClassVar[str] = "als"
    PARAMS: ClassVar[dict[str, float]] = dict(factors=64, regularization=0.05, alpha=2.0, iterations=20)

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._model: object | None = None

    def _new_model(self) -> object:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit checks (and warns about) BLAS threads here
            return AlternatingLeastSquares(random_state=self.seed, num_threads=1,
                                           calculate_training_loss=False, **self.PARAMS)

    def fit(self, user_items: sp.csr_matrix) -> None:
        from threadpoolctl import threadpool_limits

        model = self._new_model()
        with threadpool_limits(1, "blas"):
            model.fit(user_items.tocsr().astype(np.float32), show_progress=False)  # type: ignore[attr-defined]
        self._model = model

    def score(self, users: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        model = self._model
        if model is None:
            raise ConfigError("ALS: call fit() or load() before score().")
        uf = np.asarray(model.user_factors)  # type: ignore[attr-defined]
        itf = np.asarray(model.item_factors, dtype=np.float64)  # type: ignore[attr-defined]
        rows = []
        for r, u in enumerate(np.asarray(users)):
            if u >= 0:
                rows.append(uf[u].astype(np.float64))
            else:
                history = user_items[r].tocsr().astype(np.float32)
                rows.append(np.asarray(model.recalculate_user(0, history), dtype=np.float64).ravel())  # type: ignore[attr-defined]
        return np.vstack(rows) @ itf.T if rows else np.zeros((0, itf.shape[0]))

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(user factors, item factors) of the fitted or loaded model, rows in the matrix's order."""
        if self._model is None:
            raise ConfigError("ALS: call fit() or load() before factors().")
        return np.asarray(self._model.user_factors), np.asarray(self._model.item_factors)  # type: ignore[attr-defined]

    def save(self, directory: Path) -> None:
        model = self._model
        np.save(directory / "als_user.npy", np.asarray(model.user_factors))  # type: ignore[union-attr]
        np.save(directory / "als_item.npy", np.asarray(model.item_factors))  # type: ignore[union-attr]

    def load(self, directory: Path) -> None:
        model = self._new_model()
        model.user_factors = np.load(directory / "als_user.npy")  # type: ignore[attr-defined]
        model.item_factors = np.load(directory / "als_item.npy")  # type: ignore[attr-defined]
        self._model = model


def imported_als(directory: Path, user_index: pd.Index, item_index: pd.Index) -> ALS:
    """ALS whose factors were trained elsewhere, e.g. by Spark MLlib on logs too large for this machine:
    `directory/userFactors` and `directory/itemFactors` as Parquet with columns `id` and `features` (what
    `model.userFactors.write.parquet(...)` writes), ids being the catalog's user and item ids. Users and items
    the export does not have get zero factors (new users are folded in from their history as always)."""
    users = _read_factors(directory / "userFactors")
    items = _read_factors(directory / "itemFactors")
    if users.shape[1] != items.shape[1]:
        raise ConfigError(f"{directory}: user factors have {users.shape[1]} dimensions, item factors "
                          f"{items.shape[1]}; export both from the same model.")
    item_rows = item_index.get_indexer(items.index)
    if not (item_rows >= 0).any():
        raise ConfigError(f"{directory / 'itemFactors'}: none of its ids is an item id of the catalog (e.g. "
                          f"{items.index[0]!r}). Spark's ALS needs integer ids: map them back to the catalog's "
                          "item ids before exporting.")
    model = ALS()
    als = model._new_model()
    uf = np.zeros((len(user_index), users.shape[1]), dtype=np.float32)
    user_rows = user_index.get_indexer(users.index)
    uf[user_rows[user_rows >= 0]] = users.to_numpy(np.float32)[user_rows >= 0]
    itf = np.zeros((len(item_index), items.shape[1]), dtype=np.float32)
    itf[item_rows[item_rows >= 0]] = items.to_numpy(np.float32)[item_rows >= 0]
    als.user_factors, als.item_factors = uf, itf  # type: ignore[attr-defined]
    model._model = als
    return model


def _read_factors(path: Path) -> pd.DataFrame:
    """One factor table (a Parquet file or a folder of part files) as a frame indexed by id, one column per
    dimension."""
    try:
        table = pd.read_parquet(path, columns=["id", "features"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: cannot read ALS factors ({exc}). Expected Parquet with columns id and "
                          "features, as Spark writes model.userFactors / model.itemFactors.") from exc
    lengths = {len(f) for f in table["features"]}
    if len(lengths) != 1:
        raise ConfigError(f"{path}: the features arrays have different lengths {sorted(lengths)[:5]}.")
    return pd.DataFrame(np.vstack(table["features"].to_numpy()), index=table["id"].astype(str).to_numpy())


CF_MODELS: dict[str, type[EASE] | type[ItemKNN] | type[ALS]] = {
    "ease": EASE, "itemknn": ItemKNN, "als": ALS,
}


def make_cf(name: str) -> CFModel:
    try:
        return CF_MODELS[name]()
    except KeyError:
        raise ConfigError(f"Unknown CF model '{name}'. Choose one of: {', '.join(CF_MODELS)}.") from None
