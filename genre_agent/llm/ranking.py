"""Ask the backend to rank the candidates, validate the answer, re-ask with the exact error, then fall back.

Constrained decoding (the JSON schema, with item_id restricted to the candidate ids) is the first line of
defence; validation with the candidates as context is the second; the retrieval order with reasons built
from the evidence is the last. No item outside the candidates can come out of here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from genre_agent.data.catalog import CatalogSpec
from genre_agent.llm.backends import Backend, Message
from genre_agent.llm.contexts import RankingContext
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


def rank(backend: Backend, messages: list[Message], candidates: list[Candidate], k: int, *,
         retries: int, reason_max_chars: int, max_tokens: int) -> RankOutcome:
    k = min(k, len(candidates))
    if k == 0:
        return RankOutcome(items=[], fallback=False, reasks=0)
    context = {"candidates": {c.item_id: c for c in candidates}, "k": k, "reason_max_chars": reason_max_chars}
    schema = answer_schema(candidates, k, reason_max_chars)
    convo = list(messages)
    outcome = RankOutcome(items=[], fallback=True, reasks=0)
    for attempt in range(retries + 1):
        started = time.perf_counter()
        completion = backend.complete(convo, schema, max_tokens)
        outcome.llm_ms += (time.perf_counter() - started) * 1000
        outcome.prompt_tokens += completion.prompt_tokens
        outcome.completion_tokens += completion.completion_tokens
        try:
            answer = RankedList.model_validate_json(completion.text, context=context)
        except ValidationError as exc:
            error = describe_error(exc)
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
            continue
        outcome.items = [RankedItem(item_id=i.item_id, reason=i.reason.strip()) for i in answer.recommendations]
        outcome.fallback = False
        return outcome
    outcome.items = fallback_items(candidates, k)
    return outcome
