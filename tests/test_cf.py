"""One contract for every CF model, checked on tiny data whose right answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from genre_agent.errors import ConfigError
from genre_agent.retrieval.cf import CF_MODELS, make_cf

# Items 0 and 1 are always liked together, as are 2 and 3; item 4 is liked by one user alone.
LIKES = [[0, 1], [0, 1], [0, 1], [0, 1, 4], [2, 3], [2, 3], [2, 3], [0]]


def _matrix() -> sp.csr_matrix:
    rows = [u for u, items in enumerate(LIKES) for _ in items]
    cols = [i for items in LIKES for i in items]
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(LIKES), 5))


@pytest.fixture(params=sorted(CF_MODELS))
def model_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_training_user_gets_the_co_liked_item(model_name: str) -> None:
    X = _matrix()
    model = make_cf(model_name)
    model.fit(X)
    scores = model.score(np.array([7]), X[[7]])  # user 7 liked only item 0
    unseen = [1, 2, 3, 4]
    assert scores.shape == (1, 5)
    assert unseen[int(np.argmax(scores[0, unseen]))] == 1


def test_new_user_is_folded_in_from_history(model_name: str) -> None:
    X = _matrix()
    model = make_cf(model_name)
    model.fit(X)
    history = sp.csr_matrix(([1.0], ([0], [2])), shape=(1, 5), dtype=np.float32)  # liked item 2
    scores = model.score(np.array([-1]), history)
    assert [0, 1, 3, 4][int(np.argmax(scores[0, [0, 1, 3, 4]]))] == 3


def test_saved_model_scores_the_same(model_name: str, tmp_path: Path) -> None:
    X = _matrix()
    model = make_cf(model_name)
    model.fit(X)
    model.save(tmp_path)
    loaded = make_cf(model_name)
    loaded.load(tmp_path)
    users = np.array([0, 4, 7])
    np.testing.assert_allclose(loaded.score(users, X[users]), model.score(users, X[users]), rtol=1e-5, atol=1e-6)


def test_ease_matches_the_closed_form() -> None:
    X = _matrix()
    ease = make_cf("ease")
    ease.fit(X)
    active = [0, 1, 2, 3, 4]
    G = (X.T @ X).toarray().astype(np.float64) + 500.0 * np.eye(5)
    P = np.linalg.inv(G)
    B = -P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    np.testing.assert_allclose(ease.score(np.arange(8), X), X[:, active].toarray() @ B, rtol=1e-5, atol=1e-9)


def test_unknown_model_name() -> None:
    with pytest.raises(ConfigError, match="ease, itemknn, als"):
        make_cf("svd")


def test_ease_refuses_a_catalog_it_cannot_hold_in_memory_and_says_what_to_use() -> None:
    """A million items with interactions would need ~29 TB of dense matrices: a clear error before any
    allocation, naming the models that scale with the interactions instead."""
    users = sp.csr_matrix((np.ones(1_000_000, dtype=np.float32), (np.zeros(1_000_000, dtype=np.int64),
                                                                   np.arange(1_000_000))), shape=(1, 1_000_000))
    with pytest.raises(ConfigError, match=r'EASE over 1,000,000 items .*cf_model = "itemknn" or "als"'):
        make_cf("ease").fit(users)
