"""`genre-agent eval`: every method on one split of the protocol, with the classical baselines in the same run.

The parts: `protocol` (the split of the reference `tests/reference/baselines.py`), `metrics`, `methods`
(classical baselines and the served retrieval), `llm_methods` (the LLM stage through the serving path) and
`report` (the files). This module runs them and assembles the report's numbers.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genre_agent.data.catalog import Catalog
from genre_agent.eval.llm_methods import LLM_METHODS, LLMParts, llm_method, make_llm_parts
from genre_agent.eval.methods import Scorer, tune_fusion
from genre_agent.eval.metrics import bootstrap_ci, paired_ratio_ci, protocol_summary, rank_metrics
from genre_agent.eval.protocol import N_NEG, Split, make_split, validation_split
from genre_agent.eval.report import git_commit
from genre_agent.eval.served import list_scores, open_on, served_lists
from genre_agent.llm.adapters import with_adapter
from genre_agent.pipeline import Recommender, build
from genre_agent.settings import Settings

METHODS = ("random", "pop", "itemknn", "ease", "als", "vector", "hybrid", "served", *LLM_METHODS)
SERVED = ("served", *LLM_METHODS)  # answered by the served path (`eval/served.py`), on the training part
SECRETS: dict[str, Any] = {"backend": {"openai": {"api_key"}, "langchain": {"api_key"}}}


@dataclass
class EvalConfig:
    methods: tuple[str, ...] = METHODS
    protocols: tuple[str, ...] = ("sampled", "full")
    users: int | None = 200
    seed: int = 0
    ks: tuple[int, ...] = (1, 5, 10)
    cache: bool = True
    tune: bool = False
    permutations: int = 3  # candidate orders scored by the llm-score / llm-fused methods
    tune_users: int = 100  # validation users for the llm-fused weight


def _paired_differences(results: dict[str, Any], per_user: dict[tuple[str, str], np.ndarray], k: int,
                        seed: int) -> None:
    """Each served method's NDCG@k minus (and over) hybrid's, EASE's and ALS's on the same users, with paired
    bootstrap intervals (`vs_hybrid`, `vs_ease`, `vs_als` in the method's entry)."""
    for (protocol, method), mine in per_user.items():
        if method not in SERVED:
            continue
        for base in ("hybrid", "ease", "als"):
            if (protocol, base) in per_user:
                theirs = per_user[protocol, base]
                diff = mine - theirs
                lo, hi = bootstrap_ci(diff, seed)
                r_lo, r_hi = paired_ratio_ci(mine, theirs, seed)
                results[protocol][method][f"vs_{base}"] = {
                    f"NDCG@{k}_diff": round(float(diff.mean()), 5), "ci95": [round(lo, 5), round(hi, 5)],
                    "ratio": round(float(mine.mean() / max(theirs.mean(), 1e-12)), 4),
                    "ratio_ci95": [round(r_lo, 4), round(r_hi, 4)]}


def run(settings: Settings, catalog: Catalog, config: EvalConfig, out: Path,
        progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Evaluate every method on one split and return the report (numbers, config, commit)."""
    started = time.perf_counter()
    settings, adapter = with_adapter(settings, catalog)
    split = make_split(catalog.interactions, catalog.positive_min, seed=config.seed)
    pos = split.subsample(config.users, config.seed)
    needs_index = config.tune or any(m in config.methods for m in ("vector", "hybrid", *SERVED))
    retriever = build(settings, catalog, progress)[0] if needs_index else None
    tuning: dict[str, Any] = {}

    @functools.cache
    def validation() -> Split:
        return validation_split(split, catalog.positive_min, config.seed)

    if config.tune and retriever is not None:
        best, table = tune_fusion(validation(), catalog, settings, retriever.index.vectors)
        settings = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(update=best)})
        tuning = {"chosen": best, "grid": table}
    scorer = Scorer(split, catalog, retriever.index.vectors if retriever else (lambda ids: np.zeros((0, 0))),
                    settings, pos)
    genres = [set(catalog.items.at[i, "genres"]) for i in split.items]
    results: dict[str, Any] = {}
    per_user: dict[tuple[str, str], np.ndarray] = {}  # (protocol, method) -> NDCG@max(k) of each user
    k = max(config.ks)

    @functools.cache
    def served_on_training() -> Recommender:
        return open_on(settings, catalog, split, progress)

    @functools.cache
    def served_on_validation() -> tuple[Split, Recommender]:
        return validation(), open_on(settings, catalog, validation(), progress)

    @functools.cache
    def llm_parts() -> LLMParts:
        return make_llm_parts(settings, out / "llm-cache" if config.cache else None, config.permutations,
                              config.tune_users, config.seed)

    def report(step: str) -> Callable[[int, int], None] | None:
        return (lambda d, t: progress(step, d, t)) if progress else None

    def scores(method: str, protocol: str) -> tuple[np.ndarray, dict[str, Any]]:
        if method in LLM_METHODS:
            return llm_method(method, split, pos, k, llm_parts(), served_on_training(), served_on_validation,
                              tuning, report)
        if method == "served":
            lists = served_lists(served_on_training(), split, pos, protocol, k,
                                 progress=report(f"served {protocol}"))
            users = split.users[split.rows[pos]].astype(str)
            return list_scores(lists, split), ({"lists": dict(zip(users, lists, strict=True))}
                                               if protocol == "full" else {})
        return scorer.scores(method), {}

    for n, method in enumerate(config.methods):
        if progress:
            progress("methods", n, len(config.methods))
        protocols = tuple(p for p in config.protocols if p == "sampled" or method not in LLM_METHODS)
        for protocol in protocols:
            t0 = time.perf_counter()
            S, extra = scores(method, protocol)
            seconds = time.perf_counter() - t0
            full, sampled = rank_metrics(S, split, pos, config.ks)
            users_metrics = full if protocol == "full" else sampled
            entry = protocol_summary(S, split, pos, protocol, users_metrics, config.ks, config.seed, genres,
                                     scorer.pop)
            results.setdefault(protocol, {})[method] = {**entry, "seconds": round(seconds, 2), **extra}
            per_user[protocol, method] = users_metrics[f"NDCG@{k}"]
    _paired_differences(results, per_user, max(config.ks), config.seed)
    return {
        "catalog": catalog.name, "commit": git_commit(), "seconds": round(time.perf_counter() - started, 1),
        "config": {"methods": list(config.methods), "protocols": list(config.protocols), "users": len(pos),
                   "seed": config.seed, "ks": list(config.ks), "candidates": N_NEG + 1,
                   "settings": settings.model_dump(mode="json", exclude=SECRETS)},
        "split": split.info, "results": results, "tuning": tuning,
        "llm_adapter": adapter if any(m in LLM_METHODS for m in config.methods) else None,
        "notes": ["RMSE/MAE: not reported, no method here predicts ratings (all rank implicit positives).",
                  "llm: sampled protocol only (ranking all ~9.7k items with an LLM is not feasible).",
                  "served: what `recommend` answers each user (the service opened on the training part, the "
                  "sampled candidates given as a shortlist); items it does not list tie at the bottom, so MRR "
                  "counts its top k only. report.json has each user's full-protocol list."],
    }
