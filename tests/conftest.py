"""Shared fixtures: the tiny known-answer catalog, a built recommender on it, the fake backend, and a throwaway
PostgreSQL server (skipped where its binaries or the psycopg driver are missing)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from genre_agent.chat.genres import GenreWords
from genre_agent.chat.titles import TitleIndex
from genre_agent.chat.understanding import genre_words
from genre_agent.data.catalog import Catalog, load_catalog
from genre_agent.llm.backends import FakeBackend
from genre_agent.pipeline import Recommender
from genre_agent.settings import Settings, load_settings

TINY = Path(__file__).parent / "data" / "tiny"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the developer's config or cache."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    for var in ("GENRE_AGENT_DATA_DIR", "GENRE_AGENT_CATALOG", "GENRE_AGENT_BACKEND__NAME"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """A writable copy of the tiny catalog."""
    target = tmp_path / "tiny"
    shutil.copytree(TINY, target)
    return target


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


def tiny_settings(data_dir: Path, **overrides: object) -> Settings:
    return load_settings(catalog=str(TINY), data_dir=data_dir, **{"backend.name": "fake", **overrides})


@pytest.fixture(scope="session")
def tiny_built(data_dir: Path) -> Recommender:
    """Built once per session with the real embedding model and embedded Chroma."""
    return Recommender.open(tiny_settings(data_dir), backend=FakeBackend())


@pytest.fixture(scope="session")
def movielens_catalog() -> Catalog:
    """The shipped MovieLens catalog, loaded once for the tests that read messages against it."""
    return load_catalog("movielens")


@pytest.fixture(scope="session")
def movielens(movielens_catalog: Catalog) -> tuple[TitleIndex, GenreWords]:
    """Its titles (the most rated first among same-named ones) and the words for its genres."""
    catalog = movielens_catalog
    titles = TitleIndex(catalog.items, catalog.interactions.groupby("item_id").size())
    return titles, genre_words(sorted({g for gs in catalog.items["genres"] for g in gs}), catalog.genre_aliases)


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def tiny_recommender(tiny_built: Recommender, fake: FakeBackend) -> Recommender:
    """The session's built index and CF model, answering through this test's fake backend."""
    return Recommender(tiny_built.settings, tiny_built.catalog, tiny_built.retriever, backend=fake)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OpenAI-compatible server (llama.cpp's, `python -m llama_cpp.server`) serving the bundled small
    model as "smol" on a free local port, started once per session; its /v1 URL."""
    from genre_agent.llm.models import resolve_model

    _, gguf = resolve_model("smollm2-135m", tmp_path_factory.mktemp("models"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port),
         "--n_ctx", "2048", "--model_alias", "smol"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 60
        while True:
            try:
                httpx.get(f"{url}/models", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.time() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway PostgreSQL server on a free local port (as the `postgres` user when run as root)."""
    pytest.importorskip("psycopg")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries here (apt-get install postgresql)")
    root = tmp_path_factory.mktemp("pg")
    as_user: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (root, *root.parents):
            if path == Path("/"):
                break
            os.chmod(path, os.stat(path).st_mode | 0o011)  # let the server's user reach its folder
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l",
                    str(root / "log"), "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)


@pytest.fixture
def fresh_postgres(postgres_url: str) -> str:
    """The throwaway server's database, with nothing an earlier test stored (its tables are made again)."""
    import psycopg

    with psycopg.connect(postgres_url) as db:
        for table in ("feedback_events", "feedback", "server_sessions"):
            db.execute(f"DROP TABLE IF EXISTS {table}")
    return postgres_url
