"""Issue 27, "Hardening, round two", outside the HTTP server: terminals, secrets in messages, catalog files,
the backend made once, and the small ones. Each test is the attack the issue reports."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from genre_agent.chat.agent import Agent
from genre_agent.data.catalog import load_catalog
from genre_agent.data.feedback import SQLiteStore, open_store
from genre_agent.errors import CatalogError, ConfigError
from genre_agent.interfaces.cli import app
from genre_agent.interfaces.repl import Repl
from genre_agent.llm.backends import Backend, FakeBackend, OutputMode
from genre_agent.llm.backends.openai_compat import OpenAIBackend
from genre_agent.pipeline import Recommender
from genre_agent.plugins import backend_plugins
from genre_agent.sanitize import for_terminal, redact
from genre_agent.settings import CatalogFilesSettings, Settings, load_settings

from conftest import TINY, tiny_settings

FORGED = "\x1b[2J\x1b[H\r99  2026-01-01 00:00:00  admin  like  5  \u2014 forged\nline"
SECRET = "sk-live-0123456789abcdefXYZ"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    return Agent.from_config(tiny_settings(tmp_path_factory.mktemp("hardening"), k=2))


def test_escape_sequences_in_stored_feedback_do_not_reach_the_terminal(tmp_path: Path) -> None:
    """Issue 27.11: an ESC sequence in a message made `feedback list` clear the screen and print a forged
    line."""
    store = SQLiteStore(tmp_path / "feedback.sqlite3")
    eid = store.record("tiny", "anon-1", "1", "like", f"s turn 1: I loved Star Quest{FORGED}")
    runner = CliRunner()
    listed = runner.invoke(app, ["feedback", "list", "--catalog", str(TINY), "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "\x1b" not in listed.stdout and "\r" not in listed.stdout
    events = listed.stdout.splitlines()[1:]
    assert len(events) == 1 and events[0].startswith(eid) and "forged line" in events[0]
    undone = runner.invoke(app, ["feedback", "undo", eid, "--data-dir", str(tmp_path)])
    assert undone.exit_code == 0 and "\x1b" not in undone.stdout and len(undone.stdout.splitlines()) == 1


def test_escape_sequences_in_catalog_titles_do_not_reach_the_terminal(agent: Agent) -> None:
    reply = agent.chat("titles", "I loved Star Quest")
    assert reply.recommendations is not None
    evil = reply.model_copy(deep=True)
    assert evil.recommendations is not None
    evil.recommendations.recommendations[0].title = f"Star Quest II{FORGED}"
    evil.text = f"Here you are{FORGED}"
    console = Console(record=True, width=300, force_terminal=True)
    Repl(agent, console).show(evil)
    shown = console.export_text(styles=False)
    assert "\x1b" not in shown and "\r" not in shown and "Star Quest II" in shown


def test_for_terminal_removes_whole_escape_sequences() -> None:
    assert for_terminal("a\x1b[2Jb\x1b]0;owned\x07c\x1bMd\x07\x08e\u202ef") == "abcdef"
    assert for_terminal("one\ntwo\tthree") == "one\ntwo\tthree"
    assert for_terminal("one\ntwo\tthree", one_line=True) == "one two three"
    assert for_terminal("lone \ud800") == "lone \ufffd"


@pytest.mark.parametrize("value", [f'{{"{SECRET}": "a"', f'{{"{SECRET}": 5}}', f'["{SECRET}"]'])
def test_a_malformed_api_keys_setting_does_not_echo_the_keys(value: str, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """Issue 27.12: a malformed GENRE_AGENT_SERVER__API_KEYS printed its whole value."""
    monkeypatch.setenv("GENRE_AGENT_SERVER__API_KEYS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert SECRET not in str(caught.value) and "api_keys" in str(caught.value).lower()
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no traceback quotes it
    served = CliRunner().invoke(app, ["serve", "--catalog", str(TINY), "--data-dir", str(tmp_path)])
    assert served.exit_code == 2 and SECRET not in served.output and "api_keys" in served.output.lower()


def test_passwords_in_database_urls_are_redacted_wherever_they_appear() -> None:
    """Issue 27.12: a PostgreSQL URL with a password was not redacted."""
    for url in ("postgresql://app:hunter2@db/recs", "postgresql://db/recs?password=hunter2&sslmode=require",
                "postgres://app:hun:ter2@db:5432/recs", "mysql://app:hunter2@db/recs"):
        assert "hunter2" not in redact(f"cannot reach {url} (timeout)"), url
    for url in ("mysql://db/recs?password=hunter2", "sqlite://app:hunter2@db/recs"):
        with pytest.raises(ConfigError) as caught:
            open_store(url, Path("."))
        assert "hunter2" not in str(caught.value), caught.value


def test_a_zero_width_space_does_not_split_a_word(agent: Agent) -> None:
    """Issue 27.16: "no com\\u200bedy" was read as the words "com" and "edy"."""
    reply = agent.chat("zero-width", "I loved Star\u200b Quest, no com\u200bedy please")
    assert reply.filters == ["no Comedy"]
    assert agent.session("zero-width").liked == ["1"]


def test_feedback_list_with_a_huge_limit_and_undo_twice(tmp_path: Path) -> None:
    """Issue 27.16: `feedback list --limit 99999999999999999999` was a traceback; undoing an event twice said
    "undone" twice."""
    eid = SQLiteStore(tmp_path / "feedback.sqlite3").record("tiny", "anon-1", "1", "like", "s turn 1")
    runner = CliRunner()
    huge = runner.invoke(app, ["feedback", "list", "--limit", "99999999999999999999", "--catalog", str(TINY),
                               "--data-dir", str(tmp_path)])
    assert huge.exit_code == 2 and isinstance(huge.exception, SystemExit) and "--limit" in huge.output
    assert runner.invoke(app, ["feedback", "undo", eid, "--data-dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(app, ["feedback", "undo", eid, "--data-dir", str(tmp_path)])
    assert again.exit_code == 2 and "already undone" in again.output


def test_catalog_files_outside_the_folder_are_refused(tiny_dir: Path, tmp_path: Path) -> None:
    """Issue 27.13: `path = "../../secret/creds.csv"` and a symlinked items.csv -> a file elsewhere were read
    and served."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "creds.csv").write_text((tiny_dir / "ratings.csv").read_text())
    toml = tiny_dir / "catalog.toml"
    toml.write_text(toml.read_text().replace('path = "ratings.csv"', 'path = "../secret/creds.csv"'))
    with pytest.raises(CatalogError, match="outside the catalog folder.*--allow-outside"):
        load_catalog(str(tiny_dir))
    assert len(load_catalog(str(tiny_dir), CatalogFilesSettings(allow_outside=True)).interactions) > 0
    toml.write_text(toml.read_text().replace('path = "../secret/creds.csv"', 'path = "ratings.csv"'))
    (secret / "items.csv").write_text((tiny_dir / "items.csv").read_text())
    (tiny_dir / "items.csv").unlink()
    (tiny_dir / "items.csv").symlink_to(secret / "items.csv")
    with pytest.raises(CatalogError, match="outside the catalog folder"):
        load_catalog(str(tiny_dir))
    runner = CliRunner()
    command = ["index", "--catalog", str(tiny_dir), "--data-dir", str(tmp_path / "data")]
    refused = runner.invoke(app, command)
    assert refused.exit_code == 2 and "--allow-outside" in refused.output
    assert runner.invoke(app, [*command, "--allow-outside"]).exit_code == 0


def test_catalog_files_are_bounded_before_they_are_read(tiny_dir: Path) -> None:
    """Issue 27.15: a 1 GB sparse ratings file peaked at 7.5 GB before "no rows"; a 100k-column CSV took
    980 MB."""
    ratings = tiny_dir / "ratings.csv"
    with ratings.open("r+b") as f:
        f.truncate(1 << 30)  # sparse: 1 GB that takes no disk
    started = time.perf_counter()
    with pytest.raises(CatalogError, match=r"over the 512 MB.*catalog_files\.max_file_mb"):
        load_catalog(str(tiny_dir))
    assert time.perf_counter() - started < 5  # refused, not read
    ratings.write_text(",".join(f"c{i}" for i in range(100_000)) + "\n" + "1," * 99_999 + "1\n")
    with pytest.raises(CatalogError, match=r"100,000 columns.*catalog_files\.max_columns"):
        load_catalog(str(tiny_dir))


class SlowToLoad(FakeBackend):
    """The fake backend, slow to create as a model file read from disk is; counts its instances."""

    made: list[SlowToLoad] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> SlowToLoad:
        time.sleep(0.3)
        cls.made.append(cls())
        return cls.made[-1]


def test_a_cold_burst_of_turns_creates_one_backend(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 27.14: the backend was created lazily without a lock: 4 turns at once loaded 4 models."""
    monkeypatch.setitem(backend_plugins(), "fake", SlowToLoad)  # the registry of backend plug-ins
    SlowToLoad.made.clear()
    cold = Recommender(agent.settings, agent.recommender.catalog, agent.recommender.retriever)
    got: list[Backend] = []
    threads = [threading.Thread(target=lambda: got.append(cold.backend)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(SlowToLoad.made) == 1 and all(b is SlowToLoad.made[0] for b in got) and len(got) == 4


def test_openai_output_mode_probing_under_concurrent_calls() -> None:
    """Issue 27.14: four concurrent first calls probing the server's output form -> `ValueError:
    list.remove(x)` (each removed the rejected form from one shared list)."""
    all_asked = threading.Barrier(4)

    def llama_server(request: httpx.Request) -> httpx.Response:  # takes only llama.cpp's own form
        fmt = json.loads(request.content).get("response_format", {})
        if fmt.get("type") == "json_object" and "schema" in fmt:
            body = {"id": "1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                    "choices": [{"index": 0, "delta": {"content": "{}"}, "finish_reason": "stop"}]}
            return httpx.Response(200, content=f"data: {json.dumps(body)}\n\ndata: [DONE]\n\n".encode(),
                                  headers={"Content-Type": "text/event-stream"})
        all_asked.wait(5)  # the four calls are all probing the first form now
        return httpx.Response(400, json={"error": {"message": "unsupported response_format"}})

    backend = OpenAIBackend("m", "http://server.test/v1", None, output_mode=OutputMode.AUTO, max_retries=0,
                            http_client=httpx.Client(transport=httpx.MockTransport(llama_server)))
    answers: list[str | BaseException] = []

    def call() -> None:
        try:
            answers.append(backend.complete([{"role": "user", "content": "hi"}], {"type": "object"}, 10).text)
        except Exception as exc:
            answers.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == ["{}"] * 4
    assert backend.capabilities.output_mode is OutputMode.JSON_OBJECT_SCHEMA
