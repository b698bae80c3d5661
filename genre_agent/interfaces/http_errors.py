"""Errors of the HTTP server in the OpenAI shape: `{"error": {"type", "code", "message"}}` with the status the
OpenAI API gives the same failure, so OpenAI SDKs raise their usual exception classes. No traceback ever
leaves the server; unexpected failures are logged and answered with a short 500."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from genre_agent.errors import (
    BackendUnavailableError,
    ContextLengthError,
    DataDirError,
    GenreAgentError,
    UnknownUserError,
)
from genre_agent.sanitize import redact

log = logging.getLogger("genre_agent.server")

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 405: "invalid_request_error", 408: "invalid_request_error",
         409: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
         431: "invalid_request_error", 499: "invalid_request_error", 500: "server_error", 503: "server_error"}


class ApiError(Exception):
    """An HTTP error with an OpenAI error code, raised by the server's routes and guards."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"type": TYPES.get(status, "server_error"), "code": code, "message": message,
                      "param": None}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, code, message), status_code=status, headers=headers)


def from_agent_error(exc: GenreAgentError) -> ApiError:
    """The status and code of an error the agent raised on purpose."""
    if isinstance(exc, ContextLengthError):
        return ApiError(400, "context_length_exceeded", str(exc))
    if isinstance(exc, UnknownUserError):
        return ApiError(400, "unknown_user", str(exc))
    if isinstance(exc, BackendUnavailableError):
        return ApiError(503, "backend_unavailable", str(exc))
    if isinstance(exc, DataDirError):  # the server's storage (a full disk, an unreachable database): retry later
        return ApiError(503, "storage_unavailable", str(exc))
    return ApiError(400, type(exc).__name__, str(exc))


def install(app: FastAPI) -> None:
    """Answer every error of `app` in the OpenAI shape."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(GenreAgentError)
    async def agent_error(_: Request, exc: GenreAgentError) -> JSONResponse:
        api = from_agent_error(exc)
        return error_response(api.status, api.code, redact(api.message))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: "
                             f"{e.get('msg', 'invalid')}" for e in exc.errors()[:5])
        return error_response(400, "invalid_request", f"invalid request body: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; the server log has the details")
