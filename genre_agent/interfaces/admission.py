"""Admission: how many turns run at once, per API key and in the whole server. One object, held by the HTTP
server (`genre-agent serve`) and the MCP server alike, as a connection pool is one object every request
borrows from; both answer a call beyond it with the same 429 (a tool error with the same text over MCP).

A turn runs in a daemon thread of its own (a stuck turn never keeps the process from exiting) with a cancel
Event, which a deadline, a client that went away or shutdown sets. A cancelled turn's model call stops at its
next token, but a backend may keep its thread a while: from its cancel until its work has stopped, the turn
no longer counts as running (a new turn may take its place at once) but as *stopping*. The bound: turns
running and stopping together are at most twice the limits (`2 * limit` in the server, `2 * per_key` of one
key), so the threads at once never exceed that, and a key whose cancelled turns do not stop is refused
before the server is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from genre_agent.interfaces.http_errors import ApiError
from genre_agent.settings import ServerSettings

T = TypeVar("T")
RETRY = {"Retry-After": "1"}


class Admission:
    """At most `limit` turns running at once and `per_key` of one key (and the bound on stopping ones in the
    module's docstring);
    `drain` refuses new turns (503) and, `grace_s` later, tells the waiting front-ends to cancel theirs."""

    def __init__(self, limit: int, per_key: int) -> None:
        self.limit, self.per_key = limit, per_key
        self._running: dict[threading.Event, str] = {}  # a running turn's cancel Event -> its key id
        self._stopping: dict[threading.Event, str] = {}  # cancelled, its work not stopped yet -> its key id
        self._changed = threading.Condition()  # guards both tables; notified as a turn's work stops
        self.draining = False
        self.stopped = False  # `grace_s` after `drain`: running turns are to be cancelled
        self._stop_waiters: set[asyncio.Future[None]] = set()

    @classmethod
    def of(cls, settings: ServerSettings) -> Admission:
        """The limits `server.max_concurrent` and `server.max_concurrent_per_key`."""
        return cls(settings.max_concurrent, settings.max_concurrent_per_key)

    def running(self, key_id: str | None = None) -> int:
        """Turns running now (of one key, if given)."""
        with self._changed:
            return _count(self._running, key_id)

    def stopping(self, key_id: str | None = None) -> int:
        """Cancelled turns whose work has not stopped yet (of one key, if given)."""
        with self._changed:
            return _count(self._stopping, key_id)

    def wait_stopped(self, timeout_s: float) -> bool:
        """Wait until no turn runs or is stopping; whether that happened within `timeout_s`."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._running and not self._stopping, timeout=timeout_s)

    def start(self, work: Callable[[threading.Event], T], key_id: str) -> tuple[asyncio.Future[T],
                                                                                 threading.Event]:
        """Admit a turn of `key_id` and run `work(cancel)` in its thread: a future of the running event loop
        for its result, and its cancel Event. ApiError 429 beyond the limits, 503 while draining."""
        cancel = threading.Event()
        self._admit(cancel, key_id)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: Any, exc: BaseException | None) -> None:
            if future.done():  # its waiter was cancelled
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

        def run() -> None:
            result, error = None, None
            try:
                result = work(cancel)
            except BaseException as exc:  # handed to the awaiting front-end, which answers it
                error = exc
            finally:
                self._ended(cancel)
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:  # the event loop is gone (shutdown): nobody waits for this turn
                pass

        threading.Thread(target=run, daemon=True, name="genre-agent-turn").start()
        return future, cancel

    def cancel(self, cancel: threading.Event) -> None:
        """Cancel a turn: it stops counting as running, and counts as stopping until its work has stopped."""
        with self._changed:
            key_id = self._running.pop(cancel, None)
            if key_id is not None:
                self._stopping[cancel] = key_id
        cancel.set()

    def _admit(self, cancel: threading.Event, key_id: str) -> None:
        with self._changed:
            if self.draining:
                raise ApiError(503, "shutting_down", "the server is shutting down; retry on another instance")
            if _count(self._running, key_id) >= self.per_key:
                raise ApiError(429, "rate_limit_exceeded", f"this API key has {self.per_key} turns running "
                               "(server.max_concurrent_per_key); wait for one to answer", headers=RETRY)
            if _count(self._running, key_id) + _count(self._stopping, key_id) >= 2 * self.per_key:
                raise ApiError(429, "rate_limit_exceeded", f"this API key has {2 * self.per_key} turns running "
                               "or still stopping after a cancel (twice server.max_concurrent_per_key); retry "
                               "shortly", headers=RETRY)
            if len(self._running) >= self.limit or len(self._running) + len(self._stopping) >= 2 * self.limit:
                raise ApiError(429, "rate_limit_exceeded", "too many turns running (server.max_concurrent); "
                               "retry shortly", headers=RETRY)
            self._running[cancel] = key_id

    def _ended(self, cancel: threading.Event) -> None:
        with self._changed:
            self._running.pop(cancel, None)
            self._stopping.pop(cancel, None)
            self._changed.notify_all()

    # -- shutdown ---------------------------------------------------------------------
    def drain(self, grace_s: float) -> None:
        """Shutdown began: new turns get 503, and the turns still running `grace_s` later are to be cancelled
        (each front-end answers its client: 503, or a note that ends its stream)."""
        self.draining = True
        asyncio.get_running_loop().call_later(grace_s, self._stop)

    def stop_waiter(self) -> asyncio.Future[None]:
        """A future of the running event loop, done when the running turns are to stop."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.stopped:
            waiter.set_result(None)
        else:
            self._stop_waiters.add(waiter)
            waiter.add_done_callback(self._stop_waiters.discard)
        return waiter

    def _stop(self) -> None:
        self.stopped = True
        for waiter in list(self._stop_waiters):  # each in its own loop's thread
            waiter.get_loop().call_soon_threadsafe(_settle, waiter)

    def cancel_all(self, wait_s: float) -> None:
        """Cancel every turn, and wait up to `wait_s` for their work to stop (and save what they showed)."""
        self.draining = True
        with self._changed:
            running = list(self._running)
        for cancel in running:
            self.cancel(cancel)
        self.wait_stopped(wait_s)


def _count(table: dict[threading.Event, str], key_id: str | None) -> int:
    return len(table) if key_id is None else sum(key == key_id for key in table.values())


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
