"""Candidate generation: fuse vector similarity (query, liked items) with CF scores, then apply the filters.

Where the catalog says what items are about ([text].about), a request that names no title and that some items
are plainly about ranks only the items that fit it best; popularity and CF order those."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genre_agent.data.catalog import Catalog
from genre_agent.data.interactions import InteractionMatrix
from genre_agent.filters import Filters
from genre_agent.rank.cf_sources import BY_NAME
from genre_agent.rank.features import RECENT_ITEMS, ItemTable, RequestSignals, features
from genre_agent.rank.mentions import MentionTable
from genre_agent.rank.ranker import Ranker
from genre_agent.retrieval import evidence as ev
from genre_agent.retrieval.cf import CFModel
from genre_agent.retrieval.explain import Explainer, year_of
from genre_agent.retrieval.fusion import (
    PROFILE_ITEMS,
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
from genre_agent.retrieval.quality import Quality
from genre_agent.retrieval.rules import ItemMasks
from genre_agent.retrieval.users import UserView
from genre_agent.schemas import Candidate, HistoryItem
from genre_agent.settings import RankSettings, RetrievalSettings

HISTORY_ITEMS = 15  # rated items shown to the model, best and most recent first
ANCHOR_WEIGHT = 2.0  # how much an item the user wants "more like" counts in the CF history
MMR_POOL = 3  # with MMR, candidates are picked from the top n x this by fused score


@dataclass
class _Scored:
    """A request's hand-weighted scores and the signals they were made of (every array per catalog row)."""

    fused: np.ndarray  # -inf outside the mask
    mask: np.ndarray
    cf: np.ndarray | None
    query_vec: np.ndarray | None
    profile_vec: np.ndarray | None
    words_vec: np.ndarray | None
    needs: list[Need]
    anchors: list[str] = field(default_factory=list)  # the items the request is "like"
    asked: list[str] = field(default_factory=list)  # the genres it asks for (lower case)
    named: bool = False  # it names titles: liked ones (a catalog user's ratings count) or anchors
    feature_cf: dict[str, np.ndarray] | None = None  # each CF model's scores, once the ranker asked
    mention_signals: tuple[np.ndarray, np.ndarray | None] | None = None  # what conversations say, once asked


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
        self.cf_models = dict(cf_models or {})  # every CF model the ranker's features read, by name
        self.rated = rated  # every rating, low ones too: what a model fed "ratings" scores from
        self.rank = rank or RankSettings()
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

    def _score(self, user: UserView, query: str | None, filters: Filters, anchors: list[str]) -> _Scored | None:
        """The hand-weighted fused score of every item for a request, and the signals it was made of (None
        when no item passes the filters)."""
        s = self.settings
        mask = self.masks.allowed(filters, user.seen)
        if not mask.any():
            return None
        words_vec = self.index.embed([query])[0] if query else None
        query_vec = self._query_vector(words_vec, anchors)
        profile_vec = self.profile(user.liked)
        cf = self._cf_scores(user, anchors)
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
        return _Scored(np.where(mask, fused, -np.inf), mask, cf, query_vec, profile_vec, words_vec, needs,
                       anchors, asked, bool(named))

    def candidates(self, user: UserView, query: str | None, filters: Filters, n: int, reason: ev.ReasonWriter,
                   anchors: list[str] | None = None) -> list[Candidate]:
        """N candidates; `anchors` are items the request is "like" (their embeddings join the query);
        `reason` words each candidate's evidence sentence. With a learned ranker, the pool of `ranking_pool`
        is ordered by its model for the request (`ranker_for`) on `rank_features`; the filters stay hard."""
        scored = self._score(user, query, filters, anchors or [])
        if scored is None:
            return []
        order_by = scored.fused
        model = self.ranker_for(user, query, anchors or [], scored.named) if filters.order is None else None
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
            pool = self.ranking_pool(user, scored, mentions)
            order_by = np.full(len(self.items), -np.inf)
            order_by[pool] = model.score(self.rank_features(user, pool, scored, mentions))
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
                      for rows in mentions.often_beside(self._named_rows(user, scored), top)]
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

    def ranker_for(self, user: UserView, query: str | None, anchors: list[str], named: bool = True
                   ) -> Ranker | None:
        """The learned model that orders this request: a catalog user's request without words or anchors
        follows the model learnt from histories, a conversation that names titles (words with a catalog
        user's history, "like X", titles a new user loved) the model learnt from conversations; None (the
        hand-weighted order) when that one is not trained, or when nothing is `named` (words alone: what was
        asked decides; on the themed dev requests the learnt order lowered the share 0.72 -> 0.70, and gained
        on the dev requests naming titles, docs/ranker.md)."""
        if self.ranker is None or not named:
            return None
        return self.ranker if query is None and not anchors and user.row >= 0 else self.ranker.conversation

    def ranking_pool(self, user: UserView, scored: _Scored, mentions: MentionTable | None = None) -> np.ndarray:
        """The catalog rows a learned ranker orders: the top `rank.pool` by the fused score and the top
        `rank.cf_pool` of each CF model, among the allowed items; with `mentions`, also the top `rank.cf_pool`
        most named in conversations and most named beside the request's titles."""
        allowed_rows = np.flatnonzero(scored.mask)
        parts = [allowed_rows[np.argsort(-scored.fused[allowed_rows], kind="stable")[: self.rank.pool]]]
        sources = list(self.feature_cf(user, scored).values())
        if mentions is not None:
            sources += [s for s in self._mention_signals(user, scored, mentions) if s is not None]
        for scores in sources:
            parts.append(allowed_rows[np.argsort(-scores[allowed_rows], kind="stable")[: self.rank.cf_pool]])
        return np.unique(np.concatenate(parts))

    def _mention_signals(self, user: UserView, scored: _Scored, mentions: MentionTable
                         ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per catalog row: the log share of conversations naming it, and how often it is named beside the
        titles of the request (its anchors, the user's likes, and what a new user said they had seen); computed
        once per request (the pool and the features both read them)."""
        if scored.mention_signals is None:
            scored.mention_signals = mentions.share(), mentions.with_named(self._named_rows(user, scored))
        return scored.mention_signals

    def _named_rows(self, user: UserView, scored: _Scored) -> np.ndarray:
        """The catalog rows of the titles a request names: its anchors, the user's likes, what a new user saw."""
        named = [*scored.anchors, *user.liked[:PROFILE_ITEMS], *(user.seen if user.row < 0 else [])]
        rows = self.items.index.get_indexer(list(dict.fromkeys(named)))
        return rows[rows >= 0]

    def feature_cf(self, user: UserView, scored: _Scored) -> dict[str, np.ndarray]:
        """Each CF model's scores of every item for the request of `scored` (computed once per request)."""
        if scored.feature_cf is None:
            feeds = {"likes": lambda m: self._cf_scores(user, None, m),
                     "likes and anchors": lambda m: self._cf_scores(user, scored.anchors, m),
                     "ratings": lambda m: self._rated_scores(user, m)}  # what each is fed: rank/cf_sources.py
            each = {name: feeds[BY_NAME[name].fed](model) for name, model in self.cf_models.items()}
            scored.feature_cf = {name: scores for name, scores in each.items() if scores is not None}
        return scored.feature_cf

    def rank_features(self, user: UserView, pool: np.ndarray, scored: _Scored,
                      mentions: MentionTable | None = None) -> np.ndarray:
        """The ranker's features (`rank.features`) of the items at catalog rows `pool` for this request (the
        conversation features from `mentions` when given)."""
        ids = [str(i) for i in self.items.index[pool]]
        liked = user.liked[:PROFILE_ITEMS]
        recent = user.recent_liked[:RECENT_ITEMS]
        recent_cf = (self._cf_scores(UserView(None, -1, set(), recent, []))
                     if recent and self.cf is not None else None)
        about = (self.about.vectors(ids) @ scored.words_vec
                 if self.about is not None and scored.words_vec is not None else None)
        signals = RequestSignals(
            cf=self.feature_cf(user, scored), liked=self.items.index.get_indexer(user.liked),
            pool_vecs=self.index.vectors(ids), taste=scored.profile_vec, liked_vecs=self.index.vectors(liked),
            query_vec=scored.query_vec, about_sims=about, recent_vecs=self.index.vectors(recent),
            recent_cf=recent_cf, last_time=user.last_time,
            needs=self.needs.scores(scored.needs) if scored.words_vec is not None else None,
            anchor_vecs=self.index.vectors(scored.anchors) if scored.anchors else None,
            asked=np.array([n for n, g in enumerate(self.masks.genres) if g in scored.asked], dtype=np.int64),
            hand=scored.fused)
        if mentions is not None:
            signals.mentioned, signals.named_with = self._mention_signals(user, scored, mentions)
        return features(self.rank_table, pool, signals)

    def rank_examples(self, user: UserView, filters: Filters, shortlists: Sequence[np.ndarray] = (),
                      query: str | None = None, anchors: list[str] | None = None
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
        """What `fit` learns from for one request: (catalog rows, their features) of the ranking pool of the
        served path, then of each shortlist of catalog rows (as `Filters.only_items` gives them); nothing when
        no item passes the filters. The conversation features and pool read `mentions`."""
        scored = self._score(user, query, filters, anchors or [])
        if scored is None:
            return []
        return [(rows, self.rank_features(user, rows, scored, self.mentions))
                for rows in (self.ranking_pool(user, scored, self.mentions), *shortlists)]

    @functools.cached_property
    def rank_table(self) -> ItemTable:
        likes = self.catalog.interactions[self.catalog.interactions.rating >= self.catalog.positive_min]
        first_like = likes.groupby("item_id").timestamp.min().reindex(self.items.index)
        return ItemTable.of(self.items, self.popularity, self.new_user_popularity, self.masks.genres,
                            first_like.to_numpy(dtype=np.float64, na_value=np.nan))

    def most_popular(self, n: int) -> list[str]:
        order = np.argsort(-self.popularity, kind="stable")[:n]
        return [str(i) for i in self.items.index[order]]

    def candidate(self, user: UserView, item_id: str, query: str | None, reason: ev.ReasonWriter,
                  filters: Filters | None = None) -> Candidate:
        """One item as a candidate for this user, with its evidence (to answer "why this one?")."""
        col = int(self.items.index.get_loc(item_id))
        cf = self._cf_scores(user)
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

    def _cf_scores(self, user: UserView, anchors: list[str] | None = None, model: CFModel | None = None
                   ) -> np.ndarray | None:
        """CF scores from the user's positives plus session likes; anchors ("more like X") count double,
        so the people who liked X steer the list. ALS scores a training user from its learnt factors."""
        model = model or self.cf
        if model is None or (user.row < 0 and not user.liked and not anchors):
            return None
        history = self.matrix.history(user.liked) if user.row < 0 else (
            self.matrix.matrix[[user.row]] + self.matrix.history(user.session_liked)).sign()
        if anchors:
            history = history + self.matrix.history(anchors, weight=ANCHOR_WEIGHT)
        row = user.row if not anchors else -1
        return np.asarray(model.score(np.array([row]), history)[0], dtype=np.float64)

    def _rated_scores(self, user: UserView, model: CFModel) -> np.ndarray | None:
        """A model of every rating's scores from every item the user rated, liked or not, or said they had
        seen."""
        if self.rated is None or not user.seen:
            return None
        history = self.rated.history(sorted(user.seen))
        return np.asarray(model.score(np.array([-1]), history)[0], dtype=np.float64)


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
