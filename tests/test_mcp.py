"""`genre-agent mcp`, driven by the MCP SDK's own client: in memory for each tool and each kind of bad input,
over HTTP behind the API key, and once as a real `genre-agent mcp` subprocess over stdio (issue 25)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from genre_agent.chat.agent import Agent
from genre_agent.data.feedback import open_store
from genre_agent.interfaces.admission import Admission
from genre_agent.interfaces.guard import key_table
from genre_agent.interfaces.mcp_server import create_server, http_app
from genre_agent.llm.backends import FakeBackend
from genre_agent.llm.backends.base import Completion, Message
from genre_agent.pipeline import Recommender
from genre_agent.settings import ServerSettings

from conftest import TINY
from helpers import wait_until

KEY_A = "user-a-key-0123456789abcd"  # speaks for catalog user "a"
KEY_B = "new-user-key-0123456789ab"  # speaks for a new user
Session = Callable[[Client], Awaitable[None]]


def _agent(built: Recommender, backend: FakeBackend, store: Path) -> Agent:
    """An agent on the session's tiny index, answering 2 items, with its own feedback store."""
    settings = built.settings.model_copy(update={"k": 2})
    return Agent(Recommender(settings, built.catalog, built.retriever, backend=backend), open_store(None, store))


@pytest.fixture
def agent(tiny_built: Recommender, fake: FakeBackend, tmp_path: Path) -> Agent:
    return _agent(tiny_built, fake, tmp_path)


def _with_client(agent: Agent, session: Session, settings: ServerSettings | None = None) -> None:
    async def main() -> None:
        async with Client(create_server(agent, settings)) as client:
            await session(client)

    asyncio.run(main())


def _error(result: Any) -> str:
    assert result.is_error, result
    return str(result.content[0].text)


def test_lists_the_four_tools_with_typed_arguments_and_structured_results(agent: Agent) -> None:
    async def session(client: Client) -> None:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"recommend", "chat", "explain", "feedback"}
        recommend = tools["recommend"]
        assert recommend.input_schema["properties"]["k"]["type"] == "integer"
        assert tools["feedback"].input_schema["properties"]["kind"]["enum"] == ["like", "dislike", "seen"]
        assert all(t.output_schema for t in tools.values())

    _with_client(agent, session)


def test_recommend_returns_catalog_items_with_reasons(agent: Agent) -> None:
    async def session(client: Client) -> None:
        result = await client.call_tool("recommend", {"query": "space adventure", "k": 2,
                                                      "exclude_genres": ["Comedy"]})
        assert not result.is_error
        items = result.structured_content["recommendations"]
        assert [i["item_id"] for i in items] == ["1", "2"]  # the two Star Quest films of the tiny catalog
        assert all(i["title"].startswith("Star Quest") and i["reason"] for i in items)

    _with_client(agent, session)


def test_chat_holds_a_conversation_and_reports_progress(agent: Agent) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def session(client: Client) -> None:
        first = await client.call_tool("chat", {"message": "something about space"},
                                       progress_callback=on_progress)
        reply = first.structured_content
        assert reply["recommendations"]["recommendations"][0]["title"].startswith("Star Quest")
        assert reply["session_id"].startswith("mcp_")
        second = await client.call_tool("chat", {"message": "only comedies", "session_id": reply["session_id"]})
        shown = [r["item_id"] for r in second.structured_content["recommendations"]["recommendations"]]
        assert shown and set(shown) <= {"3", "4", "6"}  # the session went on: comedies, within its space query

    _with_client(agent, session)
    assert progress[-1] == (2, 2, "done")
    assert progress[0][0] == 1 and "Star Quest" in str(progress[0][2])  # the list shown while the model works


def test_explain_and_feedback_act_on_the_session(agent: Agent) -> None:
    async def session(client: Client) -> None:
        started = await client.call_tool("chat", {"message": "space please", "user": "a"})
        session_id = started.structured_content["session_id"]
        why = await client.call_tool("explain", {"item_id": "1", "session_id": session_id})
        assert why.structured_content["explained_item"] == "1"
        assert why.structured_content["text"].startswith("Star Quest (1990)")
        noted = await client.call_tool("feedback", {"item_id": "1", "kind": "like", "session_id": session_id})
        assert noted.structured_content["text"] == "Noted: like \u2014 Star Quest (1990)."

    _with_client(agent, session)
    [event] = agent.store.events("tiny")
    assert (event.user_key, event.item_id, event.kind) == ("a", "1", "like") and event.source.startswith("mcp_")


def test_a_new_users_likes_steer_its_conversation_and_are_never_stored(agent: Agent) -> None:
    """Issue 41.1: each MCP conversation of a new user stored its likes under a fresh pseudonym, which
    trained CF at the next start."""
    async def session(client: Client) -> None:
        said = await client.call_tool("chat", {"message": "I loved Star Quest"})
        session_id = said.structured_content["session_id"]
        await client.call_tool("feedback", {"item_id": "5", "kind": "like", "session_id": session_id})
        assert agent.session(session_id).liked == ["1", "5"]

    _with_client(agent, session)
    assert agent.store.events() == [] and agent.store.interactions("tiny").empty


def test_explain_counts_as_a_turn(agent: Agent) -> None:
    async def session(client: Client) -> None:
        session_id = (await client.call_tool("chat", {"message": "space"})).structured_content["session_id"]
        assert not (await client.call_tool("explain", {"item_id": "1", "session_id": session_id})).is_error
        over = _error(await client.call_tool("explain", {"item_id": "1", "session_id": session_id}))
        assert "server.turns_per_minute = 2" in over

    _with_client(agent, session, ServerSettings(turns_per_minute=2))


def test_resources_name_the_catalog_and_the_template_sets(agent: Agent) -> None:
    async def session(client: Client) -> None:
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert uris == {"genre-agent://catalog", "genre-agent://templates"}
        catalog = json.loads((await client.read_resource("genre-agent://catalog")).contents[0].text)
        assert catalog == {"name": "tiny", "items": 6, "interactions": 15, "item_noun": "movie",
                           "genres": ["Adventure", "Comedy", "Horror", "Sci-Fi"]}
        sets = json.loads((await client.read_resource("genre-agent://templates")).contents[0].text)
        assert {"default", "concise"} <= {s["name"] for s in sets}

    _with_client(agent, session)


def test_bad_input_is_a_tool_error_and_the_server_stays_up(agent: Agent) -> None:
    async def session(client: Client) -> None:
        assert "Unknown tool: suggest" in _error(await client.call_tool("suggest", {}))
        assert "valid integer" in _error(await client.call_tool("recommend", {"query": "space", "k": "many"}))
        assert "less than or equal to 20" in _error(await client.call_tool("recommend", {"query": "x", "k": 99}))
        huge = _error(await client.call_tool("chat", {"message": "x" * 1_000_000}))
        assert "1,000,000 bytes" in huge and "server.max_body" in huge
        unknown = _error(await client.call_tool("chat", {"message": "hi", "session_id": "sess_nope"}))
        assert "unknown session 'sess_nope'" in unknown and "without session_id" in unknown
        assert "unknown session" in _error(await client.call_tool("feedback", {"item_id": "1", "kind": "like",
                                                                                "session_id": "sess_nope"}))
        started = (await client.call_tool("chat", {"message": "space"})).structured_content["session_id"]
        assert "no item '999'" in _error(await client.call_tool("explain", {"item_id": "999",
                                                                           "session_id": started}))
        assert "has no ratings" in _error(await client.call_tool("recommend", {"user": "nobody"}))
        assert "Traceback" not in huge + unknown
        still = await client.call_tool("recommend", {"query": "space", "k": 1})  # the server is still up
        assert not still.is_error

    _with_client(agent, session)


def test_feedback_beyond_the_keys_budget_is_refused_and_not_stored(agent: Agent) -> None:
    async def session(client: Client) -> None:
        started = await client.call_tool("chat", {"message": "space", "user": "a"})
        session_id = started.structured_content["session_id"]
        liked = await client.call_tool("feedback", {"item_id": "1", "kind": "like", "session_id": session_id})
        assert not liked.is_error
        over = _error(await client.call_tool("feedback", {"item_id": "2", "kind": "like",
                                                          "session_id": session_id}))
        assert "server.feedback_per_minute = 1" in over and "retry after" in over

    _with_client(agent, session, ServerSettings(feedback_per_minute=1))
    assert [e.item_id for e in agent.store.events("tiny")] == ["1"]


class GatedBackend(FakeBackend):
    """The fake backend, but each call waits until `gate` is open."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        self.entered.set()
        assert self.gate.wait(timeout=30)
        return super().complete(messages, schema, max_tokens)


def test_a_turn_past_the_deadline_is_a_tool_error(tiny_built: Recommender, tmp_path: Path) -> None:
    gated = GatedBackend()
    slow = _agent(tiny_built, gated, tmp_path)

    async def session(client: Client) -> None:
        late = _error(await client.call_tool("recommend", {"query": "space"}))
        assert "longer than 0.2 s (server.deadline_s)" in late
        gated.gate.set()  # the abandoned turn ends; the server still answers
        assert "recommend" in {t.name for t in (await client.list_tools()).tools}

    _with_client(slow, session, ServerSettings(deadline_s=0.2))


def test_one_client_runs_only_its_share_of_calls_at_once(tiny_built: Recommender, tmp_path: Path) -> None:
    gated = GatedBackend()
    slow = _agent(tiny_built, gated, tmp_path)

    async def session(client: Client) -> None:
        first = asyncio.create_task(client.call_tool("recommend", {"query": "space"}))
        await asyncio.to_thread(gated.entered.wait, 10)
        over = _error(await client.call_tool("recommend", {"query": "space"}))
        assert "server.max_concurrent_per_key" in over
        gated.gate.set()
        assert not (await first).is_error
        assert not (await client.call_tool("recommend", {"query": "space"})).is_error  # its place is free again

    _with_client(slow, session, ServerSettings(max_concurrent_per_key=1))


@contextmanager
def _over_http(agent: Agent, settings: ServerSettings, admission: Admission | None = None,
               clock: Callable[[], float] = time.monotonic) -> Iterator[str]:
    """The MCP server's HTTP app served by uvicorn on a free local port, in a thread; yields its /mcp URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = http_app(create_server(agent, settings, admission), key_table(settings), settings, "127.0.0.1", clock)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_http_needs_the_key_and_the_key_names_the_user(agent: Agent) -> None:
    settings = ServerSettings(api_keys={KEY_A: "a"})

    async def main(url: str) -> None:
        refused = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert refused.status_code == 401 and "API key" in refused.json()["error"]["message"]
        keyed = httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY_A}"})
        async with Client(streamable_http_client(url, http_client=keyed)) as client:
            answer = await client.call_tool("recommend", {"k": 2})  # no query: user "a"'s history
            assert [r["item_id"] for r in answer.structured_content["recommendations"]]
            assert answer.structured_content["user_id"] == "a"
            other = _error(await client.call_tool("recommend", {"user": "b", "k": 2}))
            assert "speaks for user 'a'" in other

    with _over_http(agent, settings) as url:
        asyncio.run(main(url))


def _raw(key: str, session: str | None = None) -> dict[str, str]:
    """The headers of a hand-made MCP request of `key`, in `session` (an Mcp-Session-Id)."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-06-18"}
    return {**headers, "Mcp-Session-Id": session} if session else headers


def test_a_transport_session_answers_only_the_key_that_opened_it(agent: Agent) -> None:
    """Key B, given the Mcp-Session-Id of key A's client, could send requests in it and end it (DELETE)."""
    settings = ServerSettings(api_keys={KEY_A: "a", KEY_B: ""})
    opening = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "a", "version": "1"}}}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    with _over_http(agent, settings) as url:
        opened = httpx.post(url, json=opening, headers=_raw(KEY_A))
        session = opened.headers["mcp-session-id"]
        used = httpx.post(url, json=listing, headers=_raw(KEY_B, session))
        assert used.status_code == 404 and "Session not found" in used.text  # as if it did not exist
        assert httpx.delete(url, headers=_raw(KEY_B, session)).status_code == 404
        assert httpx.post(url, json=listing, headers=_raw(KEY_A, session)).status_code == 200


def test_a_key_holds_only_its_share_of_transport_sessions(agent: Agent) -> None:
    """One key opening sessions without end would fill the SDK's global limit and lock every other key out."""
    settings = ServerSettings(api_keys={KEY_A: "a", KEY_B: ""}, mcp_transports_per_key=2, session_ttl_s=1.0)
    opening = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "a", "version": "1"}}}
    now = [0.0]
    with _over_http(agent, settings, clock=lambda: now[0]) as url:
        first, second = (httpx.post(url, json=opening, headers=_raw(KEY_A)) for _ in range(2))
        assert first.status_code == second.status_code == 200
        over = httpx.post(url, json=opening, headers=_raw(KEY_A))
        assert over.status_code == 429 and "mcp_transports_per_key" in over.json()["error"]["message"]
        assert httpx.post(url, json=opening, headers=_raw(KEY_B)).status_code == 200  # another key's share
        assert httpx.post(url, json={"jsonrpc": "2.0", "id": 2}, headers=_raw(KEY_A)).status_code == 429
        assert httpx.delete(url, headers=_raw(KEY_A, first.headers["mcp-session-id"])).status_code == 200
        assert httpx.post(url, json=opening, headers=_raw(KEY_A)).status_code == 200  # the ended one's slot
        assert httpx.post(url, json=opening, headers=_raw(KEY_A)).status_code == 429
        now[0] += 1.0  # unused for session_ttl_s (the SDK closes them on its own clock): they count no more
        assert httpx.post(url, json=opening, headers=_raw(KEY_A)).status_code == 200


NEW_USER_KEYS = [f"new-user-key-{n}-0123456789ab" for n in range(6)]


def test_calls_beyond_max_concurrent_are_refused_as_serve_refuses_turns(tiny_built: Recommender,
                                                                       tmp_path: Path) -> None:
    """Issue 41.2: 40 simultaneous `chat` calls from 20 keys were all accepted; `server.max_concurrent` was
    never read by the MCP server."""
    gated = GatedBackend()
    gated.gate.set()
    slow = _agent(tiny_built, gated, tmp_path)
    settings = ServerSettings(api_keys=dict.fromkeys(NEW_USER_KEYS, ""), max_concurrent=2)
    admission = Admission.of(settings)

    async def main(url: str) -> None:
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(Client(streamable_http_client(url, http_client=(
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}))))) for key in NEW_USER_KEYS]
            sessions = [(client, (await client.call_tool("chat", {"message": "space"}))
                         .structured_content["session_id"]) for client in clients for _ in range(2)]
            gated.gate.clear()
            calls = [asyncio.create_task(client.call_tool("chat", {"message": "more", "session_id": session}))
                     for client, session in sessions]  # 12 at once, 2 of each key
            await asyncio.to_thread(wait_until, lambda: sum(c.done() for c in calls) == 10)
            assert admission.running() == 2
            refused = [_error(c.result()) for c in calls if c.done()]
            serve_says = "too many turns running (server.max_concurrent); retry shortly"  # serve's 429 message
            assert all(r.endswith(f"chat: {serve_says}") for r in refused), refused
            gated.gate.set()
            assert not any(r.is_error for r in await asyncio.gather(*[c for c in calls if not c.done()]))

    with _over_http(slow, settings, admission) as url:
        asyncio.run(main(url))


def test_json_rpc_ids_outside_the_safe_range_are_refused_before_the_sdk(agent: Agent) -> None:
    """Issue 41.4: an id of 1.5e308 was taken for a notification, and 10^400 was echoed whole."""
    settings = ServerSettings(api_keys={KEY_A: "a"})
    with _over_http(agent, settings) as url:
        for bad in (b"1.5e308", b"1" + b"0" * 400, b"9007199254740992", b"1.5", b'"' + b"x" * 65 + b'"'):
            body = b'{"jsonrpc": "2.0", "id": %s, "method": "initialize", "params": {}}' % bad
            answer = httpx.post(url, content=body, headers={**_raw(KEY_A), "Content-Type": "application/json"})
            assert answer.status_code == 400, bad
            assert answer.json()["error"]["code"] == -32600 and answer.json()["id"] is None
            assert len(answer.text) < 300  # the id is not echoed
        opening = {"jsonrpc": "2.0", "id": "x" * 64, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "a", "version": "1"}}}
        fine = httpx.post(url, json=opening, headers=_raw(KEY_A))
        assert fine.status_code == 200 and "x" * 64 in fine.text


def test_mcp_refuses_a_public_http_bind_without_a_key(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "genre_agent.interfaces.cli", "mcp", "--http", "--host",
                           "0.0.0.0", "--catalog", str(TINY), "--data-dir", str(tmp_path), "--backend", "fake"],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={k: v for k, v in os.environ.items() if k != "GENRE_AGENT_API_KEY"})
    assert proc.returncode == 2 and "without an API key" in proc.stderr


def test_a_real_genre_agent_mcp_over_stdio(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "genre_agent.interfaces.cli", "mcp", "--catalog", str(TINY),
                                      "--data-dir", str(tmp_path), "--backend", "fake"],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})

    async def main() -> None:
        async with Client(params, read_timeout_seconds=120) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"recommend", "chat"} <= names
            result = await client.call_tool("recommend", {"query": "space adventure", "k": 2})
            ids = [r["item_id"] for r in result.structured_content["recommendations"]]
            assert ids == ["1", "2"]

    asyncio.run(main())
