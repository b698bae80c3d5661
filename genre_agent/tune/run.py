"""`genre-agent tune`: build the examples, train within the budget, save the best checkpoint as a GGUF LoRA.

The adapter is always written (so it can be measured), and its record says whether it beat the base model on
the tuning-validation users: only then does `backend.llamacpp.adapter = "auto"` use it. Whether answers then
use the tuned ranker is for the calibration to say (the CLI reruns it with the adapter).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genre_agent.errors import ConfigError
from genre_agent.llm.adapters import Adapter, Checkpoint, adapters_dir, record_path, save, sha256_of
from genre_agent.llm.backends.llamacpp import LlamaCppOptions
from genre_agent.llm.calibration import Calibration
from genre_agent.llm.models import resolve_model
from genre_agent.llm.prompts import Prompts
from genre_agent.pipeline import Recommender
from genre_agent.settings import Settings
from genre_agent.tune.examples import Tokenizer, build_examples
from genre_agent.tune.export import write_lora_gguf
from genre_agent.tune.train import TrainConfig, Trained, require_tune_extra, train


@dataclass
class Tuned:
    adapter: Adapter | None  # None: the budget ended before a first checkpoint
    trained: Trained
    info: dict[str, Any] = field(default_factory=dict)
    calibration: tuple[Calibration, Path] | None = None  # the recalibration with the adapter, and its file


def tune_and_calibrate(settings: Settings, calibrated: Settings | None, prompts: Prompts, *, budget_minutes: float,
                       val_users: int, config: TrainConfig, command: str,
                       progress: Callable[[str, int, int], None] | None = None,
                       on_checkpoint: Callable[[Checkpoint], None] | None = None) -> Tuned:
    """`genre-agent tune`: open the service as `recommend` does (`settings`: the base model, no adapter), tune
    its model, then, if the adapter beats the base model and `calibrated` (the settings answers will use) is
    given, recalibrate with it so the router decides whether to use it."""
    from genre_agent.eval.calibrate import run_calibration

    recommender = Recommender.open(settings, progress=progress)
    tuned = tune(recommender, prompts, budget_minutes=budget_minutes, val_users=val_users, config=config,
                 command=command, progress=progress, on_checkpoint=on_checkpoint)
    if tuned.adapter is not None and tuned.adapter.beats_base and calibrated is not None:
        tuned.calibration = run_calibration(calibrated, seed=config.seed, command=command, progress=progress)
    return tuned


def tune(recommender: Recommender, prompts: Prompts, *, budget_minutes: float, val_users: int = 40,
         config: TrainConfig | None = None, command: str = "",
         progress: Callable[[str, int, int], None] | None = None,
         on_checkpoint: Callable[[Checkpoint], None] | None = None) -> Tuned:
    """Tune the configured local model on the recommender's catalog within `budget_minutes` (all of it:
    examples, model loading, training and validation)."""
    settings, catalog = recommender.settings, recommender.catalog
    config = config or TrainConfig()
    if settings.backend.name != "llamacpp":
        raise ConfigError("tune trains the local GGUF model of the llamacpp backend, not the "
                          f"{settings.backend.name} backend: run it with --backend llamacpp.")
    if catalog.interactions.empty:
        raise ConfigError(f"Catalog '{catalog.name}' has no interactions: there is nothing to tune on.")
    require_tune_extra()
    started = time.perf_counter()
    budget_s = budget_minutes * 60
    model_name, model_path = resolve_model(settings.backend.model, settings.data_dir / "models")
    tokenizer = Tokenizer(model_path)
    step = (lambda d, t: progress("examples", d, t)) if progress else None
    n_ctx = settings.backend.options(LlamaCppOptions).n_ctx
    examples = build_examples(settings, catalog, recommender.retriever.index, prompts, tokenizer,
                              val_users=val_users, max_tokens=n_ctx, seed=config.seed, progress=step)
    left = budget_s - (time.perf_counter() - started)
    if left < 60:
        raise ConfigError(f"Building the examples took {budget_s - left:.0f} s of the {budget_s:.0f} s budget: "
                          "raise --budget-minutes.")
    seconds = (lambda d, t: progress("training (seconds of the budget)", int(d), int(t))) if progress else None
    trained = train(model_path, examples.train, examples.val, left, config, seconds, on_checkpoint)
    info = {**examples.info, "architecture": examples.architecture}
    if trained.best is None:
        return Tuned(None, trained, info)
    folder = adapters_dir(settings.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    staged = folder / f"{catalog.name}-{model_name}.staged.gguf"
    write_lora_gguf(staged, examples.architecture, trained.blocks, config.alpha, trained.tensors)
    digest = sha256_of(staged)
    final = folder / f"{catalog.name}-{model_name}-lora-{digest[:8]}.gguf"
    staged.replace(final)
    record = record_path(settings.data_dir, catalog.name, model_name)
    previous = Adapter.model_validate_json(record.read_text()).file if record.is_file() else None
    adapter = Adapter(
        catalog=catalog.name, catalog_fingerprint=catalog.items_fingerprint(), base_model=model_name,
        file=final.name, sha256=digest, size=final.stat().st_size, rank=config.rank, alpha=config.alpha,
        layers=trained.layers, modules=list(config.modules), train_examples=len(examples.train),
        val_users=len(examples.val), base_val_ndcg10=trained.base_val_ndcg10, best=trained.best,
        history=trained.history, seconds=round(time.perf_counter() - started, 1), threads=config.threads,
        command=command, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    save(adapter, settings.data_dir)
    if previous is not None and previous != final.name:
        (folder / previous).unlink(missing_ok=True)  # the record now names the new file
    return Tuned(adapter, trained, info)
