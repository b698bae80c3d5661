"""Evaluation: the split and baselines reproduce the reference implementation, metrics have known answers,
the LLM method never scores below its own retrieval order when it falls back, and the reports are written."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from genre_agent.data.catalog import load_catalog
from genre_agent.eval.llm_methods import FUSION_GRID, Measured, pinned, tune_llm_fusion
from genre_agent.eval.methods import Scorer
from genre_agent.eval.metrics import beyond_accuracy, expected_ranks, rank_metrics
from genre_agent.eval.protocol import make_split, training_catalog, validation_split
from genre_agent.eval.served import open_on, served_lists
from genre_agent.interfaces.cli import app
from genre_agent.llm.backends import FakeBackend, Message
from genre_agent.llm.prompts import Prompts, resolve_prompts_dir
from genre_agent.llm.scoring import rank_fusion
from genre_agent.pipeline import Recommender
from genre_agent.settings import load_settings

ROOT = Path(__file__).parents[1]
MOVIELENS = ROOT / "catalogs" / "movielens"


def _reference():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("reference_baselines", ROOT / "tests/reference/baselines.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_movielens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MovieLens-layout folder: 120 users (every 5th), the 400 movies they rated most, all their ratings."""
    ratings = pd.read_csv(MOVIELENS / "ratings.csv")
    ratings = ratings[ratings.userId % 5 == 0]
    top = ratings.movieId.value_counts().index[:400]
    ratings = ratings[ratings.movieId.isin(top)]
    movies = pd.read_csv(MOVIELENS / "movies.csv")
    folder = tmp_path_factory.mktemp("ml-small")
    movies[movies.movieId.isin(top)].to_csv(folder / "movies.csv", index=False)
    ratings.to_csv(folder / "ratings.csv", index=False)
    return folder


def test_baselines_match_the_reference_implementation(small_movielens: Path) -> None:
    ref = _reference()
    df = ref.load(str(small_movielens))
    X, eval_users, test_item, seen, cands, info = ref.split(df, "pos4")
    catalog = load_catalog(str(small_movielens))
    split = make_split(catalog.interactions, catalog.positive_min)
    assert split.info["eval_users"] == info["eval_users"] > 50
    assert (split.rows == eval_users).all() and (split.cands == cands).all()
    settings = load_settings(catalog=str(small_movielens))
    pos = np.arange(len(split.rows))
    scorer = Scorer(split, catalog, lambda ids: np.zeros((0, 0)), settings, pos)
    pairs = {"random": ref.m_random, "pop": ref.m_pop, "itemknn": ref.m_itemknn, "ease": ref.make_ease(500.0),
             "als": ref.m_als}
    for method, reference in pairs.items():
        ref_full, ref_sampled = ref.evaluate(reference(X, eval_users), test_item, seen, cands)
        full, sampled = rank_metrics(scorer.scores(method), split, pos, (10,))
        for ours, theirs in ((full, ref_full), (sampled, ref_sampled)):
            got = (ours["HR@10"].mean(), ours["NDCG@10"].mean(), ours["MRR"].mean())
            assert np.allclose(got, theirs, atol=0.002), (method, got, theirs)


def test_expected_rank_metrics_known_answers() -> None:
    m = expected_ranks(np.array([0, 1]), np.array([0, 1]), (1, 5))
    # user 0: the test item is first. user 1: it is 2nd or 3rd with equal chance.
    assert m["HR@1"].tolist() == [1.0, 0.0]
    assert m["HR@5"].tolist() == [1.0, 1.0]
    assert m["MRR"] == pytest.approx([1.0, (1 / 2 + 1 / 3) / 2])
    assert m["NDCG@5"] == pytest.approx([1.0, (1 / np.log2(3) + 1 / np.log2(4)) / 2])
    assert m["P@5"] == pytest.approx([0.2, 0.2])
    assert m["F1@5"] == pytest.approx([2 * 0.2 / 1.2, 2 * 0.2 / 1.2])


def test_beyond_accuracy_known_answers() -> None:
    genres = [{"A"}, {"A"}, {"B"}, {"A", "B"}]
    top = np.array([[0, 1], [0, 2]])
    got = beyond_accuracy(top, genres, pop=np.array([3.0, 0.0, 0.0, 0.0]))
    assert got["coverage"] == 3 / 4
    assert got["diversity"] == pytest.approx((0.0 + 1.0) / 2)
    share = np.array([4, 1, 1, 1]) / 7
    assert got["novelty"] == pytest.approx(np.mean(-np.log2(share[[0, 1, 0, 2]])))


def test_llm_method_falls_back_to_exactly_the_served_order_and_counts_hallucinations(
        small_movielens: Path, tmp_path: Path) -> None:
    settings = load_settings(catalog=str(small_movielens), data_dir=tmp_path / "data",
                             **{"backend.name": "fake", "ranking.retries": 1})
    catalog = load_catalog(settings.catalog)
    split = make_split(catalog.interactions, catalog.positive_min)
    pos = split.subsample(8, seed=0)
    rec = open_on(settings, catalog, split)
    invented = json.dumps({"recommendations": [{"item_id": "999999", "reason": "x"}]})
    backend = FakeBackend([invented] * 100)
    lists, stats = Measured(rec, backend, tmp_path / "cache").lists(pinned("llm"), split, pos, 10)
    summary = stats.summary()
    assert summary["json_valid_pct"] == 100.0
    assert summary["hallucinated_id_pct"] == 100.0
    assert summary["fallback_pct"] == 100.0 and summary["reask_pct"] == 100.0
    assert len(backend.calls) == 16  # one ask and one re-ask per user
    assert lists == served_lists(rec, split, pos, "sampled", 10)  # what is served without the model
    assert all(len(ids) == 10 and set(ids) <= set(split.items[split.cands[p]])
               for ids, p in zip(lists, pos, strict=True))
    # a rerun answers from the cache by prompt hash: the backend is not called again
    again = FakeBackend()
    lists2, _ = Measured(rec, again, tmp_path / "cache").lists(pinned("llm"), split, pos, 10)
    assert again.calls == [] and lists2 == lists


def test_eval_served_returns_exactly_what_recommend_serves(small_movielens: Path, tmp_path: Path) -> None:
    """The lists `eval --methods served` scores are the lists `recommend` gives the same 50 users when the
    catalog holds the evaluation's training part."""
    out = tmp_path / "eval-out"
    data = ["--data-dir", str(tmp_path / "data"), "--backend", "fake"]  # uncalibrated: the model ranks too
    result = CliRunner().invoke(app, ["eval", "--catalog", str(small_movielens), "--methods", "served,ease",
                                      "--users", "50", "--out", str(out), *data])
    assert result.exit_code == 0, result.output
    served = json.loads((out / "report.json").read_text())["results"]["full"]["served"]["lists"]
    assert len(served) == 50
    catalog = load_catalog(str(small_movielens))
    training = tmp_path / "training"  # the same catalog folder, with only the training ratings
    training.mkdir()
    (training / "movies.csv").write_bytes((small_movielens / "movies.csv").read_bytes())
    before = training_catalog(catalog, make_split(catalog.interactions, catalog.positive_min)).interactions
    before.rename(columns={"user_id": "userId", "item_id": "movieId"}).to_csv(training / "ratings.csv",
                                                                             index=False)
    rec = Recommender.open(load_settings(catalog=str(training), data_dir=tmp_path / "data",
                                         **{"backend.name": "fake"}))
    for user, ids in served.items():
        assert [r.item_id for r in rec.recommend(user_id=user).recommendations] == ids, user
    user = next(iter(served))
    cli = CliRunner().invoke(app, ["recommend", "--catalog", str(training), "--user", user, "--json", *data])
    assert cli.exit_code == 0, cli.output
    assert [r["item_id"] for r in json.loads(cli.stdout)["recommendations"]] == served[user]


def test_eval_command_writes_the_three_reports(small_movielens: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval-out"
    result = CliRunner().invoke(app, ["eval", "--catalog", str(small_movielens), "--methods", "random,pop,ease",
                                      "--out", str(out), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["results"]) == {"sampled", "full"}
    assert set(report["results"]["sampled"]) == {"random", "pop", "ease"}
    # random is exactly chance level on the sampled protocol: the test item is uniform over 20 positions
    assert report["results"]["sampled"]["random"]["HR@10"] == pytest.approx(0.5)
    assert report["results"]["sampled"]["ease"]["NDCG@10"] > report["results"]["sampled"]["pop"]["NDCG@10"]
    assert report["config"]["seed"] == 0 and len(report["commit"]) >= 7
    assert "| ease |" in (out / "report.md").read_text()
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_command_rejects_unknown_methods(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--methods", "ease,gpt5", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "methods are" in result.output
    assert not (tmp_path / "report.json").exists()


def test_label_scoring_finds_the_preferred_item_in_every_candidate_order() -> None:
    from genre_agent.llm.scoring import verbalizer_scores

    from helpers import CANDIDATES

    backend = FakeBackend()
    backend.preferred = ["Big (1988)"]
    prompts = Prompts(resolve_prompts_dir("default"))
    scores = verbalizer_scores(backend, prompts, CANDIDATES, permutations=4, seed=1, item_noun="movie",
                               item_noun_plural="movies", history=[], query=None)
    assert len(backend.calls) == 4
    assert int(np.argmax(scores)) == 2  # Big, whatever its position in each shuffled list
    # normalised over the labels: exp(0) / (exp(0) + 2 exp(-5)) for Big in every order
    assert scores[2] == pytest.approx(-np.log1p(2 * np.exp(-5.0)))
    first = backend.calls[0][0]["content"]
    assert "A. Aliens (1986) (Sci-Fi, Action)" in first and first.endswith("Answer with one letter.")


def test_rank_fusion_weights_interpolate_between_the_two_orders() -> None:
    inf = -np.inf
    hybrid = np.array([[3.0, 2.0, 1.0, 0.0]])
    llm = np.array([[-3.0, -2.0, -1.0, inf]])  # item 3 is not a candidate
    order = lambda S: [int(i) for i in np.argsort(-S[0], kind="stable") if np.isfinite(S[0, i])]  # noqa: E731
    assert order(rank_fusion(hybrid, llm, 0.0)) == [0, 1, 2]
    assert order(rank_fusion(hybrid, llm, 1.0)) == [2, 1, 0]
    assert order(rank_fusion(hybrid, llm, 0.5)) == [0, 1, 2]  # a tie in mean rank goes to the hybrid order
    assert not np.isfinite(rank_fusion(hybrid, llm, 0.5)[0, 3])


class Contrarian(FakeBackend):
    """Prefers the labels shown last: it reverses whatever order it is shown."""

    def option_logprobs(self, messages: list[Message], options: list[str]) -> list[float]:
        return [float(n) for n in range(len(options))]


def test_llm_fusion_weight_is_zero_for_a_model_that_ranks_against_the_evidence(
        small_movielens: Path, tmp_path: Path) -> None:
    """A model that reverses the served order gets weight 0 on validation: the fused ranking is the served one."""
    settings = load_settings(catalog=str(small_movielens), data_dir=tmp_path / "data", **{"backend.name": "fake"})
    catalog = load_catalog(settings.catalog)
    val = validation_split(make_split(catalog.interactions, catalog.positive_min), catalog.positive_min)
    measured = Measured(open_on(settings, catalog, val), Contrarian(), None)
    weight, table = tune_llm_fusion(measured, "logprobs", val, permutations=1, users=40, k=10)
    assert weight == 0.0
    assert [row["weight_llm"] for row in table] == list(FUSION_GRID)
    assert table[0]["val_NDCG@10"] > table[-1]["val_NDCG@10"]
    assert table[0]["gain_ci95_lo"] == table[0]["gain_ci95_hi"] == 0.0  # weight 0 against itself
    assert table[-1]["gain_ci95_hi"] < 0  # reversing the order is measurably worse, user by user
