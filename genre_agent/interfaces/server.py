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
  rows (429 with Retry-After). Only a key that speaks for a catalog user stores feedback: a new user's likes
  steer its session (or its one stateless turn) and are never written where CF training reads them; its
  session, likes included, is gone from the store when the session is ended, and once expired when it is next
  asked for or any session is created (`limits.stores_feedback`).
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
  `server.max_concurrent_per_key` of one key, get 429 (`admission.Admission`, which the MCP server shares).
- Errors are OpenAI-shaped (`genre_agent.interfaces.http_errors`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from genre_agent.chat.agent import LIVE, REVISED, Agent, Reply
from genre_agent.chat.transcript import with_shown
from genre_agent.errors import GenreAgentError
from genre_agent.interfaces.admission import Admission
from genre_agent.interfaces.guard import Caller, Guard
from genre_agent.interfaces.http_errors import ApiError, error_body, error_response, install, log
from genre_agent.interfaces.http_sessions import Sessions
from genre_agent.interfaces.limits import SHUTDOWN_GRACE_S, KeyRates, stores_feedback
from genre_agent.interfaces.metrics import Metrics
from genre_agent.sanitize import clean_message
from genre_agent.schemas import Recommendation
from genre_agent.settings import ServerSettings

MODEL_ID = "genre-agent"
Listen = Callable[[Any], None]  # told the list shown at once (a Reply) and each model reason (a Recommendation)
Work = Callable[[threading.Event, Listen | None], Reply]  # a turn, given its cancel Event and its listener


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



async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Running:
    """A started turn, awaited under its deadline, its client's connection and the server's shutdown. A
    streamed turn also hands over, before its last answer, the list it shows at once and each model reason."""

    def __init__(self, request: Request, admission: Admission, metrics: Metrics, work: Work,
                 deadline_s: float, stream: bool, key_id: str) -> None:
        self.request, self.admission, self.metrics, self.deadline_s = request, admission, metrics, deadline_s
        self.started = time.perf_counter()
        self.answered = False  # the turn handed over its first answer (which a cancel keeps)
        self.events: asyncio.Queue[Reply | Recommendation] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def tell(event: Reply | Recommendation) -> None:  # called in the turn's thread
            loop.call_soon_threadsafe(self.events.put_nowait, event)

        try:
            self.future, self.cancel = admission.start(lambda cancel: work(cancel, tell if stream else None),
                                                       key_id)
        except ApiError:
            metrics.turn("rejected", 0.0)
            raise

    async def next(self) -> tuple[Reply | Recommendation, bool]:
        """The turn's next event and whether it is its last answer; ApiError when the client went away or the
        deadline passed (the turn is cancelled: nothing after its first answer is kept)."""
        event: asyncio.Future[Any] = asyncio.ensure_future(self.events.get())
        gone: asyncio.Future[Any] = asyncio.ensure_future(_until_disconnect(self.request))
        stopping = self.admission.stop_waiter()
        remaining = max(self.deadline_s - (time.perf_counter() - self.started), 0.0)
        try:
            waiting: set[asyncio.Future[Any]] = {self.future, event, gone, stopping}
            done, _ = await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self.admission.cancel(self.cancel)
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
                self.metrics.turn("error", seconds)
                raise
            answer = reply.recommendations
            self.metrics.turn("ok", seconds, answer.timings_ms.llm / 1000 if answer else 0.0)
            return reply, True
        self.admission.cancel(self.cancel)
        self.future.cancel()
        outcome = "client_closed" if gone in done else "shutdown" if stopping in done else "deadline"
        self.metrics.turn(outcome, seconds)
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


def _last_user_message(body: ChatRequest) -> int:
    last = max((i for i, m in enumerate(body.messages) if m.role == "user"), default=None)
    if last is None:
        raise ApiError(400, "invalid_request", "messages must contain a user message")
    return last


def _session_work(agent: Agent, sessions: Sessions, session_id: str, caller: Caller, message: str,
                  feedback_rates: KeyRates) -> Work:
    """A turn of a server-side session: read from the store, run, written back (`Sessions.turn`)."""
    def work(cancel: threading.Event, tell: Listen | None) -> Reply:
        return sessions.turn(session_id, caller, lambda commit: agent.chat(
            session_id, message, cancel=cancel, on_first=tell, on_reason=tell, commit=commit),
            keep=lambda state, writes: stores_feedback(state, writes, feedback_rates, caller.key_id))

    return work


def _stateless_work(agent: Agent, body: ChatRequest, last: int, caller: Caller, feedback_rates: KeyRates) -> Work:
    """A turn whose conversation travels in `messages`: its session lives for this request only."""
    history = [(m.role, m.text()) for m in body.messages[:last] if m.role in ("user", "assistant")]
    message = body.messages[last].text()

    def work(cancel: threading.Event, tell: Listen | None) -> Reply:
        once = f"req_{secrets.token_urlsafe(12)}"
        try:
            agent.restore(once, history, caller.user)
            return agent.chat(once, message, cancel=cancel, on_first=tell, on_reason=tell,
                              commit=lambda state, writes: stores_feedback(state, writes, feedback_rates,
                                                                           caller.key_id))
        finally:
            agent.forget(once)

    return work


def _completion(reply: Reply) -> dict[str, Any]:
    content = with_shown(reply.text, _shown(reply))
    return {"id": f"chatcmpl-{secrets.token_hex(12)}", "object": "chat.completion", "created": int(time.time()),
            "model": MODEL_ID, "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                            "finish_reason": "stop"}],
            "usage": _usage(reply), "genre_agent": reply.model_dump(mode="json")}


def create_app(agent: Agent, settings: ServerSettings | None = None, keys: dict[str, str | None] | None = None,
               admission: Admission | None = None) -> FastAPI:
    """The FastAPI app; `keys` maps API keys to catalog users (see `guard.key_table`); none = open (local use).
    `admission` limits its turns at once (default: of `settings`); `Server` drains the same one."""
    settings = settings or ServerSettings()
    admission = admission or Admission.of(settings)
    sessions = Sessions(agent, settings.session_ttl_s, settings.max_sessions,
                        per_key=settings.max_sessions_per_key)
    turn_rates = KeyRates(settings.turns_per_minute, "turns", "server.turns_per_minute")
    feedback_rates = KeyRates(settings.feedback_per_minute, "feedback writes", "server.feedback_per_minute")
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(admission.cancel_all, SHUTDOWN_GRACE_S)

    docs = settings.docs
    app = FastAPI(title="genre-agent", version="0.1.0", lifespan=lifespan, docs_url="/docs" if docs else None,
                  redoc_url=None, openapi_url="/openapi.json" if docs else None)
    install(app)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=None)
    def readyz() -> dict[str, Any] | Any:
        if admission.draining:
            return error_response(503, "shutting_down", "the server is shutting down")
        return {"status": "ready"}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics_text() -> str:
        return metrics.render(running=admission.running(), sessions=len(sessions))

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
        last = _last_user_message(body)
        session_id = request.headers.get("x-session-id") or body.session_id
        if session_id:
            await asyncio.to_thread(sessions.use, session_id, caller)  # 404 before any turn starts
            work = _session_work(agent, sessions, session_id, caller, body.messages[last].text(), feedback_rates)
        else:
            work = _stateless_work(agent, body, last, caller, feedback_rates)
        turn_rates.take(caller.key_id)
        running = Running(request, admission, metrics, work, settings.deadline_s, body.stream, caller.key_id)
        reply, final = await running.next()  # errors before any byte is sent get their status
        assert isinstance(reply, Reply)  # a turn's first event is an answer
        if body.stream:
            return StreamingResponse(_stream(reply, None if final else running), media_type="text/event-stream")
        return _completion(reply)

    app.add_middleware(Guard, keys=keys or {}, max_body=settings.max_body,  # type: ignore[arg-type]
                       read_timeout_s=settings.read_timeout_s)
    return app


class Server(uvicorn.Server):
    """uvicorn's server for an app of `create_app`: when it starts to shut down (SIGTERM), `admission` (the
    app's) stops taking turns, and the turns still running `shutdown_s` later are cancelled; each answers its
    client (503 JSON, or a note that ends its stream) before uvicorn's own deadline, SHUTDOWN_GRACE_S later,
    would cut it off."""

    def __init__(self, config: uvicorn.Config, admission: Admission, shutdown_s: float) -> None:
        super().__init__(config)
        self.admission, self.shutdown_s = admission, shutdown_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.admission.drain(self.shutdown_s)
        await super().shutdown(sockets)


def _shown(reply: Reply) -> list[str]:
    """The ids of the items a reply shows, in order: its content ends with a line naming them, which a client
    sends back with the text (`chat.transcript`)."""
    return [item_id for item_id, _ in reply.listed()]


def _usage(reply: Reply) -> dict[str, int]:
    prompt = reply.recommendations.prompt_tokens if reply.recommendations else 0
    completion = len(reply.text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _stream(reply: Reply, running: Running | None) -> AsyncIterator[str]:
    """SSE chunks: the answer's lines. When the model is still working (`running`): the list shown at once,
    then each model reason as it is written (under LIVE), then, if the model's answer is not already what
    the client has, REVISED and the model's list. The last chunk carries the structured reply."""
    completion_id, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())

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
