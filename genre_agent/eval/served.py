"""What `recommend` serves, measured on the reference protocol: the service opened on a split's training part
answers each evaluated user through `Recommender.run`, the path every front-end uses.

`full` asks for the user's top k among every item they had not rated (the served answer as is); `sampled`
gives the same request a shortlist of the user's 20 candidates (`Filters.only_items`), so the served order
of those 20 is what is scored. Items an answer does not list tie below the listed ones (the metrics break
ties at random), so NDCG@k, HR@k, P@k and F1@k at cut-offs up to the answer's length are exact and MRR counts
the listed items only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from genre_agent.data.catalog import Catalog
from genre_agent.eval.protocol import Split, training_catalog
from genre_agent.eval.ranker_fit import ensure_fitted
from genre_agent.filters import Filters
from genre_agent.pipeline import Progress, Recommender, Run
from genre_agent.schemas import RecommendRequest
from genre_agent.settings import Settings


def open_on(settings: Settings, catalog: Catalog, split: Split, progress: Progress | None = None) -> Recommender:
    """The service as `recommend` opens it, on the split's training part (no stored feedback), with the
    learned ranker of that training part, trained first if it is not yet (`ranker_fit` holds out the training
    part's own last positives, so the split's test items are never learnt from)."""
    training = training_catalog(catalog, split)
    ensure_fitted(settings, training, progress)
    return Recommender.open(settings, progress=progress, catalog=training)


def request_for(split: Split, position: int, protocol: str, k: int) -> RecommendRequest:
    """The request of one evaluated user (`position` into `split.rows`) on a protocol."""
    user = str(split.users[split.rows[position]])
    if protocol == "sampled":
        shortlist = [str(i) for i in split.items[split.cands[position]]]
        return RecommendRequest(user_id=user, k=k, filters=Filters(only_items=shortlist))
    return RecommendRequest(user_id=user, k=k)


def served_lists(rec: Recommender, split: Split, pos: np.ndarray, protocol: str, k: int,
                 on_run: Callable[[int, Run], None] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[list[str]]:
    """The ids each evaluated user in `pos` is served, best first (`on_run` sees every answer)."""
    lists = []
    for n, position in enumerate(pos):
        run = rec.run(request_for(split, int(position), protocol, k))
        if on_run is not None:
            on_run(n, run)
        lists.append([r.item_id for r in run.result.recommendations])
        if progress:
            progress(n + 1, len(pos))
    return lists


def list_scores(lists: list[list[str]], split: Split) -> np.ndarray:
    """Scores (users x split items) that order each user's served list first and tie everything else."""
    column = pd.Series(np.arange(len(split.items)), index=split.items.astype(str))
    S = np.zeros((len(lists), len(split.items)))
    for n, ids in enumerate(lists):
        cols = column.reindex(ids).to_numpy()
        known = ~np.isnan(cols)
        S[n, cols[known].astype(int)] = (len(ids) - np.arange(len(ids)))[known]
    return S
