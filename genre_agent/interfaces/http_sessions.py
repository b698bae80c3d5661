"""The HTTP server's sessions: ids it issued, each bound to the API key that asked for it, kept in the store."""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

from genre_agent.chat.agent import Agent, Commit, Reply
from genre_agent.chat.session import SessionState
from genre_agent.errors import DataDirError
from genre_agent.interfaces.guard import Caller
from genre_agent.interfaces.http_errors import ApiError


class Sessions:
    """Server-issued session ids, each bound to the key that asked for it. Sessions live in the store (the
    feedback's SQLite file, or PostgreSQL with `store.url`), so every replica sharing the store can continue
    any of them: a turn reads its session from the store under the session's lock (which also marks it used)
    and, if the turn changed it, writes it back unless another turn wrote it meanwhile (then 409 and nothing of
    this turn is kept). They expire by TTL; a key's new session beyond `per_key` of its own, or beyond `cap` in
    all, replaces the key's own least recently used one, never another key's (429 when it has none). A replica
    keeps in memory only the sessions it used lately (the same TTL and cap), never one with a turn running."""

    def __init__(self, agent: Agent, ttl_s: float, cap: int, clock: Callable[[], float] = time.time,
                 per_key: int | None = None) -> None:
        self.agent, self.store, self.ttl_s, self.cap, self.clock = agent, agent.store, ttl_s, cap, clock
        self.per_key = per_key or cap
        self._here: OrderedDict[str, float] = OrderedDict()  # id -> last use in this replica, LRU first
        self._running: Counter[str] = Counter()  # id -> turns of it running here
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.store.session_count()

    def issue(self, caller: Caller) -> str:
        session_id = f"sess_{secrets.token_urlsafe(24)}"
        state = SessionState(session_id=session_id)
        self.agent.set_user(state, caller.user)
        now = self.clock()
        gone, added = self.store.add_session(session_id, caller.key_id, state.model_dump_json(), now, self.cap,
                                             self.per_key, expired_before=now - self.ttl_s)
        for old in gone:
            self._forget_here(old)
        if not added:
            raise ApiError(429, "too_many_sessions", f"the server holds its {self.cap} sessions "
                           "(server.max_sessions), all of other API keys; retry later, or send the whole "
                           "conversation in `messages` without a session",
                           headers={"Retry-After": str(math.ceil(self.ttl_s))})  # the longest one lasts unused
        return session_id

    def use(self, session_id: str, caller: Caller, touch: bool = False) -> tuple[SessionState, int]:
        """The caller's session as the store has it and its version (with `touch`, marked used now);
        ApiError 404 unless it exists, has not expired and belongs to the caller's key."""
        now = self.clock()
        stored = self.store.session(session_id, touch=now if touch else None)
        if stored is not None and now - stored.used > self.ttl_s:
            self.store.end_session(session_id)
            self._forget_here(session_id)
            stored = None
        if stored is None or not secrets.compare_digest(stored.owner, caller.key_id):
            raise ApiError(404, "session_not_found", "no such session for this API key (it may have expired): "
                           "create one with POST /v1/sessions, or send the whole conversation in `messages`")
        return SessionState.model_validate_json(stored.state), stored.version

    def turn(self, session_id: str, caller: Caller, run: Callable[[Commit], Reply],
             keep: Commit | None = None) -> Reply:
        """Run one turn of the caller's session (checked with `use` first): read from the store under the
        session's lock, then `run` with the `commit` the agent calls before it stores the turn's feedback:
        it asks `keep` whether the feedback is stored (which may spend its budget, or raise: nothing kept;
        default: stored) and writes the session back, unless another turn wrote it meanwhile (409: nothing of
        this turn is kept, its feedback included)."""
        with self._lock:
            self._running[session_id] += 1
        try:
            with self.agent.held(session_id) as state:
                stored, version = self.use(session_id, caller, touch=True)
                state.take(stored)
                before = state.model_dump_json()

                def commit(after: SessionState, writes: int) -> bool:
                    stored = keep is None or keep(after, writes)
                    text = after.model_dump_json()
                    try:
                        saved = text == before or self.store.save_session(session_id, text, self.clock(), version)
                    except DataDirError as exc:
                        raise DataDirError(f"this turn's session could not be saved ({exc.__cause__ or exc}); "
                                           "nothing of the turn was kept. Retry the turn.") from exc
                    if not saved:
                        raise ApiError(409, "session_conflict", "another turn of this session changed it "
                                       "meanwhile, or it was ended; nothing of this turn was kept. Send turns "
                                       "of one session one at a time.")
                    return stored

                return run(commit)
        finally:
            with self._lock:
                self._running[session_id] -= 1
                if not self._running[session_id]:
                    del self._running[session_id]
            self._used_here(session_id, self.clock())

    def end(self, session_id: str, caller: Caller) -> None:
        self.use(session_id, caller)
        self.store.end_session(session_id)
        self._forget_here(session_id)

    def _used_here(self, session_id: str, now: float) -> None:
        """Mark a session used in this replica; forget the ones used here longest ago beyond the TTL or cap."""
        with self._lock:
            self._here[session_id] = now
            self._here.move_to_end(session_id)
            drop: list[str] = []
            for old, used in self._here.items():  # least recently used first
                if len(self._here) - len(drop) <= self.cap and now - used <= self.ttl_s:
                    break
                if old not in self._running:
                    drop.append(old)
            for old in drop:
                del self._here[old]
                self.agent.forget(old)

    def _forget_here(self, session_id: str) -> None:
        with self._lock:
            if session_id in self._running:  # its turn ends first; its write finds no row
                return
            self._here.pop(session_id, None)
        self.agent.forget(session_id)


