"""Ask the backend to rank the candidates, validate the answer, re-ask with the exact error, then fall back.

Constrained decoding (the JSON schema, with item_id restricted to the candidate ids) is the first line of
defence; checking each item against the candidates (and each reason against that item's facts) is the
second; evidence reasons for the items that fail, and the retrieval order when nothing is usable, are the
last. No item outside the candidates can come out of here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from genre_agent.data.spec import CatalogSpec
from genre_agent.errors import BackendUnavailableError, ContextLengthError
from genre_agent.llm.backends import Backend, Message
from genre_agent.llm.contexts import RankingContext
from genre_agent.llm.grounding import shown_problem
from genre_agent.schemas import Candidate, HistoryItem, RankedItem, RankedList


@dataclass
class RankOutcome:
    items: list[RankedItem]
    fallback: bool
    reasks: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_ms: float = 0.0
    errors: list[str] = field(default_factory=list)
    model_reasons: set[str] = field(default_factory=set)  # ids whose reason the model wrote (grounded)
    verdicts: list[tuple[str, str, str | None]] = field(default_factory=list)  # the kept answer, item by item


def ranking_context(spec: CatalogSpec, *, k: int, reason_max_chars: int, history: list[HistoryItem],
                    candidates: list[Candidate], query: str | None, rules: list[str]) -> RankingContext:
    """The variables of a ranking prompt as served (and evaluated): the catalog's nouns, k at most the number
    of candidates."""
    return RankingContext(item_noun=spec.item_noun, item_noun_plural=spec.item_noun_plural,
                          k=min(k, len(candidates)), reason_max_chars=reason_max_chars, history=history,
                          candidates=candidates, query=query, rules=rules)


def answer_schema(candidates: list[Candidate], k: int, reason_max_chars: int) -> dict[str, Any]:
    """JSON schema of the answer; llama.cpp turns it into a grammar (enum ids, exact count, bounded reasons)."""
    return {
        "type": "object",
        "properties": {
            "recommendations": {
                "type": "array",
                "minItems": k,
                "maxItems": k,
                "items": {
                    "type": "object",
                    "properties": {
                        "item_id": {"type": "string", "enum": [c.item_id for c in candidates]},
                        "reason": {"type": "string", "minLength": 10, "maxLength": reason_max_chars},
                    },
                    "required": ["item_id", "reason"],
                },
            }
        },
        "required": ["recommendations"],
    }


def describe_error(exc: ValidationError) -> str:
    """One line per problem, in words the model (and a person) can act on."""
    lines = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {msg}" if where else msg)
    return "; ".join(lines)


def fallback_items(candidates: list[Candidate], k: int) -> list[RankedItem]:
    """The retrieval order, each with the reason built from its evidence."""
    return [RankedItem(item_id=c.item_id, reason=c.why) for c in candidates[:k]]


@dataclass
class Checked:
    """One answer checked item by item: the distinct candidate ids in the model's order, the reasons that
    passed the grounding check (by id), and every problem in words."""

    ids: list[str]
    reasons: dict[str, str]
    problems: list[str]
    verdicts: list[tuple[str, str, str | None]] = field(default_factory=list)  # (id, reason, problem)


def check_answer(text: str, candidates: dict[str, Candidate], k: int, reason_max_chars: int,
                 history_titles: list[str]) -> Checked:
    try:
        answer = RankedList.model_validate_json(text)
    except ValidationError as exc:
        return Checked([], {}, [describe_error(exc)])
    checked = Checked([], {}, [])
    ids, reasons, problems = checked.ids, checked.reasons, checked.problems
    for n, item in enumerate(answer.recommendations, 1):
        if item.item_id not in candidates:
            problems.append(f"item {n}: id {item.item_id!r} is not one of the candidate ids")
            continue
        if item.item_id in ids:
            problems.append(f"item {n}: id {item.item_id!r} is listed twice")
            continue
        ids.append(item.item_id)
        why = shown_problem(item.reason, candidates[item.item_id], reason_max_chars, history_titles)
        checked.verdicts.append((item.item_id, item.reason, why))
        if why:
            problems.append(f"item {n} ({item.item_id}): {why}")
        else:
            reasons[item.item_id] = item.reason.strip()
    if len(answer.recommendations) != k:
        problems.append(f"there are {len(answer.recommendations)} items; exactly {k} are required")
    del ids[k:]
    return checked


def rank(backend: Backend, messages: list[Message], candidates: list[Candidate], k: int, *,
         retries: int, reason_max_chars: int, max_tokens: int,
         history_titles: list[str] | None = None) -> RankOutcome:
    """The model's k picks, checked item by item. An invalid answer is re-asked with its problems; after the
    last attempt the best one is kept as far as it is valid: its distinct candidate ids in its order (the
    retrieval order fills any missing places), its grounded reasons, evidence reasons for the rest. Only an
    answer with no usable item at all falls back to the retrieval order."""
    k = min(k, len(candidates))
    if k == 0:
        return RankOutcome(items=[], fallback=False, reasks=0)
    by_id = {c.item_id: c for c in candidates}
    schema = answer_schema(candidates, k, reason_max_chars)
    convo = list(messages)
    outcome = RankOutcome(items=[], fallback=True, reasks=0)
    best = Checked([], {}, [])
    for attempt in range(retries + 1):
        started = time.perf_counter()
        try:
            completion = backend.complete(convo, schema, max_tokens)
        except (ContextLengthError, BackendUnavailableError) as exc:  # the answer comes from retrieval and
            outcome.errors.append(str(exc))  # evidence: nothing to re-ask (a busy or gone server was retried)
            break
        finally:
            outcome.llm_ms += (time.perf_counter() - started) * 1000
        outcome.prompt_tokens += completion.prompt_tokens
        outcome.completion_tokens += completion.completion_tokens
        checked = check_answer(completion.text, by_id, k, reason_max_chars, history_titles or [])
        if (len(checked.reasons), len(checked.ids)) > (len(best.reasons), len(best.ids)) or attempt == 0:
            best = checked
        if not checked.problems:
            break
        error = "; ".join(checked.problems)
        outcome.errors.append(error)
        if attempt == retries:
            break
        outcome.reasks += 1
        convo += [
            {"role": "assistant", "content": completion.text},
            {"role": "user", "content": f"That answer is invalid: {error}. Answer again with JSON only: "
                                        f"exactly {k} different ids from the candidate list, each with "
                                        "a one-sentence reason built from that candidate's facts."},
        ]
    outcome.verdicts = best.verdicts
    if not best.ids:
        outcome.items = fallback_items(candidates, k)
        return outcome
    order = best.ids + [c.item_id for c in candidates if c.item_id not in best.ids]
    outcome.items = [RankedItem(item_id=i, reason=best.reasons.get(i, by_id[i].why)) for i in order[:k]]
    outcome.model_reasons = set(best.reasons) & set(order[:k])
    outcome.fallback = False
    return outcome
