"""The learned ranker: its features on tiny known data, the examples it keeps, training on a known signal, the
file it is kept in (missing, stale, corrupted -> the hand-weighted order with a warning; trained for the same items
on older interactions -> used when serving, never when evaluating), and `fit` through the served path."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from genre_agent.data.feedback import SQLiteStore
from genre_agent.errors import ConfigError, DataDirError
from genre_agent.eval.conversation_fit import conversation_examples
from genre_agent.eval.dialogues import split_of
from genre_agent.eval.ranker_fit import ensure_fitted, examples, fit
from genre_agent.filters import Filters
from genre_agent.llm.backends import FakeBackend
from genre_agent.pipeline import Recommender, build, catalog_state, ranker_dir, served_catalog
from genre_agent.rank.cf_sources import SOURCES
from genre_agent.rank.examples import Collector
from genre_agent.rank.features import NAMES, ItemTable, RequestSignals, features
from genre_agent.rank.mentions import Mentions, fold_of
from genre_agent.rank.ranker import Ranker, feature_settings, open_ranker, ranker_path, train
from genre_agent.schemas import RecommendRequest
from genre_agent.settings import load_settings

from conftest import TINY

FEATURES = feature_settings(load_settings())  # what the features are computed with by default


def _column(X: np.ndarray, name: str) -> np.ndarray:
    return X[:, NAMES.index(name)]


def test_features_of_a_known_request() -> None:
    items = pd.DataFrame({"year": pd.array([1990, 2000, None], dtype="Int64")}, index=["a", "b", "c"])
    masks = {"comedy": np.array([True, False, True]), "drama": np.array([False, True, True])}
    table = ItemTable.of(items, np.log1p([9.0, 1.0, 0.0]), np.zeros(3), masks, np.array([5.0, 7.0, np.nan]))
    vecs = np.eye(3, dtype=np.float32)
    req = RequestSignals(cf={"ease": np.array([3.0, 1.0, 2.0])}, liked=np.array([0]), pool_vecs=vecs[[1, 2]],
                         taste=vecs[0], liked_vecs=vecs[[0]], last_time=10.0)
    X = features(table, np.array([1, 2]), req)
    assert X.shape == (2, len(NAMES))
    assert _column(X, "ease_log_rank").tolist() == pytest.approx(np.log1p([2.0, 1.0]).tolist())  # 3 > 2 > 1
    assert np.isnan(_column(X, "als_z")).all()  # a CF model the service has not trained
    assert np.isnan(_column(X, "query_sim")).all()  # no words in the request
    assert _column(X, "year_gap_to_user")[0] == 10.0 and np.isnan(_column(X, "year_gap_to_user")[1])
    assert _column(X, "genre_overlap").tolist() == [0.0, 0.5]  # liked a comedy: c is half comedy
    assert _column(X, "log_likes").tolist() == pytest.approx([np.log(2.0), 0.0])
    assert _column(X, "since_first_like")[0] == 3.0 and np.isnan(_column(X, "since_first_like")[1])
    assert np.isnan(_column(X, "shared_people")).all()  # the catalog credits nobody


def test_people_shared_with_the_titles_a_conversation_likes_or_wants_more_like() -> None:
    credits = [{"director": ("Ann Lee",), "cast": ("Bo Park",)}, {"cast": ("Bo Park", "Cy Ode")},
               {"director": ("Ann Lee",), "cast": ("Bo Park",)}, {}]
    items = pd.DataFrame({"year": [1990, 1991, 1992, 1993], "people": credits}, index=["a", "b", "c", "d"])
    table = ItemTable.of(items, np.zeros(4), np.zeros(4), {}, np.full(4, np.nan))
    vecs = np.eye(4, dtype=np.float32)
    req = RequestSignals(cf={}, liked=np.array([], dtype=np.int64), pool_vecs=vecs[[1, 2, 3]], taste=None,
                         liked_vecs=vecs[[]], anchors=np.array([0]))
    shared = _column(features(table, np.array([1, 2, 3]), req), "shared_people")
    assert shared.tolist() == pytest.approx(np.log1p([1.0, 2.0, 0.0]).tolist())  # Bo Park; both; nobody


def _known_signal(groups: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups of 10 rows of noise where the relevant row's first feature is 3 higher."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(groups * 10, len(NAMES))).astype(np.float32)
    y = np.zeros(groups * 10, dtype=np.float32)
    for g in range(groups):
        relevant = g * 10 + int(rng.integers(10))
        y[relevant] = 1.0
        X[relevant, 0] += 3.0
    return X, y, np.full(groups, 10)


def test_the_collector_keeps_only_requests_with_an_answer() -> None:
    collected = Collector()
    assert len(collected) == 0
    assert collected.add(np.ones((3, 2)), np.array([0.0, 1.0, 0.0]))
    assert not collected.add(np.full((2, 2), 7.0), np.zeros(2))  # no answer among them: teaches nothing
    assert collected.add(np.zeros((2, 2)), np.array([1.0, 0.0]))
    built = collected.build(sources=5)
    assert len(collected) == 2 and built.groups.tolist() == [3, 2] and built.sources == 5
    assert built.y.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert built.X.tolist() == [[1.0, 1.0]] * 3 + [[0.0, 0.0]] * 2

def test_training_learns_the_signal_and_survives_a_round_trip(tmp_path: Path) -> None:
    X, y, groups = _known_signal(1000, seed=0)
    ranker = train(X, y, groups)
    test_X, test_y, _ = _known_signal(50, seed=1)
    truth = test_y.reshape(50, 10).argmax(1)
    learnt = (ranker.score(test_X).reshape(50, 10).argmax(1) == truth).mean()
    oracle = (test_X[:, 0].reshape(50, 10).argmax(1) == truth).mean()  # ordering by the signal itself
    assert learnt >= oracle - 0.1 and learnt > 0.5  # chance is 0.1
    assert max(ranker.importance(), key=ranker.importance().get) == "cf"  # ease_z is the first feature
    path = ranker_path(tmp_path, "state")
    ranker.save(path)
    assert np.allclose(Ranker.load(path).score(test_X), ranker.score(test_X))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_a_missing_stale_or_corrupted_ranker_file_warns_and_gives_none(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="has not been trained.*genre-agent fit"):
        assert open_ranker(tmp_path, "now", settings=FEATURES) is None
    X, y, groups = _known_signal(50, seed=0)
    train(X, y, groups).save(ranker_path(tmp_path, "before"))
    with pytest.warns(UserWarning, match="stale.*genre-agent fit"):
        assert open_ranker(tmp_path, "now", settings=FEATURES) is None
    ranker_path(tmp_path, "now").write_text('{"features": ["x"], "model": "tree\\nnonsense"}')
    with pytest.warns(UserWarning, match="unreadable.*genre-agent fit.*hand-weighted"):
        assert open_ranker(tmp_path, "now", settings=FEATURES) is None
    with pytest.raises(DataDirError, match="unreadable"):
        Ranker.load(ranker_path(tmp_path, "now"))


def _two_tastes(root: Path) -> Path:
    """A catalog of 40 films liked in two camps (sci-fi fans and comedy fans), 40 users with 6-7 likes each,
    so every user has a held-out last like to learn from (and 19 unrated films to draw)."""
    shutil.copytree(TINY, root)
    genres = ["Sci-Fi"] * 20 + ["Comedy"] * 20
    pd.DataFrame({"id": range(1, 41), "title": [f"Film {i} ({1960 + i})" for i in range(1, 41)],
                  "genres": genres}).to_csv(root / "items.csv", index=False)
    rng = np.random.default_rng(0)
    rows = []
    for user in range(40):
        camp = np.arange(1, 21) if user % 2 else np.arange(21, 41)
        liked = rng.permutation(camp)[: 5 + user % 2 + 1]
        rows += [(f"u{user}", int(item), 5, t) for t, item in enumerate(liked)]
        rows.append((f"u{user}", int(rng.choice(np.setdiff1d(np.arange(1, 41), camp))), 1, 99))
    pd.DataFrame(rows, columns=["user", "item", "rating", "ts"]).to_csv(root / "ratings.csv", index=False)
    (root / "tags.csv").write_text("user,item,tag\nu0,1,space\n")
    return root


def test_the_model_of_every_rating_reads_what_a_user_rated_low_too(tmp_path: Path) -> None:
    settings = load_settings(catalog=str(_two_tastes(tmp_path / "two")), data_dir=tmp_path / "data",
                             **{"backend.name": "fake"})
    with pytest.warns(UserWarning, match="has not been trained"):
        catalog = Recommender.open(settings, backend=FakeBackend()).catalog
    retriever, _ = build(settings, catalog, for_fit=True)
    assert set(retriever.ranking.cf_models) == {"ease", "itemknn", "als", "ease_rated"}
    # a reader who has only rated Film 1 (sci-fi), and low: no like for the models of positives to start from
    user = retriever.user_view(None, extra_seen=["1"])
    rows = retriever.items.index.get_indexer([str(i) for i in range(1, 41)])
    _, (shortlist, X) = retriever.rank_examples(user, Filters(), [rows])
    assert (shortlist == rows).all()
    rated = _column(X, "ease_rated_z")
    assert np.isfinite(rated).all()
    assert rated[1:20].mean() > rated[20:].mean()  # Film 1 is rated mostly by sci-fi fans: their films come first
    for other in ("ease", "itemknn", "als"):
        assert np.isnan(_column(X, f"{other}_z")).all()


def test_each_cf_model_is_fed_what_its_source_declares(tmp_path: Path) -> None:
    """The titles a request is "like" reach the models declared fed with anchors, and no other."""
    settings = load_settings(catalog=str(_two_tastes(tmp_path / "two")), data_dir=tmp_path / "data",
                             **{"backend.name": "fake", "rank.enabled": False})
    retriever, _ = build(settings, Recommender.open(settings, backend=FakeBackend()).catalog, for_fit=True)
    user = retriever.user_view(None, ["1"])
    rows = retriever.items.index.get_indexer([str(i) for i in range(2, 21)])
    columns = {anchors: retriever.rank_examples(user, Filters(), [rows], anchors=list(anchors))[1][1]
               for anchors in ((), ("21", "22"))}
    for source in SOURCES:
        plain, anchored = (_column(columns[a], f"{source.name}_z") for a in ((), ("21", "22")))
        assert np.allclose(plain, anchored, equal_nan=True) == (source.fed != "likes and anchors"), source


def test_fit_trains_the_served_ranker_and_only_word_less_requests_follow_it(tmp_path: Path) -> None:
    settings = load_settings(catalog=str(_two_tastes(tmp_path / "two")), data_dir=tmp_path / "data",
                             **{"backend.name": "fake"})
    with pytest.warns(UserWarning, match="has not been trained"):
        before = Recommender.open(settings, backend=FakeBackend())
    assert before.retriever.ranker is None
    report = fit(settings, before.catalog)
    assert report.users == 40 and report.requests >= 40 and report.size_bytes > 0
    assert ranker_path(ranker_dir(settings), catalog_state(before.catalog)).is_file()
    assert ensure_fitted(settings, before.catalog) is None  # trained already: not again
    with pytest.warns(UserWarning, match="without conversations.*hand-weighted order") as caught:
        after = Recommender.open(settings, backend=FakeBackend())  # a current ranker, of histories only
    assert len(caught) == 1
    assert after.retriever.ranker is not None and after.retriever.ranker.conversation is None
    sci_fi_fan = after.recommend(user_id="u1", k=3)
    assert {r.item_id for r in sci_fi_fan.recommendations} <= {str(i) for i in range(1, 21)}
    hand = settings.model_copy(update={"rank": settings.rank.model_copy(update={"enabled": False})})
    plain = Recommender.open(hand, backend=FakeBackend())
    assert plain.retriever.ranker is None
    hand_order = plain.recommend(user_id="u1", k=3)
    assert [r.scores.fused for r in sci_fi_fan.recommendations] != \
        [r.scores.fused for r in hand_order.recommendations]  # ordered by the ranker's scores
    for asked in ({"user_id": "u1", "query": "something funny", "k": 5}, {"liked": ["1", "2"], "k": 5}):
        # words, or a new user known by what they named: no ranker of conversations, the hand-weighted order
        assert [r.item_id for r in after.recommend(**asked).recommendations] == \
            [r.item_id for r in plain.recommend(**asked).recommendations]
    path = ranker_path(ranker_dir(settings), catalog_state(after.catalog))
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.warns(UserWarning, match="unreadable.*hand-weighted"):
        assert Recommender.open(settings, backend=FakeBackend()).retriever.ranker is None
    assert ensure_fitted(settings, after.catalog) is not None  # rebuilt
    assert Recommender.open(settings, backend=FakeBackend()).retriever.ranker is not None
    other = load_settings(catalog=str(settings.catalog), data_dir=settings.data_dir,
                          **{"backend.name": "fake", "retrieval.weight_cf": 0.5})
    with pytest.warns(UserWarning, match=r"stale \(its features were computed with other settings: "
                                         r"retrieval.weight_cf 1.0 then, 0.5 now\).*`genre-agent fit`"):
        assert Recommender.open(other, backend=FakeBackend()).retriever.ranker is not None  # used until then
    assert ensure_fitted(other, after.catalog) is not None  # what an evaluation measures is never stale


def test_a_ranker_shipped_in_the_catalog_folder_is_used_when_the_data_directory_has_none(tmp_path: Path) -> None:
    X, y, groups = _known_signal(50, seed=0)
    shipped = train(X, y, groups)
    shipped.conversation = train(X, y, groups, features=NAMES)
    shipped.settings = FEATURES
    shipped.save(ranker_path(tmp_path / "catalog", "now"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_ranker(tmp_path / "data", "now", shipped=tmp_path / "catalog", settings=FEATURES) is not None
    with pytest.warns(UserWarning, match="stale"):  # the catalog changed since it was shipped
        assert open_ranker(tmp_path / "data", "later", shipped=tmp_path / "catalog", settings=FEATURES) is None


def _opened(directory: Path, fingerprint: str, shipped: Path, **kwargs: Any) -> tuple[Ranker | None, list[str]]:
    """`open_ranker` and the warnings it gave (but the one about conversations, which these have none of)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ranker = open_ranker(directory, fingerprint, shipped, settings=FEATURES, **kwargs)
    return ranker, [str(w.message) for w in caught if "without conversations" not in str(w.message)]


def test_serving_falls_back_to_the_best_ranker_of_the_same_items_and_evaluation_does_not(tmp_path: Path) -> None:
    X, y, groups = _known_signal(50, seed=0)
    ranker = train(X, y, groups)
    ranker.settings = FEATURES
    data, shipped = tmp_path / "data", tmp_path / "catalog"
    ranker.info["interactions"] = 100
    ranker.save(ranker_path(shipped, "A-items"))
    found, said = _opened(data, "B-items", shipped, same_items_fallback=True, ratings=103)
    assert found is not None and found.info["interactions"] == 100  # as shipped
    assert len(said) == 1 and "other (older) interactions (100 ratings, the catalog now has 103)" in said[0]
    assert "`genre-agent fit` to refresh it" in said[0]
    for interactions, fingerprint, mtime in ((101, "C-items", 10), (102, "D-items", 20)):
        ranker.info["interactions"] = interactions
        ranker.save(ranker_path(data, fingerprint))
        os.utime(ranker_path(data, fingerprint), (mtime, mtime))
    found, said = _opened(data, "B-items", shipped, same_items_fallback=True, ratings=103)
    assert found is not None and found.info["interactions"] == 102  # trained on the most interactions
    found, said = _opened(data, "B-items", shipped)  # what evaluation opens: this state or nothing
    assert found is None and len(said) == 1 and "other interactions or items (stale)" in said[0]
    found, said = _opened(data, "B-other", shipped, same_items_fallback=True, ratings=103)
    assert found is None and len(said) == 1 and "other items (stale)" in said[0]
    assert "hand-weighted" in said[0] and "genre-agent fit" in said[0]
    found, said = _opened(data, "C-items", shipped, same_items_fallback=True)  # the exact state: no warning
    assert found is not None and found.info["interactions"] == 101 and said == []
    ranker_path(data, "D-items").write_text("{}")  # corrupted: the next best
    found, said = _opened(data, "B-items", shipped, same_items_fallback=True)
    assert found is not None and found.info["interactions"] == 101
    ranker.conversation, ranker.info["interactions"] = train(X, y, groups, features=NAMES), 90
    ranker.save(ranker_path(shipped, "E-items"))  # an older one that also learnt conversations
    found, said = _opened(data, "B-items", shipped, same_items_fallback=True)
    assert found is not None and found.conversation is not None  # preferred: it orders conversations too
    ranker_path(data, "C-items").write_text("{}")  # what is found exactly but unreadable is not replaced
    found, said = _opened(data, "C-items", shipped, same_items_fallback=True)
    assert found is None and len(said) == 1 and "unreadable" in said[0] and "hand-weighted" in said[0]


def test_the_served_catalog_keeps_its_ranker_after_feedback_and_an_evaluation_catalog_does_not(
        tiny_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(catalog=str(tiny_dir), data_dir=tmp_path / "data", **{"backend.name": "fake"})
    catalog = served_catalog(settings)
    X, y, groups = _known_signal(50, seed=0)
    ranker = train(X, y, groups)
    ranker.info["interactions"] = len(catalog.interactions)
    ranker.save(ranker_path(ranker_dir(settings), catalog_state(catalog)))
    store = SQLiteStore(tmp_path / "feedback.sqlite3")
    store.record(catalog.name, "chat-user", "1", "like")  # a rating in a chat: other interactions
    with pytest.warns(UserWarning, match=f"other \\(older\\) interactions \\({len(catalog.interactions)} ratings, "
                      f"the catalog now has {len(catalog.interactions) + 1}\\).*genre-agent fit"):
        served = Recommender.open(settings, backend=FakeBackend(), store=store)
    assert served.retriever.ranker is not None
    assert catalog_state(served.catalog) != catalog_state(catalog)
    assert served.recommend(user_id="chat-user", k=2).recommendations  # answered through the ranker
    with pytest.warns(UserWarning, match="other interactions or items \\(stale\\).*hand-weighted"):
        evaluated = Recommender.open(settings, backend=FakeBackend(), catalog=served.catalog)  # as eval opens
    assert evaluated.retriever.ranker is None


EVENINGS = [f"I loved Film {n}, {words}" for n, words in enumerate(
    ["a film for a rainy evening", "movie night with friends", "something for the weekend",
     "a long flight tonight",
     "date night at home", "watching with my family", "lazy sunday afternoon", "after a long week at work",
     "a cosy winter night", "something to share with my brother"], start=1)]


def test_a_conversation_follows_the_ranker_learnt_from_conversations(tmp_path: Path) -> None:
    """Requests naming a sci-fi film they loved, answered (by the request set's rule) by comedies, which in
    this catalog are the films after 1980: the ranker of conversations learns it against what the named title
    suggests, and a new request in other words is ordered by that model."""
    asks = tmp_path / "asks.jsonl"
    asks.write_text("".join(json.dumps({"id": f"r{n}", "category": "mood", "split": "dev", "turns": [turn],
                                        "judge": {"genres": ["Comedy"]}}) + "\n"
                            for n, turn in enumerate(EVENINGS)))
    settings = load_settings(catalog=str(_two_tastes(tmp_path / "two")), data_dir=tmp_path / "data",
                             **{"backend.name": "fake", "rank.requests": [str(asks)]})
    with pytest.warns(UserWarning, match="has not been trained"):
        catalog = Recommender.open(settings, backend=FakeBackend()).catalog
    report = fit(settings, catalog)
    assert report.conversations == len(EVENINGS) and report.conversation_requests == len(EVENINGS)
    assert report.conversation_importance is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both models trained: no warning
        served = Recommender.open(settings, backend=FakeBackend())
    model = served.retriever.ranker.conversation if served.retriever.ranker else None
    assert model is not None
    request = RecommendRequest(liked=["12"], query="quiet evening sofa", k=5)
    (rows, X), = served.rank_examples(request)
    learnt = dict(zip((str(i) for i in served.catalog.items.index[rows]), model.score(X), strict=True))
    answer = [r.item_id for r in served.run(request).result.recommendations]
    assert [learnt[i] for i in answer] == sorted(learnt.values(), reverse=True)[:5]  # the model's order
    assert all(int(i) > 20 for i in answer)  # comedies, as the model learnt
    hand = settings.model_copy(update={"rank": settings.rank.model_copy(update={"enabled": False})})
    plain = Recommender.open(hand, backend=FakeBackend())
    assert not all(int(r.item_id) > 20 for r in plain.run(request).result.recommendations)  # not what it suggests
    words = RecommendRequest(query="quiet evening sofa", k=5)  # words alone, no title named: hand-weighted
    assert [r.item_id for r in served.run(words).result.recommendations] == \
        [r.item_id for r in plain.run(words).result.recommendations]


def test_mentions_count_titles_named_together_and_leave_a_fold_out() -> None:
    mentions = Mentions.of([("d1", ["a", "b"]), ("d2", ["a", "b", "c", "not-in-catalog"]), ("d3", ["c"])])
    table = mentions.table(pd.Index(["a", "b", "c"]))
    assert table.counts.tolist() == [2, 2, 2] and table.dialogues == 3
    named_a = table.with_named(np.array([0]))
    assert named_a is not None and named_a.tolist() == pytest.approx([0.0, 2 / 3, 1 / 3])  # b twice, c once
    assert table.with_named(np.array([], dtype=np.int64)) is None
    assert table.share().tolist() == pytest.approx(np.log([3 / 4] * 3).tolist())
    fold = fold_of("d2")
    assert set(mentions.without(fold).dialogues) == {d for d in ("d1", "d3") if fold_of(d) != fold}


def _suggestions(path: Path, pairs: list[tuple[int, int]]) -> Path:
    """ReDial-format dialogues on the two-tastes catalog: the seeker loved film a, the recommender suggests b."""
    lines = []
    for n, (a, b) in enumerate(pairs):
        mentions = {str(a): f"Film {a} ({1960 + a})", str(b): f"Film {b} ({1960 + b})"}
        lines.append(json.dumps({
            "conversationId": f"c{n}", "initiatorWorkerId": 1, "respondentWorkerId": 2, "movieMentions": mentions,
            "initiatorQuestions": {str(b): {"suggested": 1, "seen": 0, "liked": 1}}, "respondentQuestions": {},
            "messages": [{"text": f"I loved @{a}, what else?", "senderWorkerId": 1},
                         {"text": f"try @{b}", "senderWorkerId": 2}]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fit_learns_what_dialogues_name_together_without_a_dialogue_explaining_itself(tmp_path: Path) -> None:
    """Each dialogue pairs a sci-fi film with a comedy no other dialogue pairs it with: while learning, a
    dialogue's answer is never named beside its title (its own mentions are left out with its fold); served,
    the pairing is known, and the comedy joins the pool of a request naming the sci-fi film."""
    talks = _suggestions(tmp_path / "talks.jsonl", [(a, a + 20) for a in range(1, 21)])
    settings = load_settings(catalog=str(_two_tastes(tmp_path / "two")), data_dir=tmp_path / "data",
                             **{"backend.name": "fake", "rank.dialogues": [str(talks)]})
    with pytest.warns(UserWarning, match="has not been trained"):
        catalog = Recommender.open(settings, backend=FakeBackend()).catalog
    data, mentions = conversation_examples(settings, catalog)
    dev = {f"c{n}" for n in range(20) if split_of(f"c{n}") == "dev"}
    assert set(mentions.dialogues) == dev and data.sources == len(dev)
    assert (_column(data.X, "named_with")[data.y == 1] == 0).all()  # not from its own dialogue
    fit(settings, catalog)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        served = Recommender.open(settings, backend=FakeBackend())
    assert served.retriever.mentions is not None and served.retriever.mentions.dialogues == len(dev)
    a = 1 + min(int(d[1:]) for d in dev)  # dialogue c<n> pairs film n + 1 with film n + 21
    (rows, X), = served.rank_examples(RecommendRequest(liked=[str(a)], query="anything like it", k=5))
    ids = [str(i) for i in served.catalog.items.index[rows]]
    assert str(a + 20) in ids  # named beside it in a dialogue: in the pool whatever else ranks it
    named_with = dict(zip(ids, _column(X, "named_with"), strict=True))
    assert named_with[str(a + 20)] == pytest.approx(0.5) and sum(v > 0 for v in named_with.values()) == 1


def test_what_conversations_often_mention_beside_a_named_title_is_evidence(tmp_path: Path) -> None:
    """Film 21 comes up in two of the three dialogues naming Film 1, Film 22 in one: only Film 21 "often comes
    up in conversations that mention" Film 1, and says so in its evidence when a request names Film 1."""
    talks = Mentions.of([("d1", ["1", "21"]), ("d2", ["1", "21", "22"]), ("d3", ["1"]), ("d4", ["22", "30"])])
    settings = load_settings(catalog=str(_two_tastes(tmp_path / "two")), data_dir=tmp_path / "data",
                             **{"backend.name": "fake", "retrieval.candidates": 40})
    with pytest.warns(UserWarning, match="has not been trained"):
        catalog = Recommender.open(settings, backend=FakeBackend()).catalog
    rows = catalog.items.index.get_indexer(["1", "21", "22"])
    table = talks.table(catalog.items.index)
    assert table.often_beside(rows[:1], rows[1:]) == [[rows[0]], []]  # 2 of 3 dialogues; 1 of 3 is not often
    X, y, groups = _known_signal(50, seed=0)
    ranker = train(X, y, groups)
    ranker.conversation = train(X, y, groups, features=NAMES)
    ranker.conversation.mentions = talks
    ranker.save(ranker_path(ranker_dir(settings), catalog_state(catalog)))
    served = Recommender.open(settings, backend=FakeBackend())
    found = {c.item_id: c for c in served.run(RecommendRequest(liked=["1"], query="more like it", k=5)).candidates}
    assert found["21"].evidence.talked_with == ["Film 1 (1961)"]
    assert "often comes up in conversations that mention Film 1 (1961)" in found["21"].facts
    assert found["22"].evidence.talked_with == [] and all(not c.evidence.talked_with
                                                          for i, c in found.items() if i != "21")


def test_training_dialogues_are_read_whole_and_a_file_given_both_ways_is_refused(tmp_path: Path) -> None:
    """A training split has no held-out part: every dialogue of `rank.training_dialogues` is learnt from (its
    test-hashed dialogues too), while `rank.dialogues` gives its dev part only; the same file in both is an
    error that says which to choose."""
    talks = _suggestions(tmp_path / "talks.jsonl", [(a, a + 20) for a in range(1, 21)])
    every = {f"c{n}" for n in range(20)}
    assert {d for d in every if split_of(d) == "test"}  # the file has a part eval would report
    two = _two_tastes(tmp_path / "two")
    settings = load_settings(catalog=str(two), data_dir=tmp_path / "data",
                             **{"backend.name": "fake", "rank.training_dialogues": [str(talks)]})
    with pytest.warns(UserWarning, match="has not been trained"):
        catalog = Recommender.open(settings, backend=FakeBackend()).catalog
    data, mentions = conversation_examples(settings, catalog)
    assert set(mentions.dialogues) == every and data.sources == len(every)
    both = load_settings(catalog=str(two), data_dir=tmp_path / "data",
                         **{"backend.name": "fake", "rank.training_dialogues": [str(talks)],
                            "rank.dialogues": [str(talks)]})
    with pytest.raises(ConfigError, match="give a file once"):
        conversation_examples(both, catalog)


def test_fit_learns_from_each_users_last_positives_one_level_down_at_a_time(tmp_path: Path) -> None:
    """`rank.depths = 3`: each user's last like is held out, then the one before it on the history before
    that, then the one before that, while 5 positives remain: the users with 6 likes give two shortlists, the
    users with 7 give three."""
    two = _two_tastes(tmp_path / "two")

    def learnt(depths: int) -> Any:
        settings = load_settings(catalog=str(two), data_dir=tmp_path / f"data{depths}",
                                 **{"backend.name": "fake", "rank.depths": depths})
        return examples(settings, served_catalog(settings))

    one, three = learnt(1), learnt(3)
    assert one.sources == three.sources == 40
    assert int((one.groups == 20).sum()) == 40 and int((three.groups == 20).sum()) == 40 + 40 + 20
    assert np.array_equal(three.X[: len(one.y)], one.X, equal_nan=True)  # the first level as before
