"""The learned ranker's side of retrieval: which model orders a request, the pool of catalog rows it orders (the
best by the hand-weighted score, by each CF model and by what conversations say) and those items' features
(`rank/features.py`), built by the same code for serving and for `fit`."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from genre_agent.data.catalog import Catalog
from genre_agent.data.interactions import InteractionMatrix
from genre_agent.rank.cf_sources import BY_NAME
from genre_agent.rank.features import RECENT_ITEMS, ItemTable, RequestSignals, features
from genre_agent.rank.mentions import MentionTable
from genre_agent.rank.ranker import Ranker
from genre_agent.retrieval.cf import CFModel
from genre_agent.retrieval.fusion import PROFILE_ITEMS
from genre_agent.retrieval.index import VectorIndex
from genre_agent.retrieval.needs import Need
from genre_agent.retrieval.users import UserView, cf_scores, rated_scores
from genre_agent.settings import RankSettings


@dataclass
class Scored:
    """A request's hand-weighted scores and the signals they were made of (every array per catalog row): what
    candidate generation (retrieval/candidates.py) computes, and the ranking pool and its features read."""

    fused: np.ndarray  # -inf outside the mask
    mask: np.ndarray
    cf: np.ndarray | None
    query_vec: np.ndarray | None
    profile_vec: np.ndarray | None
    words_vec: np.ndarray | None
    needs: list[Need]
    need_scores: np.ndarray  # per catalog row: how well it carries the needs (NeedLexicon.scores)
    anchors: list[str] = field(default_factory=list)  # the items the request is "like"
    asked: list[str] = field(default_factory=list)  # the genres it asks for (lower case)
    named: bool = False  # it names titles: liked ones (a catalog user's ratings count) or anchors
    feature_cf: dict[str, np.ndarray] | None = None  # each CF model's scores, once the ranker asked
    mention_signals: tuple[np.ndarray, np.ndarray | None] | None = None  # what conversations say, once asked


def ranker_for(ranker: Ranker | None, user: UserView, query: str | None, anchors: list[str], named: bool = True
               ) -> Ranker | None:
    """The learned model that orders this request: a catalog user's request without words or anchors
    follows the model learnt from histories, a conversation that names titles (words with a catalog
    user's history, "like X", titles a new user loved) the model learnt from conversations; None (the
    hand-weighted order) when that one is not trained, or when nothing is `named` (words alone: what was
    asked decides; on the themed dev requests the learnt order lowered the share 0.72 -> 0.70, and gained
    on the dev requests naming titles, docs/ranker.md)."""
    if ranker is None or not named:
        return None
    return ranker if query is None and not anchors and user.row >= 0 else ranker.conversation


class RankingPool:
    """The catalog rows a learned ranker orders for a request, and the features it reads of each."""

    def __init__(self, catalog: Catalog, index: VectorIndex, about: VectorIndex | None, cf: CFModel | None,
                 matrix: InteractionMatrix, genres: Mapping[str, np.ndarray], popularity: np.ndarray,
                 new_user_popularity: np.ndarray, rank: RankSettings, *,
                 cf_models: Mapping[str, CFModel] | None = None, rated: InteractionMatrix | None = None) -> None:
        self.catalog = catalog
        self.items = catalog.items
        self.index = index
        self.about = about
        self.cf = cf
        self.matrix = matrix
        self.genres = genres  # per genre (lower case), which items carry it (ItemMasks.genres)
        self.popularity = popularity
        self.new_user_popularity = new_user_popularity
        self.rank = rank
        self.cf_models = dict(cf_models or {})  # every CF model the ranker's features read, by name
        self.rated = rated  # every rating, low ones too: what a model fed "ratings" scores from

    def rows(self, user: UserView, scored: Scored, mentions: MentionTable | None = None) -> np.ndarray:
        """The catalog rows a learned ranker orders: the top `rank.pool` by the fused score and the top
        `rank.cf_pool` of each CF model, among the allowed items; with `mentions`, also the top `rank.cf_pool`
        most named in conversations and most named beside the request's titles."""
        allowed_rows = np.flatnonzero(scored.mask)
        parts = [allowed_rows[np.argsort(-scored.fused[allowed_rows], kind="stable")[: self.rank.pool]]]
        sources = list(self._cf_scores(user, scored).values())
        if mentions is not None:
            sources += [s for s in self._mention_signals(user, scored, mentions) if s is not None]
        for scores in sources:
            parts.append(allowed_rows[np.argsort(-scores[allowed_rows], kind="stable")[: self.rank.cf_pool]])
        return np.unique(np.concatenate(parts))

    def features(self, user: UserView, rows: np.ndarray, scored: Scored, mentions: MentionTable | None = None
                 ) -> np.ndarray:
        """The ranker's features (`rank.features`) of the items at catalog rows `rows` for this request (the
        conversation features from `mentions` when given)."""
        ids = [str(i) for i in self.items.index[rows]]
        liked = user.liked[:PROFILE_ITEMS]
        recent = user.recent_liked[:RECENT_ITEMS]
        recent_cf = (cf_scores(self.cf, self.matrix, UserView(None, -1, set(), recent, []))
                     if recent and self.cf is not None else None)
        about = (self.about.vectors(ids) @ scored.words_vec
                 if self.about is not None and scored.words_vec is not None else None)
        signals = RequestSignals(
            cf=self._cf_scores(user, scored), liked=self.items.index.get_indexer(user.liked),
            pool_vecs=self.index.vectors(ids), taste=scored.profile_vec, liked_vecs=self.index.vectors(liked),
            query_vec=scored.query_vec, about_sims=about, recent_vecs=self.index.vectors(recent),
            recent_cf=recent_cf, last_time=user.last_time,
            needs=scored.need_scores if scored.words_vec is not None else None,
            anchor_vecs=self.index.vectors(scored.anchors) if scored.anchors else None,
            anchors=self.items.index.get_indexer(scored.anchors),
            asked=np.array([n for n, g in enumerate(self.genres) if g in scored.asked], dtype=np.int64),
            hand=scored.fused)
        if mentions is not None:
            signals.mentioned, signals.named_with = self._mention_signals(user, scored, mentions)
        return features(self.table, rows, signals)

    def named_rows(self, user: UserView, scored: Scored) -> np.ndarray:
        """The catalog rows of the titles a request names: its anchors, the user's likes, what a new user saw."""
        named = [*scored.anchors, *user.liked[:PROFILE_ITEMS], *(user.seen if user.row < 0 else [])]
        rows = self.items.index.get_indexer(list(dict.fromkeys(named)))
        return rows[rows >= 0]

    def _mention_signals(self, user: UserView, scored: Scored, mentions: MentionTable
                         ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per catalog row: the log share of conversations naming it, and how often it is named beside the
        titles of the request (its anchors, the user's likes, and what a new user said they had seen); computed
        once per request (the pool and the features both read them)."""
        if scored.mention_signals is None:
            scored.mention_signals = mentions.share(), mentions.with_named(self.named_rows(user, scored))
        return scored.mention_signals

    def _cf_scores(self, user: UserView, scored: Scored) -> dict[str, np.ndarray]:
        """Each CF model's scores of every item for the request of `scored` (computed once per request)."""
        if scored.feature_cf is None:
            # what each model is fed: rank/cf_sources.py
            feeds = {"likes": lambda m: cf_scores(m, self.matrix, user),
                     "likes and anchors": lambda m: cf_scores(m, self.matrix, user, scored.anchors),
                     "ratings": lambda m: rated_scores(m, self.rated, user)}
            each = {name: feeds[BY_NAME[name].fed](model) for name, model in self.cf_models.items()}
            scored.feature_cf = {name: scores for name, scores in each.items() if scores is not None}
        return scored.feature_cf

    @functools.cached_property
    def table(self) -> ItemTable:
        """What the features know of every item (popularity, year, genres, first like), built once."""
        likes = self.catalog.interactions[self.catalog.interactions.rating >= self.catalog.positive_min]
        first_like = likes.groupby("item_id").timestamp.min().reindex(self.items.index)
        return ItemTable.of(self.items, self.popularity, self.new_user_popularity, self.genres,
                            first_like.to_numpy(dtype=np.float64, na_value=np.nan))
