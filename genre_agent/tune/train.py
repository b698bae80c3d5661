"""LoRA training of the local model as a ranker, on CPU, within a time budget (needs the `tune` extra).

The GGUF is read by transformers' GGUF loader (de-quantized to float32), LoRA matrices are added to the
value, attention-output and MLP-down projections of the top layers (peft), and trained with the
cross-entropy of the target's label among the candidates' labels at the answer position: exactly the
normalised label log-probabilities `llm-score` reads. Validation NDCG@10 is measured before training (the base
model) and at checkpoints; the best checkpoint is kept.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genre_agent.errors import ConfigError
from genre_agent.eval.metrics import ndcg_of
from genre_agent.llm.adapters import Checkpoint
from genre_agent.tune.examples import Example


@dataclass(frozen=True)
class TrainConfig:
    rank: int = 8
    alpha: int = 16
    modules: tuple[str, ...] = ("v_proj", "o_proj", "down_proj")
    top_layers: float = 1 / 3  # share of the layers (from the top) that get LoRA matrices
    lr: float = 3e-4
    accumulate: int = 4  # examples per optimizer step
    checkpoints: int = 4  # validations spread over the budget, besides the base model's
    threads: int = 2
    seed: int = 0


@dataclass
class Trained:
    base_val_ndcg10: float
    best: Checkpoint | None  # the trained checkpoint with the best validation NDCG@10 (None: none trained)
    history: list[Checkpoint]
    tensors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # of the best checkpoint
    layers: list[int] = field(default_factory=list)
    blocks: int = 0
    seconds: float = 0.0


def require_tune_extra() -> None:
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ConfigError('Tuning needs the tune extra: pip install -e ".[tune]" (CPU torch, transformers, '
                          f"peft; {exc.name} is missing).") from exc


def train(model_path: Path, train_examples: list[Example], val_examples: list[Example], budget_s: float,
          config: TrainConfig, progress: Callable[[float, float], None] | None = None,
          on_checkpoint: Callable[[Checkpoint], None] | None = None) -> Trained:
    """Train within `budget_s` seconds (the base model's validation included) and keep the best checkpoint."""
    require_tune_extra()
    import peft
    import torch as T
    import transformers

    started = time.perf_counter()
    T.manual_seed(config.seed)
    T.set_num_threads(config.threads)
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers|peft")
    os.environ["TQDM_DISABLE"] = "1"  # the GGUF loader's de-quantizing bar would cut through our progress bar
    try:
        base = transformers.AutoModelForCausalLM.from_pretrained(str(model_path.parent),
                                                                  gguf_file=model_path.name, dtype=T.float32)
    finally:
        os.environ.pop("TQDM_DISABLE", None)
    blocks = int(base.config.num_hidden_layers)
    layers = list(range(blocks - max(1, round(blocks * config.top_layers)), blocks))
    lora = peft.LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0,
                           target_modules=list(config.modules), layers_to_transform=layers)
    model = peft.get_peft_model(base, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = T.optim.AdamW(params, lr=config.lr)

    def label_logits(example: Example) -> T.Tensor:
        logits = model(T.tensor([example.tokens]), logits_to_keep=1).logits[0, -1]
        return logits[T.tensor(example.labels)]

    def validate() -> tuple[float, float]:
        t0 = time.perf_counter()
        model.eval()
        with T.no_grad():
            scores = [ndcg_of(label_logits(e).numpy(), e.target) for e in val_examples]
        model.train()
        return float(np.mean(scores)), time.perf_counter() - t0

    def snapshot() -> dict[str, tuple[np.ndarray, np.ndarray]]:
        weights = {name: p.detach().numpy().copy() for name, p in model.named_parameters() if "lora_" in name}
        out = {}
        for name, a in weights.items():
            if ".lora_A." in name:
                hf = name.replace("base_model.model.", "", 1).replace(".lora_A.default", "")
                out[hf] = (a, weights[name.replace(".lora_A.", ".lora_B.")])
        return out

    base_score, val_s = validate()
    if on_checkpoint:  # the base model, as checkpoint 0 (not part of the history)
        on_checkpoint(Checkpoint(step=0, examples=0, seconds=round(time.perf_counter() - started, 1),
                                 val_ndcg10=round(base_score, 5), train_loss=None))
    history: list[Checkpoint] = []
    best: Checkpoint | None = None
    tensors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    every = (budget_s - (time.perf_counter() - started)) / config.checkpoints
    next_check = time.perf_counter() + every
    seen = step = 0
    losses: list[float] = []
    model.train()
    while True:
        now = time.perf_counter()
        finishing = now - started + val_s + 5 > budget_s
        if now >= next_check or finishing:
            score, val_s = validate()
            point = Checkpoint(step=step, examples=seen, seconds=round(time.perf_counter() - started, 1),
                               val_ndcg10=round(score, 5),
                               train_loss=round(float(np.mean(losses)), 5) if losses else None)
            losses.clear()
            history.append(point)
            if best is None or score > best.val_ndcg10:
                best, tensors = point, snapshot()
            if on_checkpoint:
                on_checkpoint(point)
            next_check = time.perf_counter() + every
            if finishing:
                break
        example = train_examples[seen % len(train_examples)]
        loss = T.nn.functional.cross_entropy(label_logits(example)[None], T.tensor([example.target]))
        (loss / config.accumulate).backward()
        losses.append(float(loss.detach()))
        seen += 1
        if seen % config.accumulate == 0:
            optimizer.step()
            optimizer.zero_grad()
            step += 1
        if progress:
            progress(min(time.perf_counter() - started, budget_s), budget_s)
    return Trained(base_val_ndcg10=round(base_score, 5), best=best, history=history, tensors=tensors,
                   layers=layers, blocks=blocks, seconds=round(time.perf_counter() - started, 1))
