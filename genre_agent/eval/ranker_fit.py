"""`genre-agent fit`: train the learned ranker of a catalog on its own interaction histories.

The protocol of evaluation, one level down: each user's last positive is held out (`make_split` on the
catalog's interactions), the service is opened on what remains (`training_catalog`), and for every held-out
user the served path builds the features (`Retriever.rank_examples`, the same code that serves) of two
requests: its ranking pool (kept when the held-out item is in it) and a shortlist of the held-out item and
19 items the user never rated (as the sampled protocol draws them). The held-out item is the one relevant
item of each. The model is saved for the catalog state it was asked for, so the
service on that state uses it.

Run on an evaluation's training part (what `eval --methods served` opens), the held-out items are that
training part's own last positives (`validation_split`): the evaluation's test items are never seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from genre_agent.data.catalog import Catalog
from genre_agent.errors import CatalogError, DataDirError
from genre_agent.eval.protocol import N_NEG, make_split, training_catalog
from genre_agent.filters import Filters
from genre_agent.pipeline import Progress, build, catalog_state, ranker_dir
from genre_agent.rank.ranker import Ranker, ranker_path, train
from genre_agent.settings import Settings


@dataclass
class FitReport:
    path: str
    users: int  # users learnt from
    requests: int  # their served pools that held the held-out item, and their sampled shortlists
    rows: int
    trees: int
    seconds: float  # building the examples and training
    size_bytes: int
    importance: dict[str, float]  # each feature group's share of the total gain

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class Examples:
    X: np.ndarray  # features, one row per (request, item)
    y: np.ndarray  # 1 for the held-out item
    groups: np.ndarray  # rows per request, in order
    users: int  # users they come from


def examples(settings: Settings, catalog: Catalog, progress: Progress | None = None, seed: int = 0) -> Examples:
    """What the ranker of this catalog state learns from (see the module doc)."""
    split = make_split(catalog.interactions, catalog.positive_min, seed=seed)
    if not len(split.rows):
        raise CatalogError(f"catalog '{catalog.name}' has no user with 5 positive ratings to learn a ranker "
                           "from; keep rank.enabled = false (the hand-weighted order).")
    retriever, _ = build(settings, training_catalog(catalog, split), progress, for_fit=True)
    filters = settings.rules.merge(Filters())  # what a request without filters of its own gets
    rng = np.random.default_rng(seed)
    positions = split.subsample(settings.rank.users, seed)
    column = retriever.items.index
    X, y, groups = [], [], []
    for n, position in enumerate(positions):
        user = str(split.users[split.rows[position]])
        target = int(column.get_loc(str(split.items[split.test_item[position]])))
        view = retriever.user_view(user)
        unrated = np.flatnonzero(~column.isin(list(view.seen)))
        others = unrated[unrated != target]
        shortlist = np.append(target, rng.choice(others, min(N_NEG, len(others)), replace=False))
        for rows, features in retriever.rank_examples(view, filters, [shortlist]):
            label = (rows == target).astype(np.float32)
            if label.any():  # a pool without the held-out item teaches nothing
                X.append(features)
                y.append(label)
                groups.append(len(rows))
        if progress:
            progress("ranker examples", n + 1, len(positions))
    if not groups:
        raise CatalogError(f"catalog '{catalog.name}': no held-out item was among its user's candidates, so "
                           "there is nothing to learn from; keep rank.enabled = false.")
    return Examples(np.vstack(X), np.concatenate(y), np.array(groups), len(positions))


def fit(settings: Settings, catalog: Catalog, progress: Progress | None = None, seed: int = 0) -> FitReport:
    """Train and save the ranker for this catalog state (see the module doc)."""
    started = time.perf_counter()
    data = examples(settings, catalog, progress, seed)
    if progress:
        progress("training the ranker", 0, 1)
    ranker: Ranker = train(data.X, data.y, data.groups, seed)
    ranker.info.update(seconds=round(time.perf_counter() - started, 1), users=data.users)
    path = ranker_path(ranker_dir(settings), catalog_state(catalog))
    ranker.save(path)
    if progress:
        progress("training the ranker", 1, 1)
    info = ranker.info
    return FitReport(str(path), data.users, len(data.groups), info["rows"], info["trees"], info["seconds"],
                     path.stat().st_size, ranker.importance())


def ensure_fitted(settings: Settings, catalog: Catalog, progress: Progress | None = None) -> FitReport | None:
    """Train the ranker for this catalog state unless a readable one is trained already (or the ranker is
    off)."""
    if not settings.rank.enabled:
        return None
    try:
        Ranker.load(ranker_path(ranker_dir(settings), catalog_state(catalog)))
        return None
    except DataDirError:  # missing, unreadable, or of other features
        return fit(settings, catalog, progress)
