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
from genre_agent.eval.protocol import make_split, validation_split
from genre_agent.llm.backends import Backend
from genre_agent.llm.calibration import Calibration, Ranking, Reading, Reasons, ReasonSample, key_for
from genre_agent.llm.prompts import Prompts
from genre_agent.llm.ranking import rank, ranking_context
from genre_agent.pipeline import Recommender
from genre_agent.settings import Settings

Report = Callable[[str, int, int], None]


def calibrate(settings: Settings, recommender: Recommender, backend: Backend, prompts: Prompts,
              prompts_name: str, *, users: int, reason_users: int, permutations: int, seed: int = 0,
              dialogues: Path | None = None, dialogue_cases: int | None = None, command: str = "",
              progress: Report | None = None) -> Calibration:
    """Measure each role on a validation split of the training interactions, and the reading on the dev part
    of `dialogues` (see the module doc)."""
    catalog, index = recommender.catalog, recommender.retriever.index
    started = time.perf_counter()
    test_split = make_split(catalog.interactions, catalog.positive_min, seed=seed)
    val = validation_split(test_split, catalog.positive_min, seed)
    if len(val.rows) == 0:
        raise ConfigError(f"Catalog '{catalog.name}' has no user with 5 liked items before their last one: too "
                          "little data to measure the model on. Answers stay uncalibrated (every role asked).")
    method: Literal["logprobs", "json"] = "logprobs" if backend.capabilities.logprobs else "json"

    def step(name: str) -> Callable[[int, int], None] | None:
        return (lambda d, t: progress(name, d, t)) if progress else None

    def llm_scores(scorer: Scorer) -> np.ndarray:
        if method == "logprobs":
            return verbalizer_matrix(scorer, backend, prompts, index, None, permutations, step("ranking"))[0]
        return llm_sampled_scores(scorer, backend, prompts, index, None, step("ranking"))[0]

    weight, grid = tune_llm_fusion(val, catalog, settings, index, llm_scores, users, seed)
    ranking = Ranking(method=method, weight=weight, users=min(users, len(val.rows)),
                      permutations=permutations if method == "logprobs" else 1, grid=grid)

    pos = val.subsample(reason_users, seed + 1)
    scorer = Scorer(val, catalog, index.vectors, settings, pos)
    policy = settings.ranking
    max_chars = prompts.reason_max_chars(policy.reason_max_chars)
    k = settings.k
    accepted = asked = 0
    samples: list[ReasonSample] = []
    report = step("reasons")
    rules = settings.rules.describe(for_prompt=True)
    for n, req in enumerate(user_requests(scorer, index, evidence_writer(prompts, scorer))):
        top = req.candidates[:k]
        context = ranking_context(catalog.spec, k=len(top), reason_max_chars=max_chars, history=req.history,
                                  candidates=top, query=None, rules=rules)
        outcome = rank(backend, prompts.messages(context), top, len(top), retries=0, reason_max_chars=max_chars,
                       max_tokens=policy.max_tokens, history_titles=[h.title for h in req.history])
        asked += len(top)
        accepted += len(outcome.model_reasons)
        by_id = {c.item_id: c for c in top}
        history_titles = [h.title for h in req.history]
        samples += [ReasonSample(title=by_id[i].title, reason=reason, accepted=problem is None, problem=problem,
                                 candidate=by_id[i], history_titles=history_titles)
                    for i, reason, problem in outcome.verdicts]
        if report:
            report(n + 1, len(pos))
    reasons = Reasons(accepted=accepted, asked=asked, users=len(pos), samples=samples)
    reading = Reading()
    if dialogues is not None:
        reader = Recommender(settings, catalog, recommender.retriever, backend)
        reading = reading_gains(reader, dialogues, dialogue_cases, seed, progress)
    return Calibration(
        key=key_for(settings, catalog, prompts), prompts=prompts_name, ranking=ranking, reasons=reasons,
        reading=reading,
        command=command, seconds=round(time.perf_counter() - started, 1),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
