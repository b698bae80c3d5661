"""`genre-agent tune`: examples from training data only, LoRA training on CPU, the GGUF adapter in llama.cpp.

The training tests use the real bundled model, torch and peft (the `tune` extra, part of `test`) on a small
synthetic catalog: two taste groups of twenty films each, so every user has enough liked items for the three
held-out positives (eval's, the calibration's, tuning's)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from genre_agent.eval.metrics import ndcg_of
from genre_agent.eval.protocol import make_split, validation_split
from genre_agent.interfaces.cli import app
from genre_agent.llm.adapters import adapter_tag, find, sha256_of, with_adapter
from genre_agent.llm.backends.llamacpp import LlamaCppBackend
from genre_agent.llm.calibration import model_id
from genre_agent.llm.models import resolve_model
from genre_agent.llm.scoring import LABELS
from genre_agent.pipeline import Recommender
from genre_agent.settings import load_settings
from genre_agent.tune.examples import Tokenizer, build_examples, tuning_split
from genre_agent.tune.export import write_lora_gguf
from genre_agent.tune.train import TrainConfig, train

CATALOG_TOML = """name = "twotastes"
item_noun = "movie"
item_noun_plural = "movies"

[items]
path = "items.csv"
id = "id"
title = "title"
genres = "genres"
year_from_title = true

[interactions]
path = "ratings.csv"
user = "user"
item = "item"
rating = "rating"
timestamp = "ts"

[text]
template = "{name}. Genres: {genres}."
"""


def two_tastes(folder: Path, users: int = 30) -> Path:
    """Films 1-20 are space adventures, 21-40 love stories; half the users love each kind (12 liked, rated 5
    in a random order) and dislike three of the other kind."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.toml").write_text(CATALOG_TOML)
    items = ["id,title,genres"]
    items += [f"{i},Star Voyage {i} ({1980 + i}),Sci-Fi|Adventure" for i in range(1, 21)]
    items += [f"{i},Summer Love {i} ({1960 + i}),Romance|Drama" for i in range(21, 41)]
    (folder / "items.csv").write_text("\n".join(items) + "\n")
    rows, ts = ["user,item,rating,ts"], 0
    for u in range(users):
        mine, other = (range(1, 21), range(21, 41)) if u % 2 == 0 else (range(21, 41), range(1, 21))
        for item in rng.permutation(list(mine))[:12]:
            ts += 1
            rows.append(f"u{u},{item},5,{ts}")
        for item in rng.permutation(list(other))[:3]:
            ts += 1
            rows.append(f"u{u},{item},1,{ts}")
    (folder / "ratings.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def tastes(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    folder = two_tastes(tmp_path_factory.mktemp("tastes") / "twotastes")
    settings = load_settings(catalog=str(folder), data_dir=tmp_path_factory.mktemp("tune-data"),
                             **{"backend.name": "llamacpp"})
    return Recommender.open(settings)


def test_the_tuning_split_never_holds_out_an_item_eval_or_the_calibration_holds_out(tastes: Recommender) -> None:
    catalog = tastes.catalog
    test = make_split(catalog.interactions, catalog.positive_min)
    calibration = validation_split(test, catalog.positive_min)
    tuning = tuning_split(catalog, 0)
    for u, i in zip(tuning.rows, tuning.test_item, strict=True):
        user = tuning.users[u]
        for other in (test, calibration):
            row = np.flatnonzero(other.users[other.rows] == user)
            if len(row):
                assert other.items[other.test_item[row[0]]] != tuning.items[i]
        assert tuning.X[u, i] == 0  # the target is not a training positive of its own user


def test_ndcg_of_one_target_among_scored_candidates() -> None:
    assert ndcg_of(np.array([3.0, 1.0, 2.0]), 0) == 1.0
    assert ndcg_of(np.array([1.0, 3.0, 2.0]), 0) == pytest.approx(1 / np.log2(4))
    # a tie is broken at random, as `eval` breaks it: the mean of the two places
    assert ndcg_of(np.array([1.0, 1.0]), 1) == pytest.approx((1 + 1 / np.log2(3)) / 2)
    assert ndcg_of(np.arange(20.0), 0) == 0.0


@pytest.mark.real
def test_examples_ask_exactly_what_llm_score_asks_with_the_target_among_them(tastes: Recommender) -> None:
    _, path = resolve_model("smollm2-135m", tastes.settings.data_dir / "models")
    tokenizer = Tokenizer(path)
    examples = build_examples(tastes.settings, tastes.catalog, tastes.retriever.index, tastes.prompts, tokenizer,
                              val_users=5, max_tokens=4096)
    assert examples.architecture == "llama"
    train_users, hard = examples.info["train_users"], examples.info["retriever_examples"]
    assert len(examples.val) == 5 and len(examples.train) == train_users + hard and 0 < hard <= train_users
    assert all(len(e.labels) == 20 and 0 <= e.target < 20 for e in examples.train + examples.val)
    assert examples.train[0].labels == tokenizer.label_ids(20)
    text = tokenizer.llm.detokenize(examples.train[0].tokens, special=True).decode()
    assert "Which movie will this user like most?" in text and text.rstrip().endswith("assistant")
    assert "T. " in text  # twenty labelled candidates
    targets = [e.target for e in examples.train]
    assert len(set(targets)) > 5  # shuffled: the label does not give the answer away


@pytest.mark.real
def test_training_lowers_the_loss_and_the_adapter_changes_llama_cpp_label_scores(tastes: Recommender,
                                                                                 tmp_path: Path) -> None:
    """Known answer: one example trained on repeatedly. Its validation NDCG rises to 1; the GGUF LoRA
    loads in llama.cpp and raises the target label's log-probability there too."""
    _, path = resolve_model("smollm2-135m", tastes.settings.data_dir / "models")
    tokenizer = Tokenizer(path)
    examples = build_examples(tastes.settings, tastes.catalog, tastes.retriever.index, tastes.prompts, tokenizer,
                              val_users=5, max_tokens=4096)
    one = next(e for e in examples.train if e.target >= 10)  # far from the early labels small models favour
    trained = train(path, [one], [one], budget_s=60, config=TrainConfig(lr=5e-3, accumulate=1, checkpoints=2))
    assert trained.best is not None and trained.best.val_ndcg10 > trained.base_val_ndcg10
    assert trained.history[-1].train_loss < trained.history[0].train_loss  # the loss falls
    adapter = tmp_path / "one.gguf"
    write_lora_gguf(adapter, "llama", trained.blocks, 16, trained.tensors)
    assert adapter.stat().st_size < 5_000_000
    messages = [{"role": "user", "content": tokenizer.llm.detokenize(one.tokens, special=True).decode()}]
    labels = list(LABELS[:20])
    base = LlamaCppBackend(path, "smollm2-135m", n_ctx=2048)
    tuned = LlamaCppBackend(path, "smollm2-135m", n_ctx=2048, lora_path=adapter)
    assert tuned.model == "smollm2-135m+one"

    def target_logprob(backend: LlamaCppBackend) -> float:
        scores = np.array(backend.option_logprobs(messages, labels))
        return float(scores[one.target] - np.logaddexp.reduce(scores))

    assert target_logprob(tuned) > target_logprob(base) + 0.5


def test_an_adapter_is_used_only_for_its_catalog_model_and_file(tastes: Recommender, tmp_path: Path) -> None:
    settings = load_settings(catalog=tastes.settings.catalog, data_dir=tmp_path, **{"backend.name": "llamacpp"})
    resolved, why = with_adapter(settings, tastes.catalog)
    assert resolved.backend.llamacpp.adapter == "none" and "none tuned" in why
    assert model_id(resolved) == "smollm2-135m"
    folder = tmp_path / "adapters"
    folder.mkdir()
    gguf = folder / "twotastes-smollm2-135m-lora-abc.gguf"
    gguf.write_bytes(b"not really a gguf")
    record = {"catalog": "twotastes", "catalog_fingerprint": tastes.catalog.items_fingerprint(),
              "base_model": "smollm2-135m", "file": gguf.name, "sha256": sha256_of(gguf),
              "size": 17, "rank": 8, "alpha": 16, "layers": [29], "modules": ["v_proj"], "train_examples": 1,
              "val_users": 5, "base_val_ndcg10": 0.5,
              "best": {"step": 1, "examples": 4, "seconds": 1.0, "val_ndcg10": 0.6, "train_loss": 1.0},
              "history": [], "seconds": 2.0, "threads": 2, "command": "genre-agent tune", "created": "2026-11-26"}
    (folder / "twotastes-smollm2-135m.json").write_text(json.dumps(record))
    resolved, why = with_adapter(settings, tastes.catalog)
    assert resolved.backend.llamacpp.adapter == str(gguf) and "0.500 -> 0.600" in why
    assert model_id(resolved) == "smollm2-135m+twotastes-smollm2-135m-lora-abc" and adapter_tag(resolved)
    assert find(tmp_path, tastes.catalog, "qwen2.5-coder-0.5b")[0] is None  # another model: its own record
    none = load_settings(catalog=tastes.settings.catalog, data_dir=tmp_path,
                         **{"backend.name": "llamacpp", "backend.llamacpp.adapter": "none"})
    assert with_adapter(none, tastes.catalog)[0].backend.llamacpp.adapter == "none"
    worse = {**record, "best": {**record["best"], "val_ndcg10": 0.4}}
    (folder / "twotastes-smollm2-135m.json").write_text(json.dumps(worse))
    adapter, why = find(tmp_path, tastes.catalog, "smollm2-135m")
    assert adapter is None and "did not beat the base model" in why and str(gguf.name) in why
    (folder / "twotastes-smollm2-135m.json").write_text(json.dumps(record))
    gguf.write_bytes(b"changed since tuning")
    adapter, why = find(tmp_path, tastes.catalog, "smollm2-135m")
    assert adapter is None and "sha256" in why and "rerun `genre-agent tune`" in why


def test_tune_says_when_a_catalog_is_too_small_to_tune_on(data_dir: Path) -> None:
    from tests.conftest import TINY

    result = CliRunner().invoke(app, ["tune", "--catalog", str(TINY), "--budget-minutes", "2", "--val-users", "5",
                                      "--data-dir", str(data_dir)])
    assert result.exit_code == 2, result.output
    assert "too little data to tune" in result.output
