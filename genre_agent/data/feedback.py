"""Feedback persisted in SQLite (one file per installation; WAL mode, safe for concurrent sessions).

Likes, dislikes and "seen" are used at once by the session that gave them, and become extra interactions
the next time the CF model is fitted (as ratings 5, 1 and 3: only likes count as positives).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Literal

import pandas as pd

from genre_agent.errors import DataDirError

Kind = Literal["like", "dislike", "seen"]
RATING: dict[str, float] = {"like": 5.0, "dislike": 1.0, "seen": 3.0}


class FeedbackStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS feedback (catalog TEXT NOT NULL, user_key TEXT NOT NULL, "
                    "item_id TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('like','dislike','seen')), "
                    "created REAL NOT NULL, PRIMARY KEY (catalog, user_key, item_id))"
                )
                db.execute("SELECT count(*) FROM feedback").fetchone()
        except sqlite3.OperationalError as exc:
            if "unable to open" not in str(exc) and "readonly" not in str(exc):
                raise
            raise DataDirError(f"cannot write {path} ({exc}): make its folder writable or set "
                               "GENRE_AGENT_DATA_DIR to a writable folder.") from exc
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
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def record(self, catalog: str, user_key: str, item_id: str, kind: Kind) -> None:
        """The latest feedback on an item wins."""
        with self._lock, self._connect() as db:
            db.execute("INSERT INTO feedback VALUES (?, ?, ?, ?, ?) ON CONFLICT (catalog, user_key, item_id) "
                       "DO UPDATE SET kind = excluded.kind, created = excluded.created",
                       (catalog, user_key, item_id, kind, time.time()))

    def for_user(self, catalog: str, user_key: str) -> dict[str, Kind]:
        with self._connect() as db:
            rows = db.execute("SELECT item_id, kind FROM feedback WHERE catalog = ? AND user_key = ? "
                              "ORDER BY created", (catalog, user_key)).fetchall()
        return {item: kind for item, kind in rows}

    def interactions(self, catalog: str) -> pd.DataFrame:
        """All feedback of a catalog as interactions (user_id, item_id, rating, timestamp)."""
        with self._connect() as db:
            rows = db.execute("SELECT user_key, item_id, kind, created FROM feedback WHERE catalog = ?",
                              (catalog,)).fetchall()
        return pd.DataFrame({
            "user_id": pd.Series([r[0] for r in rows], dtype=str),
            "item_id": pd.Series([r[1] for r in rows], dtype=str),
            "rating": pd.Series([RATING[r[2]] for r in rows], dtype=float),
            "timestamp": pd.Series([int(r[3]) for r in rows], dtype="int64"),
        })
