"""Candidate generation: fuse vector similarity (query, liked items) with CF scores, then apply the filters.

Where the catalog says what items are about ([text].about), a request that names no title and that some items
are plainly about ranks only the items that fit it best; popularity and CF order those. A learned ranker, when
one orders the request, orders the pool retrieval/pool.py gathers; retrieval/explain.py writes the evidence."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from genre_agent.data.catalog import Catalog
from genre_agent.data.interactions import InteractionMatrix
from genre_agent.filters import Filters
from genre_agent.rank.mentions import MentionTable
from genre_agent.rank.ranker import Ranker
from genre_agent.retrieval import evidence as ev
from genre_agent.retrieval.cf import CFModel
from genre_agent.retrieval.explain import Explainer, year_of
from genre_agent.retrieval.fusion import (
    fuse,
    minmax,
    new_user_popularity_weight,
    popularity,
    recent_popularity,
    taste_vector,
    unit_mean,
)
from genre_agent.retrieval.index import VectorIndex
from genre_agent.retrieval.needs import Need, NeedLexicon
from genre_agent.retrieval.pool import RankingPool, Scored, ranker_for
from genre_agent.retrieval.quality import Quality
from genre_agent.retrieval.rules import ItemMasks
from genre_agent.retrieval.users import UserView, cf_scores
from genre_agent.schemas import Candidate, HistoryItem
from genre_agent.settings import RankSettings, RetrievalSettings

HISTORY_ITEMS = 15  # rated items shown to the model, best and most recent first
MMR_POOL = 3  # with MMR, candidates are picked from the top n x this by fused score


class Retriever:
    """Turns (user, query, filters) into N scored candidates with evidence."""

    def __init__(self, catalog: Catalog, index: VectorIndex, cf: CFModel | None,
                 matrix: InteractionMatrix, settings: RetrievalSettings, about: VectorIndex | None = None, *,
                 ranker: Ranker | None = None, cf_models: Mapping[str, CFModel] | None = None,
                 rank: RankSettings | None = None, rated: InteractionMatrix | None = None) -> None:
        self.catalog = catalog
        self.items = catalog.items
        self.index = index
        self.about = about  # what items are about ([text].about), matched against a request's words
        self.cf = cf
        self.matrix = matrix
        self.settings = settings
        self.liked_by = np.asarray(matrix.matrix.sum(0)).ravel().astype(np.int64)
        self.popularity = popularity(self.liked_by)
        self.new_user_popularity = self._new_user_popularity()
        self.masks = ItemMasks(self.items)
        self._needs: NeedLexicon | None = None
        self.ranker = ranker  # orders requests without words when trained (rank/ranker.py)
        self.rank = rank or RankSettings()
        self.ranking = RankingPool(catalog, index, about, cf, matrix, self.masks.genres, self.popularity,
                                   self.new_user_popularity, self.rank, cf_models=cf_models, rated=rated)
        # what conversations say (rank/mentions.py), read by the conversation model's pool and features: its own
        # dialogues', or while `fit` learns, the other folds' of the dialogue at hand
        talk = ranker.conversation if ranker is not None else None
        self.mentions: MentionTable | None = (talk.mentions.table(self.items.index)
                                              if talk is not None and talk.mentions is not None else None)

    def _new_user_popularity(self) -> np.ndarray:
        """Popularity for users the catalog has no history of: recent likes weigh more (what is liked now),
        when the catalog has real timestamps and a half-life is set."""
        spec = self.catalog.spec.interactions
        if self.settings.popularity_half_life_days is None or spec is None or not spec.timestamp:
            return self.popularity
        likes = self.catalog.interactions
        likes = likes[likes.rating >= self.catalog.positive_min]
        return recent_popularity(self.items.index, likes.item_id, likes.timestamp,
                                 self.settings.popularity_half_life_days)

    @property
    def needs(self) -> NeedLexicon:
        """The catalog's genres and tags embedded (built on first use: one embedding call)."""
        if self._needs is None:
            self._needs = NeedLexicon(self.items, self.index.embed)
        return self._needs

    def user_view(self, user_id: str | None, extra_liked: list[str] | None = None,
                  extra_seen: list[str] | None = None, history_size: int = HISTORY_ITEMS) -> UserView:
        """A catalog user (or an anonymous one) plus what this session added: likes first, then history."""
        extra_liked = [i for i in (extra_liked or []) if i in self.items.index]
        rated = self.catalog.interactions[self.catalog.interactions.user_id == user_id] if user_id else \
            self.catalog.interactions.iloc[0:0]
        rated = rated.sort_values(["rating", "timestamp"], ascending=[False, False], kind="mergesort")
        session = pd.DataFrame({"item_id": extra_liked[::-1], "rating": 5.0})
        rated = pd.concat([session, rated[~rated.item_id.isin(extra_liked)]], ignore_index=True)
        liked = rated[rated.rating >= self.catalog.positive_min].item_id.tolist()
        history = [self.history_item(r.item_id, float(r.rating)) for r in rated.head(history_size).itertuples()]
        row = self.matrix.user_row(user_id) if user_id else -1
        seen = set(rated.item_id) | set(extra_seen or [])
        positives = rated[rated.rating >= self.catalog.positive_min]
        by_time = positives.sort_values("timestamp", ascending=False, kind="mergesort", na_position="first")
        last = rated.timestamp.max()
        return UserView(user_id, row, seen, liked, history, session_liked=extra_liked,
                        recent_liked=by_time.item_id.tolist(), last_time=None if pd.isna(last) else float(last))

    def history_item(self, item_id: str, rating: float) -> HistoryItem:
        """A rated item as the prompts show the user's history."""
        item = self.items.loc[item_id]
        return HistoryItem(item_id=item_id, title=item["title"], genres=list(item["genres"]),
                           year=year_of(item["year"]), rating=rating)

    def _score(self, user: UserView, query: str | None, filters: Filters, anchors: list[str]) -> Scored | None:
        """The hand-weighted fused score of every item for a request, and the signals it was made of (None
        when no item passes the filters)."""
        s = self.settings
        mask = self.masks.allowed(filters, user.seen)
        if not mask.any():
            return None
        words_vec = self.index.embed([query])[0] if query else None
        query_vec = self._query_vector(words_vec, anchors)
        profile_vec = self.profile(user.liked)
        cf = cf_scores(self.cf, self.matrix, user, anchors)
        new_user = user.row < 0
        named = len(set(user.liked) | set(anchors))
        fused = fuse(s, mask, self.new_user_popularity if new_user else self.popularity,
                     query=self._similarity(query_vec) if query_vec is not None else None,
                     profile=self._similarity(profile_vec) if profile_vec is not None else None, cf=cf,
                     popularity_weight=new_user_popularity_weight(s, named) if new_user else None,
                     new_user=new_user)
        needs = self.needs.match(query) if query else []
        need_scores = self.needs.scores(needs)
        if needs and s.weight_needs:
            fused += s.weight_needs * minmax(need_scores, mask)
        gate = s.match_pool is not None and not named  # no title named: what was asked decides what is ranked
        theme = theme_words(query, needs) if query and self.about is not None else ""
        about_gate = False
        fits = need_scores > 0  # items that fit the words by their genres, tags or what they are about
        if theme:  # what the request is about, beyond its genres: matched against what items are about
            assert self.about is not None
            theme_vec = words_vec if theme == query and words_vec is not None else self.index.embed([theme])[0]
            about = self._similarity(theme_vec, self.about)
            # whether some item is plainly about the words is a matter of the words, not of the filters: "romantic,
            # set in Paris" is about Paris though few romances are
            about_gate = gate and float(about.max(initial=-1.0)) >= s.theme_min
            fits |= self.described & (about >= ev.FITS_MIN)
            if about_gate:
                # some items are plainly about it: only the best matches are ranked, and how closely they match
                # joins their order
                fused += s.weight_about * minmax(about, mask)
                content = np.where(mask, minmax(about, mask) + minmax(need_scores, mask), -np.inf)
                keep = np.zeros(len(mask), dtype=bool)
                keep[np.argsort(-content, kind="stable")[: s.match_pool]] = True
                mask = mask & keep
        if gate and needs and not about_gate:  # the genres and tags the words mean: only items carrying them
            assert s.match_pool is not None
            mask = carries_best(need_scores, mask, s.match_pool)
        if query and not named:  # a word of the title alone never makes an item fit ("space": not Office Space);
            # of an item without a description, the title is what is known of it; words that are a whole title
            # ("jaws", written in lower case, so not read as a title) name it
            by_title = self.masks.titled(query) & self.described & ~fits
            if (mask & ~by_title).any():
                mask = mask & ~by_title
        asked = list(dict.fromkeys(g.lower() for g in [*filters.include_genres, *filters.require_genres]))
        return Scored(np.where(mask, fused, -np.inf), mask, cf, query_vec, profile_vec, words_vec, needs,
                      need_scores, anchors, asked, bool(named))

    def candidates(self, user: UserView, query: str | None, filters: Filters, n: int, reason: ev.ReasonWriter,
                   anchors: list[str] | None = None) -> list[Candidate]:
        """N candidates; `anchors` are items the request is "like" (their embeddings join the query);
        `reason` words each candidate's evidence sentence. With a learned ranker, its model for the request
        (`ranker_for`) orders the ranking pool on its features (retrieval/pool.py); the filters stay hard."""
        scored = self._score(user, query, filters, anchors or [])
        if scored is None:
            return []
        order_by = scored.fused
        model = None if filters.order is not None else ranker_for(self.ranker, user, query, anchors or [],
                                                                     scored.named)
        mentions = None
        if filters.order is not None:  # "the best", "hidden gems": of the items that fit best, by that order
            fitting = scored.mask
            if anchors:  # "the best ones like X": of the closest to X (words alone already cut the mask)
                fitting = np.zeros(len(self.items), dtype=bool)
                best = np.argsort(-scored.fused, kind="stable")[: self.settings.match_pool or self.rank.pool]
                fitting[best] = True
                fitting &= scored.mask
            order_by = self.quality.order(filters.order, fitting, self.popularity)
        elif model is not None:
            mentions = None if model is self.ranker else self.mentions  # the model of histories reads none
            pool = self.ranking.rows(user, scored, mentions)
            order_by = np.full(len(self.items), -np.inf)
            order_by[pool] = model.score(self.ranking.features(user, pool, scored, mentions))
        count = int(np.isfinite(order_by).sum())
        order = np.lexsort((np.arange(len(self.items)), -self.popularity, -order_by))[:count]
        titles = self.items["title"].to_numpy()
        if self.settings.mmr_lambda < 1.0:
            pool = distinct_titles(titles, order, n * MMR_POOL)
            top = mmr(pool, self.index.vectors, self.items.index, order_by, n, self.settings.mmr_lambda)
        else:
            top = distinct_titles(titles, order, n)
        if filters.years_order:  # "the older the better": the best fitting n, by year (no year last)
            years = self.items["year"].astype("float64").to_numpy()[top]
            years = np.where(np.isnan(years), np.inf, years if filters.years_order == "older" else -years)
            top = top[np.argsort(years, kind="stable")]
        talked = None
        if mentions is not None:  # what the conversations it learnt from say: evidence too
            talked = [[str(titles[r]) for r in rows]
                      for rows in mentions.often_beside(self.ranking.named_rows(user, scored), top)]
        return self.explainer.candidates(top, user, order_by, cf=scored.cf, query=query,
                                        query_vec=scored.query_vec, profile_vec=scored.profile_vec,
                                        reason=reason, needs=scored.needs, words_vec=scored.words_vec,
                                        talked=talked, filters=filters)

    @functools.cached_property
    def explainer(self) -> Explainer:
        """What writes each candidate's evidence (retrieval/explain.py)."""
        return Explainer(self.catalog, self.index, self.about, self.matrix, self.liked_by, self.quality)

    @functools.cached_property
    def quality(self) -> Quality:
        """How many rated each item and its average rating (for "the best", "hidden gems")."""
        return Quality(self.items.index, self.catalog.interactions)

    @functools.cached_property
    def described(self) -> np.ndarray:
        """Per catalog row, whether the item has a description (what an "about" similarity is measured on)."""
        return self.items["description"].astype(bool).to_numpy()

    def rank_examples(self, user: UserView, filters: Filters, shortlists: Sequence[np.ndarray] = (),
                      query: str | None = None, anchors: list[str] | None = None
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
        """What `fit` learns from for one request: (catalog rows, their features) of the ranking pool of the
        served path, then of each shortlist of catalog rows (as `Filters.only_items` gives them); nothing when
        no item passes the filters. The conversation features and pool read `mentions`."""
        scored = self._score(user, query, filters, anchors or [])
        if scored is None:
            return []
        return [(rows, self.ranking.features(user, rows, scored, self.mentions))
                for rows in (self.ranking.rows(user, scored, self.mentions), *shortlists)]

    def most_popular(self, n: int) -> list[str]:
        order = np.argsort(-self.popularity, kind="stable")[:n]
        return [str(i) for i in self.items.index[order]]

    def candidate(self, user: UserView, item_id: str, query: str | None, reason: ev.ReasonWriter,
                  filters: Filters | None = None) -> Candidate:
        """One item as a candidate for this user, with its evidence (to answer "why this one?")."""
        col = int(self.items.index.get_loc(item_id))
        cf = cf_scores(self.cf, self.matrix, user)
        needs = self.needs.match(query) if query else []
        words_vec = self.index.embed([query])[0] if query else None
        return self.explainer.candidates(np.array([col]), user, np.zeros(len(self.items)), cf=cf, query=query,
                                        query_vec=self._query_vector(words_vec, []),
                                        profile_vec=self.profile(user.liked), reason=reason, needs=needs,
                                        words_vec=words_vec, filters=filters)[0]

    def _query_vector(self, words_vec: np.ndarray | None, anchors: list[str]) -> np.ndarray | None:
        """The request's words (embedded) and the items it is "like", as one vector."""
        parts = list(self.index.vectors(anchors)) if anchors else []
        if words_vec is not None:
            parts.append(words_vec)
        return unit_mean(np.array(parts)) if parts else None

    def _similarity(self, vector: np.ndarray, index: VectorIndex | None = None) -> np.ndarray:
        """Cosine to every item in `index` (default: the similarity index): exact for the pool Chroma returns,
        the pool's minimum for the rest."""
        found = (index or self.index).nearest(vector, self.settings.vector_pool)
        floor = min(found.values()) if found else 0.0
        sims = np.full(len(self.items), floor)
        cols = self.items.index.get_indexer(list(found))
        sims[cols[cols >= 0]] = np.array(list(found.values()))[cols >= 0]
        return sims

    def profile(self, liked: list[str]) -> np.ndarray | None:
        """The taste vector of a user who liked these items (best and most recent first)."""
        return taste_vector(self.index.vectors, liked)


def carries_best(scores: np.ndarray, mask: np.ndarray, pool: int) -> np.ndarray:
    """The allowed items that carry the request's needs best: a score at least the `pool`-th best among the
    allowed (ties kept: every fantasy book for "fantasy", to be ordered by popularity and CF). When fewer than
    `pool` allowed items carry any need (a tag two films have), the list is not cut to them: `mask` as given."""
    allowed_scores = scores[mask]
    if int((allowed_scores > 0).sum()) < pool:
        return mask
    floor = np.sort(allowed_scores)[::-1][pool - 1]
    return mask & (scores >= floor)


def theme_words(query: str, needs: list[Need]) -> str:
    """The words of a request that say what it is about beyond its genres ("ghost paranormal" of "scary ghost
    paranormal movies", where "scary" means Horror)."""
    genre_words = {w for n in needs if n.kind == "genre" for w in n.phrase.split()}
    return " ".join(w for w in query.split() if w.lower() not in genre_words)


def mmr(pool: np.ndarray, vectors: Callable[[list[str]], np.ndarray], ids: pd.Index, fused: np.ndarray, n: int,
        lam: float) -> np.ndarray:
    """Maximal marginal relevance over the catalog rows `pool`: greedily take the item maximising
    lam * relevance - (1 - lam) * (its highest cosine to an item already taken), relevance being the
    fused score scaled to [0, 1] over the pool (`vectors` embeds the items of these `ids`)."""
    if len(pool) <= 1:
        return pool
    vecs = vectors([str(i) for i in ids[pool]])
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


def distinct_titles(titles: np.ndarray, order: np.ndarray, n: int) -> np.ndarray:
    """The first n of `order` (catalog rows), skipping items whose title repeats one already taken (remakes
    keep their year, so only true duplicates in the catalog are dropped)."""
    taken: set[str] = set()
    keep = []
    for col in order:
        if titles[col] not in taken:
            taken.add(titles[col])
            keep.append(col)
            if len(keep) == n:
                break
    return np.array(keep, dtype=np.int64)
