"""Shared fixtures: the tiny known-answer catalog, a built recommender on it, and the fake backend."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def tiny_recommender(tiny_built: Recommender, fake: FakeBackend) -> Recommender:
    """The session's built index and CF model, answering through this test's fake backend."""
    return Recommender(tiny_built.settings, tiny_built.catalog, tiny_built.retriever, backend=fake)
