"""Pydantic models of the pipeline: the request, candidates and their evidence, the model's answer, the output
contract."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    similar_shares: list[str] = Field([], description="the tags and genres it shares with similar_liked[0] (what "
                                      "the similarity is made of; none: it is not claimed)")
    fans_also_liked: list[str] = Field([], description="titles the user liked that share fans (co-ratings)")
    talked_with: list[str] = Field([], description="titles the request names that the conversations the ranker "
                                   "learnt from often mention beside it")
    tags: list[str] = []
    query_similarity: float | None = None
    matched: list[str] = Field([], description="the request's needs (genres, tags) this item carries")
    fits: bool = Field(False, description="it fits the request by its genres, tags or description (never by a "
                       "word of its title alone)")
    about: str | None = Field(None, description="the opening of the item's summary, shortened")
    liked_by: int = Field(0, description="how many users rated it highly")
    credited: list[str] = Field([], description="the people the request asked for that it credits, with their "
                                "role (\"directed by Christopher Nolan\", \"starring Tom Hanks\")")
    shared_people: list[str] = Field([], description="people it shares with a title the user liked, with "
                                     "their role and that title (\"directed by Wes Anderson, like Rushmore\")")
    place: str | None = Field(None, description="its countries, when the request asked for a place")
    minutes: int | None = Field(None, description="its length in minutes, when the request asked for a length")
    rating: float | None = Field(None, description="its mean rating, when the request asked for the best")
    raters: int = Field(0, description="how many rated it, beside `rating`")
    drawbacks: list[str] = Field([], description="honest caveats for this user (the critic prompts use them)")


class Candidate(BaseModel):
    item_id: str
    title: str
    genres: list[str]
    year: int | None
    tags: list[str]
    details: dict[str, str] = Field({}, description="catalog metadata shown in prompts ([items].show)")
    summary: str = Field("", description="what the item is about (spoiler-free opening), \"\" without one")
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


class RankedList(BaseModel):
    """The model's answer, as parsed; `ranking.rank` checks each item against the candidates."""

    recommendations: list[RankedItem]


class Recommendation(BaseModel):
    rank: int
    item_id: str
    title: str
    reason: str
    reason_from: Literal["llm", "evidence"] = Field(
        "evidence", description="who wrote the reason: the model (it passed the grounding check) or the "
        "evidence template (reason.j2)")
    evidence: str = Field("", description="the evidence sentence (reason.j2): the reason when the model writes "
                          "none, shown beside the model's reason by a client that wants both")
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
    fallback: bool = Field(description="the model was asked and failed: the answer is the retrieval order "
                           "with evidence reasons")
    llm_roles: list[Literal["ranking", "reasons"]] = Field(
        [], description="what the LLM did for this answer; empty when no role was routed to it")
    ranked_by: Literal["retrieval", "llm-fused"] = Field(
        "retrieval", description="retrieval: the fused retrieval/CF order; llm-fused: fused with the model's "
        "ranking at the calibrated weight")
    calibration: str = Field("", description="the calibration in force, in words")
    reasks: int = Field(0, description="how many times the model was asked again after an invalid answer")
    pending: list[Literal["ranking", "reasons"]] = Field(
        [], description="roles the model is still doing: this is the answer shown at once (retrieval order, "
        "evidence reasons); the model's answer follows and replaces it (streaming chat only)")
    recommendations: list[Recommendation]
    note: str | None = Field(None, description="when the request's constraints let too few items through: "
                             "which of them to relax, and how many items each would let in")
    timings_ms: Timings
    prompt_tokens: int

    def what_the_llm_did(self) -> str:
        """The roles the LLM played in this answer, in words (the status line of recommend and chat)."""
        if self.pending:
            return f"the model is still working on {' and '.join(self.pending)}; evidence reasons meanwhile"
        if self.fallback:
            return "fallback: the model was asked and failed (retrieval order, reasons from evidence)"
        ranked = "ranked by retrieval + the model" if self.ranked_by == "llm-fused" else "ranked by retrieval"
        by_model = sum(r.reason_from == "llm" for r in self.recommendations)
        reasons = (f"{by_model}/{len(self.recommendations)} reasons by the model" if "reasons" in self.llm_roles
                   else "reasons from evidence")
        return f"LLM roles: {', '.join(self.llm_roles) or 'none'} ({ranked}, {reasons})"

    @model_validator(mode="after")
    def _ranks(self) -> Recommendations:
        if [r.rank for r in self.recommendations] != list(range(1, len(self.recommendations) + 1)):
            raise ValueError("ranks must be 1..n in order")
        return self
