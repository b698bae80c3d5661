"""What each template receives: one typed context per template kind.

The contract between the code that fills a template and the user who edits it. Rendering takes one of these
models (so a caller cannot pass a variable the template does not document, or forget one); `prompts check`
reads the variable names from the fields and renders on the fields' examples. Every field has a description
(what a template header should say about it) and an example (the made-up data `check` renders with).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field

from genre_agent.schemas import Candidate, Evidence, HistoryItem, Scores

_SAMPLE_CANDIDATE = Candidate(
    item_id="1", title="Solaris (1972)", genres=["Sci-Fi", "Drama"], year=1972, tags=[],
    scores=Scores(vector=0.5, cf=0.1, fused=1.0),
    evidence=Evidence(shared_genres=["Sci-Fi"], similar_liked=["Alien (1979)"], liked_by=12,
                      drawbacks=["older (1968) than most movies you liked (around 1995)"]),
    summary="A psychologist is sent to a space station orbiting a strange ocean planet.",
    facts=["like Alien (1979) (user liked)"], why="Close to Alien (1979).")
_SAMPLE_HISTORY = HistoryItem(item_id="2", title="Alien (1979)", genres=["Sci-Fi"], year=1979, rating=5.0)


class TemplateContext(BaseModel):
    """The variables of one kind of template; `templates` are the file names that receive it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    templates: ClassVar[tuple[str, ...]] = ()

    def variables(self) -> dict[str, Any]:
        """The variables as the template sees them (models stay objects: `c.title`, `c.evidence.tags`)."""
        return {name: getattr(self, name) for name in type(self).model_fields}

    @classmethod
    def names(cls) -> set[str]:
        return set(cls.model_fields)

    @classmethod
    def sample(cls) -> Self:
        """The context filled with each field's example, to render a template without a catalog."""
        return cls(**{name: field.examples[0] for name, field in cls.model_fields.items() if field.examples})


class RankingContext(TemplateContext):
    """system.j2 and rank.j2: asking the model to pick and explain k of the candidates."""

    templates: ClassVar[tuple[str, ...]] = ("system.j2", "rank.j2")
    item_noun: str = Field(description='what the catalog holds, e.g. "movie"', examples=["movie"])
    item_noun_plural: str = Field(description='e.g. "movies"', examples=["movies"])
    k: int = Field(description="how many items to pick", examples=[1])
    reason_max_chars: int = Field(description="the longest allowed reason", examples=[140])
    history: list[HistoryItem] = Field(description="the user's highest-rated items, best and most recent first",
                                       examples=[[_SAMPLE_HISTORY]])
    candidates: list[Candidate] = Field(description="in retrieval order, best first",
                                        examples=[[_SAMPLE_CANDIDATE]])
    query: str | None = Field(description="what the user asked for, if anything", examples=[None])
    rules: list[str] = Field(description="the filters already applied, in words", examples=[[]])


class ScoringContext(TemplateContext):
    """score.j2: the one-letter question whose next-token probabilities score the candidates."""

    templates: ClassVar[tuple[str, ...]] = ("score.j2",)
    item_noun: str = Field(description='e.g. "movie"', examples=["movie"])
    item_noun_plural: str = Field(description='e.g. "movies"', examples=["movies"])
    history: list[HistoryItem] = Field(description="the user's highest-rated items", examples=[[_SAMPLE_HISTORY]])
    candidates: list[Candidate] = Field(description="in the order shown", examples=[[_SAMPLE_CANDIDATE]])
    labels: list[str] = Field(description="the letter of each candidate, in the same order", examples=[["A"]])
    query: str | None = Field(description="what the user asked for, if anything", examples=[None])


class UnderstandingSystemContext(TemplateContext):
    """understand_system.j2: static instructions for reading a chat message into a state update."""

    templates: ClassVar[tuple[str, ...]] = ("understand_system.j2",)
    genres: list[str] = Field(description="the catalog's genre names", examples=[["Drama", "Sci-Fi"]])


class UnderstandingContext(TemplateContext):
    """understand.j2: the changing part of the state-update request."""

    templates: ClassVar[tuple[str, ...]] = ("understand.j2",)
    message: str = Field(description="the person's message", examples=["something like Alien, no horror"])
    state: list[str] = Field(description="current filters and preferences, in words", examples=[["no Horror"]])
    last: list[str] = Field(description="titles of the latest recommendations, numbered from 1",
                            examples=[["Solaris (1972)"]])
    genres: list[str] = Field(description="the catalog's genre names", examples=[["Drama", "Sci-Fi"]])


class ReasonContext(TemplateContext):
    """reason.j2: the evidence sentence shown when no model writes the reason, one phrase per line."""

    templates: ClassVar[tuple[str, ...]] = ("reason.j2",)
    item_noun: str = Field(description='e.g. "movie"', examples=["movie"])
    item_noun_plural: str = Field(description='e.g. "movies"', examples=["movies"])
    evidence: Evidence = Field(description="what ties the item to the user: .similar_liked .fans_also_liked "
                               ".talked_with .shared_genres .tags .query_similarity .liked_by .drawbacks",
                               examples=[_SAMPLE_CANDIDATE.evidence])
    year: int | None = Field(description="the item's year, if known", examples=[1972])
    query: str | None = Field(description="what the user asked for, if anything", examples=[None])
    said_liked: list[str] = Field(description="titles the user said they liked in this chat",
                                  examples=[["Alien (1979)"]])


class WritingContext(TemplateContext):
    """reason_system.j2 and reason_item.j2: asking the model to write one item's reason from its facts. The
    system part and the user's history and request are the same for every item of an answer (llama.cpp reuses
    that prefix); the item comes last."""

    templates: ClassVar[tuple[str, ...]] = ("reason_system.j2", "reason_item.j2")
    item_noun: str = Field(description='e.g. "movie"', examples=["movie"])
    item_noun_plural: str = Field(description='e.g. "movies"', examples=["movies"])
    reason_max_chars: int = Field(description="the longest allowed reason", examples=[140])
    history: list[HistoryItem] = Field(description="the user's highest-rated items, best and most recent first",
                                       examples=[[_SAMPLE_HISTORY]])
    query: str | None = Field(description="what the user asked for, if anything", examples=[None])
    item: Candidate = Field(description="the item to explain: .title .year .genres .tags .summary .why "
                            ".evidence (see rank.j2)", examples=[_SAMPLE_CANDIDATE])

    @classmethod
    def of(cls, ranking: RankingContext, item: Candidate) -> WritingContext:
        """The reason of `item` asked for in the answer to the ranking request of `ranking`."""
        return cls(item_noun=ranking.item_noun, item_noun_plural=ranking.item_noun_plural,
                   reason_max_chars=ranking.reason_max_chars, history=ranking.history, query=ranking.query,
                   item=item)


CONTEXTS: tuple[type[TemplateContext], ...] = (RankingContext, ScoringContext, UnderstandingSystemContext,
                                               UnderstandingContext, ReasonContext, WritingContext)
CONTEXT_OF: dict[str, type[TemplateContext]] = {name: ctx for ctx in CONTEXTS for name in ctx.templates}
