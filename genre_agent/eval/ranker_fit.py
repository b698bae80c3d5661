"""`genre-agent fit`: train the learned ranker of a catalog on its own interaction histories (and conversations).

The protocol of evaluation, one level down: each user's last positive is held out (`make_split` on the
catalog's interactions), the service is opened on what remains (`training_catalog`), and for every held-out
user the served path builds the features (`Retriever.rank_examples`, the same code that serves) of two
requests: its ranking pool (kept when the held-out item is in it) and a shortlist of the held-out item and
19 items the user never rated (as the sampled protocol draws them). The held-out item is the one relevant
item of each. Then again one level further down, `rank.depths` times in all: the positive before it held
out, on the history before that (more requests from the same users: on ml-latest-small's validation
shortlists NDCG@10 rose from 0.769 with one to 0.793 with three, EASE's own order 0.736). The model is
saved for the catalog state it was asked for, so the service on that state uses it.

Given dialogues and request sets (`rank.dialogues`, `rank.requests`), it also trains the ranker of
conversations on their dev parts (`conversation_fit`), on the catalog as given, and keeps both in one file.

Run on an evaluation's training part (what `eval --methods served` opens), the held-out items are that
training part's own last positives (`validation_split`): the evaluation's test items are never seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from genre_agent.data.catalog import Catalog
from genre_agent.errors import CatalogError, ConfigError, DataDirError
from genre_agent.eval.protocol import N_NEG, Split, make_split, training_catalog
from genre_agent.filters import Filters
from genre_agent.pipeline import Progress, build, catalog_state, ranker_dir
from genre_agent.rank.examples import Collector, Examples
from genre_agent.rank.features import GROUPS
from genre_agent.rank.ranker import Ranker, feature_settings, ranker_path, train
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
    conversations: int = 0  # dialogue turns and requests read for the ranker of conversations (0: not trained)
    conversation_requests: int = 0  # those whose ranking pool held an answer
    conversation_rows: int = 0
    conversation_importance: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def examples(settings: Settings, catalog: Catalog, progress: Progress | None = None, seed: int = 0) -> Examples:
    """What the ranker of this catalog state learns from (see the module doc): each user's last positive held
    out, then (`rank.depths`) the one before it on the history before that, and so on."""
    collected = Collector()
    users: set[str] = set()
    part = catalog
    for depth in range(settings.rank.depths):
        try:
            split = make_split(part.interactions, part.positive_min, seed=seed)
        except ValueError:  # too few items left to draw a user's 19 negatives from (a tiny catalog)
            if depth == 0:
                raise
            break
        if not len(split.rows):
            break
        users |= _held_out(settings, part, split, collected, progress, seed, depth)
        part = training_catalog(part, split)
    if not users:
        raise CatalogError(f"catalog '{catalog.name}' has no user with 5 positive ratings to learn a ranker "
                           "from; keep rank.enabled = false (the hand-weighted order).")
    if not collected:
        raise CatalogError(f"catalog '{catalog.name}': no held-out item was among its user's candidates, so "
                           "there is nothing to learn from; keep rank.enabled = false.")
    return collected.build(len(users))


def _held_out(settings: Settings, catalog: Catalog, split: Split, collected: Collector,
              progress: Progress | None, seed: int, depth: int) -> set[str]:
    """Collect the requests of the split's held-out users (see the module doc); the users read."""
    retriever, _ = build(settings, training_catalog(catalog, split), progress, for_fit=True)
    filters = settings.rules.merge(Filters())  # what a request without filters of its own gets
    rng = np.random.default_rng(seed + depth)
    positions = split.subsample(settings.rank.users, seed)
    column = retriever.items.index
    read = set()
    for n, position in enumerate(positions):
        user = str(split.users[split.rows[position]])
        read.add(user)
        target = int(column.get_loc(str(split.items[split.test_item[position]])))
        view = retriever.user_view(user)
        unrated = np.flatnonzero(~column.isin(list(view.seen)))
        others = unrated[unrated != target]
        shortlist = np.append(target, rng.choice(others, min(N_NEG, len(others)), replace=False))
        for rows, features in retriever.rank_examples(view, filters, [shortlist]):
            collected.add(features, (rows == target).astype(np.float32))
        if progress:
            progress(f"ranker examples ({depth + 1} of {settings.rank.depths} held out)", n + 1, len(positions))
    return read


def fit(settings: Settings, catalog: Catalog, progress: Progress | None = None, seed: int = 0) -> FitReport:
    """Train and save the ranker for this catalog state (see the module doc)."""
    # here: it reads the dialogue evaluation, which imports this module (through `served`)
    from genre_agent.eval.conversation_fit import conversation_examples

    started = time.perf_counter()
    data = examples(settings, catalog, progress, seed)
    talk, mentions = conversation_examples(settings, catalog, progress) if _learns_conversations(settings) \
        else (None, None)
    if progress:
        progress("training the ranker", 0, 1)
    ranker: Ranker = train(data.X, data.y, data.groups, seed)
    ranker.info.update(users=data.sources, interactions=len(catalog.interactions))
    ranker.settings = feature_settings(settings)
    if talk is not None:
        read = tuple(n for g, names in GROUPS.items() if g not in settings.rank.leave_out for n in names)
        ranker.conversation = train(talk.X, talk.y, talk.groups, seed, features=read)
        ranker.conversation.info.update(conversations=talk.sources)
        ranker.conversation.mentions = mentions if mentions is not None and mentions.dialogues else None
    ranker.info.update(seconds=round(time.perf_counter() - started, 1))
    path = ranker_path(ranker_dir(settings), catalog_state(catalog))
    ranker.save(path)
    if progress:
        progress("training the ranker", 1, 1)
    info = ranker.info
    report = FitReport(str(path), data.sources, len(data.groups), info["rows"], info["trees"], info["seconds"],
                       path.stat().st_size, ranker.importance())
    if talk is not None and ranker.conversation is not None:
        report.conversations, report.conversation_requests = talk.sources, len(talk.groups)
        report.conversation_rows = len(talk.y)
        report.conversation_importance = ranker.conversation.importance()
    return report


def _learns_conversations(settings: Settings) -> bool:
    """Whether `fit` is given conversations to learn from (and the groups left out are feature groups)."""
    unknown = set(settings.rank.leave_out) - set(GROUPS)
    if unknown:
        raise ConfigError(f"rank.leave_out: {sorted(unknown)} are not feature groups; pick from "
                          f"{', '.join(GROUPS)}.")
    return bool(settings.rank.dialogues or settings.rank.training_dialogues or settings.rank.requests)


def ensure_fitted(settings: Settings, catalog: Catalog, progress: Progress | None = None) -> FitReport | None:
    """Train the ranker for this catalog state unless a readable one is trained already with these settings
    (or the ranker is off)."""
    if not settings.rank.enabled:
        return None
    try:
        ranker = Ranker.load(ranker_path(ranker_dir(settings), catalog_state(catalog)))
    except DataDirError:  # missing, unreadable, or of other features
        return fit(settings, catalog, progress)
    if ranker.changed(feature_settings(settings)) is not None or \
            ranker.conversation is None and _learns_conversations(settings):
        return fit(settings, catalog, progress)
    return None
