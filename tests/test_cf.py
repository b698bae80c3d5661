"""One contract for every CF model, checked on tiny data whose right answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genre_agent.data.interactions import InteractionMatrix
from genre_agent.errors import ConfigError
from genre_agent.retrieval.cf import ALS, CF_MODELS, make_cf

from conftest import TINY, tiny_settings

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


def test_only_items_enough_users_share_are_kept() -> None:
    ratings = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["x", "y", "x", "z", "z"],
                            "rating": [1.0, 5.0, 2.0, 4.0, 3.0]})
    rated = InteractionMatrix.build(ratings, pd.Index(["x", "y", "z"]), -np.inf)
    shared = rated.shared(2)
    assert shared.matrix.toarray().tolist() == [[1, 0, 0], [1, 0, 1], [0, 0, 1]]  # y: rated by one user only
    assert shared.user_index.equals(rated.user_index) and rated.matrix.nnz == 5


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


def _spark_layout(root: Path, name: str, ids: list[int] | list[str], factors: np.ndarray) -> None:
    """A factor table as Spark's `model.userFactors.write.parquet(root/name)` lays it out (string ids: mapped
    back from Spark's integer ids before export)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / name
    folder.mkdir(parents=True)
    table = pa.table({"id": pa.array(ids, pa.string() if isinstance(ids[0], str) else pa.int32()),
                      "features": pa.array([list(map(float, f)) for f in factors], pa.list_(pa.float32()))})
    pq.write_table(table, folder / "part-00000-5e1b.snappy.parquet")
    (folder / "_SUCCESS").write_text("")


def test_als_factors_trained_elsewhere_are_loaded_and_score_as_trained(tmp_path: Path) -> None:
    """ALS trained on a sample (as Spark MLlib would on the full log), exported as Parquet with the catalog's
    ids, serves the agent: the retriever's CF scores are the exported model's, users of the catalog who are not
    in the export get zero factors, and a new user is folded in from the item factors."""
    from genre_agent.data.catalog import load_catalog
    from genre_agent.data.interactions import InteractionMatrix
    from genre_agent.pipeline import Recommender

    catalog = load_catalog(str(TINY))
    matrix = InteractionMatrix.build(catalog.interactions, catalog.items.index, catalog.positive_min)
    trained = ALS()
    trained.fit(matrix.matrix)
    user_factors, item_factors = trained.factors()
    export = tmp_path / "als-export"
    exported_users = list(matrix.user_index[:-1])  # the last catalog user is not in the export
    _spark_layout(export, "userFactors", [str(u) for u in exported_users], user_factors[:-1])
    _spark_layout(export, "itemFactors", [int(i) for i in matrix.item_index], item_factors)
    settings = tiny_settings(tmp_path / "d", **{"retrieval.cf_model": "als", "retrieval.als_factors": export})
    rec = Recommender.open(settings)
    cf = rec.retriever.cf
    assert cf is not None and not (tmp_path / "d" / "cf").exists()  # nothing trained here
    items = item_factors.astype(np.float64)
    history = matrix.history([str(matrix.item_index[0])])
    np.testing.assert_allclose(cf.score(np.array([-1]), history), trained.score(np.array([-1]), history),
                               rtol=1e-4, atol=1e-5)  # folded in from the same item factors
    rows = np.arange(len(exported_users))
    np.testing.assert_allclose(cf.score(rows, matrix.matrix[rows]),
                               user_factors[rows] @ items.T, rtol=1e-5, atol=1e-6)
    missing = np.array([len(matrix.user_index) - 1])
    assert not cf.score(missing, matrix.matrix[missing]).any()
    assert rec.recommend(query="space adventure", k=2).recommendations


def test_als_factors_that_do_not_fit_the_catalog_are_refused_with_the_fix(tmp_path: Path) -> None:
    import pandas as pd

    from genre_agent.pipeline import Recommender
    from genre_agent.retrieval.cf import imported_als

    _spark_layout(tmp_path / "x", "userFactors", [1, 2], np.ones((2, 3)))
    _spark_layout(tmp_path / "x", "itemFactors", [901, 902], np.ones((2, 3)))  # Spark's own integer ids
    with pytest.raises(ConfigError, match="map them back to the catalog's item ids"):
        imported_als(tmp_path / "x", pd.Index(["1", "2"]), pd.Index(["1", "2", "3"]))
    with pytest.raises(ConfigError, match="cannot read ALS factors"):
        imported_als(tmp_path / "nowhere", pd.Index(["1"]), pd.Index(["1"]))
    with pytest.raises(ConfigError, match='cf_model = "als"'):
        Recommender.open(tiny_settings(tmp_path / "d", **{"retrieval.als_factors": tmp_path / "x"}))
