"""An OpenAI-compatible HTTP endpoint, so any chat UI or SDK can use the agent as a "model".

- `POST /v1/chat/completions` (plain and `stream: true` SSE): the last user message is one chat turn. The
  session is the request's `user` field, or the `X-Session-Id` header, or "default"; `X-Catalog-User`
  chats as a catalog user. The reply's `content` is the readable answer; the structured reply (the same
  schema as `Agent.chat`, recommendations included) is the extra top-level field `genre_agent` of the
  response (of the last chunk when streaming).
- `GET /v1/models`, `GET /healthz`.
- With an API key, every /v1 request needs `Authorization: Bearer KEY`. Bodies over `max_body` bytes get 413.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from genre_agent.chat.agent import Agent, Reply
from genre_agent.errors import GenreAgentError

MODEL_ID = "genre-agent"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = MODEL_ID
    messages: list[ChatMessage]
    stream: bool = False
    user: str | None = None


def create_app(agent: Agent, api_key: str | None = None, max_body: int = 64 * 1024) -> FastAPI:
    app = FastAPI(title="genre-agent", version="0.1.0")

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and int(length) > max_body:
            return JSONResponse({"error": {"message": f"request body over {max_body} bytes"}}, status_code=413)
        if len(await request.body()) > max_body:
            return JSONResponse({"error": {"message": f"request body over {max_body} bytes"}}, status_code=413)
        if api_key and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given, f"Bearer {api_key}"):
                return JSONResponse({"error": {"message": "invalid or missing API key"}}, status_code=401)
        return await call_next(request)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        s = agent.settings
        return {"status": "ok", "catalog": agent.catalog_info().name, "backend": s.backend.name,
                "model": s.backend.model}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0,
                                            "owned_by": "genre-agent"}]}

    @app.post("/v1/chat/completions", response_model=None)
    def chat(body: ChatRequest, x_session_id: str | None = Header(None),
             x_catalog_user: str | None = Header(None)) -> dict[str, Any] | StreamingResponse:
        user_turns = [m for m in body.messages if m.role == "user"]
        if not user_turns:
            raise HTTPException(400, "messages must contain a user message")
        session = body.user or x_session_id or "default"
        try:
            reply = agent.chat(session, user_turns[-1].text(), user=x_catalog_user)
        except GenreAgentError as exc:
            raise HTTPException(400, str(exc)) from exc
        created = int(time.time())
        completion_id = f"chatcmpl-{secrets.token_hex(12)}"
        if body.stream:
            return StreamingResponse(_stream(reply, completion_id, created), media_type="text/event-stream")
        usage = _usage(reply)
        return {"id": completion_id, "object": "chat.completion", "created": created, "model": MODEL_ID,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                             "finish_reason": "stop"}],
                "usage": usage, "genre_agent": reply.model_dump(mode="json")}

    return app


def _usage(reply: Reply) -> dict[str, int]:
    prompt = reply.recommendations.prompt_tokens if reply.recommendations else 0
    completion = len(reply.text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _stream(reply: Reply, completion_id: str, created: int) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for line in reply.text.splitlines(keepends=True):
        yield chunk({"content": line})
    yield chunk({}, "stop", genre_agent=reply.model_dump(mode="json"))
    yield "data: [DONE]\n\n"


def is_local(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")
