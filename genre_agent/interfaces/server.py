"""An OpenAI-compatible HTTP endpoint, so any chat UI or SDK can use the agent as a "model".

The contract is the one the OpenAI API and llama.cpp's server keep:

- `POST /v1/chat/completions` (plain and `stream: true` SSE) is stateless: the conversation travels in
  `messages`; the last user message is the turn, the earlier ones rebuild the context (no model call for them).
  A server-side session exists only under an id the server issued (`POST /v1/sessions`) to the same API key;
  send it as `X-Session-Id` (or the body field `session_id`). Sessions are kept in the store (shared by the
  replicas that share it) and expire (`server.session_ttl_s`); a key keeps at most
  `server.max_sessions_per_key` (its least recently used goes), and never pushes out another key's: with
  `server.max_sessions` held, a new session replaces the caller's own least recently used, else 429.
  `DELETE /v1/sessions/{id}` ends one; two turns of one session racing on two replicas: the one that started
  from the older version gets 409 and keeps nothing (its feedback included).
- Per key and replica, at most `server.turns_per_minute` turns and `server.feedback_per_minute` stored feedback
  rows (429 with Retry-After). A stateless turn stores feedback only under a key that speaks for a catalog user:
  a new user's pseudonym lives for one request, and its likes would train CF under a name nobody has.
- Identity comes from the API key alone (`server.api_keys` maps a key to the catalog user it speaks for);
  the body's `user` is only a hint, and no header grants an identity.
- The readable answer is the reply's `content`; the structured reply (the schema of `Agent.chat`) is the extra
  top-level field `genre_agent` (of the last chunk when streaming). A content that lists items ends with a
  line naming their ids (`[//]: # (genre-agent shown: …)`, invisible in Markdown): clients send back only
  role and content, and a stateless conversation reads what was shown from that line (`chat.transcript`).
- With keys configured, everything but `/healthz` (liveness, no data) and `/readyz` needs
  `Authorization: Bearer KEY`; the key is checked before any body byte is read, and the body is counted while
  it is read (chunked too): over `server.max_body` bytes is 413, not all there `server.read_timeout_s` after
  the headers is 408. Headers over `server.max_header_bytes` get 431, and a connection that has not sent a
  request's headers within `server.read_timeout_s` is closed (`limits.uvicorn_options`). `/docs` and
  `/openapi.json` exist only with `server.docs = true`.
- A turn runs at most `server.deadline_s` (then 503); a client that disconnects cancels its turn; a cancelled
  turn changes no session and stores no feedback. More than `server.max_concurrent` turns at once, or
  `server.max_concurrent_per_key` of one key, get 429.
- Errors are OpenAI-shaped (`genre_agent.interfaces.http_errors`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import secrets
import socket
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from genre_agent.chat.agent import LIVE, REVISED, Agent, Commit, Reply
from genre_agent.chat.session import SessionState
from genre_agent.chat.transcript import with_shown
from genre_agent.errors import ConfigError, DataDirError, GenreAgentError
from genre_agent.interfaces.http_errors import ApiError, error_body, error_response, install, log
from genre_agent.interfaces.limits import SHUTDOWN_GRACE_S, KeyRates
from genre_agent.interfaces.metrics import Metrics
from genre_agent.sanitize import clean_message
from genre_agent.schemas import Recommendation
from genre_agent.settings import ServerSettings

MODEL_ID = "genre-agent"
MIN_KEY_CHARS = 16
PUBLIC_PATHS = ("/healthz", "/readyz")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
T = TypeVar("T")
Listen = Callable[[Any], None]  # told the list shown at once (a Reply) and each model reason (a Recommendation)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            text = " ".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        else:
            text = self.content or ""
        return clean_message(text)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = MODEL_ID
    messages: list[ChatMessage]
    stream: bool = False
    user: str | None = None
    session_id: str | None = None


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
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "request_too_large", f"request body over {self.max_body} bytes "
                                  "(server.max_body)", headers={"Connection": "close"})
        await response(scope, receive, send)


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
             budget: Callable[[int], None] | None = None) -> Reply:
        """Run one turn of the caller's session (checked with `use` first): read from the store under the
        session's lock, then `run` with the `commit` the agent calls before it stores the turn's feedback:
        it spends the feedback `budget` and writes the session back, unless another turn wrote it meanwhile
        (409: nothing of this turn is kept, its feedback included)."""
        with self._lock:
            self._running[session_id] += 1
        try:
            with self.agent.held(session_id) as state:
                stored, version = self.use(session_id, caller, touch=True)
                state.take(stored)
                before = state.model_dump_json()

                def commit(after: SessionState, writes: int) -> bool:
                    if budget is not None:
                        budget(writes)
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
                    return True

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


class Turns:
    """Runs turns in daemon threads (a stuck turn never blocks the process from exiting), at most `limit` at
    once and `per_key` of one API key, so no key holds every slot; each with its cancel Event so shutdown, a
    deadline or a gone client can cancel it. A cancelled turn gives its slot back at once, though its thread
    may wait a while for the backend to stop."""

    def __init__(self, limit: int, per_key: int) -> None:
        self._slots = threading.Semaphore(limit)
        self.per_key = per_key
        self._holding: dict[threading.Event, str] = {}  # the turns holding a slot -> their key id
        self._lock = threading.Lock()
        self.running: set[threading.Event] = set()
        self._ended = threading.Condition()  # notified as each turn's thread ends
        self.draining = False
        self.stopped = False  # `shutdown_s` after shutdown began: running turns are cancelled
        self._stop_waiters: set[asyncio.Future[None]] = set()
        self.metrics = Metrics()

    def start(self, work: Callable[[threading.Event], T], key_id: str
              ) -> tuple[asyncio.Future[T], threading.Event]:
        if self.draining:
            raise ApiError(503, "shutting_down", "the server is shutting down; retry on another instance")
        cancel = threading.Event()
        with self._lock:
            if sum(key == key_id for key in self._holding.values()) >= self.per_key:
                raise ApiError(429, "rate_limit_exceeded", f"this API key has {self.per_key} turns running "
                               "(server.max_concurrent_per_key); wait for one to answer",
                               headers={"Retry-After": "1"})
            if not self._slots.acquire(blocking=False):
                raise ApiError(429, "rate_limit_exceeded", "too many turns running (server.max_concurrent); "
                               "retry shortly", headers={"Retry-After": "1"})
            self._holding[cancel] = key_id
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.running.add(cancel)

        def settle(result: Any, exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

        def run() -> None:
            result, error = None, None
            try:
                result = work(cancel)
            except BaseException as exc:  # handed to the awaiting request, which answers it
                error = exc
            finally:
                with self._ended:
                    self.running.discard(cancel)
                    self._ended.notify_all()
                self._release(cancel)
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:  # the event loop is gone (shutdown): nobody waits for this turn
                pass

        threading.Thread(target=run, daemon=True, name="genre-agent-turn").start()
        return future, cancel

    def cancel(self, cancel: threading.Event) -> None:
        """Cancel a turn and free its slot."""
        cancel.set()
        self._release(cancel)

    def _release(self, cancel: threading.Event) -> None:
        with self._lock:
            if self._holding.pop(cancel, None) is None:
                return
        self._slots.release()

    def drain(self, grace_s: float) -> None:
        """Shutdown began: new turns get 503, and the turns still running `grace_s` later are cancelled (each
        answers its client: 503, or a note that ends its stream)."""
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
        """Cancel every turn, and wait up to `wait_s` for their threads to end (and save what they showed)."""
        self.draining = True
        for cancel in list(self.running):
            self.cancel(cancel)
        with self._ended:
            self._ended.wait_for(lambda: not self.running, timeout=wait_s)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Running:
    """A started turn, awaited under its deadline, its client's connection and the server's shutdown. A
    streamed turn also hands over, before its last answer, the list it shows at once and each model reason."""

    def __init__(self, request: Request, turns: Turns, work: Callable[[threading.Event, Listen | None], Reply],
                 deadline_s: float, stream: bool, key_id: str) -> None:
        self.request, self.turns, self.deadline_s = request, turns, deadline_s
        self.started = time.perf_counter()
        self.answered = False  # the turn handed over its first answer (which a cancel keeps)
        self.events: asyncio.Queue[Reply | Recommendation] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def tell(event: Reply | Recommendation) -> None:  # called in the turn's thread
            loop.call_soon_threadsafe(self.events.put_nowait, event)

        try:
            self.future, self.cancel = turns.start(lambda cancel: work(cancel, tell if stream else None), key_id)
        except ApiError:
            turns.metrics.turn("rejected", 0.0)
            raise

    async def next(self) -> tuple[Reply | Recommendation, bool]:
        """The turn's next event and whether it is its last answer; ApiError when the client went away or the
        deadline passed (the turn is cancelled: nothing after its first answer is kept)."""
        event: asyncio.Future[Any] = asyncio.ensure_future(self.events.get())
        gone: asyncio.Future[Any] = asyncio.ensure_future(_until_disconnect(self.request))
        stopping = self.turns.stop_waiter()
        remaining = max(self.deadline_s - (time.perf_counter() - self.started), 0.0)
        try:
            waiting: set[asyncio.Future[Any]] = {self.future, event, gone, stopping}
            done, _ = await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self.turns.cancel(self.cancel)
            raise
        finally:
            for waited in (gone, event, stopping):
                waited.cancel()
        seconds = time.perf_counter() - self.started
        if event in done and not event.cancelled():
            self.answered = True
            return event.result(), False
        if self.future in done:
            try:
                reply = self.future.result()
            except BaseException:
                self.turns.metrics.turn("error", seconds)
                raise
            answer = reply.recommendations
            self.turns.metrics.turn("ok", seconds, answer.timings_ms.llm / 1000 if answer else 0.0)
            return reply, True
        self.turns.cancel(self.cancel)
        self.future.cancel()
        outcome = "client_closed" if gone in done else "shutdown" if stopping in done else "deadline"
        self.turns.metrics.turn(outcome, seconds)
        kept = "the list already sent stands: it is what a session keeps" if self.answered else "nothing was saved"
        if stopping in done:
            raise ApiError(503, "shutting_down", f"the server is shutting down and cancelled this turn "
                           f"(server.shutdown_s); {kept}. Retry on another instance")
        if gone in done:
            raise ApiError(499, "client_closed_request", f"the client disconnected; the turn was cancelled; "
                           f"{kept}")
        raise ApiError(503, "deadline_exceeded", f"the turn took longer than {self.deadline_s:g} s "
                       f"(server.deadline_s) and was cancelled; {kept}. Retry, or ask the operator for a faster "
                       "backend")


def create_app(agent: Agent, settings: ServerSettings | None = None,
               keys: dict[str, str | None] | None = None) -> FastAPI:
    """The FastAPI app; `keys` maps API keys to catalog users (see `key_table`); none = open (local use)."""
    settings = settings or ServerSettings()
    sessions = Sessions(agent, settings.session_ttl_s, settings.max_sessions,
                        per_key=settings.max_sessions_per_key)
    turns = Turns(settings.max_concurrent, settings.max_concurrent_per_key)
    turn_rates = KeyRates(settings.turns_per_minute, "turns", "server.turns_per_minute")
    feedback_rates = KeyRates(settings.feedback_per_minute, "feedback writes", "server.feedback_per_minute")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(turns.cancel_all, SHUTDOWN_GRACE_S)

    docs = settings.docs
    app = FastAPI(title="genre-agent", version="0.1.0", lifespan=lifespan, docs_url="/docs" if docs else None,
                  redoc_url=None, openapi_url="/openapi.json" if docs else None)
    install(app)
    app.state.sessions = sessions
    app.state.turns = turns
    app.state.shutdown_s = settings.shutdown_s

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=None)
    def readyz() -> dict[str, Any] | Any:
        if turns.draining:
            return error_response(503, "shutting_down", "the server is shutting down")
        return {"status": "ready"}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return turns.metrics.render(running=len(turns.running), sessions=len(sessions))

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0,
                                            "owned_by": "genre-agent"}]}

    @app.post("/v1/sessions", status_code=201)
    def new_session(request: Request) -> dict[str, Any]:
        session_id = sessions.issue(request.state.caller)
        return {"id": session_id, "object": "session", "expires_after_s": settings.session_ttl_s}

    @app.delete("/v1/sessions/{session_id}")
    def end_session(session_id: str, request: Request) -> dict[str, Any]:
        sessions.end(session_id, request.state.caller)
        return {"id": session_id, "object": "session", "deleted": True}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        caller: Caller = request.state.caller
        last = max((i for i, m in enumerate(body.messages) if m.role == "user"), default=None)
        if last is None:
            raise ApiError(400, "invalid_request", "messages must contain a user message")
        message = body.messages[last].text()
        session_id = request.headers.get("x-session-id") or body.session_id
        if session_id:
            await asyncio.to_thread(sessions.use, session_id, caller)  # 404 before any turn starts

            def work(cancel: threading.Event, tell: Listen | None) -> Reply:
                return sessions.turn(session_id, caller, lambda commit: agent.chat(
                    session_id, message, cancel=cancel, on_first=tell, on_reason=tell, commit=commit),
                    budget=lambda writes: feedback_rates.take(caller.key_id, writes))
        else:
            history = [(m.role, m.text()) for m in body.messages[:last] if m.role in ("user", "assistant")]

            def durable(_: SessionState, writes: int) -> bool:
                """A key of a catalog user stores its feedback (within its budget); a new user's throwaway
                pseudonym of one request stores none (it would train CF under a name nobody can use again)."""
                if caller.user is None:
                    return False
                feedback_rates.take(caller.key_id, writes)
                return True

            def work(cancel: threading.Event, tell: Listen | None) -> Reply:
                once = f"req_{secrets.token_urlsafe(12)}"
                try:
                    agent.restore(once, history, caller.user)
                    return agent.chat(once, message, cancel=cancel, on_first=tell, on_reason=tell,
                                      commit=durable)
                finally:
                    agent.forget(once)

        turn_rates.take(caller.key_id)

        running = Running(request, turns, work, settings.deadline_s, stream=body.stream, key_id=caller.key_id)
        reply, final = await running.next()  # errors before any byte is sent get their status
        assert isinstance(reply, Reply)  # a turn's first event is an answer
        created = int(time.time())
        completion_id = f"chatcmpl-{secrets.token_hex(12)}"
        if body.stream:
            return StreamingResponse(_stream(reply, None if final else running, completion_id, created),
                                     media_type="text/event-stream")
        content = with_shown(reply.text, _shown(reply))
        return {"id": completion_id, "object": "chat.completion", "created": created, "model": MODEL_ID,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": _usage(reply), "genre_agent": reply.model_dump(mode="json")}

    app.add_middleware(Guard, keys=keys or {}, max_body=settings.max_body,  # type: ignore[arg-type]
                       read_timeout_s=settings.read_timeout_s)
    return app


class Server(uvicorn.Server):
    """uvicorn's server for an app of `create_app`: when it starts to shut down (SIGTERM), the app stops taking
    turns, and cancels the turns still running `server.shutdown_s` later; each answers its client (503 JSON, or
    a note that ends its stream) before uvicorn's own deadline, SHUTDOWN_GRACE_S later, would cut it off."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        assert isinstance(app, FastAPI), "Server serves an app of create_app"
        app.state.turns.drain(app.state.shutdown_s)
        await super().shutdown(sockets)


def _shown(reply: Reply) -> list[str]:
    """The ids of the items a reply shows, in order: its content ends with a line naming them, which a client
    sends back with the text (`chat.transcript`)."""
    return [item_id for item_id, _ in reply.listed()]


def _usage(reply: Reply) -> dict[str, int]:
    prompt = reply.recommendations.prompt_tokens if reply.recommendations else 0
    completion = len(reply.text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _stream(reply: Reply, running: Running | None, completion_id: str, created: int) -> AsyncIterator[str]:
    """SSE chunks: the answer's lines. When the model is still working (`running`): the list shown at once,
    then each model reason as it is written (under LIVE), then, if the model's answer is not already what
    the client has, REVISED and the model's list. The last chunk carries the structured reply."""
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        for line in reply.text.splitlines(keepends=True):
            yield chunk({"content": line})
        streamed: dict[str, str] = {}
        while running is not None:
            try:
                event, final = await running.next()
            except (ApiError, GenreAgentError) as exc:  # it says whether the list above stands
                yield chunk({"content": f"\n\n({exc})"})
                break
            if isinstance(event, Recommendation):
                heading = "" if streamed else f"\n\n{LIVE}"
                streamed[event.item_id] = event.reason
                yield chunk({"content": f"{heading}\n{event.rank}. {event.title} \u2014 {event.reason}"})
            elif final:
                if event.listed() != reply.listed(streamed):  # else the client has the model's answer already
                    for line in f"\n\n{REVISED}\n{event.text}".splitlines(keepends=True):
                        yield chunk({"content": line})
                reply = event
                break
        ending = with_shown("", _shown(reply))
        if ending:
            yield chunk({"content": ending})
        yield chunk({}, "stop", genre_agent=reply.model_dump(mode="json"))
        yield "data: [DONE]\n\n"
    except Exception:  # after the 200 went out: the client still learns the answer broke off
        log.exception("unexpected error while streaming a turn")
        broken = error_body(500, "internal_error", "internal error; the answer above is incomplete and the "
                            "server log has the details")
        yield f"data: {json.dumps(broken)}\n\n"


def is_local(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")
