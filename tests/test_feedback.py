"""The feedback store and its event log, on SQLite and on a real PostgreSQL server started here (skipped where
the PostgreSQL binaries or the psycopg driver are missing)."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_agent.chat.agent import Agent
from genre_agent.data.catalog import load_catalog
from genre_agent.data.feedback import PostgresStore, SQLiteStore, Store, open_store, with_feedback
from genre_agent.errors import ConfigError, DataDirError
from genre_agent.interfaces.cli import app
from genre_agent.llm.backends import FakeBackend
from genre_agent.sanitize import redact
from genre_agent.settings import load_settings

from conftest import TINY, tiny_settings


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return SQLiteStore(tmp_path / "feedback.sqlite3")
    return PostgresStore(request.getfixturevalue("fresh_postgres"))


def test_the_log_keeps_every_event_and_undo_restores_the_one_before(store: Store) -> None:
    liked = store.record("movies", "u1", "10", "like", "s turn 1: I loved Alien")
    assert store.record("movies", "u1", "10", "like", "s turn 1: I loved Alien") == liked  # the same event
    disliked = store.record("movies", "u1", "10", "dislike", "s turn 2: actually I hated Alien")
    store.record("movies", "u2", "11", "seen", "t turn 1: seen Heat")
    assert store.for_user("movies", "u1") == {"10": "dislike"}
    events = store.events("movies", "u1")
    assert [(e.id, e.kind, e.source, e.undone) for e in events] == [
        (disliked, "dislike", "s turn 2: actually I hated Alien", False),
        (liked, "like", "s turn 1: I loved Alien", False)]
    assert len(store.events()) == 3
    undone = store.undo(disliked)
    assert undone.kind == "dislike" and undone.undone
    assert store.for_user("movies", "u1") == {"10": "like"}  # the event before stands again
    store.undo(liked)
    assert store.for_user("movies", "u1") == {}
    assert store.for_user("movies", "u2") == {"11": "seen"}
    interactions = store.interactions("movies")
    assert interactions[["user_id", "item_id", "rating"]].values.tolist() == [["u2", "11", 3.0]]
    with pytest.raises(ConfigError, match="feedback list"):
        store.undo("no-such-event")


def test_an_older_feedback_file_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    with sqlite3.connect(path) as db:  # the layout before the event log
        db.execute("CREATE TABLE feedback (catalog TEXT NOT NULL, user_key TEXT NOT NULL, item_id TEXT NOT NULL, "
                   "kind TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (catalog, user_key, item_id))")
        db.execute("INSERT INTO feedback VALUES ('movies', 'u1', '10', 'like', 1.0)")
    store = SQLiteStore(path)
    assert store.for_user("movies", "u1") == {"10": "like"} and store.events() == []


def test_open_store_picks_the_database_by_url(tmp_path: Path) -> None:
    assert isinstance(open_store(None, tmp_path), SQLiteStore)
    with pytest.raises(ConfigError, match="not a postgresql:// URL"):
        open_store("mysql://root:hunter2@db/x", tmp_path)
    assert redact("postgresql://app:hunter2@db:5432/recs") == "postgresql://app:***@db:5432/recs"


def test_a_wrong_like_found_in_the_log_and_undone_from_the_cli(tmp_path: Path) -> None:
    """A chat turn's feedback names its message; `genre-agent feedback list` shows it and `undo` takes it back,
    so the next CF fit does not learn it."""
    agent = Agent.from_config(tiny_settings(tmp_path, k=2), backend=FakeBackend())
    agent.chat("s", "I loved Star Quest")
    key = agent.session("s").feedback_key
    runner = CliRunner()
    flags = ["--catalog", str(TINY), "--data-dir", str(tmp_path)]
    listed = runner.invoke(app, ["feedback", "list", *flags, "--user", key], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    (event,) = agent.store.events()
    assert event.id in listed.output and "s turn 1: I loved Star Quest" in listed.output
    undone = runner.invoke(app, ["feedback", "undo", event.id, "--data-dir", str(tmp_path)])
    assert undone.exit_code == 0 and "undone: like of item 1" in undone.output
    assert agent.store.for_user(agent.catalog_info().name, key) == {}
    unknown = runner.invoke(app, ["feedback", "undo", "nope", "--data-dir", str(tmp_path)])
    assert unknown.exit_code == 2 and "feedback list" in unknown.output


def test_the_agent_keeps_feedback_in_postgresql(fresh_postgres: str, tmp_path: Path) -> None:
    settings = tiny_settings(tmp_path, k=2, **{"store.url": fresh_postgres})
    agent = Agent.from_config(settings, backend=FakeBackend())
    agent.chat("pg", "I loved Laugh Riot")
    key = agent.session("pg").feedback_key
    again = Agent.from_config(settings, backend=FakeBackend())  # another replica, same database
    assert again.store.for_user(again.catalog_info().name, key) == {"3": "like"}
    interactions = again.recommender.catalog.interactions
    assert ((interactions.user_id == key) & (interactions.item_id == "3")).any()  # it joins the CF data
    assert not (tmp_path / "feedback.sqlite3").exists()


def test_recommend_leaves_out_what_the_user_disliked_in_a_chat(tmp_path: Path) -> None:
    """Issue 13: `recommend` ignored chat dislikes (a disliked item ranked #1)."""
    runner = CliRunner()
    command = ["recommend", "--user", "alice", "--json", "-k", "2", "--backend", "fake", "--catalog", str(TINY),
               "--data-dir", str(tmp_path)]

    def top() -> list[tuple[str, str]]:
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout[result.stdout.index("{"):])
        return [(r["item_id"], r["title"]) for r in answer["recommendations"]]

    (first_id, first_title), _ = top()
    agent = Agent.from_config(tiny_settings(tmp_path, k=2), backend=FakeBackend())
    agent.chat("s", f"I hated {first_title}", user="alice")
    assert agent.store.for_user("tiny", "alice") == {first_id: "dislike"}
    assert first_id not in [item for item, _ in top()]


class _FullDisk(SQLiteStore):
    """SQLite that cannot grow once `full` is set: the same SQLITE_FULL error a full disk gives."""

    full = False

    def _connect(self) -> sqlite3.Connection:
        db = super()._connect()
        if self.full:
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {pages}")
        return db


def test_a_full_disk_fails_the_turn_cleanly_and_the_repl_goes_on(tmp_path: Path) -> None:
    from rich.console import Console

    from genre_agent.interfaces.repl import Repl

    agent = Agent.from_config(tiny_settings(tmp_path, k=2), backend=FakeBackend())
    agent.store = store = _FullDisk(tmp_path / "full.sqlite3")
    store.full = True
    with pytest.raises(DataDirError, match="Free disk space"):  # fill the pages it has
        for n in range(100):
            store.record("filler", "filler", str(n), "seen", "x" * 500)
    long = "I loved Star Quest " + "and a long message " * 30
    with pytest.raises(DataDirError, match="Free disk space"):
        agent.chat("s", long)
    assert agent.session("s").liked == [] and agent.session("s").turns == 0  # the turn left no trace
    console = Console(record=True, width=200)
    repl = Repl(agent, console)
    repl.turn(repl.chat(long))
    repl.turn(repl.chat("something funny"))  # the REPL is still answering
    text = console.export_text()
    assert "cannot write the feedback" in text and "Laugh Riot" in text
    from fastapi.testclient import TestClient

    from genre_agent.interfaces.server import create_app

    key = "key-of-alice-0123456789"  # a key of a catalog user: its stateless turns store their feedback
    with TestClient(create_app(agent, keys={key: "alice"})) as client:
        answer = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": long}]},
                             headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "storage_unavailable"


@contextmanager
def _file_size_limit(size: int) -> Iterator[None]:
    """Writes past `size` bytes of any file fail with EFBIG (what SQLite reports as "disk I/O error")."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_disk_io_error_is_storage_unavailable_like_a_full_disk(tmp_path: Path) -> None:
    """Issue 27.8: SQLite's "disk I/O error" (a failing disk, a file past its size limit) was a 500."""
    from genre_agent.interfaces.http_errors import from_agent_error

    store = SQLiteStore(tmp_path / "feedback.sqlite3")
    with _file_size_limit(1), pytest.raises(DataDirError) as failed:
        store.record("tiny", "alice", "1", "like", "I loved Star Quest")
    assert "disk I/O error" in str(failed.value)
    assert (from_agent_error(failed.value).status, from_agent_error(failed.value).code) == (
        503, "storage_unavailable")
    assert store.for_user("tiny", "alice") == {}


def test_stored_feedback_keeps_the_words_a_catalog_gives_its_genres(tmp_path: Path) -> None:
    """Once a chat's like is stored, the catalog it joins still reads "spacey" as the genre its catalog.toml
    says (the feedback once dropped every genre alias: "scary" stopped meaning Horror after the first like)."""
    root = tmp_path / "tiny"
    shutil.copytree(TINY, root)
    with (root / "catalog.toml").open("a") as toml:
        toml.write('\n[genres.aliases]\n"Sci-Fi" = ["spacey"]\n')
    (tmp_path / "data").mkdir()
    store = SQLiteStore(tmp_path / "data" / "feedback.sqlite3")  # where the served agent reads it
    store.record("tiny", "u9", "1", "like", "s turn 1: I loved Star Quest")
    catalog = load_catalog(str(root))
    served = with_feedback(catalog, store)
    assert len(served.interactions) == len(catalog.interactions) + 1
    assert served.genre_aliases == catalog.genre_aliases == {"Sci-Fi": ["spacey"]}
    settings = load_settings(catalog=str(root), data_dir=tmp_path / "data", **{"backend.name": "fake"})
    agent = Agent.from_config(settings, backend=FakeBackend())
    assert agent.recommender.catalog.interactions.user_id.eq("u9").any()  # the store it reads has the like
    assert agent.asks("s", "Something spacey please").filters.require_genres == ["Sci-Fi"]
