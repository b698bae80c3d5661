"""Routing by calibration: a role with no measured gain is never called; explicit settings win; the answer
says what the LLM did. The fake backend records every call (completions and label scoring alike)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from genre_agent.chat.agent import Agent
from genre_agent.data.feedback import SQLiteStore
from genre_agent.llm.backends import FakeBackend
from genre_agent.llm.backends.base import Completion, cancel_event, raise_if_cancelled
from genre_agent.llm.calibration import Calibration, Ranking, Reading, Reasons, key_for, save
from genre_agent.pipeline import Recommender
from genre_agent.schemas import Recommendations, RecommendRequest
from genre_agent.settings import load_settings

from conftest import tiny_settings

SAID_FOR_D = "A Sci-Fi film close to Laugh Riot Again (1997), which you rated highly."  # for user d's top item:
# grounded, and "Sci-Fi" is not in its evidence sentence


def _recommender(tiny_recommender: Recommender, data_dir: Path, backend: FakeBackend,
                 **overrides: object) -> Recommender:
    """The session's tiny catalog and index, with its own data dir (so its calibrations stay local)."""
    return Recommender(tiny_settings(data_dir, **overrides), tiny_recommender.catalog, tiny_recommender.retriever,
                       backend)


def _calibrate(rec: Recommender, *, weight: float = 0.0, accepted: int = 5, asked: int = 10,
               informative: int | None = None, reading_fields: list[str] | None = None,
               gain_ci95: tuple[float, float] = (0.002, 0.02)) -> Calibration:
    grid = [{"weight_llm": w, "val_NDCG@10": 0.5 + (0.01 if w == weight else 0.0)} for w in (0.0, 0.3)]
    calibration = Calibration(
        key=key_for(rec.settings, rec.catalog, rec.prompts), prompts="default",
        ranking=Ranking(method="logprobs", weight=weight, users=40, permutations=2, grid=grid,
                        gain_ci95=gain_ci95 if weight > 0 else (0.0, 0.0)),
        reasons=Reasons(accepted=accepted, informative=accepted if informative is None else informative,
                        asked=asked, users=4),
        reading=Reading(measured=reading_fields is not None, fields=reading_fields or []),
        command="genre-agent calibrate", seconds=1.0, created="2026-11-25T17:00:00+00:00",
    )
    save(calibration, rec.settings.data_dir)
    return calibration


def test_roles_with_no_measured_gain_are_never_called(tiny_recommender: Recommender, tmp_path: Path) -> None:
    backend = FakeBackend()
    rec = _recommender(tiny_recommender, tmp_path, backend)
    _calibrate(rec, weight=0.0, accepted=5, asked=10)  # no ranking gain, 50% grounded reasons, reading unmeasured
    result = rec.recommend("alice", k=2)
    agent = Agent(rec, SQLiteStore(tmp_path / "feedback.sqlite3"))
    reply = agent.chat("s", "I loved Star Quest, no comedy please")
    assert backend.calls == []  # neither the answer nor the chat turn asked the model anything
    assert result.llm_roles == [] and result.ranked_by == "retrieval" and not result.fallback
    assert [r.reason_from for r in result.recommendations] == ["evidence", "evidence"]
    candidates = rec.run(RecommendRequest(user_id="alice", k=2)).candidates
    assert [(r.item_id, r.reason) for r in result.recommendations] == [(c.item_id, c.why) for c in candidates[:2]]
    assert "local calibration of fake:fake on tiny" in result.calibration
    assert reply.recommendations is not None and reply.recommendations.llm_roles == []


def test_explicit_reading_setting_wins_over_the_calibration(tiny_recommender: Recommender, tmp_path: Path) -> None:
    backend = FakeBackend()
    rec = _recommender(tiny_recommender, tmp_path, backend, **{"conversation.understand_with_llm": True})
    _calibrate(rec)
    Agent(rec, SQLiteStore(tmp_path / "feedback.sqlite3")).chat("s", "I loved Star Quest")
    assert len(backend.calls) == 1  # the reading only: ranking and reasons stay off
    assert "Message: \"I loved Star Quest\"" in backend.calls[0][1]["content"]


def test_a_ranking_gain_within_noise_is_not_routed(tiny_recommender: Recommender, tmp_path: Path) -> None:
    """SmolLM2 on MovieLens: tuned weight 0.2 with a gain whose interval straddles 0 — no ranking call."""
    backend = FakeBackend()
    rec = _recommender(tiny_recommender, tmp_path, backend)
    _calibrate(rec, weight=0.2, gain_ci95=(-0.004, 0.011))
    assert rec.routes().ranking_weight == 0.0
    result = rec.recommend("alice", k=2)
    assert backend.calls == [] and result.ranked_by == "retrieval"


def test_measured_ranking_gain_fuses_the_label_scores(tiny_recommender: Recommender, tmp_path: Path) -> None:
    backend = FakeBackend()
    backend.preferred = ["Laugh Riot Again"]
    rec = _recommender(tiny_recommender, tmp_path, backend)
    request = RecommendRequest(user_id="alice", query="space", k=4)
    retrieval = [c.item_id for c in rec.run(request).candidates]  # the retrieval order
    backend.calls.clear()
    backend.schemas.clear()
    rec.reload_calibrations()
    _calibrate(rec, weight=1.0)
    result = rec.recommend("alice", query="space", k=4)
    assert len(backend.calls) == 2 and backend.schemas == [None, None]  # 2 label-scoring passes, no decoding
    assert result.llm_roles == ["ranking"] and result.ranked_by == "llm-fused"
    ids = [r.item_id for r in result.recommendations]
    assert ids[0] == "4" and ids != retrieval[:4]  # the model's favourite leads at weight 1


def test_reasons_role_keeps_grounded_reasons_and_evidence_for_the_rest(tiny_recommender: Recommender,
                                                                      tmp_path: Path) -> None:
    """One call per item of the retrieval order, the item last in its prompt; a reason is kept only if it is
    grounded and informative."""
    backend = FakeBackend()
    rec = _recommender(tiny_recommender, tmp_path, backend)
    _calibrate(rec, accepted=19, asked=20)
    top = rec.run(RecommendRequest(user_id="d", k=2)).candidates[:2]
    backend.calls.clear()
    said = SAID_FOR_D
    copied = "Tagged space, and rated highly by 4 users."  # all in the evidence sentence already
    backend.queue.extend([json.dumps({"reason": said}), json.dumps({"reason": copied})])
    result = rec.recommend("d", k=2)
    assert result.llm_roles == ["reasons"] and result.ranked_by == "retrieval"
    assert [r.item_id for r in result.recommendations] == [c.item_id for c in top]  # the order stays ours
    first, second = result.recommendations
    assert (first.reason_from, first.reason) == ("llm", said)
    assert (second.reason_from, second.reason) == ("evidence", top[1].why)
    assert (first.evidence, second.evidence) == (top[0].why, top[1].why)  # a client can show both
    assert [call[-1]["content"].rsplit("Why it was picked: ", 1)[1] for call in backend.calls] == \
        [c.why for c in top]  # each call ends with its own item


def test_changed_templates_make_the_calibration_stale(tiny_recommender: Recommender, tmp_path: Path) -> None:
    rec = _recommender(tiny_recommender, tmp_path, FakeBackend())
    _calibrate(rec)
    assert rec.calibration().state == "local"
    edited = tmp_path / "my-prompts"
    edited.mkdir()
    (edited / "profile.toml").write_text('extends = "default"\n')
    (edited / "reason.j2").write_text("{#- Variables: evidence -#}\nliked by {{ evidence.liked_by }}\n")
    in_force = rec.calibration(str(edited))
    assert in_force.state == "stale" and "run `genre-agent calibrate`" in in_force.describe()
    assert not rec.routes(str(edited)).ranking  # the stale calibration's routing is kept until then


def test_without_any_calibration_every_role_is_asked(tiny_recommender: Recommender, tmp_path: Path) -> None:
    backend = FakeBackend()
    rec = _recommender(tiny_recommender, tmp_path, backend)
    result = rec.recommend("alice", k=2)
    assert result.fallback and len(backend.calls) == 2  # asked, re-asked, failed: that is what fallback means
    assert "uncalibrated: every role is asked (a model not measured on any catalog)" in result.calibration


def test_a_catalog_without_calibration_routes_the_bundled_model_as_it_was_measured_elsewhere(
        tiny_recommender: Recommender, tmp_path: Path) -> None:
    """Its calibrations on both shipped catalogs route nothing to it: neither does a catalog of the user's."""
    backend = FakeBackend()
    rec = _recommender(tiny_recommender, tmp_path, backend,
                       **{"backend.name": "llamacpp", "backend.model": "smollm2-135m"})
    result = rec.recommend("alice", k=2)
    assert backend.calls == [] and result.llm_roles == [] and not result.fallback
    assert ("uncalibrated on this catalog: routed as llamacpp:smollm2-135m was measured on the shipped catalogs "
            "(goodbooks, movielens); run `genre-agent calibrate`") in result.calibration
    assert rec.routes().reading == frozenset()


@pytest.mark.parametrize("fields, expected", [(None, set()), ([], set()), (["genres"], {"genres"})])
def test_reading_is_routed_by_its_measured_fields(tiny_recommender: Recommender, tmp_path: Path,
                                                  fields: list[str] | None, expected: set[str]) -> None:
    rec = _recommender(tiny_recommender, tmp_path, FakeBackend())
    _calibrate(rec, reading_fields=fields)
    assert rec.routes().reading == expected


def _synthetic_catalog(root: Path) -> Path:
    """24 users in two taste groups over 40 movies, 10 liked movies each: enough for a validation split."""
    root.mkdir()
    genres = ["Sci-Fi", "Comedy"]
    movies = ["movieId,title,genres"] + [f"{i},Movie {i} ({1980 + i}),{genres[i % 2]}" for i in range(1, 41)]
    ratings = ["userId,movieId,rating,timestamp"]
    for u in range(1, 25):
        liked = [i for i in range(1, 41) if i % 2 == u % 2][(u % 8):(u % 8) + 10]
        ratings += [f"{u},{i},5.0,{1000 * u + n}" for n, i in enumerate(liked)]
    (root / "movies.csv").write_text("\n".join(movies) + "\n")
    (root / "ratings.csv").write_text("\n".join(ratings) + "\n")
    return root


def test_calibrate_then_route_end_to_end(tmp_path: Path) -> None:
    """A model whose scores carry no signal and that writes nothing: calibration measures weight 0 and no
    grounded reasons, saves it, and the next answers never call the model."""
    from genre_agent.eval.calibrate import calibrate
    from genre_agent.llm.calibration import find

    settings = load_settings(catalog=str(_synthetic_catalog(tmp_path / "ml")), data_dir=tmp_path / "data", k=3,
                             **{"backend.name": "fake"})
    rec = Recommender.open(settings, backend=FakeBackend())
    backend = FakeBackend()
    result = calibrate(settings, rec, backend, rec.prompts, "default", users=10, reason_users=2, permutations=2,
                       command="calibrate --users 10")
    assert result.ranking.method == "logprobs" and result.ranking.weight == 0.0
    assert result.ranking.users == 10 and len(backend.calls) > 2 * 10  # 2 orders per user, then the reasons
    assert result.reasons.asked == 6 and result.reasons.accepted == 0
    save(result, settings.data_dir)
    assert find(settings.data_dir, result.key).state == "local"
    backend.calls.clear()
    answer = rec.with_backend(backend).recommend("1", k=3)
    assert backend.calls == [] and answer.llm_roles == [] and not answer.fallback
    again = result
    for n in range(2):  # the reasons measured again, twice: each role names the one command that measured it
        again = calibrate(settings, rec, backend, rec.prompts, "default", users=10, reason_users=2,
                          permutations=2, roles=("reasons",), keep=again, command=f"calibrate --roles reasons {n}")
    assert again.measured_by == {"ranking": "calibrate --users 10", "reasons": "calibrate --roles reasons 1",
                                 "reading": "calibrate --users 10"}
    assert again.ranking == result.ranking and again.command == "calibrate --roles reasons 1"


def test_the_list_comes_at_once_and_the_models_reasons_after(tiny_recommender: Recommender,
                                                             tmp_path: Path) -> None:
    """With reasons routed to the model, `on_first` gets the retrieval order with evidence reasons before the
    model is called; the returned answer has the model's grounded reasons for the same items."""
    backend = FakeBackend()
    rec = _recommender(tiny_recommender, tmp_path, backend)
    _calibrate(rec, accepted=19, asked=20)
    top = rec.run(RecommendRequest(user_id="d", k=2)).candidates[:2]
    backend.calls.clear()
    backend.queue.extend([json.dumps({"reason": SAID_FOR_D}),
                          json.dumps({"reason": "A film about a dystopian future, with robots."})])
    firsts: list[tuple[int, Recommendations]] = []
    final = rec.run(RecommendRequest(user_id="d", k=2),
                    on_first=lambda run: firsts.append((len(backend.calls), run.result))).result
    (calls_before, first), = firsts
    assert calls_before == 0 and backend.calls  # the first answer came before the model was asked
    assert first.pending == ["reasons"] and first.llm_roles == [] and final.pending == []
    assert [(r.item_id, r.reason, r.reason_from) for r in first.recommendations] == \
        [(c.item_id, c.why, "evidence") for c in top]
    assert [r.item_id for r in final.recommendations] == [c.item_id for c in top]
    assert [r.reason_from for r in final.recommendations] == ["llm", "evidence"]  # the invented one is dropped
    assert "still working on reasons" in first.what_the_llm_did()


def test_no_first_answer_when_the_model_has_no_role(tiny_recommender: Recommender, tmp_path: Path) -> None:
    backend = FakeBackend()
    rec = _recommender(tiny_recommender, tmp_path, backend)
    _calibrate(rec)  # 50% grounded reasons, no ranking gain: the answer is complete at once
    firsts: list[object] = []
    result = rec.run(RecommendRequest(user_id="alice", k=2), on_first=firsts.append).result
    assert firsts == [] and result.pending == [] and backend.calls == []


def test_the_python_api_hands_over_each_reason_as_it_is_written(tiny_recommender: Recommender,
                                                                tmp_path: Path) -> None:
    backend = FakeBackend([json.dumps({"reason": SAID_FOR_D})])
    rec = _recommender(tiny_recommender, tmp_path, backend)
    _calibrate(rec, accepted=19, asked=20)
    agent = Agent(rec, SQLiteStore(tmp_path / "feedback.sqlite3"))
    heard: list[tuple[int, str]] = []
    result = agent.recommend("d", k=2, on_reason=lambda r: heard.append((len(backend.calls), r.reason)))
    assert heard == [(1, SAID_FOR_D)]  # handed over after the first call, before the second
    assert [r.reason_from for r in result.recommendations] == ["llm", "evidence"]


class CancelledAtTheSecondItem(FakeBackend):
    """Writes the first item's reason; the person presses Ctrl-C while it writes the second."""

    def complete(self, messages: list[dict[str, str]], schema: dict[str, object] | None,
                 max_tokens: int) -> Completion:
        if self.calls:
            self.cancel.set()
            raise_if_cancelled()
        return super().complete(messages, schema, max_tokens)


def test_a_cancelled_chat_turn_keeps_the_list_and_the_reasons_written_so_far(tiny_recommender: Recommender,
                                                                            tmp_path: Path) -> None:
    backend = CancelledAtTheSecondItem([json.dumps({"reason": SAID_FOR_D})])
    backend.cancel = threading.Event()
    rec = _recommender(tiny_recommender, tmp_path, backend, k=2)
    _calibrate(rec, accepted=19, asked=20)
    agent = Agent(rec, SQLiteStore(tmp_path / "feedback.sqlite3"))
    firsts: list[object] = []
    reply = agent.chat("s", "recommend something", user="d", cancel=backend.cancel, on_first=firsts.append)
    assert firsts and reply.recommendations is not None
    first, second = reply.recommendations.recommendations
    assert (first.reason_from, first.reason) == ("llm", SAID_FOR_D)
    assert second.reason_from == "evidence" and SAID_FOR_D in reply.text


class StallsAfterOne(FakeBackend):
    """Writes the first item's reason, then hangs until the call is cancelled."""

    def complete(self, messages: list[dict[str, str]], schema: dict[str, object] | None,
                 max_tokens: int) -> Completion:
        if self.calls:
            event = cancel_event()
            assert event is not None
            event.wait(10)
            raise_if_cancelled()
        return super().complete(messages, schema, max_tokens)


def test_a_stalled_model_leaves_the_list_with_evidence_reasons_after_the_deadline(
        tiny_recommender: Recommender, tmp_path: Path) -> None:
    backend = StallsAfterOne([json.dumps({"reason": SAID_FOR_D})])
    rec = _recommender(tiny_recommender, tmp_path, backend, **{"ranking.reasons_deadline_s": 0.5})
    _calibrate(rec, accepted=19, asked=20)
    result = rec.recommend("d", k=3)
    assert [r.reason_from for r in result.recommendations] == ["llm", "evidence", "evidence"]
    assert not result.fallback and result.timings_ms.llm < 5000
