"""The commands that serve the agent to other programs: `genre-agent serve` (an OpenAI-compatible HTTP
endpoint) and `genre-agent mcp` (a Model Context Protocol server)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from genre_agent.errors import GenreAgentError
from genre_agent.interfaces.console import (
    AllowOutsideOpt,
    BackendOpt,
    CatalogOpt,
    ConfigOpt,
    DataDirOpt,
    ModelOpt,
    err,
    fail,
    progress_bar,
)

if TYPE_CHECKING:
    from genre_agent.chat.agent import Agent
    from genre_agent.settings import Settings


def serve(
    host: Annotated[str, typer.Option("--host", help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="GENRE_AGENT_API_KEY",
                                                help="required for a non-local bind")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="llamacpp | openai | langchain | fake")] = None,
    model: Annotated[str | None, typer.Option("--model")] = None,
    allow_outside: AllowOutsideOpt = False,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the agent as an OpenAI-compatible chat endpoint (POST /v1/chat/completions)."""
    from genre_agent.interfaces.admission import Admission
    from genre_agent.interfaces.limits import uvicorn_options
    from genre_agent.interfaces.server import Server, create_app

    settings, keys, agent = _served(host, api_key, backend, model, allow_outside, catalog, data_dir, config)
    import uvicorn

    err.print(f"serving {escape(agent.catalog_info().name)} on http://{escape(host)}:{port}/v1 "
              "(model id 'genre-agent')")
    admission = Admission.of(settings.server)  # what the app admits and the server drains at shutdown
    app = create_app(agent, settings.server, keys, admission)
    Server(uvicorn.Config(app, host=host, port=port, log_level="warning", **uvicorn_options(settings.server)),
           admission, settings.server.shutdown_s).run()


def _served(host: str, api_key: str | None, backend: str | None, model: str | None, allow_outside: bool,
            catalog: str | None, data_dir: Path | None, config: Path | None
            ) -> tuple[Settings, dict[str, str | None], Agent]:
    """The settings, API keys and agent of a server on `host` (`serve`, `mcp --http`); exits 2 on a bind off
    localhost without a key."""
    from genre_agent.chat.agent import Agent
    from genre_agent.interfaces.guard import key_table
    from genre_agent.interfaces.server import is_local
    from genre_agent.settings import load_settings

    try:
        settings = load_settings(config, catalog=catalog, data_dir=data_dir,
                                 **{"backend.name": backend, "backend.model": model,
                                    "catalog_files.allow_outside": allow_outside or None})
        keys = key_table(settings.server, api_key)
        if not is_local(host) and not keys:
            err.print(f"[bold red]error:[/] refusing to bind {escape(host)} without an API key: pass --api-key, "
                      "set GENRE_AGENT_API_KEY or server.api_keys (or bind 127.0.0.1).")
            raise typer.Exit(2)
        with progress_bar() as report:
            agent = Agent.from_config(settings, progress=report)
    except GenreAgentError as exc:
        fail(exc)
    return settings, keys, agent


def mcp(
    http: Annotated[bool, typer.Option("--http", help="streamable HTTP at http://HOST:PORT/mcp instead of "
                                       "stdio")] = False,
    host: Annotated[str, typer.Option("--host", help="bind address (with --http)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="with --http")] = 8000,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="GENRE_AGENT_API_KEY",
                                                help="required for a non-local bind")] = None,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    allow_outside: AllowOutsideOpt = False,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the agent as a Model Context Protocol server (tools recommend, chat, explain, feedback)."""
    from genre_agent.interfaces import mcp_server

    settings, keys, agent = _served(host if http else "127.0.0.1", api_key, backend, model, allow_outside,
                                    catalog, data_dir, config)
    if http:
        err.print(f"MCP on http://{escape(host)}:{port}/mcp ({escape(agent.catalog_info().name)})")
    mcp_server.run(agent, settings.server, keys, http=http, host=host, port=port)
