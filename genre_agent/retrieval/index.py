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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import pandas as pd

from genre_agent.errors import BackendUnavailableError
from genre_agent.retrieval.embedding import MiniLMEmbeddingFunction
from genre_agent.retrieval.vector_file import VectorFile, text_hash

if TYPE_CHECKING:  # chromadb is imported when a client is made, not when this module is
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from chromadb.api.types import Embeddable, EmbeddingFunction, GetResult

POINTERS = "genre_agent_pointers"
BATCH = 256
Progress = Callable[[int, int], None]
T = TypeVar("T")


@dataclass
class SyncReport:
    embedded: int = 0
    reused: int = 0  # from the collection built before, or from a shipped vector file
    removed: int = 0
    rebuilt: bool = False


def make_client(path: Path, host: str | None = None, port: int = 8000) -> ClientAPI:
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


def remove_orphans(path: Path) -> list[str]:
    """Delete the segment folders of an embedded Chroma store that no collection uses any more (Chroma keeps
    them when a collection is deleted, and a crashed build leaves them). Returns the names removed; does
    nothing when the store's layout is not the one known (a newer Chroma)."""
    import shutil
    import sqlite3

    db = path / "chroma.sqlite3"
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            live = {row[0] for row in conn.execute("SELECT id FROM segments")}
    except sqlite3.Error:
        return []
    removed = []
    for folder in path.iterdir():
        if folder.is_dir() and _UUID.fullmatch(folder.name) and folder.name not in live:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def collection_key(catalog_name: str) -> str:
    """The prefix of a catalog's collection names: the name as Chroma allows it, and past 40 characters a
    hash of the whole name, so two catalogs whose names share their first 40 characters never share an index."""
    key = re.sub(r"[^a-zA-Z0-9_-]", "-", catalog_name) or "catalog"
    if len(key) <= 40:
        return key
    return f"{key[:31]}-{hashlib.sha256(catalog_name.encode()).hexdigest()[:8]}"


def _batches(ids: list[str], size: int) -> Iterator[list[str]]:
    return (ids[start : start + size] for start in range(0, len(ids), size))


def _vectors_by_id(got: GetResult) -> dict[str, np.ndarray]:
    """The embeddings of a `get(..., include=["embeddings"])` by id."""
    embeddings = got["embeddings"]
    return {} if embeddings is None else dict(zip(got["ids"], map(np.asarray, embeddings), strict=False))


class VectorIndex:
    """Item embeddings of one catalog in Chroma, with cosine similarity search."""

    def __init__(self, client: ClientAPI, catalog_name: str,
                 embedding: MiniLMEmbeddingFunction | None = None) -> None:
        self.client = client
        self.key = collection_key(catalog_name)
        self.embedding = embedding or MiniLMEmbeddingFunction()
        # Chroma types the parameter for text-or-image functions; ours embeds text only, which is all we give it.
        self._embedding_function = cast("EmbeddingFunction[Embeddable]", self.embedding)
        self._collection: Collection | None = None
        self._held: dict[str, np.ndarray] | None = None  # every stored vector, once `hold` read them

    # -- pointer -----------------------------------------------------------------
    def _pointers(self) -> Collection:
        return self.client.get_or_create_collection(POINTERS)

    def _active_name(self) -> tuple[str | None, str | None]:
        meta = self._pointers().metadata or {}
        return meta.get(f"{self.key}:collection"), meta.get(f"{self.key}:fingerprint")

    def _open(self, name: str) -> Collection:
        return self.client.get_collection(name, embedding_function=self._embedding_function)

    @property
    def collection(self) -> Collection:
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
    def sync(self, items: pd.DataFrame, fingerprint: str, progress: Progress | None = None,
             shipped: VectorFile | None = None, column: str = "text") -> SyncReport:
        """Make the active collection hold exactly `items` (index item_id; columns title, year and `column`, the
        texts to embed). Vectors come from the collection built before, else from `shipped` (a vector file made
        for the same model), for every item whose text is unchanged; only the others are embedded."""
        if self.is_current(fingerprint):
            return SyncReport(reused=len(items))
        old_name, _ = self._active_name()
        old = self._open(old_name) if old_name else None
        stored = self._stored_hashes(old)
        wanted = {str(i): text_hash(t) for i, t in zip(items.index, items[column], strict=False)}
        reuse = [i for i, h in wanted.items() if stored.get(i) == h]
        from_file = shipped.matching({i: h for i, h in wanted.items() if stored.get(i) != h}) if shipped else {}
        fresh = [i for i in wanted if stored.get(i) != wanted[i] and i not in from_file]
        report = SyncReport(embedded=len(fresh), reused=len(reuse) + len(from_file),
                            removed=len(set(stored) - set(wanted)), rebuilt=True)
        new_name = f"{self.key}-{uuid.uuid4().hex[:8]}"
        new = self.client.create_collection(
            new_name, embedding_function=self._embedding_function, metadata={"hnsw:space": "cosine"}
        )
        try:
            done = 0

            def add(ids: list[str], **content: Any) -> None:
                nonlocal done
                new.add(ids=ids, metadatas=[self._metadata(items, i, wanted[i]) for i in ids], **content)
                done += len(ids)
                if progress:
                    progress(done, len(wanted))

            for ids in _batches(reuse, BATCH):  # `reuse` is empty without an old collection
                vectors = _vectors_by_id(old.get(ids=ids, include=["embeddings"])) if old is not None else {}
                add(ids, embeddings=[vectors[i] for i in ids])
            for ids in _batches(list(from_file), BATCH * 8):  # no model call: larger batches
                add(ids, embeddings=[from_file[i] for i in ids])
            for ids in _batches(fresh, BATCH):
                add(ids, documents=[items.at[i, column] for i in ids])
            self._pointers().modify(metadata={
                **(self._pointers().metadata or {}),
                f"{self.key}:collection": new_name, f"{self.key}:fingerprint": fingerprint,
            })
        except BaseException:
            self.client.delete_collection(new_name)
            raise
        self._collection = new
        self._drop_stale(keep=new_name)
        return report

    def export(self, items: pd.DataFrame) -> tuple[list[str], list[str], np.ndarray]:
        """The active collection's (ids, text hashes, vectors) of `items`, in their order: what a vector file
        shipped beside the catalog holds."""
        ids = [str(i) for i in items.index]
        hashes = self._stored_hashes(self.collection)
        return ids, [hashes.get(i, "") for i in ids], self.vectors(ids)

    def _stored_hashes(self, collection: Collection | None) -> dict[str, str]:
        if collection is None:
            return {}
        got = collection.get(include=["metadatas"])
        metadatas = got["metadatas"] or []
        return {i: str((m or {}).get("text_hash", "")) for i, m in zip(got["ids"], metadatas, strict=False)}

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
        for col in self.client.list_collections():
            name = col if isinstance(col, str) else col.name
            if name.startswith(prefix) and name != keep and re.fullmatch(r"[0-9a-f]{8}", name[len(prefix):]):
                self.client.delete_collection(name)

    # -- read --------------------------------------------------------------------
    def embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.embedding(texts), dtype=np.float32)

    def _read(self, query: Callable[[Any], T]) -> T:
        """Run a read on the active collection. When it fails because a rebuild (another process) swapped
        collections and dropped the one this reader had open, follow the pointer to the new one and retry."""
        from chromadb.errors import ChromaError

        try:
            return query(self.collection)
        except ChromaError:
            self._collection = None
            return query(self.collection)

    def hold(self) -> None:
        """Read every stored vector once and answer `vectors` from memory from now on: what `fit` does, which
        reads the vectors of a pool of items for every example (the index must not be rebuilt meanwhile)."""
        self._held = _vectors_by_id(self._read(lambda c: c.get(include=["embeddings"])))

    def vectors(self, item_ids: list[str]) -> np.ndarray:
        """Stored embeddings of the given items, in the given order (zeros for unknown ids)."""
        if not item_ids:
            return np.zeros((0, 384), dtype=np.float32)
        unique = list(dict.fromkeys(item_ids))  # Chroma refuses a repeated id (DuplicateIDError)
        found = self._held if self._held is not None else \
            _vectors_by_id(self._read(lambda c: c.get(ids=unique, include=["embeddings"])))
        return np.array([found.get(i, np.zeros(384)) for i in item_ids], dtype=np.float32)

    def nearest(self, vector: np.ndarray, n: int) -> dict[str, float]:
        """Up to n items most similar to `vector`, as item_id -> cosine similarity."""
        query = np.asarray([vector], dtype=np.float32)
        res = self._read(lambda c: c.query(query_embeddings=query, n_results=min(n, c.count()),
                                           include=["distances"]))
        distances = res["distances"] or [[]]
        return {i: 1.0 - float(d) for i, d in zip(res["ids"][0], distances[0], strict=False)}
