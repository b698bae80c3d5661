"""The conversational agent through its Python API (fake LLM, real index), and its LangChain wrappers."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage

from genre_agent.chat.agent import REVISED, Agent, Reply
from genre_agent.chat.transcript import with_shown
from genre_agent.data.feedback import Store, open_store
from genre_agent.errors import TurnCancelled
from genre_agent.interfaces.langchain_tool import chat_runnable, recommend_tool
from genre_agent.llm.backends import Completion, FakeBackend

from conftest import tiny_settings


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    return Agent.from_config(tiny_settings(tmp_path, k=2), backend=FakeBackend())


def _ids(reply) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.item_id for r in reply.recommendations.recommendations]


def test_new_user_conversation(agent: Agent) -> None:
    first = agent.chat("s", "I loved Star Quest, no comedy please")
    assert first.intent == "refine" and _ids(first) == ["2", "5"] and first.filters == ["no Comedy"]
    more_like = agent.chat("s", "more like the first one")
    assert more_like.intent == "refine"
    assert set(_ids(more_like)).isdisjoint({"2", "5"})  # nothing shown twice
    why = agent.chat("s", "why Star Quest II?")
    assert why.intent == "why" and why.explained_item == "2"
    assert "Star Quest (1990)" in why.text and "Evidence:" in why.text
    # a like said in the chat is not a rating: the evidence sentence does not claim one
    assert "like Star Quest (1990), which you liked" in why.text and "which you rated" not in why.text


def test_vague_first_message_asks_one_question_then_shows_popular(agent: Agent) -> None:
    first = agent.chat("s", "hello")
    assert first.intent == "clarify" and "name a movie you loved" in first.text
    second = agent.chat("s", "hmm")
    assert second.recommendations is not None and second.text.startswith("Here are popular movies")


def test_disliked_and_seen_items_never_come_back(agent: Agent) -> None:
    agent.chat("s", "I loved Star Quest")
    agent.chat("s", "hated the first one")
    agent.chat("s", "I have seen the second one")
    state = agent.session("s")
    later = agent.chat("s", "more")
    assert set(_ids(later)).isdisjoint(set(state.disliked) | set(state.seen))
    assert state.disliked and state.seen


def test_feedback_is_persisted_and_joins_the_next_cf_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    settings = tiny_settings(tmp_path, k=2)
    agent = Agent.from_config(settings, backend=FakeBackend())
    agent.chat("s", "I loved Laugh Riot")
    key = agent.session("s").pseudonym
    rows = sqlite3.connect(tmp_path / "feedback.sqlite3").execute(
        "SELECT user_key, item_id, kind FROM feedback").fetchall()
    assert rows == [(key, "3", "like")]
    opened: list[Store] = []

    def counted(url: str | None, data_dir: Path) -> Store:
        opened.append(open_store(url, data_dir))
        return opened[-1]

    monkeypatch.setattr("genre_agent.chat.agent.open_store", counted)
    monkeypatch.setattr("genre_agent.pipeline.open_store", counted)
    again = Agent.from_config(settings, backend=FakeBackend())
    assert len(opened) == 1  # the store the catalog read its feedback from is the one the agent writes to
    interactions = again.recommender.catalog.interactions
    assert ((interactions.user_id == key) & (interactions.item_id == "3") & (interactions.rating == 5.0)).any()
    assert again.recommender.retriever.matrix.user_row(key) >= 0  # the CF model was refitted with it


def test_catalog_user_and_reset(agent: Agent) -> None:
    reply = agent.chat("s", "something adventurous", user="alice")
    assert set(_ids(reply)).isdisjoint({"1", "5"})  # alice rated 1 and 5
    agent.chat("s", "no sci-fi")
    assert agent.session("s").filters.exclude_genres == ["Sci-Fi"]
    assert agent.chat("s", "reset").intent == "reset"
    assert agent.session("s").filters.exclude_genres == [] and agent.session("s").user_id == "alice"


def test_cancelled_turn_leaves_the_session_unchanged(agent: Agent) -> None:
    agent.chat("s", "I loved Star Quest")
    before = agent.session("s").model_dump()
    backend = agent.recommender.backend
    assert isinstance(backend, FakeBackend)
    asked = len(backend.calls)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TurnCancelled):  # uncalibrated, the model would read the message: it is not asked
        agent.chat("s", "no adventure", cancel=cancel)
    assert agent.session("s").model_dump() == before and len(backend.calls) == asked


def test_a_turn_cancelled_after_the_model_answered_keeps_nothing(tmp_path: Path) -> None:
    """Cancelled between the model's answer and the end of the turn: the reply is computed, nothing is kept."""
    cancel = threading.Event()

    class CancelsAfterAnswering(FakeBackend):
        def complete(self, messages: list[dict[str, str]], schema: object, max_tokens: int) -> Completion:
            out = super().complete(messages, schema, max_tokens)  # type: ignore[arg-type]
            cancel.set()
            return out

    settings = tiny_settings(tmp_path, k=2, **{"conversation.understand_with_llm": True})
    agent = Agent.from_config(settings, backend=CancelsAfterAnswering())
    with pytest.raises(TurnCancelled):  # the ranking call comes next and is not made
        agent.chat("s", "I loved Star Quest", cancel=cancel)
    assert agent.session("s").liked == []
    stored = sqlite3.connect(tmp_path / "feedback.sqlite3").execute("SELECT COUNT(*) FROM feedback").fetchone()
    assert stored == (0,)


def test_a_turn_cancelled_after_its_first_list_keeps_that_list(tmp_path: Path) -> None:
    """The list shown at once stands when the turn is cancelled while the model works on it (Ctrl-C in the
    REPL, a streaming client's deadline): the session and the feedback are kept as they were when it showed."""
    cancel = threading.Event()

    class CancelledWhileRanking(FakeBackend):
        def complete(self, messages: list[dict[str, str]], schema: object, max_tokens: int) -> Completion:
            cancel.set()  # the user gives up while the model ranks
            return super().complete(messages, schema, max_tokens)  # type: ignore[arg-type]

    settings = tiny_settings(tmp_path, k=2, **{"conversation.understand_with_llm": False})
    agent = Agent.from_config(settings, backend=CancelledWhileRanking())  # uncalibrated: ranking and reasons
    shown: list[Reply] = []
    reply = agent.chat("s", "I loved Star Quest", cancel=cancel, on_first=shown.append)
    (first,) = shown
    assert reply is first and first.recommendations is not None
    assert first.recommendations.pending == ["ranking", "reasons"]
    state = agent.session("s")
    assert state.liked == ["1"] and state.last == _ids(first) and state.shown == _ids(first)
    stored = sqlite3.connect(tmp_path / "feedback.sqlite3").execute("SELECT item_id, kind FROM feedback")
    assert stored.fetchall() == [("1", "like")]
    assert agent.chat("s", "more like the second one").intent == "refine"  # the ordinal binds to that list


def test_restoring_a_streamed_answer_reads_the_models_list(agent: Agent) -> None:
    """A streamed answer's text is the list shown at once, then REVISED and the model's list: the model's
    list is what the user saw last."""
    text = ("1. Star Quest II (1992) \u2014 evidence\n2. Night Terror (1985) \u2014 evidence\n\n"
            f"{REVISED}\n1. Laugh Riot (1995) \u2014 a reason\n2. Star Quest II (1992) \u2014 another")
    agent.restore("r", [("user", "I loved Star Quest"), ("assistant", text)])
    assert agent.session("r").last == ["3", "2"]


def test_restoring_reads_the_ids_an_answer_names_before_its_list(agent: Agent) -> None:
    """Issue 26.6: the ids line of an answer is what it showed; its numbered list is read only without one."""
    listed = "1. Star Quest II (1992) \u2014 evidence\n2. Night Terror (1985) \u2014 evidence"
    marked = with_shown(listed, ["5", "99", "2", "5"])
    agent.restore("marked", [("user", "I loved Star Quest"), ("assistant", marked)])
    assert agent.session("marked").last == ["5", "2"]  # ids the catalog lacks, and repeats, are left out
    agent.restore("listed", [("user", "I loved Star Quest"), ("assistant", listed)])
    assert agent.session("listed").last == ["2", "5"]


def test_a_restored_history_reads_its_messages_as_the_live_chat_did(tmp_path: Path) -> None:
    """Eras count back from the catalog's newest year in a restored conversation (stateless HTTP, `eval
    --dialogues`, `fit`) as in a live one: "recent" and "classic" are not lost."""
    agent = Agent.from_config(tiny_settings(tmp_path, k=2, **{"conversation.understand_with_llm": False}),
                              backend=FakeBackend())
    for message in ("I loved Star Quest, something recent please", "actually a classic"):
        agent.chat("live", message)
        agent.restore("restored", [("user", message)])
        live, restored = agent.session("live"), agent.session("restored")
        assert restored.filters == live.filters and restored.liked == live.liked
        assert live.filters.year_min is not None or live.filters.year_max is not None


def test_concurrent_sessions(agent: Agent) -> None:
    errors: list[BaseException] = []

    def talk(n: int) -> None:
        try:
            for message in ("I loved Star Quest", "more", "why the first one?"):
                agent.chat(f"s{n}", message)
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=talk, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(agent.session(f"s{n}").liked == ["1"] for n in range(6))


def test_llm_reading_is_kept_only_where_the_message_grounds_it(tmp_path: Path) -> None:
    made_up = json.dumps({"intent": "feedback", "liked_titles": ["Laugh Riot", "Titanic"],
                          "exclude_genres": ["Horror"], "year_min": 1990})
    agent = Agent.from_config(tiny_settings(tmp_path, k=2), backend=FakeBackend([made_up]))
    reply = agent.chat("s", "I enjoyed laugh riot")
    state = agent.session("s")
    assert state.liked == ["3"]  # 'Titanic' is not in the message nor the catalog
    assert state.filters.exclude_genres == [] and state.filters.year_min is None  # not said by the person
    assert reply.recommendations is not None


def test_langchain_tool_call(agent: Agent) -> None:
    tool = recommend_tool(agent)
    call = AIMessage(content="", tool_calls=[{"name": "recommend", "id": "call-1",
                                              "args": {"user": "alice", "k": 1, "exclude_genres": ["Sci-Fi"]}}])
    result = tool.invoke(call.tool_calls[0])
    data = json.loads(result.content)
    assert result.tool_call_id == "call-1"
    assert len(data["recommendations"]) == 1
    assert data["recommendations"][0]["item_id"] in {"3", "4"}  # the only unseen films that are not Sci-Fi
    assert chat_runnable(agent).invoke("I loved Star Quest").startswith("1. Star Quest II")
