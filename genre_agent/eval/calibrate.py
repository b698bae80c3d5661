"""`genre-agent calibrate`: measure each role of the configured model on a validation split of the training
interactions only (see `llm/calibration.py` for what is measured and how it is saved and found)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from genre_agent.errors import ConfigError
from genre_agent.eval.dialogues import reading_gains
from genre_agent.eval.llm_methods import Measured, tune_llm_fusion
from genre_agent.eval.protocol import Split, make_split, validation_split
from genre_agent.eval.served import open_on, served_lists
from genre_agent.llm.backends import Backend
from genre_agent.llm.calibration import Calibration, Ranking, Reading, Reasons, ReasonSample, key_for, save
from genre_agent.llm.grounding import reason_problem, uninformative
from genre_agent.llm.prompts import Prompts
from genre_agent.llm.routing import Routes
from genre_agent.pipeline import Recommender, Run
from genre_agent.settings import Settings

Report = Callable[[str, int, int], None]


ROLES = ("ranking", "reasons", "reading")
REASONS_UNHURRIED_S = 3600.0  # the reasons deadline while calibrating: one answer never takes that long
REASONS_ONLY = Routes(ranking_weight=0.0, ranking_method="json", permutations=1, reasons=True,
                      calibration="pinned: the model writes the reasons of the retrieval order")


def run_calibration(settings: Settings, *, users: int = 40, reason_users: int = 8, permutations: int = 3,
                    seed: int = 0, dialogues: Path | None = None, dialogue_cases: int | None = None,
                    roles: tuple[str, ...] = ROLES, command: str = "", progress: Report | None = None
                    ) -> tuple[Calibration, Path]:
    """`genre-agent calibrate`: open the service as `recommend` does, measure the `roles` of its model (the
    others kept from this model's calibration in force, even a stale one: the saved command says where they
    come from) and save the result in the data directory."""
    rec = Recommender.open(settings, progress=progress)
    if rec.catalog.interactions.empty:
        raise ConfigError(f"Catalog '{rec.catalog.name}' has no interactions: there is nothing to calibrate on, "
                          "and answers come from text retrieval and evidence only.")
    in_force = rec.calibration()
    result = calibrate(rec.settings, rec, rec.backend, rec.prompts, settings.prompts, users=users,
                       reason_users=reason_users, permutations=permutations, seed=seed, dialogues=dialogues,
                       dialogue_cases=dialogue_cases, roles=roles,
                       keep=in_force.calibration if in_force.state != "none" else None,
                       command=command, progress=progress)
    return result, save(result, rec.settings.data_dir)


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
                          "little data to measure the model on. Answers stay uncalibrated (`genre-agent config "
                          "show` says what goes to the model).")

    def step(name: str) -> Callable[[int, int], None] | None:
        return (lambda d, t: progress(name, d, t)) if progress else None

    measure = [role for role in ("ranking", "reasons") if keep is None or role in roles]
    measured = open_on(settings, catalog, val, progress) if measure else recommender
    ranking = _ranking(measured, backend, val, users, permutations, seed, step("ranking")) \
        if "ranking" in measure or keep is None else keep.ranking
    reasons = _reasons(settings, measured, backend, val, reason_users, seed, step("reasons")) \
        if "reasons" in measure or keep is None else keep.reasons
    reading = Reading()
    if "reading" not in roles and keep is not None:
        reading = keep.reading
    elif dialogues is not None:
        reading = reading_gains(recommender.with_backend(backend), dialogues, dialogue_cases, seed, progress)
    kept = [role for role in ROLES if role not in roles]
    measured_by = {role: command for role in ROLES if role in roles}
    if keep is not None:  # say where the kept measurements come from, and count their time
        measured_by |= {role: keep.measured_by.get(role, keep.command) for role in kept}
    seconds = time.perf_counter() - started + (keep.seconds if kept and keep is not None else 0.0)
    return Calibration(
        key=key_for(settings, catalog, prompts), prompts=prompts_name, ranking=ranking, reasons=reasons,
        reading=reading, command=command, measured_by=measured_by, seconds=round(seconds, 1),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def _ranking(measured: Recommender, backend: Backend, val: Split, users: int, permutations: int, seed: int,
             progress: Callable[[int, int], None] | None) -> Ranking:
    """The fusion weight of the model's ranking tuned on `users` validation users (the served path on the
    validation split's training part, roles pinned), and the paired bootstrap interval of its NDCG@10 gain over
    weight 0."""
    method: Literal["logprobs", "json"] = "logprobs" if backend.capabilities.logprobs else "json"
    weight, grid = tune_llm_fusion(Measured(measured, backend, None), method, val, permutations, users, 10, seed,
                                   progress)
    chosen = next(row for row in grid if row["weight_llm"] == weight)
    return Ranking(method=method, weight=weight, users=min(users, len(val.rows)),
                   permutations=permutations if method == "logprobs" else 1, grid=grid,
                   gain_ci95=(chosen["gain_ci95_lo"], chosen["gain_ci95_hi"]))


def _reasons(settings: Settings, measured: Recommender, backend: Backend, val: Split, reason_users: int,
             seed: int, progress: Callable[[int, int], None] | None) -> Reasons:
    """The share of the reasons the model writes for the served top k of `reason_users` validation users that
    pass the grounding check, and that are informative too, with every sample and its verdicts."""
    pos = val.subsample(reason_users, seed + 1)
    max_chars = measured.prompts.reason_max_chars(settings.ranking.reason_max_chars)
    samples: list[ReasonSample] = []
    asked = 0

    def check(_: int, run: Run) -> None:
        nonlocal asked
        asked += len(run.result.recommendations)
        by_id = {c.item_id: c for c in run.candidates}
        history_titles = [h.title for h in run.history]
        for i, reason, problem in run.verdicts:
            grounded = reason_problem(reason, by_id[i], max_chars, history_titles) is None
            samples.append(ReasonSample(title=by_id[i].title, reason=reason, accepted=grounded,
                                        informative=grounded and uninformative(reason, by_id[i]) is None,
                                        problem=problem, candidate=by_id[i], history_titles=history_titles))

    # what the model writes, not how much of it a deadline lets through on this machine (benchmarks/reasons.py
    # and benchmarks/latency.py measure the time): no reasons deadline while measuring
    patient = settings.model_copy(update={"ranking": settings.ranking.model_copy(
        update={"reasons_deadline_s": REASONS_UNHURRIED_S})})
    writing = Recommender(patient, measured.catalog, measured.retriever, backend)
    writing.pinned_routes = REASONS_ONLY
    served_lists(writing, val, pos, "full", settings.k, on_run=check, progress=progress)
    return Reasons(accepted=sum(s.accepted for s in samples), informative=sum(s.informative for s in samples),
                   asked=asked, users=len(pos), samples=samples)
