"""Who is calling the HTTP servers (`serve`, `mcp --http`), and what they may send: the API key is checked
before any body byte is read, and the body is counted while it is read (chunked too): over `max_body` bytes
is 413, not all there `read_timeout_s` after the headers is 408."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from genre_agent.errors import ConfigError
from genre_agent.interfaces.http_errors import error_response
from genre_agent.settings import ServerSettings

MIN_KEY_CHARS = 16
PUBLIC_PATHS = ("/healthz", "/readyz")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Caller:
    """Who is calling, from the API key: `key_id` names the key (a hash prefix), `user` is the catalog user
    the key speaks for (None = a new user)."""

    key_id: str
    user: str | None


def key_table(settings: ServerSettings, api_key: str | None = None) -> dict[str, str | None]:
    """API key -> catalog user, from `server.api_keys` plus the `--api-key` (a new user). Raises ConfigError
    for a key that is short or not plain ASCII."""
    keys: dict[str, str | None] = {key: user or None for key, user in settings.api_keys.items()}
    if api_key:
        keys.setdefault(api_key, None)
    for key in keys:
        if len(key) < MIN_KEY_CHARS:
            raise ConfigError(f"an API key has {len(key)} characters; use at least {MIN_KEY_CHARS}, e.g. one from "
                              "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`.")
        if not (key.isascii() and key.isprintable()) or " " in key:
            raise ConfigError("an API key has spaces or non-ASCII characters; use letters, digits, '-' and '_'.")
    return keys


def _key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Guard:
    """ASGI middleware: the API key first, then the body, counted while it is read and never held beyond
    `max_body` bytes. The authenticated `Caller` goes into `request.state.caller`."""

    def __init__(self, app: ASGIApp, keys: dict[str, str | None], max_body: int, read_timeout_s: float) -> None:
        self.app = app
        self.keys = [(key.encode(), Caller(_key_id(key), user)) for key, user in keys.items()]
        self.max_body, self.read_timeout_s = max_body, read_timeout_s

    def authenticate(self, scope: Scope) -> Caller | None:
        if not self.keys:
            return Caller("local", None)
        raw = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        scheme, _, given = raw.partition(b" ")
        if scheme.lower() != b"bearer" or not given.isascii():
            return None
        found = None
        for key, caller in self.keys:  # compare against every key: the time taken names none of them
            if secrets.compare_digest(given.strip(), key):
                found = caller
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in PUBLIC_PATHS:
            caller = self.authenticate(scope)
            if caller is None:
                await error_response(401, "invalid_api_key", "invalid or missing API key: send "
                                     "`Authorization: Bearer KEY`")(scope, receive, send)
                return
            scope.setdefault("state", {})["caller"] = caller
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:  # a body trickled in slowly holds a connection and its memory
                await error_response(408, "request_timeout", f"the request body did not arrive within "
                                     f"{self.read_timeout_s:g} s (server.read_timeout_s)",
                                     headers={"Connection": "close"})(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "request_too_large", f"request body over {self.max_body} bytes "
                                  "(server.max_body)", headers={"Connection": "close"})
        await response(scope, receive, send)



def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the whole `body` (read already) at once, then what `receive` gives."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
