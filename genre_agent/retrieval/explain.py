"""Evidence: what ties each candidate to the request and the user, gathered from the catalog's facts and worded by
the template set's evidence sentence (`reason.j2`) — one definition used by the list and by "why this one?"."""

from __future__ import annotations

import numpy as np
import pandas as pd

from genre_agent.data.catalog import Catalog
from genre_agent.data.interactions import InteractionMatrix
from genre_agent.filters import Filters
from genre_agent.retrieval import evidence as ev
from genre_agent.retrieval.index import VectorIndex
from genre_agent.retrieval.needs import Need
from genre_agent.retrieval.quality import Quality
from genre_agent.retrieval.users import UserView
from genre_agent.schemas import Candidate, Scores


def year_of(value: object) -> int | None:
    return None if value is pd.NA or pd.isna(value) else int(value)  # type: ignore[call-overload]


class Explainer:
    """Writes candidates with their evidence from the catalog's items, the item vectors (similarity and what
    items are about), who liked what, and the items' ratings."""

    def __init__(self, catalog: Catalog, index: VectorIndex, about: VectorIndex | None, matrix: InteractionMatrix,
                 liked_by: np.ndarray, quality: Quality) -> None:
        self.items = catalog.items
        self.spec = catalog.spec
        self.index = index
        self.about = about
        self.matrix = matrix
        self.liked_by = liked_by
        self.quality = quality

    def candidates(self, top: np.ndarray, user: UserView, fused: np.ndarray, *, reason: ev.ReasonWriter,
                   cf: np.ndarray | None = None, query: str | None = None,
                   query_vec: np.ndarray | None = None, profile_vec: np.ndarray | None = None,
                   needs: list[Need] | None = None, words_vec: np.ndarray | None = None,
                   talked: list[list[str]] | None = None, filters: Filters | None = None
                   ) -> list[Candidate]:
        """The items at catalog rows `top`, in that order, as candidates for this user: their scores (`fused`
        and `cf` are per catalog row), their evidence, its facts and the evidence sentence `reason` writes.
        The vector score is the similarity to the query, else to the taste vector; `talked`, per item, the
        request's titles conversations often mention beside it."""
        cand_ids = [str(i) for i in self.items.index[top]]
        cand_vecs = self.index.vectors(cand_ids)
        about_sims = (self.about.vectors(cand_ids) @ words_vec if self.about is not None and words_vec is not None
                      else np.full(len(cand_ids), -1.0))
        liked = user.liked
        liked_vecs = self.index.vectors(liked)
        text_sims = cand_vecs @ liked_vecs.T if liked else np.zeros((len(top), 0))
        colike = (ev.colike_cosine(self.matrix.matrix, self.items.index.get_indexer(liked), top)
                  if liked else np.zeros((len(top), 0)))
        liked_titles = [self.items.at[i, "title"] for i in liked]
        said_liked = frozenset(self.items.at[i, "title"] for i in user.session_liked)
        favourites = ev.favourite_genres([self.items.at[i, "genres"] for i in liked])
        liked_years = [y for y in (year_of(self.items.at[i, "year"]) for i in liked) if y]
        noun = self.spec.item_noun_plural
        # the genres the filters require already hold for every item: saying so tells nothing of this one
        asked = {g.lower() for g in (filters.include_genres + filters.require_genres if filters else [])}
        liked_by_title = {self.items.at[i, "title"]: i for i in liked}
        credits = "people" in self.items.columns
        liked_people = ([(self.items.at[i, "title"], self.items.at[i, "people"]) for i in liked[:5]] if credits
                        else [])
        out = []
        for row, (col, item_id) in enumerate(zip(top, cand_ids, strict=False)):
            item = self.items.loc[item_id]
            q_sim = float(cand_vecs[row] @ query_vec) if query_vec is not None else None
            vector = q_sim if q_sim is not None else (
                float(cand_vecs[row] @ profile_vec) if profile_vec is not None else 0.0)
            year = year_of(item["year"])
            carried = {g.lower() for g in item["genres"]} | {t.lower() for t in item["tags"]}
            matched = [n.name for n in needs or [] if n.name.lower() in carried and n.name.lower() not in asked]
            described = bool(item["description"])
            fits = bool(matched) or (described and float(about_sims[row]) >= ev.FITS_MIN)
            evidence = ev.gather(item["genres"], item["tags"], favourites, liked_titles, text_sims[row],
                                 colike[row], q_sim, int(self.liked_by[col]), year, liked_years, noun,
                                 matched=matched, fits=fits, summary=item["summary"],
                                 talked_with=talked[row] if talked is not None else None)
            if evidence.similar_liked:
                other = self.items.loc[liked_by_title[evidence.similar_liked[0]]]
                evidence.similar_shares = ev.shares(item["genres"], item["tags"], other["genres"], other["tags"])
                evidence.shared_genres = [g for g in evidence.shared_genres if g not in evidence.similar_shares]
            mean = self.quality.mean[col]
            minutes = item["minutes"] if credits else None
            evidence = evidence.model_copy(update=ev.asked(
                item["people"] if credits else {}, item["countries"] if credits else (),
                None if minutes is None or pd.isna(minutes) else int(minutes), filters or Filters(),
                None if np.isnan(mean) else float(mean), int(self.quality.count[col]), liked_people))
            out.append(Candidate(
                item_id=item_id, title=item["title"], genres=list(item["genres"]), year=year,
                tags=list(item["tags"]), details={c: str(item[c]) for c in self.spec.items.show},
                summary=item["summary"],
                scores=Scores(vector=round(vector, 4), cf=round(float(cf[col]) if cf is not None else 0.0, 4),
                              fused=round(float(fused[col]), 4)),
                evidence=evidence, facts=ev.facts(evidence, year, noun),
                why=reason(evidence, year, query, said_liked),
            ))
        return out

