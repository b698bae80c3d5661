"""The conversations one process holds in memory, each with its own re-entrant lock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from genre_agent.chat.session import SessionState


class Sessions:
    """Sessions by id, made with their lock on first use; `switch_user` makes a session another user's
    conversation (when a turn names a user other than the session's)."""

    def __init__(self, switch_user: Callable[[SessionState, str], None]) -> None:
        self._switch_user = switch_user
        self._states: dict[str, SessionState] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    def entry(self, session_id: str, user: str | None = None) -> tuple[SessionState, threading.RLock]:
        """A session and its lock, made together if new (and switched to `user` if given)."""
        with self._guard:
            state = self._states.get(session_id)
            if state is None:
                state = self._states[session_id] = SessionState(session_id=session_id)
                self._locks[session_id] = threading.RLock()
            if user is not None and user != state.user_id:
                self._switch_user(state, user)
            return state, self._locks[session_id]

    @contextmanager
    def held(self, session_id: str) -> Iterator[SessionState]:
        """The session with its lock held: its other turns in this process wait until the block ends."""
        state, lock = self.entry(session_id)
        with lock:
            yield state

    def ids(self) -> list[str]:
        with self._guard:
            return list(self._states)

    def forget(self, session_id: str) -> None:
        with self._guard:
            self._states.pop(session_id, None)
            self._locks.pop(session_id, None)
