"""Candidate generation: fuse vector similarity (query, liked items) with CF scores, then apply the filters."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genre_agent.data.catalog import Catalog
from genre_agent.data.interactions import InteractionMatrix
from genre_agent.filters import Filters
from genre_agent.retrieval import evidence as ev
from genre_agent.retrieval.cf import CFModel
from genre_agent.retrieval.index import VectorIndex
from genre_agent.retrieval.needs import NeedLexicon
from genre_agent.schemas import Candidate, HistoryItem, Scores
from genre_agent.settings import RetrievalSettings

PROFILE_ITEMS = 50  # most recent liked items that form the user's taste vector
ANCHOR_WEIGHT = 2.0  # how much an item the user wants "more like" counts in the CF history
MMR_POOL = 3  # with MMR, candidates are picked from the top n x this by fused score


def allowed(filters: Filters, items: pd.DataFrame, seen: set[str]) -> np.ndarray:
    """True where an item passes every filter."""
    ok = np.ones(len(items), dtype=bool)
    lower = items["genres"].map(lambda gs: {g.lower() for g in gs})
    if filters.include_genres:
        want = {g.lower() for g in filters.include_genres}
        ok &= lower.map(lambda gs: bool(gs & want)).to_numpy()
    if filters.exclude_genres:
        avoid = {g.lower() for g in filters.exclude_genres}
        ok &= lower.map(lambda gs: not (gs & avoid)).to_numpy()
    year = items["year"]
    if filters.year_min is not None:
        ok &= (year >= filters.year_min).fillna(False).to_numpy(dtype=bool)
    if filters.year_max is not None:
        ok &= (year <= filters.year_max).fillna(False).to_numpy(dtype=bool)
    for column, value in filters.where.items():
        ok &= (items[column].astype(str).str.lower() == str(value).lower()).to_numpy()
    blocked = set(filters.exclude_items) | (seen if filters.exclude_seen else set())
    if blocked:  # by title too: the catalog may list the same film under two ids
        titles = items.loc[items.index.intersection(list(blocked)), "title"]
        ok &= ~(items.index.isin(list(blocked)) | items["title"].isin(titles).to_numpy())
    return ok


@dataclass
class UserView:
    """What retrieval knows about a user: their ratings, seen items and liked items (best, most recent first)."""

    user_id: str | None
    row: int
    seen: set[str]
    liked: list[str]
    history: list[HistoryItem]
    session_liked: list[str] = field(default_factory=list)


def minmax(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the min and max over the masked entries (all zeros if they are constant)."""
    sub = values[mask]
    if sub.size == 0:
        return np.zeros_like(values)
    lo, hi = float(sub.min()), float(sub.max())
    return np.zeros_like(values) if hi <= lo else (values - lo) / (hi - lo)


class Retriever:
    """Turns (user, query, filters) into N scored candidates with evidence."""

    def __init__(self, catalog: Catalog, index: VectorIndex, cf: CFModel | None,
                 matrix: InteractionMatrix, settings: RetrievalSettings) -> None:
        self.catalog = catalog
        self.items = catalog.items
        self.index = index
        self.cf = cf
        self.matrix = matrix
        self.settings = settings
        self.liked_by = np.asarray(matrix.matrix.sum(0)).ravel().astype(np.int64)
        self.popularity = np.log1p(self.liked_by.astype(np.float64))
        self._needs: NeedLexicon | None = None

    @property
    def needs(self) -> NeedLexicon:
        """The catalog's genres and tags embedded (built on first use: one embedding call)."""
        if self._needs is None:
            self._needs = NeedLexicon(self.items, self.index.embed)
        return self._needs

    def user_view(self, user_id: str | None, extra_liked: list[str] | None = None,
                  extra_seen: list[str] | None = None, history_size: int = 15) -> UserView:
        """A catalog user (or an anonymous one) plus what this session added: likes first, then history."""
        extra_liked = [i for i in (extra_liked or []) if i in self.items.index]
        rated = self.catalog.interactions[self.catalog.interactions.user_id == user_id] if user_id else \
            self.catalog.interactions.iloc[0:0]
        rated = rated.sort_values(["rating", "timestamp"], ascending=[False, False], kind="mergesort")
        session = pd.DataFrame({"item_id": extra_liked[::-1], "rating": 5.0})
        rated = pd.concat([session, rated[~rated.item_id.isin(extra_liked)]], ignore_index=True)
        liked = rated[rated.rating >= self.catalog.positive_min].item_id.tolist()
        history = [
            HistoryItem(item_id=r.item_id, title=self.items.at[r.item_id, "title"],
                        genres=list(self.items.at[r.item_id, "genres"]),
                        year=_year(self.items.at[r.item_id, "year"]), rating=float(r.rating))
            for r in rated.head(history_size).itertuples()
        ]
        row = self.matrix.user_row(user_id) if user_id else -1
        seen = set(rated.item_id) | set(extra_seen or [])
        return UserView(user_id, row, seen, liked, history, session_liked=extra_liked)

    def candidates(self, user: UserView, query: str | None, filters: Filters, n: int,
                   reason_max_chars: int = 140, anchors: list[str] | None = None) -> list[Candidate]:
        """N candidates; `anchors` are items the request is "like" (their embeddings join the query)."""
        s = self.settings
        mask = allowed(filters, self.items, user.seen)
        if not mask.any():
            return []
        ids = self.items.index
        fused = s.weight_popularity * minmax(self.popularity, mask)
        query_vec = self._query_vector(query, anchors or [])
        profile_vec = self._profile(user.liked)
        if query_vec is not None:
            fused += s.weight_query * minmax(self._similarity(query_vec), mask)
        if query and s.weight_needs:
            fused += s.weight_needs * minmax(self.needs.scores(self.needs.match(query)), mask)
        if profile_vec is not None:
            fused += s.weight_profile * minmax(self._similarity(profile_vec), mask)
        cf = self._cf_scores(user, anchors)
        if cf is not None:
            fused += s.weight_cf * minmax(cf, mask)
        fused = np.where(mask, fused, -np.inf)
        order = np.lexsort((np.arange(len(ids)), -self.popularity, -fused))[: int(mask.sum())]
        if s.mmr_lambda < 1.0:
            top = self._mmr(self._distinct_titles(order, n * MMR_POOL), fused, n, s.mmr_lambda)
        else:
            top = self._distinct_titles(order, n)
        return self._describe(top, user, fused, cf, query_vec, profile_vec, query, reason_max_chars)

    def _mmr(self, pool: np.ndarray, fused: np.ndarray, n: int, lam: float) -> np.ndarray:
        """Maximal marginal relevance: greedily take the item maximising
        lam * relevance - (1 - lam) * (its highest cosine to an item already taken), relevance being the
        fused score scaled to [0, 1] over the pool."""
        if len(pool) <= 1:
            return pool
        vecs = self.index.vectors([str(i) for i in self.items.index[pool]])
        sims = vecs @ vecs.T
        rel = minmax(fused[pool], np.ones(len(pool), dtype=bool))
        chosen = [0]
        closest = sims[0].copy()
        while len(chosen) < min(n, len(pool)):
            gain = lam * rel - (1 - lam) * closest
            gain[chosen] = -np.inf
            best = int(np.argmax(gain))
            chosen.append(best)
            closest = np.maximum(closest, sims[best])
        return pool[chosen]

    def _distinct_titles(self, order: np.ndarray, n: int) -> np.ndarray:
        """The first n of `order`, skipping items whose title repeats one already taken (remakes keep
        their year, so only true duplicates in the catalog are dropped)."""
        titles = self.items["title"].to_numpy()
        taken: set[str] = set()
        keep = []
        for col in order:
            if titles[col] not in taken:
                taken.add(titles[col])
                keep.append(col)
                if len(keep) == n:
                    break
        return np.array(keep, dtype=np.int64)

    def most_popular(self, n: int) -> list[str]:
        order = np.argsort(-self.popularity, kind="stable")[:n]
        return [str(i) for i in self.items.index[order]]

    def describe(self, user: UserView, item_id: str, query: str | None = None,
                 reason_max_chars: int = 140) -> Candidate:
        """One item as a candidate for this user, with its evidence (to answer "why this one?")."""
        col = int(self.items.index.get_loc(item_id))
        cf = self._cf_scores(user)
        return self._describe(np.array([col]), user, np.zeros(len(self.items)), cf,
                              self._query_vector(query, []), self._profile(user.liked), query,
                              reason_max_chars)[0]

    def _query_vector(self, query: str | None, anchors: list[str]) -> np.ndarray | None:
        parts = list(self.index.vectors(anchors)) if anchors else []
        if query:
            parts.append(self.index.embed([query])[0])
        if not parts:
            return None
        mean = np.mean(parts, axis=0)
        norm = float(np.linalg.norm(mean))
        return mean / norm if norm > 0 else None

    def _similarity(self, vector: np.ndarray) -> np.ndarray:
        """Cosine to every item: exact for the pool Chroma returns, the pool's minimum for the rest."""
        found = self.index.nearest(vector, self.settings.vector_pool)
        floor = min(found.values()) if found else 0.0
        sims = np.full(len(self.items), floor)
        cols = self.items.index.get_indexer(list(found))
        sims[cols[cols >= 0]] = np.array(list(found.values()))[cols >= 0]
        return sims

    def _profile(self, liked: list[str]) -> np.ndarray | None:
        if not liked:
            return None
        vectors = self.index.vectors(liked[:PROFILE_ITEMS])
        mean = vectors.mean(0)
        norm = float(np.linalg.norm(mean))
        return mean / norm if norm > 0 else None

    def _cf_scores(self, user: UserView, anchors: list[str] | None = None) -> np.ndarray | None:
        """CF scores from the user's positives plus session likes; anchors ("more like X") count double,
        so the people who liked X steer the list. ALS scores a training user from its learnt factors."""
        if self.cf is None or (user.row < 0 and not user.liked and not anchors):
            return None
        history = self.matrix.history(user.liked) if user.row < 0 else (
            self.matrix.matrix[[user.row]] + self.matrix.history(user.session_liked)).sign()
        if anchors:
            history = history + self.matrix.history(anchors, weight=ANCHOR_WEIGHT)
        row = user.row if not anchors else -1
        return np.asarray(self.cf.score(np.array([row]), history)[0], dtype=np.float64)

    def _describe(self, top: np.ndarray, user: UserView, fused: np.ndarray, cf: np.ndarray | None,
                  query_vec: np.ndarray | None, profile_vec: np.ndarray | None, query: str | None,
                  reason_max_chars: int) -> list[Candidate]:
        cand_ids = [str(i) for i in self.items.index[top]]
        cand_vecs = self.index.vectors(cand_ids)
        liked = user.liked
        liked_vecs = self.index.vectors(liked)
        text_sims = cand_vecs @ liked_vecs.T if liked else np.zeros((len(top), 0))
        colike = (ev.colike_cosine(self.matrix.matrix, self.items.index.get_indexer(liked), top)
                  if liked else np.zeros((len(top), 0)))
        liked_titles = [self.items.at[i, "title"] for i in liked]
        said_liked = frozenset(self.items.at[i, "title"] for i in user.session_liked)
        favourites = ev.favourite_genres([self.items.at[i, "genres"] for i in liked])
        liked_years = [y for y in (_year(self.items.at[i, "year"]) for i in liked) if y]
        noun = self.catalog.spec.item_noun_plural
        out = []
        for row, (col, item_id) in enumerate(zip(top, cand_ids, strict=False)):
            item = self.items.loc[item_id]
            q_sim = float(cand_vecs[row] @ query_vec) if query_vec is not None else None
            vector = q_sim if q_sim is not None else (
                float(cand_vecs[row] @ profile_vec) if profile_vec is not None else 0.0)
            year = _year(item["year"])
            evidence = ev.gather(item["genres"], item["tags"], favourites, liked_titles, text_sims[row],
                                 colike[row], q_sim, int(self.liked_by[col]), year, liked_years, noun)
            out.append(Candidate(
                item_id=item_id, title=item["title"], genres=list(item["genres"]), year=year,
                tags=list(item["tags"]), details={c: str(item[c]) for c in self.catalog.spec.items.show},
                scores=Scores(vector=round(vector, 4), cf=round(float(cf[col]) if cf is not None else 0.0, 4),
                              fused=round(float(fused[col]), 4)),
                evidence=evidence, facts=ev.facts(evidence, year, noun),
                why=ev.plain_reason(evidence, year, query, reason_max_chars, said_liked),
            ))
        return out


def _year(value: object) -> int | None:
    return None if value is pd.NA or pd.isna(value) else int(value)  # type: ignore[call-overload]
