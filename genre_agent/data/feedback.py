"""Feedback, persisted: SQLite in the data directory by default, or a PostgreSQL server that several server
replicas share (`store.url`).

Likes, dislikes and "seen" are used at once by the session that gave them, and become extra interactions
the next time the CF model is fitted (as ratings 5, 1 and 3: only likes count as positives). Two tables:
`feedback` holds each (catalog, user, item)'s current kind (the latest wins); `feedback_events` is the log of
every recording — who, what, when, from which message — so a wrong row can be found
(`genre-agent feedback list`) and undone (`genre-agent feedback undo ID`). An event's id is a hash of who,
what and its source (the turn and its message): recording the same event again changes nothing.

The same store keeps the HTTP server's sessions (`server_sessions`: id, the API key it was issued to, the
session as JSON, last use), so every replica that shares the store can continue any session.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from genre_agent.data.catalog import Catalog
from genre_agent.errors import ConfigError, DataDirError
from genre_agent.sanitize import redact

Kind = Literal["like", "dislike", "seen"]
RATING: dict[str, float] = {"like": 5.0, "dislike": 1.0, "seen": 3.0}
SOURCE_CHARS = 500  # the message an event came from is kept up to this length
# SQLite's words for storage that failed under it, not for a fault of ours: the server answers them 503
STORAGE_FAILURES = ("database or disk is full", "disk I/O error", "locked", "readonly")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS feedback (catalog TEXT NOT NULL, user_key TEXT NOT NULL, item_id TEXT NOT NULL, "
    "kind TEXT NOT NULL CHECK (kind IN ('like','dislike','seen')), created {real} NOT NULL, "
    "PRIMARY KEY (catalog, user_key, item_id))",
    "CREATE TABLE IF NOT EXISTS feedback_events (id TEXT PRIMARY KEY, catalog TEXT NOT NULL, "
    "user_key TEXT NOT NULL, item_id TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('like','dislike','seen')), "
    "created {real} NOT NULL, source TEXT NOT NULL, undone INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS feedback_events_who ON feedback_events (catalog, user_key, item_id, created)",
    "CREATE TABLE IF NOT EXISTS server_sessions (id TEXT PRIMARY KEY, owner TEXT NOT NULL, state TEXT NOT NULL, "
    "used {real} NOT NULL, version INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS server_sessions_used ON server_sessions (used)",
)


@dataclass(frozen=True)
class FeedbackEvent:
    id: str
    catalog: str
    user_key: str
    item_id: str
    kind: Kind
    created: float
    source: str
    undone: bool


@dataclass(frozen=True)
class StoredSession:
    owner: str  # the id of the API key it was issued to
    state: str  # the session, as JSON
    used: float  # last use, seconds since the epoch
    version: int  # how many times its state was written: a write based on an older version is refused


def _event(row: Sequence[Any]) -> FeedbackEvent:
    eid, catalog, user_key, item_id, kind, created, source, undone = row
    return FeedbackEvent(eid, catalog, user_key, item_id, kind, float(created), source, bool(undone))


def event_id(catalog: str, user_key: str, item_id: str, kind: str, source: str) -> str:
    """The same recording from the same source is the same event."""
    return hashlib.sha256("\x1f".join((catalog, user_key, item_id, kind, source)).encode()).hexdigest()[:16]


class Store(ABC):
    """What a deployment keeps between turns: feedback (current kinds and the event log) and the HTTP
    server's sessions. The SQL is written once with `?` placeholders; each database says how it connects
    and its dialect."""

    placeholder = "?"
    real = "REAL"

    schema_lock: str | None = None  # a statement that serialises schema creation between processes

    def __init__(self) -> None:
        with self._db(write=True) as db:
            if self.schema_lock:
                self._run(db, self.schema_lock)
            for statement in SCHEMA:
                self._run(db, statement.format(real=self.real))

    @abstractmethod
    def _db(self, write: bool = False) -> AbstractContextManager[Any]:
        """A connection in one transaction (committed when the block ends without an error)."""

    def _run(self, db: Any, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = db.execute(sql.replace("?", self.placeholder), tuple(args))
        return list(cursor.fetchall()) if cursor.description else []

    def record(self, catalog: str, user_key: str, item_id: str, kind: Kind, source: str = "") -> str:
        """Log the event (once per source) and make it the item's current feedback; returns the event id."""
        source = source[:SOURCE_CHARS]
        eid = event_id(catalog, user_key, item_id, kind, source)
        now = time.time()
        with self._db(write=True) as db:
            if self._run(db, "SELECT 1 FROM feedback_events WHERE id = ?", (eid,)):
                return eid
            self._run(db, "INSERT INTO feedback_events VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                      (eid, catalog, user_key, item_id, kind, now, source))
            self._run(db, "INSERT INTO feedback VALUES (?, ?, ?, ?, ?) ON CONFLICT (catalog, user_key, item_id) "
                      "DO UPDATE SET kind = excluded.kind, created = excluded.created",
                      (catalog, user_key, item_id, kind, now))
        return eid

    def for_user(self, catalog: str, user_key: str) -> dict[str, Kind]:
        with self._db() as db:
            rows = self._run(db, "SELECT item_id, kind FROM feedback WHERE catalog = ? AND user_key = ? "
                             "ORDER BY created", (catalog, user_key))
        return {item: kind for item, kind in rows}

    def interactions(self, catalog: str) -> pd.DataFrame:
        """All feedback of a catalog as interactions (user_id, item_id, rating, timestamp)."""
        with self._db() as db:
            rows = self._run(db, "SELECT user_key, item_id, kind, created FROM feedback WHERE catalog = ?",
                             (catalog,))
        return pd.DataFrame({
            "user_id": pd.Series([r[0] for r in rows], dtype=str),
            "item_id": pd.Series([r[1] for r in rows], dtype=str),
            "rating": pd.Series([RATING[r[2]] for r in rows], dtype=float),
            "timestamp": pd.Series([int(r[3]) for r in rows], dtype="int64"),
        })

    def events(self, catalog: str | None = None, user_key: str | None = None,
               limit: int = 50) -> list[FeedbackEvent]:
        """The newest events first, optionally of one catalog and one user."""
        where, args = [], []
        for column, value in (("catalog", catalog), ("user_key", user_key)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = ("SELECT id, catalog, user_key, item_id, kind, created, source, undone FROM feedback_events"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created DESC LIMIT ?")
        with self._db() as db:
            rows = self._run(db, sql, (*args, limit))
        return [_event(row) for row in rows]

    def undo(self, eid: str) -> FeedbackEvent:
        """Take an event back: the item's current feedback becomes the latest event still standing (none:
        the item has no feedback of this user)."""
        with self._db(write=True) as db:
            rows = self._run(db, "SELECT id, catalog, user_key, item_id, kind, created, source, undone "
                             "FROM feedback_events WHERE id = ?", (eid,))
            if not rows:
                raise ConfigError(f"No feedback event {eid!r}: `genre-agent feedback list` shows the event ids.")
            if rows[0][7]:
                raise ConfigError(f"Feedback event {eid!r} was already undone; `genre-agent feedback list` shows "
                                  "what stands.")
            event = _event((*rows[0][:7], True))
            who = (event.catalog, event.user_key, event.item_id)
            self._run(db, "UPDATE feedback_events SET undone = 1 WHERE id = ?", (eid,))
            standing = self._run(db, "SELECT kind, created FROM feedback_events WHERE catalog = ? AND "
                                 "user_key = ? AND item_id = ? AND undone = 0 ORDER BY created DESC LIMIT 1", who)
            if standing:
                self._run(db, "UPDATE feedback SET kind = ?, created = ? WHERE catalog = ? AND user_key = ? "
                          "AND item_id = ?", (*standing[0], *who))
            else:
                self._run(db, "DELETE FROM feedback WHERE catalog = ? AND user_key = ? AND item_id = ?", who)
        return event

    # -- the server's sessions ----------------------------------------------------------
    def add_session(self, session_id: str, owner: str, state: str, used: float, cap: int, owner_cap: int,
                    expired_before: float) -> tuple[list[str], bool]:
        """Store a new session. The sessions last used before `expired_before` are dropped first; then, while the
        owner holds `owner_cap` sessions or the store holds `cap` (the new one counted), the owner's least
        recently used ones, never another owner's. Returns the ids dropped and whether the session was stored
        (not when the store is full of other owners' sessions)."""
        with self._db(write=True) as db:
            gone = self._run(db, "DELETE FROM server_sessions WHERE used < ? RETURNING id", (expired_before,))
            total = int(self._run(db, "SELECT COUNT(*) FROM server_sessions")[0][0])
            own = int(self._run(db, "SELECT COUNT(*) FROM server_sessions WHERE owner = ?", (owner,))[0][0])
            excess = max(own - owner_cap + 1, total - cap + 1, 0)
            if excess > own:
                return [old for (old,) in gone], False
            if excess:
                gone += self._run(db, "DELETE FROM server_sessions WHERE id IN (SELECT id FROM server_sessions "
                                  "WHERE owner = ? ORDER BY used, id LIMIT ?) RETURNING id", (owner, excess))
            self._run(db, "INSERT INTO server_sessions VALUES (?, ?, ?, ?, 0)", (session_id, owner, state, used))
        return [old for (old,) in gone], True

    def session(self, session_id: str, touch: float | None = None) -> StoredSession | None:
        """A session as stored; with `touch`, its last use becomes that time (a turn starts)."""
        with self._db(write=touch is not None) as db:
            rows = self._run(db, "SELECT owner, state, used, version FROM server_sessions WHERE id = ?",
                             (session_id,))
            if rows and touch is not None:
                self._run(db, "UPDATE server_sessions SET used = ? WHERE id = ?", (touch, session_id))
        return StoredSession(rows[0][0], rows[0][1], float(rows[0][2]), int(rows[0][3])) if rows else None

    def save_session(self, session_id: str, state: str, used: float, version: int) -> bool:
        """Write a session back after a turn that changed it, if nobody wrote it since `version` was read.
        False if somebody did, or the session was ended meanwhile (then nothing is written)."""
        with self._db(write=True) as db:
            written = self._run(db, "UPDATE server_sessions SET state = ?, used = ?, version = version + 1 "
                                "WHERE id = ? AND version = ? RETURNING id", (state, used, session_id, version))
        return bool(written)

    def end_session(self, session_id: str) -> None:
        with self._db(write=True) as db:
            self._run(db, "DELETE FROM server_sessions WHERE id = ?", (session_id,))

    def session_count(self) -> int:
        with self._db() as db:
            return int(self._run(db, "SELECT COUNT(*) FROM server_sessions")[0][0])


class SQLiteStore(Store):
    """One file per installation (WAL mode: concurrent sessions and processes are safe). In a data directory
    that cannot be written (a read-only mount), an existing file is opened read-only: feedback is read, and
    storing any raises DataDirError. Where SQLite cannot open it read-only with its locks (WAL needs an index
    file it cannot create there), it is opened as immutable: nothing may write it while it is open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.read_only = ""  # how a file this process cannot write is opened (a SQLite URI parameter)
        self._lock = threading.Lock()
        try:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with sqlite3.connect(path, timeout=30) as db:
                    db.execute("PRAGMA journal_mode=WAL")
                super().__init__()
            except sqlite3.OperationalError as exc:
                if "unable to open" not in str(exc) and "readonly" not in str(exc):
                    raise
                if not path.is_file() or os.access(path.parent, os.W_OK):
                    raise DataDirError(f"cannot write {path} ({exc}): make its folder writable or set "
                                       "GENRE_AGENT_DATA_DIR to a writable folder.") from exc
                self.read_only = "mode=ro"  # others may still write it: SQLite's locks apply
                try:
                    with self._db() as db:
                        db.execute("SELECT count(*) FROM feedback").fetchone()
                except sqlite3.OperationalError:  # a WAL file needs its index, which cannot be made here
                    self.read_only = "immutable=1"  # so read it as a file nothing changes while it is open
            with self._db() as db:
                db.execute("SELECT count(*) FROM feedback").fetchone()
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            raise DataDirError(
                f"{path} is not a readable SQLite database ({exc}). It holds the likes and dislikes given in "
                f"chats: restore it from a backup, or move it aside (`mv {path} {path}.bad`) to start with no "
                "stored feedback."
            ) from exc
        except OSError as exc:
            raise DataDirError(f"cannot create {path} ({exc}): make its folder writable or set "
                               "GENRE_AGENT_DATA_DIR to a writable folder.") from exc

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return sqlite3.connect(f"{self.path.resolve().as_uri()}?{self.read_only}", uri=True, timeout=30,
                                   isolation_level=None)
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        if write and self.read_only:
            raise DataDirError(f"cannot store feedback or sessions: {self.path} is in a read-only data "
                               "directory. Make it writable, or set GENRE_AGENT_DATA_DIR to a writable folder.")
        with self._lock:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:  # SQLite may have rolled back already (a full disk)
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # disk full or failing, read-only, locked past the timeout
                if not any(s in str(exc) for s in STORAGE_FAILURES):
                    raise
                raise DataDirError(f"cannot write the feedback to {self.path} ({exc}); nothing of this turn "
                                   "was kept. Free disk space, check the disk, make the file writable or wait "
                                   "for the other writer, and try again.") from exc
            finally:
                db.close()


class PostgresStore(Store):
    """A PostgreSQL server (psycopg 3: `pip install -e ".[postgres]"`), shared by every replica."""

    placeholder = "%s"
    real = "DOUBLE PRECISION"
    schema_lock = "SELECT pg_advisory_xact_lock(7355608)"  # replicas starting together create the tables once

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise ConfigError('store.url names PostgreSQL: install its driver with `pip install -e ".[postgres]"` '
                              "(psycopg 3).") from exc
        self._psycopg = psycopg
        self.url = url
        try:
            super().__init__()
        except DataDirError as exc:
            raise DataDirError(f"cannot reach the feedback database at {redact(url)} ({exc.__cause__}). Check "
                               "store.url, or unset it to keep feedback in SQLite in the data directory.") from exc

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[Any]:
        try:
            with self._psycopg.connect(self.url, connect_timeout=10) as db:  # commits at the end, else rolls back
                yield db
        except self._psycopg.OperationalError as exc:  # the server went away, a full disk, a timeout
            raise DataDirError(f"the database at {redact(self.url)} failed ({exc}); nothing of this turn was "
                               "kept. Retry; if it persists, check the PostgreSQL server.") from exc


FEEDBACK_FILE = "feedback.sqlite3"  # the SQLite store's file in the data directory


def open_store(url: str | None, data_dir: Path) -> Store:
    """The configured store: PostgreSQL for a postgresql:// URL, else SQLite in the data directory."""
    if not url:
        return SQLiteStore(data_dir / FEEDBACK_FILE)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise ConfigError(f"store.url {redact(url)!r} is not a postgresql:// URL; unset it to keep feedback in "
                      "SQLite in the data directory.")


def with_feedback(catalog: Catalog, store: Store) -> Catalog:
    """The catalog with stored feedback appended as interactions (the latest rating of a pair wins): a chat's
    likes join CF, and its dislikes and "seen" count as rated, so they are not recommended again."""
    extra = store.interactions(catalog.name)
    extra = extra[extra.item_id.isin(catalog.items.index)]
    if extra.empty:
        return catalog
    merged = pd.concat([catalog.interactions, extra], ignore_index=True)
    merged = merged.drop_duplicates(["user_id", "item_id"], keep="last").reset_index(drop=True)
    return replace(catalog, interactions=merged)  # all else kept: the genre words too
