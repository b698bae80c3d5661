"""The agent as a Model Context Protocol server (`genre-agent mcp`), on the official `mcp` SDK (2.x).

A thin layer over the public `Agent`: the tools `recommend`, `chat`, `explain` and `feedback` take typed
arguments and return the agent's own pydantic models as structured results; the resources
`genre-agent://catalog` and `genre-agent://templates` describe the catalog and the shipped template sets.

- Transports: stdio (one client, the person who launched it) or streamable HTTP (`http_app`), where the
  identity rules of `genre-agent serve` hold: the API key is checked (and the body counted) by the HTTP
  server's own `Guard`, and the catalog user a key speaks for is the user of every call; the `user` argument
  may only name that same user. Without keys (stdio, or HTTP on localhost) `user` is taken as given.
- A conversation lives under a session id this server issued (a `chat` without `session_id` starts one) to
  the same key; it is kept in this process's memory, at most `server.max_sessions_per_key` per key (the
  key's least recently used one is forgotten). A new user's likes steer its conversation only and are never
  stored (`limits.stores_feedback`); a catalog user's are stored, as over `serve`.
- Tool calls are admitted as `serve`'s turns are, by the same `admission.Admission`: at most
  `server.max_concurrent` at once and `server.max_concurrent_per_key` of one key, with the same message
  beyond. `recommend`, `chat`, `explain` and `feedback` each count as a turn for `server.turns_per_minute`.
- Every failure the caller can fix (a bad argument, an unknown session or item, a message over
  `server.max_body` bytes, a turn past `server.deadline_s`, a key over its rates or the limits above) is a
  tool error whose text says what to do; the SDK validates argument types against each tool's schema.
- Over HTTP, a JSON-RPC id that is not an integer within JSON's safe range (±(2^53 − 1)) or a string of at
  most 64 characters is refused before the SDK sees it: 400 with the JSON-RPC error -32600.
- `chat` reports progress: the list shown at once (retrieval order, evidence reasons) while the model
  works, then the model's answer.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from typing import Annotated, Any, Literal, TypeVar

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from genre_agent.chat.agent import Agent, Commit, Reply
from genre_agent.errors import GenreAgentError
from genre_agent.filters import Filters
from genre_agent.interfaces.admission import Admission
from genre_agent.interfaces.guard import ASGIApp, Caller, Guard, Receive, Scope, Send, replaying
from genre_agent.interfaces.http_errors import ApiError, error_response
from genre_agent.interfaces.limits import KeyRates, stores_feedback
from genre_agent.llm.prompts import load_profile, shipped_sets
from genre_agent.sanitize import redact
from genre_agent.schemas import Recommendations
from genre_agent.settings import ServerSettings

T = TypeVar("T")
LOCAL = Caller("local", None)  # stdio, or HTTP without keys: the person who started the server
ItemArg = Annotated[str, Field(description="a catalog item id")]
SessionArg = Annotated[str, Field(description="the session_id of a `chat` reply")]


def _described(name: str) -> Any:
    """A tool argument's Field with the description of the same filter in `Filters`."""
    return Field(description=Filters.model_fields[name].description)


class CatalogResource(BaseModel):
    """What `genre-agent://catalog` holds."""

    name: str
    items: int
    interactions: int
    item_noun: str
    genres: list[str]


class TemplateSet(BaseModel):
    name: str
    extends: str | None
    description: str


class Conversations:
    """Session ids this server issued, each bound to the key that started it; the sessions themselves are the
    agent's (in this process). A key keeps at most `per_key`: a new one makes the agent forget the key's least
    recently used."""

    def __init__(self, agent: Agent, per_key: int) -> None:
        self.agent, self.per_key = agent, per_key
        self._owners: OrderedDict[str, str] = OrderedDict()  # session id -> key id, least recently used first
        self._lock = threading.Lock()

    def start(self, caller: Caller, user: str | None) -> str:
        """A new session of `user` (UnknownUserError for a user the catalog lacks)."""
        session_id = f"mcp_{secrets.token_urlsafe(18)}"
        self.agent.set_user(self.agent.session(session_id), user)
        with self._lock:
            self._owners[session_id] = caller.key_id
            mine = [s for s, owner in self._owners.items() if owner == caller.key_id]
            gone = mine[: max(len(mine) - self.per_key, 0)]
            for old in gone:
                del self._owners[old]
        for old in gone:
            self.agent.forget(old)
        return session_id

    def check(self, session_id: str, caller: Caller) -> None:
        """ToolError unless the caller's key started this session (and it was not forgotten)."""
        with self._lock:
            if self._owners.get(session_id) != caller.key_id:
                raise ToolError(f"unknown session {session_id!r}: it was not started by this client or was "
                                "forgotten; call `chat` without session_id to start one, and pass the "
                                "session_id it returns")
            self._owners.move_to_end(session_id)


def _caller(ctx: Context) -> Caller:
    """The caller the HTTP Guard authenticated; LOCAL over stdio."""
    request = ctx.request_context.request
    state = getattr(request, "scope", {}).get("state", {}) if request is not None else {}
    caller = state.get("caller", LOCAL)
    assert isinstance(caller, Caller)
    return caller


def _user(caller: Caller, user: str | None) -> str | None:
    """Who a call is for: the key's user (the argument may only repeat it), or the argument without keys."""
    if caller.key_id == LOCAL.key_id:
        return user
    if user is not None and user != caller.user:
        raise ToolError("this API key speaks for " + (f"user {caller.user!r}" if caller.user else "a new user")
                        + "; the `user` argument cannot change it: leave it out")
    return caller.user


class Calls:
    """What every tool call goes through: its checks, the key's rates, admission and the deadline."""

    def __init__(self, agent: Agent, settings: ServerSettings, admission: Admission) -> None:
        self.agent, self.settings, self.admission = agent, settings, admission
        self.turns = KeyRates(settings.turns_per_minute, "turns", "server.turns_per_minute")
        self.stored = KeyRates(settings.feedback_per_minute, "feedback writes", "server.feedback_per_minute")

    def message_fits(self, message: str) -> None:
        size = len(message.encode("utf-8", "surrogatepass"))
        if size > self.settings.max_body:
            raise ToolError(f"the message is {size:,} bytes; the limit is {self.settings.max_body:,} "
                            "(server.max_body): send a shorter message")

    def known_item(self, item_id: str) -> None:
        if item_id not in self.agent.recommender.catalog.items.index:
            raise ToolError(f"no item {item_id!r} in catalog '{self.agent.catalog_info().name}': use an item_id "
                            "from `recommend` or `chat`")

    def keep(self, caller: Caller) -> Commit:
        """Whether a call's feedback is stored (a catalog user's, within the key's budget)."""
        return lambda state, writes: stores_feedback(state, writes, self.stored, caller.key_id)

    async def run(self, work: Callable[[threading.Event], T], caller: Caller, turn: bool = True) -> T:
        """`work` in a thread admitted by `admission` (a tool error beyond its limits, as `serve`'s 429),
        under the deadline; a `turn` spends one of the key's `server.turns_per_minute`. Agent errors become
        tool errors with their message. A cancelled or late call sets the work's cancel event (the agent then
        keeps nothing of it)."""
        try:
            if turn:
                self.turns.take(caller.key_id)
            future, cancel = self.admission.start(work, caller.key_id)
        except ApiError as exc:
            raise ToolError(str(exc)) from exc
        try:
            with anyio.fail_after(self.settings.deadline_s):
                return await future
        except TimeoutError as exc:
            self.admission.cancel(cancel)
            raise ToolError(f"the turn took longer than {self.settings.deadline_s:g} s (server.deadline_s) and "
                            "was cancelled; nothing was saved. Retry, or ask the operator for a faster "
                            "backend") from exc
        except (GenreAgentError, ApiError) as exc:
            raise ToolError(redact(str(exc))) from exc  # no credential of the operator's config
        except anyio.get_cancelled_exc_class():
            self.admission.cancel(cancel)
            raise


def _progress(ctx: Context) -> Callable[[str], None]:
    """Report a progress message (1 of 2) from a turn's thread, in order."""
    loop = asyncio.get_running_loop()
    return lambda text: asyncio.run_coroutine_threadsafe(ctx.report_progress(1, 2, text), loop).result()


def create_server(agent: Agent, settings: ServerSettings | None = None,
                  admission: Admission | None = None) -> MCPServer:
    """The MCP server answering with `agent`; `settings` are the limits of `[server]` it shares with serve,
    and `admission` its limit of calls at once (default: of `settings`)."""
    settings = settings or ServerSettings()
    info = agent.catalog_info()
    noun = info.item_noun_plural
    conversations = Conversations(agent, settings.max_sessions_per_key)
    calls = Calls(agent, settings, admission or Admission.of(settings))
    mcp = MCPServer("genre-agent", version="0.1.0", log_level="WARNING", instructions=(
        f"Recommends {noun} from the catalog '{info.name}' ({info.items} items). Use `recommend` for one-shot "
        f"lists, `chat` to hold a conversation (pass back the session_id it returns), `explain` for why an item "
        f"fits, `feedback` to record like/dislike/seen."))

    @mcp.tool(description=f"Recommend {noun} from the catalog for a user and/or a request, each with its "
              "catalog id, title and a reason built from the evidence that ties it to the request.")
    async def recommend(
        ctx: Context,
        query: Annotated[str | None, Field(description="what the person asks for, in their words")] = None,
        user: Annotated[str | None, Field(description="a catalog user id, if known")] = None,
        k: Annotated[int, Field(ge=1, le=20, description="how many recommendations")] = 5,
        include_genres: Annotated[list[str], _described("include_genres")] = [],  # noqa: B006 (copied per call)
        exclude_genres: Annotated[list[str], _described("exclude_genres")] = [],  # noqa: B006
        year_min: Annotated[int | None, _described("year_min")] = None,
        year_max: Annotated[int | None, _described("year_max")] = None,
    ) -> Recommendations:
        caller = _caller(ctx)
        calls.message_fits(query or "")
        who = _user(caller, user)
        filters = Filters(include_genres=include_genres, exclude_genres=exclude_genres, year_min=year_min,
                          year_max=year_max)
        return await calls.run(lambda _: agent.recommend(who, query, k, filters), caller)

    @mcp.tool(description="One turn of a conversation with the recommender. Leave session_id out to start a "
              "conversation, then pass back the session_id of the reply. The reply has the readable answer "
              "(text) and the recommended items (recommendations) with their catalog ids.")
    async def chat(
        ctx: Context,
        message: Annotated[str, Field(description="what the person says")],
        session_id: Annotated[str | None, Field(description="the session_id of an earlier reply")] = None,
        user: Annotated[str | None, Field(description="a catalog user id, when starting a conversation")] = None,
    ) -> Reply:
        caller = _caller(ctx)
        calls.message_fits(message)
        if session_id is None:
            who = _user(caller, user)
            session_id = await calls.run(lambda _: conversations.start(caller, who), caller, turn=False)
        else:
            conversations.check(session_id, caller)
        session, report = session_id, _progress(ctx)
        reply = await calls.run(lambda cancel: agent.chat(
            session, message, cancel=cancel, on_first=lambda quick: report(quick.text),
            on_reason=lambda rec: report(f"{rec.rank}. {rec.title} \u2014 {rec.reason}"),
            commit=calls.keep(caller)), caller)
        await ctx.report_progress(2, 2, "done")
        return reply

    @mcp.tool(description="Why an item fits the user of a conversation, from its catalog facts and the "
              "user's history.")
    async def explain(ctx: Context, item_id: ItemArg, session_id: SessionArg) -> Reply:
        caller = _caller(ctx)
        conversations.check(session_id, caller)
        calls.known_item(item_id)
        return await calls.run(lambda _: agent.explain(session_id, item_id), caller)

    @mcp.tool(description="Record that the user of a conversation likes, dislikes or has seen an item; "
              "later recommendations take it into account.")
    async def feedback(
        ctx: Context,
        item_id: ItemArg,
        kind: Annotated[Literal["like", "dislike", "seen"], Field(description="like, dislike or seen")],
        session_id: SessionArg,
    ) -> Reply:
        caller = _caller(ctx)
        conversations.check(session_id, caller)
        calls.known_item(item_id)
        return await calls.run(lambda cancel: agent.feedback(session_id, item_id, kind, cancel,
                                                             commit=calls.keep(caller)), caller)

    @mcp.resource("genre-agent://catalog", name="catalog", mime_type="application/json",
                  description="The catalog: its name, size and genres.")
    def catalog() -> CatalogResource:
        return CatalogResource(name=info.name, items=info.items, interactions=info.interactions,
                               item_noun=info.item_noun, genres=agent.genres)

    @mcp.resource("genre-agent://templates", name="templates", mime_type="application/json",
                  description="The shipped prompt template sets (a `prompts` setting picks one).")
    def templates() -> list[TemplateSet]:
        return [TemplateSet(name=name, extends=(p := load_profile(path)).extends, description=p.description)
                for name, path in shipped_sets().items()]

    return mcp


def http_app(mcp: MCPServer, keys: dict[str, str | None], settings: ServerSettings, host: str,
             clock: Callable[[], float] = time.monotonic) -> Guard:
    """The streamable HTTP app at /mcp behind the HTTP server's Guard: the API key first (401 without it),
    then the body, counted while it is read (413 over `server.max_body`), then its JSON-RPC ids (`CheckedIds`).
    A transport session (its Mcp-Session-Id) answers only the key that opened it, and a key holds at most
    `server.mcp_transports_per_key` of them open, so no key can use up the SDK's `server.max_sessions`
    (`KeyTransports`, which tells idle sessions by `clock`)."""
    app: Any = mcp.streamable_http_app(host=host, max_request_body_size=settings.max_body,
                                       session_idle_timeout=settings.session_ttl_s,
                                       max_sessions=settings.max_sessions)
    transports = KeyTransports(app, settings.mcp_transports_per_key, settings.session_ttl_s, clock)
    return Guard(CheckedIds(transports), keys, settings.max_body, settings.read_timeout_s)


SAFE_INTEGER = 2**53 - 1  # JSON's safe integers: what every JSON parser reads back exactly
MAX_ID_CHARS = 64
INVALID_REQUEST = -32600


def bad_id(body: bytes) -> str | None:
    """What is wrong with the JSON-RPC ids of a request body, if anything: an id must be an integer within
    ±SAFE_INTEGER or a string of at most MAX_ID_CHARS characters (or null). A body that is not JSON is left
    to the SDK (its parse error)."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    for message in parsed if isinstance(parsed, list) else [parsed]:
        if not isinstance(message, dict) or "id" not in message:
            continue
        given = message["id"]
        if isinstance(given, bool) or isinstance(given, float) and not given.is_integer():
            return "a JSON-RPC id must be an integer or a string"
        if isinstance(given, (int, float)) and abs(given) > SAFE_INTEGER:
            return f"a JSON-RPC id must be an integer within \u00b1{SAFE_INTEGER} (JSON's safe integers)"
        if isinstance(given, str) and len(given) > MAX_ID_CHARS:
            return f"a JSON-RPC id of {len(given):,} characters; the limit is {MAX_ID_CHARS}"
    return None


class CheckedIds:
    """`app` given only requests whose JSON-RPC ids `bad_id` accepts; any other is answered 400 with the
    JSON-RPC error -32600 (Invalid Request), as the SDK answers a request it cannot read. The body arrives whole
    (the Guard has read and counted it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = bad_id(body)
        if problem is not None:
            error = {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": problem}}
            await JSONResponse(error, status_code=400)(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)


class KeyTransports:
    """`app` told the Guard's caller as the SDK's authenticated user, which binds each transport session to the
    key that opened it (any other key gets 404 "Session not found", as if it did not exist), and a limit of
    `per_key` transport sessions open per key: a request that would open one more gets 429.

    A session counts as open from the answer that issued its Mcp-Session-Id until its client ends it (DELETE),
    the SDK answers 404 for it, or it has had no request in flight for `idle_s` (when the SDK closes it)."""

    def __init__(self, app: ASGIApp, per_key: int, idle_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.per_key, self.idle_s, self.clock = app, per_key, idle_s, clock
        # key id -> session id -> [requests in flight, when the last one ended]
        self._open: dict[str, dict[str, list[float]]] = {}
        self._opening: dict[str, int] = {}  # key id -> opening requests in flight (a slot each)

    def _count(self, key: str) -> int:
        now = self.clock()
        sessions = self._open.get(key, {})
        for session_id in [s for s, (busy, last) in sessions.items() if not busy and now - last >= self.idle_s]:
            del sessions[session_id]  # the SDK has closed it as idle
        return len(sessions) + self._opening.get(key, 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = scope.get("state", {}).get("caller")
        if scope["type"] != "http" or not isinstance(caller, Caller):
            await self.app(scope, receive, send)
            return
        scope["user"] = AuthenticatedUser(AccessToken(token=caller.key_id, client_id=caller.key_id, scopes=[]))
        key = caller.key_id
        session_id = dict(scope.get("headers", [])).get(b"mcp-session-id", b"").decode("latin-1") or None
        if session_id is None and scope.get("method") == "POST":
            if self._count(key) >= self.per_key:
                await error_response(429, "too_many_sessions", f"this API key holds {self.per_key} MCP sessions "
                                     "open (server.mcp_transports_per_key): end one (DELETE /mcp with its "
                                     "Mcp-Session-Id) or reuse it; an unused one closes after "
                                     f"{self.idle_s:g} s (server.session_ttl_s)")(scope, receive, send)
                return
            self._opening[key] = self._opening.get(key, 0) + 1
        mine = self._open.setdefault(key, {})
        if session_id is not None and session_id in mine:
            mine[session_id][0] += 1
        answer: dict[str, Any] = {}

        async def watched(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["session"] = dict(message.get("headers", [])).get(b"mcp-session-id")
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            if session_id is None:
                self._opening[key] -= 1
                issued = answer.get("session")
                if issued and answer.get("status", 500) < 400:
                    mine[issued.decode("latin-1")] = [0, self.clock()]
            elif session_id in mine:
                mine[session_id][0] -= 1
                mine[session_id][1] = self.clock()
                if scope.get("method") == "DELETE" or answer.get("status") == 404:
                    del mine[session_id]


def run(agent: Agent, settings: ServerSettings, keys: dict[str, str | None], http: bool = False,
        host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve over stdio until the client closes it, or over streamable HTTP at http://HOST:PORT/mcp (with the
    HTTP server's connection limits, `limits.uvicorn_options`)."""
    mcp = create_server(agent, settings)
    if not http:
        mcp.run("stdio")
        return
    import uvicorn

    from genre_agent.interfaces.limits import uvicorn_options

    config = uvicorn.Config(http_app(mcp, keys, settings, host), host=host, port=port, log_level="warning",
                            **uvicorn_options(settings))
    uvicorn.Server(config).run()
