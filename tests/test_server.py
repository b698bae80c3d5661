"""The OpenAI-compatible server, started for real on a free port and used with the official `openai` client,
and probed the way a hostile caller would (issue 13, points 1 and 2)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from genre_agent.chat.transcript import with_shown

from conftest import TINY

KEY = "test-key-0123456789abcdef"  # a new user
KEY_A = "user-a-key-0123456789abcd"  # speaks for catalog user "a"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data: Path, *args: str, env: dict[str, str] | None = None,
           catalog: Path = TINY) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "genre_agent.interfaces.cli", "serve", "--catalog", str(catalog),
         "--data-dir", str(data), "--backend", "fake", "--port", str(port), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "GENRE_AGENT_K": "2", **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.time() < deadline, "server did not start"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    proc, base = _start(tmp_path_factory.mktemp("server-data"), "--api-key", KEY,
                        env={"GENRE_AGENT_SERVER__API_KEYS": json.dumps({KEY_A: "a"})})
    try:
        yield proc, base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(served: tuple[subprocess.Popen[bytes], str]) -> str:
    return served[1]


def _client(base: str, key: str = KEY, session: str | None = None) -> openai.OpenAI:
    headers = {"X-Session-Id": session} if session else None
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, default_headers=headers)


def _session(base: str, key: str = KEY) -> str:
    made = httpx.post(f"{base}/v1/sessions", headers={"Authorization": f"Bearer {key}"})
    assert made.status_code == 201
    return str(made.json()["id"])


def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def _raw(base: str, request: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        return s.recv(65536)


def test_two_turns_in_a_server_issued_session(server: str) -> None:
    client = _client(server, session=_session(server))
    assert [m.id for m in client.models.list()] == ["genre-agent"]
    first = client.chat.completions.create(
        model="genre-agent", messages=[{"role": "user", "content": "I loved Star Quest, no comedy please"}])
    assert first.choices[0].message.content.startswith("1. Star Quest II (1992)")
    extra = first.model_extra["genre_agent"]
    assert extra["intent"] == "refine" and extra["filters"] == ["no Comedy"]
    assert [r["item_id"] for r in extra["recommendations"]["recommendations"]] == ["2", "5"]
    second = client.chat.completions.create(
        model="genre-agent", messages=[{"role": "user", "content": "why the first one?"}])
    assert second.model_extra["genre_agent"]["explained_item"] == "2"
    assert "Star Quest (1990)" in second.choices[0].message.content


def test_stateless_by_default_the_conversation_travels_in_messages(server: str) -> None:
    client = _client(server)
    said = {"role": "user", "content": "I loved Star Quest, no comedy please"}
    first = client.chat.completions.create(model="genre-agent", messages=[said])
    answer = {"role": "assistant", "content": first.choices[0].message.content}
    second = client.chat.completions.create(
        model="genre-agent", messages=[said, answer, {"role": "user", "content": "why the first one?"}])
    assert second.model_extra["genre_agent"]["explained_item"] == "2"
    assert "which you liked" in second.choices[0].message.content


def test_a_stateless_conversation_reads_what_was_shown_from_the_ids_line_else_the_list(server: str) -> None:
    """Issue 26.6: an answer's content ends with the ids it showed; a client keeps only role and content, and
    the next request reads what was shown from that line (the numbered list only when the line is gone)."""
    client = _client(server)
    said = {"role": "user", "content": "I loved Star Quest, no comedy please"}
    content = client.chat.completions.create(model="genre-agent", messages=[said]).choices[0].message.content
    listed, _, ids_line = content.rpartition("\n\n")
    assert ids_line == "[//]: # (genre-agent shown: 2 5)" and listed.startswith("1. Star Quest II (1992) \u2014")

    def first_one(assistant: str) -> str | None:
        reply = client.chat.completions.create(model="genre-agent", messages=[
            said, {"role": "assistant", "content": assistant}, {"role": "user", "content": "why the first one?"}])
        return reply.model_extra["genre_agent"]["explained_item"]

    reworded = "1. Night Terror (1985) \u2014 the client rewrote its copy of the list"
    assert first_one(f"{reworded}\n\n{ids_line}") == "2"  # the ids line, not the prose
    assert first_one(reworded) == "5"  # no ids line: the numbered list is read


def test_callers_without_a_session_share_nothing(server: str) -> None:
    """Issue 13.2: client Y was told "Close to Matrix, which you liked" from client X's chat."""
    x = _client(server)
    x.chat.completions.create(model="genre-agent", messages=[{"role": "user", "content": "I loved Star Quest"}])
    y = _client(server).chat.completions.create(
        model="genre-agent", messages=[{"role": "user", "content": "why Star Quest II?"}])
    assert "which you liked" not in y.choices[0].message.content
    assert y.model_extra["genre_agent"]["filters"] == []


def test_identity_comes_from_the_key_not_a_header(server: str) -> None:
    """Issue 13.2: `X-Catalog-User: 42` let any caller read user 42's history."""
    asked = {"model": "genre-agent", "messages": [{"role": "user", "content": "a space adventure to watch"}]}
    spoofed = httpx.post(f"{server}/v1/chat/completions", json=asked,
                         headers={"Authorization": f"Bearer {KEY}", "X-Catalog-User": "a"}).json()
    assert spoofed["genre_agent"]["recommendations"]["user_id"] is None  # a new user, not "a"
    as_a = httpx.post(f"{server}/v1/chat/completions", json=asked,
                      headers={"Authorization": f"Bearer {KEY_A}"}).json()
    assert as_a["genre_agent"]["recommendations"]["user_id"] == "a"


def test_sessions_are_bound_to_the_key_that_made_them(server: str) -> None:
    theirs = _session(server, KEY_A)
    for session in (theirs, "default", "sess_made-up"):
        with pytest.raises(openai.NotFoundError) as caught:
            _client(server, session=session).chat.completions.create(
                model="genre-agent", messages=[{"role": "user", "content": "more"}])
        assert caught.value.body["code"] == "session_not_found"  # type: ignore[index]
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.delete(f"{server}/v1/sessions/{theirs}", headers=auth).status_code == 404
    mine = _session(server)
    assert httpx.delete(f"{server}/v1/sessions/{mine}", headers=auth).json()["deleted"] is True
    assert httpx.delete(f"{server}/v1/sessions/{mine}", headers=auth).status_code == 404


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_replicas_sharing_the_store_continue_each_others_sessions(store: str, tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    """Two real `serve` processes behind one (imagined) load balancer: one data directory, and with
    PostgreSQL one database for feedback and sessions. A session issued by one is continued by the other."""
    env = {"GENRE_AGENT_SERVER__API_KEYS": json.dumps({KEY_A: "a"})}
    if store == "postgresql":
        env["GENRE_AGENT_STORE__URL"] = request.getfixturevalue("fresh_postgres")
    a, base_a = _start(tmp_path, "--api-key", KEY, env=env)
    b, base_b = _start(tmp_path, "--api-key", KEY, env=env)
    try:
        session = _session(base_a)
        one = _client(base_a, session=session)
        first = one.chat.completions.create(
            model="genre-agent", messages=[{"role": "user", "content": "I loved Star Quest, no comedy please"}])
        assert [r["item_id"] for r in first.model_extra["genre_agent"]["recommendations"]["recommendations"]] == [
            "2", "5"]
        # the other replica knows the list, the like and the filter
        second = _client(base_b, session=session).chat.completions.create(
            model="genre-agent", messages=[{"role": "user", "content": "why the first one?"}])
        assert second.model_extra["genre_agent"]["explained_item"] == "2"
        assert "Star Quest (1990)" in second.choices[0].message.content
        assert second.model_extra["genre_agent"]["filters"] == ["no Comedy"]
        with pytest.raises(openai.NotFoundError):  # still bound to the key that made it, on every replica
            _client(base_b, key=KEY_A, session=session).chat.completions.create(
                model="genre-agent", messages=[{"role": "user", "content": "more"}])
        auth = {"Authorization": f"Bearer {KEY}"}
        assert httpx.delete(f"{base_b}/v1/sessions/{session}", headers=auth).json()["deleted"] is True
        with pytest.raises(openai.NotFoundError):  # ended on one replica: ended on all
            one.chat.completions.create(model="genre-agent", messages=[{"role": "user", "content": "more"}])
    finally:
        for proc in (a, b):
            proc.terminate()
            proc.wait(timeout=30)


def test_streaming(server: str) -> None:
    client = _client(server, session=_session(server))
    stream = client.chat.completions.create(
        model="genre-agent", stream=True, messages=[{"role": "user", "content": "something funny"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    final = chunks[-1].model_extra["genre_agent"]
    shown = [r["item_id"] for r in final["recommendations"]["recommendations"]]
    assert text == with_shown(final["text"], shown) and "Laugh Riot" in text  # the ids line comes last
    more = client.chat.completions.create(
        model="genre-agent", stream=True, messages=[{"role": "user", "content": "more"}])
    shown_before = {r["item_id"] for r in final["recommendations"]["recommendations"]}
    again = list(more)[-1].model_extra["genre_agent"]["recommendations"]["recommendations"]
    assert shown_before.isdisjoint({r["item_id"] for r in again})  # never repeats what was shown


def test_keys_and_openai_shaped_errors(server: str) -> None:
    with pytest.raises(openai.AuthenticationError):
        _client(server, key="wrong").models.list()
    no_key = httpx.post(f"{server}/v1/chat/completions", json={})
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    bad = httpx.post(f"{server}/v1/chat/completions", json={"messages": "hi"},
                     headers={"Authorization": f"Bearer {KEY}"})
    assert bad.status_code == 400 and set(bad.json()["error"]) >= {"type", "code", "message"}
    assert "messages" in bad.json()["error"]["message"]
    assert "detail" not in bad.json()


def test_docs_need_the_key_and_health_tells_nothing(server: str) -> None:
    for path in ("/docs", "/openapi.json"):
        assert httpx.get(f"{server}{path}").status_code == 401
        assert httpx.get(f"{server}{path}", headers={"Authorization": f"Bearer {KEY}"}).status_code == 404
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server}/readyz").json() == {"status": "ready"}


def test_non_ascii_authorization_is_401_not_500(server: str) -> None:
    head = _raw(server, "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer clé✓\r\n\r\n".encode())
    assert head.startswith(b"HTTP/1.1 401")


def test_a_huge_chunked_body_without_a_key_is_refused_unread(served: tuple[subprocess.Popen[bytes], str]) -> None:
    """Issue 13.1: a 200 MB chunked POST with no Authorization header grew the server by 370 MB."""
    proc, base = served
    before = _rss_kb(proc.pid)
    host, port = base.removeprefix("http://").split(":")
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"x" * (1 << 20))
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/json\r\n\r\n")
        sent = 0
        try:
            for _ in range(200):
                s.sendall(chunk)
                sent += 1
        except OSError:  # the server answered and closed the connection
            pass
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert sent < 200 or _rss_kb(proc.pid) - before < 50_000
    assert _rss_kb(proc.pid) - before < 50_000


def test_an_authorized_body_is_cut_off_at_the_limit_while_read(server: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10_000):  # 10 MB, chunked (no Content-Length)
            yield b"x" * 1024

    big = httpx.post(f"{server}/v1/chat/completions", content=chunks(),
                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    declared = httpx.post(f"{server}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                          json={"messages": [{"role": "user", "content": "x" * 100_000}]})
    assert declared.status_code == 413


def test_refuses_a_public_bind_without_key(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "genre_agent.interfaces.cli", "serve", "--host", "0.0.0.0",
                           "--catalog", str(TINY), "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={k: v for k, v in os.environ.items() if k != "GENRE_AGENT_API_KEY"})
    assert proc.returncode == 2 and "API key" in proc.stderr


def test_refuses_a_short_key_at_startup(tmp_path: Path) -> None:
    """Issue 13.2: a one-character key was accepted."""
    proc = subprocess.run([sys.executable, "-m", "genre_agent.interfaces.cli", "serve", "--api-key", "x",
                           "--catalog", str(TINY), "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "at least 16" in proc.stderr


def test_sigterm_stops_the_server(tmp_path: Path) -> None:
    proc, base = _start(tmp_path)
    assert httpx.get(f"{base}/readyz").status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it shut down
    assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()


def test_a_rebuilt_index_is_picked_up_without_downtime(tmp_path: Path, tiny_dir: Path) -> None:
    """Issue 13.4: `serve`, edit one title, `genre-agent index` -> every request was a 500 until restart, and
    each rebuild left an orphan Chroma folder."""
    from typer.testing import CliRunner

    from genre_agent.interfaces.cli import app

    data = tmp_path / "data"
    proc, base = _start(data, catalog=tiny_dir)
    try:
        asked = {"messages": [{"role": "user", "content": "something funny"}]}
        assert httpx.post(f"{base}/v1/chat/completions", json=asked, timeout=60).status_code == 200
        items = tiny_dir / "items.csv"
        items.write_text(items.read_text().replace("Laugh Riot (1995)", "Laugh Riot Redux (1995)"))
        rebuilt = CliRunner().invoke(app, ["index", "--catalog", str(tiny_dir), "--data-dir", str(data)])
        assert rebuilt.exit_code == 0 and "embedded 1, reused 5" in rebuilt.stdout
        after = httpx.post(f"{base}/v1/chat/completions", json=asked, timeout=60)
        assert after.status_code == 200 and "Laugh Riot" in after.json()["choices"][0]["message"]["content"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    folders = {p.name for p in (data / "chroma").iterdir() if p.is_dir()}
    with sqlite3.connect(data / "chroma" / "chroma.sqlite3") as db:
        live = {row[0] for row in db.execute("SELECT id FROM segments")}
    assert folders and folders <= live  # no orphan folder
