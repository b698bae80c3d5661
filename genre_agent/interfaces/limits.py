"""Limits of the HTTP and MCP servers below the app: per-key rate limits (a token bucket per API key, in this
replica's memory), whose feedback is stored at all, and the connection itself (header size, how long a client
may take to send its headers)."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from genre_agent.chat.session import SessionState
from genre_agent.interfaces.http_errors import ApiError, error_body
from genre_agent.settings import ServerSettings

# after `server.shutdown_s`, the time cancelled turns get to answer their clients and save what they showed
# (a cancelled model call stops at its next token) before uvicorn cancels what is left
SHUTDOWN_GRACE_S = 1


class KeyRates:
    """Each key may spend `per_minute` units a minute, in bursts of up to `per_minute` (a token bucket that
    refills continuously). The keys are the configured API keys, so the table stays small."""

    def __init__(self, per_minute: int, what: str, setting: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.rate = float(per_minute), per_minute / 60.0
        self.what, self.setting, self.clock = what, setting, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (units left, when counted)
        self._lock = threading.Lock()

    def take(self, key_id: str, units: int = 1) -> None:
        """Spend `units` of the key's budget; ApiError 429 with Retry-After (nothing spent) when it has not
        got them."""
        if units <= 0:
            return
        with self._lock:
            now = self.clock()
            left, then = self._buckets.get(key_id, (self.burst, now))
            left = min(self.burst, left + (now - then) * self.rate)
            self._buckets[key_id] = (left - units, now) if left >= units else (left, now)
        if left < units:
            wait = max(1, math.ceil((min(units, self.burst) - left) / self.rate))
            too_many = f" ({units} at once is more than the whole budget)" if units > self.burst else ""
            raise ApiError(429, "rate_limit_exceeded", f"this API key is over its {self.what} per minute "
                           f"({self.setting} = {self.burst:g}){too_many}; retry after {wait} s",
                           headers={"Retry-After": str(wait)})


def stores_feedback(state: SessionState, writes: int, rates: KeyRates, key_id: str) -> bool:
    """Whether a turn's `writes` feedback rows go to the store (an agent's `Commit`): a catalog user's do,
    within its key's budget (ApiError 429 beyond it: nothing of the turn is kept); a new user's never do.
    Its likes steer its session only: stored, they would join the CF training data under a pseudonym nobody
    can use again, and a key could mint such users by the minute."""
    if state.user_id is None:
        return False
    rates.take(key_id, writes)
    return True


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol (its httptools one has no header limit), with two guards a client cannot talk its
    way past: request headers over `max_header_bytes` get 431 and the connection is closed, unread beyond the
    limit; and a connection that has not sent a request's whole headers `read_timeout_s` after it opened or
    after its last response (idle, or a slowloris trickling a byte at a time) is closed."""

    max_header_bytes = 16 * 1024
    read_timeout_s = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0  # of the request being read, while its headers are incomplete
        self._tail = b""  # the last bytes received, where the blank line ending the headers may begin
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # still reading a request's line and headers
            seen = self._tail + data
            ends = [at + len(blank) for blank in (b"\r\n\r\n", b"\n\n") if (at := seen.find(blank)) >= 0]
            self._head_bytes += (min(ends) - len(self._tail)) if ends else len(data)  # not the body after them
            if self._head_bytes > self.max_header_bytes:
                self._refuse_headers()
                return
            self._tail = seen[-3:]
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._head_bytes, self._tail = 0, b""
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.read_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def _refuse_headers(self) -> None:
        body = json.dumps(error_body(431, "request_header_too_large", f"request headers over "
                                     f"{self.max_header_bytes} bytes (server.max_header_bytes)")).encode()
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                             b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        self._disarm()
        self.transport.close()


def uvicorn_options(settings: ServerSettings) -> dict[str, Any]:
    """What `uvicorn.Config` takes to enforce the server's connection limits (run it with `server.Server`)."""
    protocol = type("GuardedH11", (GuardedH11,), {"max_header_bytes": settings.max_header_bytes,
                                                  "read_timeout_s": settings.read_timeout_s})
    return {"http": protocol, "h11_max_incomplete_event_size": settings.max_header_bytes,
            "timeout_graceful_shutdown": settings.shutdown_s + SHUTDOWN_GRACE_S}
