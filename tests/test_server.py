"""The OpenAI-compatible server, started for real on a free port and used with the official `openai` client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from conftest import TINY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    data = tmp_path_factory.mktemp("server-data")
    proc = subprocess.Popen(
        [sys.executable, "-m", "genre_agent.interfaces.cli", "serve", "--catalog", str(TINY),
         "--data-dir", str(data),
         "--backend", "fake", "--port", str(port), "--api-key", "secret"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "GENRE_AGENT_K": "2"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.time() < deadline, "server did not start"
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _client(base: str, key: str = "secret") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key)


def test_two_turns_with_the_openai_client(server: str) -> None:
    client = _client(server)
    assert [m.id for m in client.models.list()] == ["genre-agent"]
    first = client.chat.completions.create(
        model="genre-agent", user="alice-session",
        messages=[{"role": "user", "content": "I loved Star Quest, no comedy please"}])
    assert first.choices[0].message.content.startswith("1. Star Quest II (1992)")
    extra = first.model_extra["genre_agent"]
    assert extra["intent"] == "refine" and extra["filters"] == ["no Comedy"]
    assert [r["item_id"] for r in extra["recommendations"]["recommendations"]] == ["2", "5"]
    second = client.chat.completions.create(
        model="genre-agent", user="alice-session", messages=[{"role": "user", "content": "why the first one?"}])
    assert second.model_extra["genre_agent"]["explained_item"] == "2"
    assert "Star Quest (1990)" in second.choices[0].message.content


def test_streaming(server: str) -> None:
    client = _client(server)
    stream = client.chat.completions.create(
        model="genre-agent", user="bob-session", stream=True,
        messages=[{"role": "user", "content": "something funny"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    final = chunks[-1].model_extra["genre_agent"]
    assert text == final["text"] and "Laugh Riot" in text
    more = client.chat.completions.create(
        model="genre-agent", user="bob-session", stream=True, messages=[{"role": "user", "content": "more"}])
    shown_before = {r["item_id"] for r in final["recommendations"]["recommendations"]}
    again = list(more)[-1].model_extra["genre_agent"]["recommendations"]["recommendations"]
    assert shown_before.isdisjoint({r["item_id"] for r in again})  # never repeats what was shown


def test_api_key_and_body_limit(server: str) -> None:
    with pytest.raises(openai.AuthenticationError):
        _client(server, key="wrong").models.list()
    big = httpx.post(f"{server}/v1/chat/completions", headers={"Authorization": "Bearer secret"},
                     json={"messages": [{"role": "user", "content": "x" * 100_000}]})
    assert big.status_code == 413
    assert httpx.get(f"{server}/healthz").json()["status"] == "ok"


def test_refuses_a_public_bind_without_key(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "genre_agent.interfaces.cli", "serve", "--host", "0.0.0.0",
                           "--catalog", str(TINY), "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={k: v for k, v in os.environ.items() if k != "GENRE_AGENT_API_KEY"})
    assert proc.returncode == 2 and "API key" in proc.stderr
