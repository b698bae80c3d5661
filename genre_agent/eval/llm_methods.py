"""The LLM methods on the sampled protocol, answered by the served path with the model's roles pinned.

Each evaluated user's request is answered as `served` answers it (`eval/served.py`: the service opened on the
split's training part, the user's 20 candidates as a shortlist), with the routing that serves answers pinned:
`llm` has the model rank in JSON (weight 1: its k first, then the retrieval order), `llm-score` ranks by label
log-probabilities (backends whose capabilities say `logprobs`), `llm-fused` fuses those with the retrieval
order by a weight tuned on validation users. Answers are cached by prompt, so the weights of a grid and a
rerun cost no model call.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genre_agent.errors import ConfigError
from genre_agent.eval.metrics import bootstrap_ci, rank_metrics
from genre_agent.eval.protocol import Split
from genre_agent.eval.served import list_scores, served_lists
from genre_agent.llm.backends.base import Backend, Completion, Message, Wrapper
from genre_agent.llm.routing import Routes
from genre_agent.pipeline import Recommender, Run
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


def pinned(method: str, weight: float = 1.0, permutations: int = 1) -> Routes:
    """The routes an LLM method pins: `json` ranking (the model also writes the reasons) or label
    log-probabilities fused with the retrieval order at `weight`."""
    if method in ("llm", "json"):
        return Routes(ranking_weight=weight, ranking_method="json", permutations=1, reasons=True,
                      calibration="pinned: the model ranks in JSON")
    return Routes(ranking_weight=weight, ranking_method="logprobs", permutations=permutations, reasons=False,
                  calibration=f"pinned: label log-probabilities, weight {weight:g}")


class Measured:
    """The served path answering with a recording backend and pinned roles, on one split."""

    def __init__(self, rec: Recommender, backend: Backend, cache_dir: Path | None) -> None:
        self.rec, self.recorder = rec, _RecordingBackend(backend, cache_dir)

    def lists(self, routes: Routes, split: Split, pos: np.ndarray, k: int,
              progress: Callable[[int, int], None] | None = None) -> tuple[list[list[str]], LLMStats]:
        """Each user's served list with the roles pinned to `routes`, and what the model calls cost."""
        answering = self.rec.with_backend(self.recorder, routes)
        stats = LLMStats()

        def record(_: int, run: Run) -> None:
            calls = self.recorder.calls
            if calls and calls[0][0]:  # a JSON answer: was the first one valid, and did it name candidates?
                ids = {c.item_id for c in run.candidates}
                try:
                    answer = json.loads(calls[0][0])
                    returned = [str(r.get("item_id")) for r in answer.get("recommendations", [])]
                    stats.json_valid.append(True)
                    stats.hallucinated.append(float(np.mean([i not in ids for i in returned])) if returned
                                              else 0.0)
                except (json.JSONDecodeError, AttributeError, TypeError):
                    stats.json_valid.append(False)
                stats.reasked.append(run.result.reasks > 0)
                stats.fallback.append(run.result.fallback)
            stats.prompt_tokens.append(sum(c[2] for c in calls))
            stats.completion_tokens.append(sum(c[3] for c in calls))
            stats.latency_s.append(sum(c[1] for c in calls))
            calls.clear()

        self.recorder.calls.clear()
        return served_lists(answering, split, pos, "sampled", k, record, progress), stats


def tune_llm_fusion(measured: Measured, method: str, val: Split, permutations: int, users: int, k: int,
                    seed: int = 0, progress: Callable[[int, int], None] | None = None
                    ) -> tuple[float, list[dict[str, float]]]:
    """The weight of the model's ranking in the rank fusion, by sampled NDCG@10 of the served lists of `users`
    users of the validation split (`measured` opened on its training part); ties go to the smaller weight (the
    retrieval order). Each row of the table also has the paired bootstrap interval of the gain over weight 0."""
    pos = val.subsample(users, seed)
    ndcg = {}
    for w in FUSION_GRID:
        lists, _ = measured.lists(pinned(method, w, permutations), val, pos, k, progress)
        ndcg[w] = rank_metrics(list_scores(lists, val), val, pos, (10,))[1]["NDCG@10"]
    table = []
    for w in FUSION_GRID:
        lo, hi = bootstrap_ci(ndcg[w] - ndcg[0.0], seed)  # paired, per user, against weight 0
        table.append({"weight_llm": w, "val_NDCG@10": float(ndcg[w].mean()),
                      "gain_ci95_lo": round(lo, 5), "gain_ci95_hi": round(hi, 5)})
    best = max(table, key=lambda r: (round(r["val_NDCG@10"], 6), -r["weight_llm"]))
    return best["weight_llm"], table


@dataclass
class LLMParts:
    """What every LLM method shares: one backend (one model load, one KV cache), the answer cache and the
    method settings."""

    backend: Backend
    cache_dir: Path | None
    permutations: int  # candidate orders scored by llm-score / llm-fused
    tune_users: int  # validation users for the llm-fused weight
    seed: int


def llm_method(method: str, split: Split, pos: np.ndarray, k: int, parts: LLMParts, test: Recommender,
               validation: Callable[[], tuple[Split, Recommender]], tuning: dict[str, Any],
               report: Callable[[str], Callable[[int, int], None] | None]) -> tuple[np.ndarray, dict[str, Any]]:
    """Scores and LLM columns of one LLM method on the sampled protocol (tuning recorded in `tuning`); `test`
    is the service on the split's training part, `validation` the validation split and the service on its
    training part."""
    backend = parts.backend
    if method != "llm" and not backend.capabilities.logprobs:
        raise ConfigError(f"{method} reads next-token probabilities, which the {backend.name} backend cannot: use "
                          "the llamacpp (or fake) backend.")
    measured = Measured(test, backend, parts.cache_dir)
    extra: dict[str, Any] = {}
    weight = 1.0
    if method == "llm-fused":
        val, val_rec = validation()
        weight, table = tune_llm_fusion(Measured(val_rec, backend, parts.cache_dir), method, val,
                                        parts.permutations, parts.tune_users, k, parts.seed,
                                        report("tuning llm-fused"))
        tuning["llm_fused"] = {"chosen_weight_llm": weight, "validation_users": parts.tune_users, "grid": table}
        extra["weight_llm"] = weight
    if method != "llm":
        extra["permutations"] = parts.permutations
    lists, stats = measured.lists(pinned(method, weight, parts.permutations), split, pos, k,
                                  report(f"{method} users"))
    summary = stats.summary()
    if method != "llm":
        summary = {"latency_p50_s": summary["latency_p50_s"], "latency_p95_s": summary["latency_p95_s"]}
    return list_scores(lists, split), {**summary, **extra}


def make_llm_parts(settings: Settings, cache_dir: Path | None, permutations: int, tune_users: int,
                   seed: int) -> LLMParts:
    from genre_agent.llm.backends import make_backend

    return LLMParts(make_backend(settings), cache_dir, permutations, tune_users, seed)
