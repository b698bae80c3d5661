"""Which roles the LLM plays in an answer, and the answer those roles produce.

The calibration in force (`llm/calibration.py`) says what the configured model does well on this catalog;
explicit settings win over it. A role with no measured gain is not called at all: the answer comes at once
from retrieval, CF and the evidence template. With no calibration on this catalog, a role goes to the model
only where each of its shipped calibrations routes it (the bundled model: none); a model never measured is
asked for every role (it is validated item by item either way).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from genre_agent.errors import BackendUnavailableError, ConfigError, ContextLengthError
from genre_agent.llm.backends import Backend
from genre_agent.llm.calibration import READING_FIELDS, InForce
from genre_agent.llm.contexts import RankingContext, WritingContext
from genre_agent.llm.prompts import Prompts
from genre_agent.llm.ranking import rank
from genre_agent.llm.reasons import write_reasons
from genre_agent.llm.scoring import rank_fusion, verbalizer_scores
from genre_agent.schemas import Candidate, RankedItem
from genre_agent.settings import Settings

Role = Literal["ranking", "reasons"]


@dataclass(frozen=True)
class Routes:
    """What the model is asked to do. `ranking_weight` is the weight of its ranking in the rank fusion with
    the retrieval order (0: it does not rank); `ranking_method` is how it ranks: label log-probabilities in
    one forward pass per candidate order (`score.j2`), or a JSON answer (`rank.j2`)."""

    ranking_weight: float
    ranking_method: Literal["logprobs", "json"]
    permutations: int
    reasons: bool
    reading: frozenset[str] = frozenset()  # the field groups of a message the model's reading may add
    calibration: str = ""

    @property
    def ranking(self) -> bool:
        return self.ranking_weight > 0

    @property
    def model_roles(self) -> list[Role]:
        """The roles of an answer that call the model (reading happens before, while the message is read)."""
        roles: list[Role] = []
        if self.ranking:
            roles.append("ranking")
        if self.reasons:
            roles.append("reasons")
        return roles

    def at_once(self) -> Routes:
        """These routes without the answer's model roles: the retrieval order with evidence reasons, shown
        while the model works."""
        return replace(self, ranking_weight=0.0, reasons=False)

    def describe(self) -> str:
        ranking = (f"ranking by the model ({self.ranking_method}, weight {self.ranking_weight:g})"
                   if self.ranking else "ranking by retrieval")
        reasons = "reasons by the model" if self.reasons else "reasons from evidence"
        reading = (f"messages read by rules and the model ({', '.join(sorted(self.reading))})" if self.reading
                   else "messages read by rules")
        return f"{ranking}; {reasons}; {reading}"


@dataclass
class Routed:
    """The k items of an answer and what the model did for it."""

    items: list[RankedItem]
    model_reasons: set[str] = field(default_factory=set)
    llm_roles: list[Role] = field(default_factory=list)
    ranked_by: Literal["retrieval", "llm-fused"] = "retrieval"
    fallback: bool = False
    reasks: int = 0
    prompt_tokens: int = 0
    llm_ms: float = 0.0
    verdicts: list[tuple[str, str, str | None]] = field(default_factory=list)  # (id, model reason, problem)


def answer(backend: Callable[[], Backend], routes: Routes, prompts: Prompts, context: RankingContext, k: int, *,
           retries: int, reason_max_chars: int, max_tokens: int, reasons_deadline_s: float,
           on_reason: Callable[[str, str], None] | None = None) -> Routed:
    """Order and reasons for the top k of `context.candidates`. `backend` is called only if a role is routed
    to the model, so an answer without LLM roles never loads a model. The model writes the reasons of the
    order it does not rank item by item (`llm/reasons.py`) until `reasons_deadline_s`; with `on_reason`, each
    kept reason goes to `on_reason(item_id, reason)` as soon as it is written."""
    k = min(k, len(context.candidates))
    order = list(context.candidates)
    routed = Routed(items=[])
    history_titles = [h.title for h in context.history]
    written: dict[str, str] = {}  # grounded reasons the model wrote, by id

    def ask(shown: list[Candidate]) -> list[str] | None:
        """The model's picks among `shown` (None if nothing was usable); its grounded reasons go to `written`."""
        messages = prompts.messages(context.model_copy(update={"candidates": shown, "k": min(k, len(shown))}))
        outcome = rank(backend(), messages, shown, k, retries=retries, reason_max_chars=reason_max_chars,
                       max_tokens=max_tokens, history_titles=history_titles)
        routed.reasks += outcome.reasks
        routed.prompt_tokens += outcome.prompt_tokens
        routed.llm_ms += outcome.llm_ms
        routed.fallback = outcome.fallback
        routed.verdicts += outcome.verdicts
        written.update({i.item_id: i.reason for i in outcome.items if i.item_id in outcome.model_reasons})
        return None if outcome.fallback else [i.item_id for i in outcome.items]

    if routes.ranking:
        routed.llm_roles.append("ranking")
        if routes.ranking_method == "logprobs":
            started = time.perf_counter()
            model = backend()
            if not model.capabilities.logprobs:
                raise ConfigError(f"The {model.name} backend cannot read label log-probabilities; run "
                                  "`genre-agent calibrate` for it (it will measure JSON ranking instead).")
            try:
                llm = verbalizer_scores(model, prompts, order, routes.permutations, seed=0,
                                         item_noun=context.item_noun, item_noun_plural=context.item_noun_plural,
                                         history=context.history, query=context.query)
                order = _fused(order, llm, routes.ranking_weight)
                routed.ranked_by = "llm-fused"
            except (ContextLengthError, BackendUnavailableError):  # asked and failed: the retrieval order stands
                routed.fallback = True
            routed.llm_ms += (time.perf_counter() - started) * 1000
        elif (named := ask(order)) is not None:
            position = {item_id: n for n, item_id in enumerate(named)}
            llm = np.array([-position.get(c.item_id, len(named) + n) for n, c in enumerate(order)], float)
            order = _fused(order, llm, routes.ranking_weight)
            routed.ranked_by = "llm-fused"
    if routes.reasons:
        routed.llm_roles.append("reasons")
        if not (routes.ranking and routes.ranking_method == "json") and k:  # else the ranking answer has them
            writing = WritingContext.of(context, order[0])
            out = write_reasons(backend, prompts, writing, order[:k], max_chars=reason_max_chars,
                                deadline_s=reasons_deadline_s,
                                on_reason=None if routes.ranking else on_reason)  # streamed over the first order
            written.update(out.reasons)
            routed.verdicts += out.verdicts
            routed.prompt_tokens += out.prompt_tokens
            routed.llm_ms += out.llm_ms
            routed.fallback = routed.fallback or out.error is not None
        routed.model_reasons = set(written) & {c.item_id for c in order[:k]}
    routed.items = [RankedItem(item_id=c.item_id,
                               reason=written[c.item_id] if c.item_id in routed.model_reasons else c.why)
                    for c in order[:k]]
    return routed


def _fused(order: list[Candidate], llm: np.ndarray, weight: float) -> list[Candidate]:
    """The candidates re-ordered by the rank fusion of the retrieval order and the model's scores."""
    retrieval = -np.arange(len(order), dtype=np.float64)
    fused = rank_fusion(retrieval[None, :], np.asarray(llm, dtype=np.float64)[None, :], weight)[0]
    return [order[i] for i in np.argsort(-fused, kind="stable")]


def routes_for(in_force: InForce, settings: Settings) -> Routes:
    """The routes of a request: the calibration's measurements, with explicit settings winning
    (`conversation.understand_with_llm` set to true or false overrides the measured reading)."""
    cals = [in_force.calibration] if in_force.calibration is not None else list(in_force.elsewhere)
    explicit = settings.conversation.understand_with_llm
    every = frozenset(READING_FIELDS)
    if not cals:  # never measured: ask the model for everything, as a calibrated strong model would be
        return Routes(ranking_weight=1.0, ranking_method="json", permutations=1, reasons=True,
                      reading=every if explicit in (None, True) else frozenset(), calibration=in_force.describe())
    # measured on other catalogs only: a role goes to the model where every measurement routed it
    least = min(cals, key=lambda c: c.ranking.routed_weight).ranking
    measured = frozenset.intersection(*(frozenset(c.reading.fields) for c in cals))
    return Routes(ranking_weight=least.routed_weight, ranking_method=least.method,
                  permutations=least.permutations, reasons=all(c.reasons.routed for c in cals),
                  reading=measured if explicit is None else (every if explicit else frozenset()),
                  calibration=in_force.describe())
