"""Pydantic models of the pipeline: the request, candidates and their evidence, the model's answer, the output
contract."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from genre_agent.filters import Filters


class RecommendRequest(BaseModel):
    """One recommendation request: who asks (a catalog user and/or what they liked in this session), what
    they asked for (a query, items it should resemble, filters) and how to answer (k, template set)."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, description="a catalog user id; an unknown one needs a query")
    liked: list[str] = Field([], description="item ids liked in this session (they shape the profile and CF)")
    anchors: list[str] = Field([], description="item ids the answer should resemble (\"more like this one\")")
    query: str | None = Field(None, description="what the person asks for, in their words")
    filters: Filters = Field(default_factory=Filters)
    k: int | None = Field(None, ge=1, le=50, description="how many recommendations (default: the setting k)")
    prompts: str | None = Field(None, description="a template set (shipped name or folder) for this request")
    allow_popular: bool = Field(False, description="with no user, query, likes or anchors, answer with the "
                                "most popular items instead of an error")

    @field_validator("query")
    @classmethod
    def _normalise_query(cls, query: str | None) -> str | None:
        return (query or "").strip() or None


class CatalogInfo(BaseModel):
    """What the front-ends show about the loaded catalog."""

    name: str
    items: int
    interactions: int
    item_noun: str
    item_noun_plural: str
    cleaning: list[str] = Field(description="what loading fixed or dropped, one line each")


class Scores(BaseModel):
    vector: float = Field(description="cosine similarity to the query (or to the user's liked items)")
    cf: float = Field(description="collaborative-filtering score of the configured CF model")
    fused: float = Field(description="weighted sum of the normalised scores; candidates are ordered by it")


class Evidence(BaseModel):
    """Facts that tie a candidate to this user; reasons must be built from them."""

    shared_genres: list[str] = []
    similar_liked: list[str] = Field([], description="titles the user liked whose text is most similar")
    fans_also_liked: list[str] = Field([], description="titles the user liked that share fans (co-ratings)")
    tags: list[str] = []
    query_similarity: float | None = None
    liked_by: int = Field(0, description="how many users rated it highly")
    drawbacks: list[str] = Field([], description="honest caveats for this user (the critic prompts use them)")


class Candidate(BaseModel):
    item_id: str
    title: str
    genres: list[str]
    year: int | None
    tags: list[str]
    details: dict[str, str] = Field({}, description="catalog metadata shown in prompts ([items].show)")
    scores: Scores
    evidence: Evidence
    facts: list[str] = Field(description="the evidence as short phrases")
    why: str = Field(description="one true sentence built from the evidence (also the fallback reason)")


class HistoryItem(BaseModel):
    item_id: str
    title: str
    genres: list[str]
    year: int | None
    rating: float


class RankedItem(BaseModel):
    item_id: str
    reason: str


_WORD = re.compile(r"[a-z0-9']+")
_FILLER = {"a", "an", "the", "and", "or", "of", "it", "is", "this", "that", "with", "for", "to", "in", "on",
           "movie", "film", "book", "item", "genre", "genres", "year", "recommended", "recommend", "because"}


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def reason_problem(reason: str, candidate: Candidate, max_chars: int) -> str | None:
    """Why a reason is unacceptable (empty, too long, restating the title or genres, citing no fact), or None."""
    text = reason.strip()
    if not text:
        return "its reason is empty"
    if len(text) > max_chars:
        return f"its reason is {len(text)} characters; the limit is {max_chars}"
    e = candidate.evidence
    fact_text = " ".join([*e.similar_liked, *e.fans_also_liked, *e.tags, *e.shared_genres]).lower()
    name = re.sub(r"\s*\(\d{4}\)\s*$", "", candidate.title).lower()
    if name and name in text.lower() and name not in fact_text:
        return "its reason restates the item's own title; cite a fact listed for it instead"
    own = _words(candidate.title) | {w for g in candidate.genres for w in _words(g)} | _FILLER
    if not _words(text) - own:
        return "its reason only repeats the title or genres; cite a fact listed for it"
    if not (_words(text) & (_words(fact_text) - _FILLER - _words(candidate.title))):
        return "its reason cites none of the facts listed for it (a liked title, a shared genre or a tag)"
    if len(_words(text) - _words(fact_text) - own) < 2:
        return "its reason is a bare list of names; write a sentence saying how they connect it to the user"
    return None


class RankedList(BaseModel):
    """The model's answer. Validated against the candidates passed as validation context:
    {"candidates": {id: Candidate}, "k": int, "reason_max_chars": int}."""

    recommendations: list[RankedItem]

    @field_validator("recommendations")
    @classmethod
    def _check(cls, items: list[RankedItem], info: ValidationInfo) -> list[RankedItem]:
        ctx: dict[str, Any] = info.context or {}
        candidates: dict[str, Candidate] = ctx.get("candidates", {})
        k: int = ctx.get("k", len(items))
        problems: list[str] = []
        seen: set[str] = set()
        for n, item in enumerate(items, 1):
            if candidates and item.item_id not in candidates:
                problems.append(f"item {n}: id {item.item_id!r} is not one of the candidate ids")
                continue
            if item.item_id in seen:
                problems.append(f"item {n}: id {item.item_id!r} is listed twice")
            seen.add(item.item_id)
            if candidates:
                why = reason_problem(item.reason, candidates[item.item_id], ctx.get("reason_max_chars", 200))
                if why:
                    problems.append(f"item {n} ({item.item_id}): {why}")
        if len(items) != k:
            problems.append(f"there are {len(items)} items; exactly {k} are required")
        if problems:
            raise ValueError("; ".join(problems))
        return items


class Recommendation(BaseModel):
    rank: int
    item_id: str
    title: str
    reason: str
    scores: Scores


class Timings(BaseModel):
    retrieve: float
    prompt: float
    llm: float
    total: float


class Recommendations(BaseModel):
    """The output contract of `genre-agent recommend --json`."""

    user_id: str | None
    query: str | None
    k: int
    backend: str
    model: str
    fallback: bool
    reasks: int = Field(0, description="how many times the model was asked again after an invalid answer")
    recommendations: list[Recommendation]
    timings_ms: Timings
    prompt_tokens: int

    @model_validator(mode="after")
    def _ranks(self) -> Recommendations:
        if [r.rank for r in self.recommendations] != list(range(1, len(self.recommendations) + 1)):
            raise ValueError("ranks must be 1..n in order")
        return self
