"""The features a learned ranker reads, per (request, user, item): one function for serving and for `fit`.

Every value is raw or normalised per user over the whole catalog (never over the pool being ranked), so the
same item gets the same features whether it is ranked among 20 shortlisted items or among hundreds.
Missing facts (no query, no year, no history) are NaN, which LightGBM treats as "unknown".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from genre_agent.rank.cf_sources import READ

CF_NAMES = tuple(source.name for source in READ)  # what each is trained on and fed: rank/cf_sources.py
RECENT_ITEMS = 5  # the user's latest likes, whose own CF scores and embeddings say where their taste is now

# Feature groups (what an item's lift is explained by) and the columns of each, in matrix order.
GROUPS: dict[str, tuple[str, ...]] = {
    "cf": tuple(f"{m}_{kind}" for m in (*CF_NAMES, "recent_cf") for kind in ("z", "log_rank")),
    "taste": ("taste_sim", "nearest_liked_sim", "recent_sim"),
    "query": ("query_sim", "about_sim", "needs"),
    "popularity": ("log_likes", "recent_likes"),
    "time": ("year", "year_gap_to_user", "since_first_like"),
    "user": ("history",),
    "genre": ("genre_overlap",),
    # what a conversation adds: the titles it names "like X", the genres it asks for, the hand-weighted score
    "anchor": ("anchor_sim",),
    "asked": ("asked_genres",),
    "hand": ("hand_z",),
    # what conversations say (rank/mentions.py): how often an item is named, and beside the titles named here
    "dialogue": ("mentioned", "named_with"),
    # who made it: people it shares with the titles the conversation likes or wants more like ("I loved Big")
    "people": ("shared_people",),
}
NAMES: tuple[str, ...] = tuple(name for names in GROUPS.values() for name in names)
CONVERSATION_GROUPS = ("anchor", "asked", "hand", "dialogue", "people")
# what the ranker of word-less requests reads (a history has no anchors, asked genres or words to weigh)
HISTORY: tuple[str, ...] = tuple(n for g, names in GROUPS.items() if g not in CONVERSATION_GROUPS for n in names)


@dataclass(frozen=True)
class ItemTable:
    """What the features need to know about every item, computed once per catalog (rows = catalog rows)."""

    log_likes: np.ndarray  # log(1 + users who liked it)
    recent_likes: np.ndarray  # the same with recent likes weighing more (fusion.recent_popularity)
    year: np.ndarray  # float, NaN when unknown
    genres: np.ndarray  # items x genres, 1 where the item carries the genre
    first_like: np.ndarray  # the timestamp of the item's first like, NaN when it has none
    people: sparse.csr_matrix  # items x people, 1 where the item credits the person (in any role)

    @classmethod
    def of(cls, items: pd.DataFrame, log_likes: np.ndarray, recent_likes: np.ndarray,
           genre_masks: Mapping[str, np.ndarray], first_like: np.ndarray) -> ItemTable:
        year = pd.to_numeric(items["year"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        genres = (np.column_stack(list(genre_masks.values())).astype(np.float32) if genre_masks
                  else np.zeros((len(items), 0), dtype=np.float32))
        return cls(log_likes, recent_likes, year, genres, first_like, _people_matrix(items))


def _people_matrix(items: pd.DataFrame) -> sparse.csr_matrix:
    """Items x people credited ([credits]: `people`, role -> names); no columns when the catalog has none."""
    credits = items["people"] if "people" in items.columns else pd.Series([{}] * len(items))
    columns: dict[str, int] = {}
    rows, cols = [], []
    for row, roles in enumerate(credits):
        for name in {n for names in (roles or {}).values() for n in names}:
            rows.append(row)
            cols.append(columns.setdefault(name, len(columns)))
    return sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                             shape=(len(items), len(columns)))


@dataclass
class RequestSignals:
    """One request's signals: per catalog row (`cf`, `needs`) or per pool item (the similarities)."""

    cf: Mapping[str, np.ndarray]  # CF model name -> its score of every catalog row for this user
    liked: np.ndarray  # catalog rows of the user's liked items
    pool_vecs: np.ndarray  # pool items' embeddings (pool x d)
    taste: np.ndarray | None  # the user's taste vector
    liked_vecs: np.ndarray  # embeddings of the liked items the taste vector is made of
    query_vec: np.ndarray | None = None  # the request's words and anchors, embedded
    about_sims: np.ndarray | None = None  # pool items' "about" similarity to the request's words
    needs: np.ndarray | None = None  # per catalog row: the needs of the request it carries
    recent_vecs: np.ndarray | None = None  # embeddings of the user's RECENT_ITEMS latest likes
    recent_cf: np.ndarray | None = None  # per catalog row: the CF score from those latest likes alone
    last_time: float | None = None  # the timestamp of the user's latest rating
    anchor_vecs: np.ndarray | None = None  # embeddings of the titles the request is "like"
    asked: np.ndarray | None = None  # genre columns of ItemTable.genres the request asks for
    hand: np.ndarray | None = None  # per catalog row: the hand-weighted score, -inf where not allowed
    mentioned: np.ndarray | None = None  # per catalog row: the log share of conversations naming it
    named_with: np.ndarray | None = None  # per catalog row: how often it is named beside the request's titles
    anchors: np.ndarray | None = None  # catalog rows of the titles the request is "like"


def _cf_columns(scores: np.ndarray | None, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A CF model's score of the pool as a z-score over the catalog and log(1 + its rank in the catalog)."""
    if scores is None:
        nan = np.full(len(pool), np.nan)
        return nan, nan
    std = float(scores.std())
    z = (scores[pool] - float(scores.mean())) / std if std > 0 else np.zeros(len(pool))
    rank = np.empty(len(scores), dtype=np.float64)
    rank[np.argsort(-scores, kind="stable")] = np.arange(len(scores))
    return z, np.log1p(rank[pool])


def _allowed_z(scores: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """A score of the pool as a z-score over the allowed items (finite scores); NaN where not allowed."""
    allowed = scores[np.isfinite(scores)]
    std = float(allowed.std()) if len(allowed) else 0.0
    z = (scores[pool] - float(allowed.mean())) / std if std > 0 else np.zeros(len(pool))
    return np.where(np.isfinite(z), z, np.nan)


def _shared_people(people: sparse.csr_matrix, pool: np.ndarray, req: RequestSignals) -> np.ndarray:
    """log(1 + how many people each pool item shares with the liked and anchor titles (`req.anchors` is
    set); NaN when the catalog credits nobody or the request has no such titles."""
    rows = np.unique(np.concatenate([req.liked, req.anchors]).astype(np.int64))
    rows = rows[rows >= 0]
    if people.shape[1] == 0 or not len(rows):
        return np.full(len(pool), np.nan)
    theirs = np.asarray(people[rows].sum(0)).ravel() > 0
    return np.log1p(np.asarray(people[pool] @ theirs.astype(np.float32)).ravel())


def features(table: ItemTable, pool: np.ndarray, req: RequestSignals) -> np.ndarray:
    """The feature matrix (pool x NAMES) of the items at catalog rows `pool` for one request."""
    n = len(pool)
    nan = np.full(n, np.nan)
    cols: dict[str, np.ndarray] = {}
    for name in CF_NAMES:
        cols[f"{name}_z"], cols[f"{name}_log_rank"] = _cf_columns(req.cf.get(name), pool)
    has_liked = len(req.liked) > 0
    cols["taste_sim"] = req.pool_vecs @ req.taste if req.taste is not None else nan
    recent = req.recent_vecs
    cols["recent_sim"] = (req.pool_vecs @ recent.T).mean(1) if recent is not None and len(recent) else nan
    cols["recent_cf_z"], cols["recent_cf_log_rank"] = _cf_columns(req.recent_cf, pool)
    cols["since_first_like"] = req.last_time - table.first_like[pool] if req.last_time is not None else nan
    cols["nearest_liked_sim"] = (req.pool_vecs @ req.liked_vecs.T).max(1) if len(req.liked_vecs) else nan
    cols["query_sim"] = req.pool_vecs @ req.query_vec if req.query_vec is not None else nan
    cols["about_sim"] = req.about_sims if req.about_sims is not None else nan
    cols["needs"] = req.needs[pool] if req.needs is not None else nan
    cols["log_likes"] = table.log_likes[pool]
    cols["recent_likes"] = table.recent_likes[pool]
    cols["year"] = table.year[pool]
    liked_years = table.year[req.liked]
    known = liked_years[~np.isnan(liked_years)]
    cols["year_gap_to_user"] = np.abs(table.year[pool] - known.mean()) if len(known) else nan
    cols["history"] = np.full(n, float(np.log1p(len(req.liked))))
    if has_liked and table.genres.shape[1]:
        share = table.genres[req.liked].mean(0)  # how often each genre is among the liked items
        carried = table.genres[pool]
        cols["genre_overlap"] = (carried @ share) / np.maximum(carried.sum(1), 1.0)
    else:
        cols["genre_overlap"] = nan
    anchors = req.anchor_vecs
    cols["anchor_sim"] = (req.pool_vecs @ anchors.T).max(1) if anchors is not None and len(anchors) else nan
    asked = req.asked
    cols["asked_genres"] = table.genres[pool][:, asked].mean(1) if asked is not None and len(asked) else nan
    cols["hand_z"] = _allowed_z(req.hand, pool) if req.hand is not None else nan
    cols["mentioned"] = req.mentioned[pool] if req.mentioned is not None else nan
    cols["named_with"] = req.named_with[pool] if req.named_with is not None else nan
    cols["shared_people"] = _shared_people(table.people, pool, req) if req.anchors is not None else nan
    return np.column_stack([np.asarray(cols[name], dtype=np.float64) for name in NAMES]).astype(np.float32)
