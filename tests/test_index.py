"""The Chroma index: incremental and atomic rebuilds, embedded and client/server (real `chroma run`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from chromadb.api.types import Documents, Embeddings

from genre_agent.data.catalog import load_catalog
from genre_agent.pipeline import Recommender
from genre_agent.retrieval.embedding import MiniLMEmbeddingFunction
from genre_agent.retrieval.index import VectorIndex, make_client

from conftest import TINY


def _collections(index: VectorIndex) -> list[str]:
    return sorted(c.name for c in index.client.list_collections())  # type: ignore[attr-defined]


def test_rebuild_embeds_only_changed_items(tmp_path: Path) -> None:
    items = load_catalog(str(TINY)).items.copy()
    index = VectorIndex(make_client(tmp_path), "tiny")
    first = index.sync(items, "v1")
    assert (first.embedded, first.reused) == (6, 0)
    assert index.sync(items, "v1").rebuilt is False
    items.loc["3", "text"] = "Laugh Riot. Genres: Comedy. Tags: slapstick."
    items = items.drop(index="5")
    second = index.sync(items, "v2")
    assert (second.embedded, second.reused, second.removed) == (1, 4, 1)
    assert len(_collections(index)) == 2  # the pointer collection and the active one
    reopened = VectorIndex(make_client(tmp_path), "tiny")
    assert reopened.collection.count() == 5  # type: ignore[attr-defined]
    vec = reopened.embed(["slapstick comedy"])[0]
    assert next(iter(reopened.nearest(vec, 2))) == "3"


class _Broken(MiniLMEmbeddingFunction):
    def __call__(self, input: Documents) -> Embeddings:
        raise RuntimeError("disk full")


def test_held_vectors_are_the_stored_ones_read_once(tmp_path: Path) -> None:
    items = load_catalog(str(TINY)).items
    index = VectorIndex(make_client(tmp_path), "tiny")
    index.sync(items, "v1")
    ids = ["3", "1", "3", "unknown"]
    stored = index.vectors(ids)
    index.hold()
    index.client.delete_collection(index.collection.name)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(index.vectors(ids), stored)  # from memory: the collection is gone
    assert not stored[3].any()


def test_failed_rebuild_leaves_the_old_index_active(tmp_path: Path) -> None:
    items = load_catalog(str(TINY)).items.copy()
    VectorIndex(make_client(tmp_path), "tiny").sync(items, "v1")
    items.loc["3", "text"] = "changed"
    broken = VectorIndex(make_client(tmp_path), "tiny", embedding=_Broken())
    with pytest.raises(RuntimeError, match="disk full"):
        broken.sync(items, "v2")
    index = VectorIndex(make_client(tmp_path), "tiny")
    assert index.is_current("v1") and index.collection.count() == 6  # type: ignore[attr-defined]
    assert len(_collections(index)) == 2


def test_embedding_is_normalised_and_padding_free() -> None:
    ef = MiniLMEmbeddingFunction()
    alone = np.asarray(ef(["Star Quest. Genres: Sci-Fi."])[0])
    batched = np.asarray(ef(["x", "Star Quest. Genres: Sci-Fi.", "a much longer text " * 20])[1])
    assert alone.shape == (384,)
    assert abs(float(np.linalg.norm(alone)) - 1.0) < 1e-5
    assert float(alone @ batched) > 0.99999


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_client_against_a_real_chroma_server(tmp_path: Path) -> None:
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    assert chroma, "the chroma CLI comes with chromadb"
    port = _free_port()
    server = subprocess.Popen([chroma, "run", "--path", str(tmp_path / "srv"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    try:
        deadline = time.time() + 60
        while True:
            try:
                client = make_client(tmp_path / "unused", host="127.0.0.1", port=port)
                client.heartbeat()  # type: ignore[attr-defined]
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        items = load_catalog(str(TINY)).items
        index = VectorIndex(client, "tiny")
        assert index.sync(items, "v1").embedded == 6
        vec = index.embed(["space adventure sequel"])[0]
        assert set(list(index.nearest(vec, 2))) == {"1", "2"}
        assert not (tmp_path / "unused").exists()  # nothing was written locally
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_needs_are_matched_to_the_catalogs_genres_and_tags_by_meaning(tiny_recommender: Recommender) -> None:
    needs = tiny_recommender.retriever.needs
    matched = {n.name for n in needs.match("outer space adventure")}
    assert {"space", "Adventure"} <= matched  # "space" is a tag of two items, Adventure a genre
    scores = needs.scores(needs.match("outer space adventure"))
    ids = list(tiny_recommender.catalog.items.index)
    best = {ids[i] for i in np.argsort(-scores)[:2]}
    assert best == {"1", "2"}  # the two Star Quest films carry both needs
    assert needs.match("hello there") == [] and not needs.scores([]).any()
