"""`genre-agent calibrate`: measure each role of the configured model on a validation split of the training
interactions only (see `llm/calibration.py` for what is measured and how it is saved and found)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from genre_agent.errors import ConfigError
from genre_agent.eval.dialogues import reading_gains
from genre_agent.eval.llm_methods import (
    evidence_writer,
    llm_sampled_scores,
    tune_llm_fusion,
    user_requests,
    verbalizer_matrix,
)
from genre_agent.eval.methods import Scorer
from genre_agent.eval.protocol import Split, make_split, validation_split
from genre_agent.llm.backends import Backend
from genre_agent.llm.calibration import Calibration, Ranking, Reading, Reasons, ReasonSample, key_for
from genre_agent.llm.prompts import Prompts
from genre_agent.llm.ranking import rank, ranking_context
from genre_agent.pipeline import Recommender
from genre_agent.settings import Settings

Report = Callable[[str, int, int], None]


ROLES = ("ranking", "reasons", "reading")


def calibrate(settings: Settings, recommender: Recommender, backend: Backend, prompts: Prompts,
              prompts_name: str, *, users: int, reason_users: int, permutations: int, seed: int = 0,
              dialogues: Path | None = None, dialogue_cases: int | None = None, command: str = "",
              progress: Report | None = None, roles: tuple[str, ...] = ROLES,
              keep: Calibration | None = None) -> Calibration:
    """Measure the `roles` on a validation split of the training interactions (reading: on the dev part of
    `dialogues`); the other roles are taken from `keep`, a calibration of the same key (see the module doc)."""
    if set(roles) != set(ROLES) and keep is None:
        raise ConfigError("Measuring only some roles keeps the others from this model's local calibration, and "
                          "there is none: run `genre-agent calibrate` without --roles first.")
    catalog = recommender.catalog
    started = time.perf_counter()
    val = validation_split(make_split(catalog.interactions, catalog.positive_min, seed=seed),
                           catalog.positive_min, seed)
    if len(val.rows) == 0:
        raise ConfigError(f"Catalog '{catalog.name}' has no user with 5 liked items before their last one: too "
                          "little data to measure the model on. Answers stay uncalibrated (every role asked).")

    def step(name: str) -> Callable[[int, int], None] | None:
        return (lambda d, t: progress(name, d, t)) if progress else None

    ranking = (_ranking(settings, recommender, backend, prompts, val, users, permutations, seed, step("ranking"))
               if "ranking" in roles or keep is None else keep.ranking)
    reasons = (_reasons(settings, recommender, backend, prompts, val, reason_users, seed, step("reasons"))
               if "reasons" in roles or keep is None else keep.reasons)
    reading = Reading()
    if "reading" not in roles and keep is not None:
        reading = keep.reading
    elif dialogues is not None:
        reader = Recommender(settings, catalog, recommender.retriever, backend)
        reading = reading_gains(reader, dialogues, dialogue_cases, seed, progress)
    kept = [role for role in ROLES if role not in roles]
    if kept and keep is not None:  # say where the kept measurements come from, and count their time
        command = f"{command} (kept {', '.join(kept)} from `{keep.command}`)"
    seconds = time.perf_counter() - started + (keep.seconds if kept and keep is not None else 0.0)
    return Calibration(
        key=key_for(settings, catalog, prompts), prompts=prompts_name, ranking=ranking, reasons=reasons,
        reading=reading, command=command, seconds=round(seconds, 1),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def _ranking(settings: Settings, recommender: Recommender, backend: Backend, prompts: Prompts, val: Split,
             users: int, permutations: int, seed: int, progress: Callable[[int, int], None] | None) -> Ranking:
    """The fusion weight of the model's ranking tuned on `users` validation users, and the paired bootstrap
    interval of its NDCG@10 gain over weight 0."""
    catalog, index = recommender.catalog, recommender.retriever.index
    method: Literal["logprobs", "json"] = "logprobs" if backend.capabilities.logprobs else "json"

    def llm_scores(scorer: Scorer) -> np.ndarray:
        if method == "logprobs":
            return verbalizer_matrix(scorer, backend, prompts, index, None, permutations, progress)[0]
        return llm_sampled_scores(scorer, backend, prompts, index, None, progress)[0]

    weight, grid = tune_llm_fusion(val, catalog, settings, index, llm_scores, users, seed)
    chosen = next(row for row in grid if row["weight_llm"] == weight)
    return Ranking(method=method, weight=weight, users=min(users, len(val.rows)),
                   permutations=permutations if method == "logprobs" else 1, grid=grid,
                   gain_ci95=(chosen["gain_ci95_lo"], chosen["gain_ci95_hi"]))


def _reasons(settings: Settings, recommender: Recommender, backend: Backend, prompts: Prompts, val: Split,
             reason_users: int, seed: int, progress: Callable[[int, int], None] | None) -> Reasons:
    """The share of the reasons the model writes for the top k of `reason_users` validation users that pass
    the grounding check, with every sample and its verdict."""
    catalog, index = recommender.catalog, recommender.retriever.index
    pos = val.subsample(reason_users, seed + 1)
    scorer = Scorer(val, catalog, index.vectors, settings, pos)
    policy = settings.ranking
    max_chars = prompts.reason_max_chars(policy.reason_max_chars)
    accepted = asked = 0
    samples: list[ReasonSample] = []
    rules = settings.rules.describe(for_prompt=True)
    for n, req in enumerate(user_requests(scorer, index, evidence_writer(prompts, scorer))):
        top = req.candidates[:settings.k]
        history_titles = [h.title for h in req.history]
        context = ranking_context(catalog.spec, k=len(top), reason_max_chars=max_chars, history=req.history,
                                  candidates=top, query=None, rules=rules)
        outcome = rank(backend, prompts.messages(context), top, len(top), retries=0, reason_max_chars=max_chars,
                       max_tokens=policy.max_tokens, history_titles=history_titles)
        asked += len(top)
        accepted += len(outcome.model_reasons)
        by_id = {c.item_id: c for c in top}
        samples += [ReasonSample(title=by_id[i].title, reason=reason, accepted=problem is None, problem=problem,
                                 candidate=by_id[i], history_titles=history_titles)
                    for i, reason, problem in outcome.verdicts]
        if progress:
            progress(n + 1, len(pos))
    return Reasons(accepted=accepted, asked=asked, users=len(pos), samples=samples)
