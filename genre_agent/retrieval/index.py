"""The vector index: item texts embedded into a Chroma collection.

Embedded `PersistentClient` in the data directory by default, `HttpClient` when a host is configured.
Rebuilds are atomic and incremental: a new collection is built aside (unchanged items copy their stored
embedding, only new or changed texts are embedded), then one pointer update makes it active and the old
collection is dropped. Readers follow the pointer, so they never see a half-built collection.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genre_agent.errors import BackendUnavailableError
from genre_agent.retrieval.embedding import MiniLMEmbeddingFunction

POINTERS = "genre_agent_pointers"
BATCH = 256
Progress = Callable[[int, int], None]


@dataclass
class SyncReport:
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    rebuilt: bool = False


def make_client(path: Path, host: str | None = None, port: int = 8000) -> object:
    """An embedded PersistentClient at `path`, or an HttpClient to a `chroma run` server."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False)
    if host:
        try:
            return chromadb.HttpClient(host=host, port=port, settings=settings)
        except Exception as exc:  # chromadb raises plain exceptions for connection failures
            raise BackendUnavailableError(
                f"Cannot reach the Chroma server at {host}:{port} ({exc}). Start it with "
                f"`chroma run --path DIR --port {port}` or unset chroma.host to use the embedded store."
            ) from exc
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class VectorIndex:
    """Item embeddings of one catalog in Chroma, with cosine similarity search."""

    def __init__(self, client: object, catalog_name: str,
                 embedding: MiniLMEmbeddingFunction | None = None) -> None:
        self.client = client
        self.key = re.sub(r"[^a-zA-Z0-9_-]", "-", catalog_name)[:40] or "catalog"
        self.embedding = embedding or MiniLMEmbeddingFunction()
        self._collection: object | None = None

    # -- pointer -----------------------------------------------------------------
    def _pointers(self) -> object:
        return self.client.get_or_create_collection(POINTERS)  # type: ignore[attr-defined]

    def _active_name(self) -> tuple[str | None, str | None]:
        meta = self._pointers().metadata or {}  # type: ignore[attr-defined]
        return meta.get(f"{self.key}:collection"), meta.get(f"{self.key}:fingerprint")

    def _open(self, name: str) -> object:
        return self.client.get_collection(name, embedding_function=self.embedding)  # type: ignore[attr-defined]

    @property
    def collection(self) -> object:
        if self._collection is None:
            name, _ = self._active_name()
            if name is None:
                raise BackendUnavailableError(
                    f"No vector index for catalog '{self.key}': run `genre-agent index --catalog {self.key}`."
                )
            self._collection = self._open(name)
        return self._collection

    def is_current(self, fingerprint: str) -> bool:
        name, stored = self._active_name()
        return name is not None and stored == fingerprint

    # -- build -------------------------------------------------------------------
    def sync(self, items: pd.DataFrame, fingerprint: str, progress: Progress | None = None) -> SyncReport:
        """Make the active collection hold exactly `items` (index item_id; columns text, title, year)."""
        if self.is_current(fingerprint):
            return SyncReport(reused=len(items))
        old_name, _ = self._active_name()
        old: Any = self._open(old_name) if old_name else None
        stored = self._stored_hashes(old)
        wanted = {str(i): _text_hash(t) for i, t in zip(items.index, items["text"], strict=False)}
        reuse = [i for i, h in wanted.items() if stored.get(i) == h]
        fresh = [i for i in wanted if stored.get(i) != wanted[i]]
        report = SyncReport(embedded=len(fresh), reused=len(reuse),
                            removed=len(set(stored) - set(wanted)), rebuilt=True)
        new_name = f"{self.key}-{uuid.uuid4().hex[:8]}"
        new = self.client.create_collection(  # type: ignore[attr-defined]
            new_name, embedding_function=self.embedding, metadata={"hnsw:space": "cosine"}
        )
        try:
            done = 0
            for start in range(0, len(reuse), BATCH):
                ids = reuse[start : start + BATCH]
                got = old.get(ids=ids, include=["embeddings"])
                vectors = dict(zip(got["ids"], got["embeddings"], strict=False))
                new.add(ids=ids, embeddings=[vectors[i] for i in ids],  # type: ignore[attr-defined]
                        metadatas=[self._metadata(items, i, wanted[i]) for i in ids])
                done += len(ids)
                if progress:
                    progress(done, len(wanted))
            for start in range(0, len(fresh), BATCH):
                ids = fresh[start : start + BATCH]
                new.add(ids=ids, documents=[items.at[i, "text"] for i in ids],  # type: ignore[attr-defined]
                        metadatas=[self._metadata(items, i, wanted[i]) for i in ids])
                done += len(ids)
                if progress:
                    progress(done, len(wanted))
            self._pointers().modify(metadata={  # type: ignore[attr-defined]
                **(self._pointers().metadata or {}),  # type: ignore[attr-defined]
                f"{self.key}:collection": new_name, f"{self.key}:fingerprint": fingerprint,
            })
        except BaseException:
            self.client.delete_collection(new_name)  # type: ignore[attr-defined]
            raise
        self._collection = new
        self._drop_stale(keep=new_name)
        return report

    def _stored_hashes(self, collection: object | None) -> dict[str, str]:
        if collection is None:
            return {}
        got = collection.get(include=["metadatas"])  # type: ignore[attr-defined]
        return {i: (m or {}).get("text_hash", "") for i, m in zip(got["ids"], got["metadatas"], strict=False)}

    @staticmethod
    def _metadata(items: pd.DataFrame, item_id: str, text_hash: str) -> dict[str, str | int]:
        meta: dict[str, str | int] = {"text_hash": text_hash, "title": str(items.at[item_id, "title"])}
        year = items.at[item_id, "year"]
        if year is not pd.NA and not pd.isna(year):
            meta["year"] = int(year)
        return meta

    def _drop_stale(self, keep: str) -> None:
        """Delete this catalog's collections other than the active one (old or crashed builds)."""
        prefix = f"{self.key}-"
        for col in self.client.list_collections():  # type: ignore[attr-defined]
            name = col if isinstance(col, str) else col.name
            if name.startswith(prefix) and name != keep and re.fullmatch(r"[0-9a-f]{8}", name[len(prefix):]):
                self.client.delete_collection(name)  # type: ignore[attr-defined]

    # -- read --------------------------------------------------------------------
    def embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.embedding(texts), dtype=np.float32)

    def vectors(self, item_ids: list[str]) -> np.ndarray:
        """Stored embeddings of the given items, in the given order (zeros for unknown ids)."""
        if not item_ids:
            return np.zeros((0, 384), dtype=np.float32)
        unique = list(dict.fromkeys(item_ids))  # Chroma refuses a repeated id (DuplicateIDError)
        got = self.collection.get(ids=unique, include=["embeddings"])  # type: ignore[attr-defined]
        found = dict(zip(got["ids"], got["embeddings"], strict=False))
        return np.array([found.get(i, np.zeros(384)) for i in item_ids], dtype=np.float32)

    def nearest(self, vector: np.ndarray, n: int) -> dict[str, float]:
        """Up to n items most similar to `vector`, as item_id -> cosine similarity."""
        count = self.collection.count()  # type: ignore[attr-defined]
        res = self.collection.query(  # type: ignore[attr-defined]
            query_embeddings=[np.asarray(vector, dtype=np.float32)], n_results=min(n, count),
            include=["distances"],
        )
        return {i: 1.0 - float(d) for i, d in zip(res["ids"][0], res["distances"][0], strict=False)}
