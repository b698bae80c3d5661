"""The LLM methods on the sampled protocol, through the serving path.

Each evaluated user's 20 sampled candidates are put in hybrid order and described by the retriever's public
`describe_candidates` (evidence from the user's training history only); the prompt is the served ranking
context (the template set's reason limit, the standing rules in words) and the answer goes through the same
`rank` (validate, re-ask, fall back). `llm-score` reads label log-probabilities instead (backends whose
capabilities say `logprobs`), `llm-fused` fuses those with the hybrid order by a weight tuned on validation.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genre_agent.data.catalog import Catalog
from genre_agent.data.interactions import InteractionMatrix
from genre_agent.errors import ConfigError
from genre_agent.eval.methods import Scorer
from genre_agent.eval.metrics import bootstrap_ci, rank_metrics
from genre_agent.eval.protocol import N_NEG, Split
from genre_agent.llm.backends.base import Backend, Completion, Message, Wrapper
from genre_agent.llm.prompts import Prompts
from genre_agent.llm.ranking import rank, ranking_context
from genre_agent.llm.scoring import rank_fusion, verbalizer_scores
from genre_agent.retrieval.candidates import HISTORY_ITEMS, Retriever, UserView
from genre_agent.retrieval.evidence import ReasonWriter
from genre_agent.retrieval.index import VectorIndex
from genre_agent.schemas import Candidate, HistoryItem
from genre_agent.settings import Settings

LLM_METHODS = ("llm", "llm-score", "llm-fused")
FUSION_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


@dataclass
class LLMStats:
    json_valid: list[bool] = field(default_factory=list)
    reasked: list[bool] = field(default_factory=list)
    fallback: list[bool] = field(default_factory=list)
    hallucinated: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        lat = np.array(self.latency_s or [0.0])
        return {"json_valid_pct": 100 * float(np.mean(self.json_valid)) if self.json_valid else 0.0,
                "reask_pct": 100 * float(np.mean(self.reasked)) if self.reasked else 0.0,
                "fallback_pct": 100 * float(np.mean(self.fallback)) if self.fallback else 0.0,
                "hallucinated_id_pct": 100 * float(np.mean(self.hallucinated)) if self.hallucinated else 0.0,
                "mean_prompt_tokens": float(np.mean(self.prompt_tokens or [0])),
                "mean_completion_tokens": float(np.mean(self.completion_tokens or [0])),
                "latency_p50_s": float(np.percentile(lat, 50)), "latency_p95_s": float(np.percentile(lat, 95))}


class _RecordingBackend(Wrapper):
    """Wraps a backend: caches answers by prompt hash and records every call of the current request."""

    def __init__(self, backend: Backend, cache_dir: Path | None) -> None:
        super().__init__(backend)
        self.cache_dir = cache_dir
        self.calls: list[tuple[str, float, int, int]] = []

    def _cached(self, key_parts: list[Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        key = hashlib.sha256(json.dumps([self.model, *key_parts], sort_keys=True).encode()).hexdigest()
        path = self.cache_dir / f"{key}.json" if self.cache_dir else None
        if path and path.is_file():
            return dict(json.loads(path.read_text()))
        started = time.perf_counter()
        data = compute()
        data["seconds"] = time.perf_counter() - started
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(path)
        return data

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        def ask() -> dict[str, Any]:
            c = self.inner.complete(messages, schema, max_tokens)
            return {"text": c.text, "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}

        data = self._cached([messages, schema], ask)
        self.calls.append((data["text"], data["seconds"], data["prompt_tokens"], data["completion_tokens"]))
        return Completion(data["text"], data["prompt_tokens"], data["completion_tokens"])

    def option_logprobs(self, messages: list[Message], options: list[str]) -> list[float]:
        data = self._cached([messages, options], lambda: {"logprobs": self.inner.option_logprobs(messages,
                                                                                                 options)})
        self.calls.append(("", data["seconds"], 0, 0))
        return list(data["logprobs"])


@dataclass
class UserRequest:
    """One evaluated user's sampled candidates as the pipeline would present them."""

    n: int
    order: np.ndarray  # split columns of the candidates, in the order shown
    history: list[HistoryItem]
    candidates: list[Candidate]


def sampled_in_hybrid_order(scorer: Scorer, n: int) -> np.ndarray:
    """The evaluated user's 20 sampled candidates (split columns), best hybrid score first."""
    cands = scorer.split.cands[scorer.pos[n]]
    return cands[np.argsort(-scorer.scores("hybrid")[n, cands], kind="stable")]


def user_requests(scorer: Scorer, index: VectorIndex, reason: ReasonWriter,
                  shown: Callable[[Scorer, int], np.ndarray] = sampled_in_hybrid_order) -> Iterator[UserRequest]:
    """For each evaluated user: the candidates `shown` picks (split columns, in the order shown; by default
    the 20 sampled ones in hybrid order), described as served (`reason` words the evidence sentence), with
    their evidence from the user's training history only."""
    split, catalog, settings = scorer.split, scorer.catalog, scorer.settings
    items = catalog.items
    hybrid = scorer.scores("hybrid")
    col_of = items.index.get_indexer(split.items)  # split column -> catalog row
    X_cat = sp.csr_matrix((split.X.data, col_of[split.X.indices], split.X.indptr),
                          shape=(split.X.shape[0], len(items)))
    matrix = InteractionMatrix(X_cat, pd.Index(split.users), items.index)
    retriever = Retriever(catalog, index, None, matrix, settings.retrieval)
    for n, row in enumerate(scorer.rows):
        order = shown(scorer, n)
        liked = [str(split.items[i]) for i in scorer.liked(row)]
        history = [retriever.history_item(str(split.items[r.i]), float(r.rating))
                   for r in scorer.rated[row].head(HISTORY_ITEMS).itertuples()]
        view = UserView(None, -1, set(), liked, history)
        fused = np.zeros(len(items))
        fused[col_of[order]] = hybrid[n, order]
        candidates = retriever.describe_candidates(col_of[order], view, fused,
                                                   profile_vec=retriever.profile(liked),
                                                   reason=reason)
        yield UserRequest(n, order, history, candidates)


def evidence_writer(prompts: Prompts, scorer: Scorer) -> ReasonWriter:
    """The set's `reason.j2` at the set's reason length, as serving words evidence sentences."""
    spec = scorer.catalog.spec
    return prompts.reason_writer(prompts.reason_max_chars(scorer.settings.ranking.reason_max_chars),
                                 spec.item_noun, spec.item_noun_plural)


def llm_sampled_scores(scorer: Scorer, backend: Backend, prompts: Prompts, index: VectorIndex,
                       cache_dir: Path | None, progress: Callable[[int, int], None] | None = None
                       ) -> tuple[np.ndarray, LLMStats]:
    """The full pipeline on the sampled protocol: the 20 candidates in hybrid order, with evidence, are
    ranked by the LLM (validated, re-asked, fallback); the LLM's k come first, then the rest in hybrid order."""
    split, catalog, settings = scorer.split, scorer.catalog, scorer.settings
    recorder = _RecordingBackend(backend, cache_dir)
    stats = LLMStats()
    S = np.full((len(scorer.rows), len(split.items)), -np.inf)
    policy = settings.ranking
    max_chars = prompts.reason_max_chars(policy.reason_max_chars)
    rules = settings.rules.describe(for_prompt=True)  # as served to a request without filters of its own
    for req in user_requests(scorer, index, evidence_writer(prompts, scorer)):
        candidates = req.candidates
        context = ranking_context(catalog.spec, k=min(settings.k, N_NEG + 1), reason_max_chars=max_chars,
                                  history=req.history, candidates=candidates, query=None, rules=rules)
        recorder.calls.clear()
        outcome = rank(recorder, prompts.messages(context), candidates, context.k, retries=policy.retries,
                       reason_max_chars=max_chars, max_tokens=policy.max_tokens)
        first = recorder.calls[0][0]
        ids = {c.item_id for c in candidates}
        try:
            answer = json.loads(first)
            returned = [str(r.get("item_id")) for r in answer.get("recommendations", [])]
            stats.json_valid.append(True)
            stats.hallucinated.append(float(np.mean([i not in ids for i in returned])) if returned else 0.0)
        except (json.JSONDecodeError, AttributeError, TypeError):
            stats.json_valid.append(False)
        stats.reasked.append(outcome.reasks > 0)
        stats.fallback.append(outcome.fallback)
        stats.prompt_tokens.append(sum(c[2] for c in recorder.calls))
        stats.completion_tokens.append(sum(c[3] for c in recorder.calls))
        stats.latency_s.append(sum(c[1] for c in recorder.calls))
        ranked = [str(i.item_id) for i in outcome.items]
        final = ranked + [c.item_id for c in candidates if c.item_id not in ranked]
        column = dict(zip((c.item_id for c in candidates), req.order, strict=True))  # candidates are in order
        S[req.n, [column[i] for i in final]] = -np.arange(len(final), dtype=np.float64)
        if progress:
            progress(req.n + 1, len(scorer.rows))
    return S, stats


def verbalizer_matrix(scorer: Scorer, backend: Backend, prompts: Prompts, index: VectorIndex,
                      cache_dir: Path | None, permutations: int,
                      progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, LLMStats]:
    """Each user's 20 candidates scored by label log-probabilities (no decoding), averaged over
    `permutations` candidate orders. Returns the scores (-inf outside the candidates) and timing stats."""
    split, spec = scorer.split, scorer.catalog.spec
    recorder = _RecordingBackend(backend, cache_dir)
    stats = LLMStats()
    S = np.full((len(scorer.rows), len(split.items)), -np.inf)
    for req in user_requests(scorer, index, evidence_writer(prompts, scorer)):
        recorder.calls.clear()
        logp = verbalizer_scores(recorder, prompts, req.candidates, permutations, seed=int(req.order[0]),
                                 item_noun=spec.item_noun, item_noun_plural=spec.item_noun_plural,
                                 history=req.history, query=None)
        S[req.n, req.order] = logp
        stats.latency_s.append(sum(c[1] for c in recorder.calls))
        if progress:
            progress(req.n + 1, len(scorer.rows))
    return S, stats


def tune_llm_fusion(val: Split, catalog: Catalog, settings: Settings, index: VectorIndex,
                    score: Callable[[Scorer], np.ndarray], users: int, seed: int = 0
                    ) -> tuple[float, list[dict[str, float]]]:
    """The weight of the LLM's ranking in `rank_fusion`, by sampled NDCG@10 on `users` users of the
    validation split; ties go to the smaller weight (the retrieval order). Each row of the table also has the
    paired bootstrap interval of the gain over weight 0."""
    pos = val.subsample(users, seed)
    scorer = Scorer(val, catalog, index.vectors, settings, pos)
    llm, hybrid = score(scorer), scorer.scores("hybrid")
    table = []
    base = rank_metrics(rank_fusion(hybrid, llm, 0.0), val, pos, (10,))[1]["NDCG@10"]
    for w in FUSION_GRID:
        _, sampled = rank_metrics(rank_fusion(hybrid, llm, w), val, pos, (10,))
        lo, hi = bootstrap_ci(sampled["NDCG@10"] - base, seed)  # paired, per user, against weight 0
        table.append({"weight_llm": w, "val_NDCG@10": float(sampled["NDCG@10"].mean()),
                      "gain_ci95_lo": round(lo, 5), "gain_ci95_hi": round(hi, 5)})
    best = max(table, key=lambda r: (round(r["val_NDCG@10"], 6), -r["weight_llm"]))
    return best["weight_llm"], table


@dataclass
class LLMParts:
    """What every LLM method shares: one backend (one model load, one KV cache), the template set, the
    answer cache and the method settings."""

    backend: Backend
    prompts: Prompts
    cache_dir: Path | None
    permutations: int  # candidate orders scored by llm-score / llm-fused
    tune_users: int  # validation users for the llm-fused weight
    seed: int


def llm_method(method: str, scorer: Scorer, parts: LLMParts, index: VectorIndex,
               validation: Callable[[], Split], tuning: dict[str, Any],
               report: Callable[[str], Callable[[int, int], None] | None]) -> tuple[np.ndarray, dict[str, Any]]:
    """Scores and LLM columns of one LLM method on the sampled protocol (tuning recorded in `tuning`)."""
    backend, prompts, cache_dir = parts.backend, parts.prompts, parts.cache_dir
    if method == "llm":
        S, stats = llm_sampled_scores(scorer, backend, prompts, index, cache_dir, report("llm users"))
        return S, stats.summary()

    def score(s: Scorer, step: str = "llm-score users") -> tuple[np.ndarray, LLMStats]:
        if not backend.capabilities.logprobs:
            raise ConfigError(f"{method} reads next-token probabilities, which the {backend.name} backend "
                              "cannot: use the llamacpp (or fake) backend.")
        return verbalizer_matrix(s, backend, prompts, index, cache_dir, parts.permutations, report(step))

    if "llm-score" not in scorer.cache:
        scorer.cache["llm-score"], stats = score(scorer)
        summary = stats.summary()
        scorer.extras["llm-score"] = {"permutations": parts.permutations,
                                      "latency_p50_s": summary["latency_p50_s"],
                                      "latency_p95_s": summary["latency_p95_s"]}
    llm = scorer.cache["llm-score"]
    extra = dict(scorer.extras["llm-score"])
    if method == "llm-score":
        return llm, extra
    weight, table = tune_llm_fusion(validation(), scorer.catalog, scorer.settings, index,
                                    lambda s: score(s, "tuning llm-fused")[0], parts.tune_users, parts.seed)
    tuning["llm_fused"] = {"chosen_weight_llm": weight, "validation_users": parts.tune_users, "grid": table}
    return rank_fusion(scorer.scores("hybrid"), llm, weight), {**extra, "weight_llm": weight}


def make_llm_parts(settings: Settings, cache_dir: Path | None, permutations: int, tune_users: int,
                   seed: int) -> LLMParts:
    from genre_agent.llm.backends import make_backend
    from genre_agent.llm.prompts import resolve_prompts_dir

    return LLMParts(make_backend(settings), Prompts(resolve_prompts_dir(settings.prompts)), cache_dir,
                    permutations, tune_users, seed)
