"""End to end with every real part: the shipped MovieLens catalog, embedded Chroma, the offline embedding
model, EASE, and llama.cpp running the bundled SmolLM2 GGUF. Slow (~1-2 min on 2 cores), run in CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from genre_agent.data.catalog import load_catalog
from genre_agent.llm.backends import Completion, Message, Wrapper
from genre_agent.llm.routing import Routes
from genre_agent.pipeline import Recommender
from genre_agent.schemas import RecommendRequest
from genre_agent.settings import load_settings

from conftest import TINY

pytestmark = pytest.mark.real


# Every role asked of the model, as a model never measured is (the bundled one is measured to help with none)
EVERY_ROLE = Routes(ranking_weight=1.0, ranking_method="json", permutations=1, reasons=True,
                    calibration="pinned by the test: every role")


def test_real_model_on_the_tiny_catalog(data_dir: Path) -> None:
    settings = load_settings(catalog=str(TINY), data_dir=data_dir / "real", **{"backend.name": "llamacpp"})
    rec = Recommender.open(settings)
    uncalibrated = rec.recommend("alice", k=2)  # routed as its shipped calibrations: no role, no model call
    assert uncalibrated.llm_roles == [] and uncalibrated.prompt_tokens == 0
    rec.pinned_routes = EVERY_ROLE
    result = rec.recommend("alice", k=2)
    assert result.backend == "llamacpp" and result.model == "smollm2-135m"
    assert result.prompt_tokens > 100 and result.timings_ms.llm > 0
    ids = [r.item_id for r in result.recommendations]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert set(ids) <= {"2", "3", "4", "6"}  # never a seen item (alice rated 1 and 5)
    assert all(r.reason.strip() for r in result.recommendations)


def test_readme_command_on_movielens(tmp_path: Path) -> None:
    """`genre-agent recommend --user 42 --json` in a fresh data dir: builds, then answers the contract."""
    cmd = [sys.executable, "-m", "genre_agent.interfaces.cli", "recommend", "--user", "42", "-k", "5", "--json",
           "--query", "light-hearted space adventure", "--exclude-genre", "Horror", "--data-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    catalog = load_catalog("movielens")
    seen = set(catalog.interactions[catalog.interactions.user_id == "42"].item_id)
    assert data["model"] == "smollm2-135m" and data["k"] == 5 and len(data["recommendations"]) == 5
    for rec in data["recommendations"]:
        assert rec["item_id"] in catalog.items.index and rec["item_id"] not in seen
        assert "Horror" not in catalog.items.at[rec["item_id"], "genres"]
        assert rec["title"] == catalog.items.at[rec["item_id"], "title"]
        assert rec["reason"].strip()


def test_real_model_scores_labels_in_one_pass_and_reuses_the_cache_correctly(data_dir: Path) -> None:
    """Next-token label log-probabilities from llama.cpp: a distribution, identical when a prompt comes back
    after another one (the KV cache keeps only the common prefix)."""
    from genre_agent.llm.backends import make_backend

    backend = make_backend(load_settings(catalog=str(TINY), data_dir=data_dir / "real"))
    ask = lambda q: [{"role": "user", "content": f"{q}\nA. a car\nB. an apple\nC. a chair\n"  # noqa: E731
                                                 "Answer with one letter."}]
    first = backend.option_logprobs(ask("Which one is a fruit?"), ["A", "B", "C"])
    other = backend.option_logprobs(ask("Which one do you sit on?"), ["A", "B", "C"])
    again = backend.option_logprobs(ask("Which one is a fruit?"), ["A", "B", "C"])
    assert all(x < 0 for x in first) and sum(2.718281828 ** x for x in first) <= 1.0
    assert first != other
    assert again == pytest.approx(first, abs=1e-4)


def test_real_model_output_follows_an_edited_template(data_dir: Path, tmp_path: Path) -> None:
    """Editing a copy of rank.j2 changes what the bundled model answers (its raw completion), while the
    delivered answer stays valid and grounded."""
    from typer.testing import CliRunner

    from genre_agent.interfaces.cli import app
    from genre_agent.llm.backends import make_backend

    mine = tmp_path / "mine"
    assert CliRunner().invoke(app, ["prompts", "init", str(mine)]).exit_code == 0
    settings = load_settings(catalog=str(TINY), data_dir=data_dir / "real", prompts=str(mine))
    real = make_backend(settings)
    answers: list[str] = []

    class Recording(Wrapper):
        def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
            out = super().complete(messages, schema, max_tokens)
            answers.append(out.text)
            return out

    rec = Recommender.open(settings, backend=Recording(real))
    rec.pinned_routes = EVERY_ROLE
    before = rec.recommend("alice", k=2)
    first_answer = answers[0]
    rank = mine / "rank.j2"
    rank.write_text(rank.read_text().replace("Pick the {{ k }} best", "Réponds en français. Choisis les {{ k }} "
                                             "meilleurs films. Pick the {{ k }} best"))
    answers.clear()
    after = rec.recommend("alice", k=2)
    assert answers[0] != first_answer
    for result in (before, after):
        assert {r.item_id for r in result.recommendations} <= {"2", "3", "4", "6"}


def test_real_model_writes_reasons_item_by_item(data_dir: Path) -> None:
    """The bundled model asked for the reasons alone: one call per item, each answer checked; the list and
    its order are retrieval's, each item with the model's reason or its evidence sentence (no deadline: tests
    never fail because the machine is slow)."""
    settings = load_settings(catalog=str(TINY), data_dir=data_dir / "real",
                             **{"backend.name": "llamacpp", "ranking.reasons_deadline_s": 3600})
    rec = Recommender.open(settings)
    rec.pinned_routes = Routes(ranking_weight=0.0, ranking_method="json", permutations=1, reasons=True)
    run = rec.run(RecommendRequest(user_id="alice", k=2))
    assert [i for i, _, _ in run.verdicts] == [c.item_id for c in run.candidates[:2]]
    for r, c in zip(run.result.recommendations, run.candidates, strict=False):
        assert r.evidence == c.why and (r.reason_from == "llm") == (r.reason != c.why)
