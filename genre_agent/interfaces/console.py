"""What every `genre-agent` command shares: the consoles, the common options, the progress bar and how an
error is printed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from genre_agent.errors import GenreAgentError
from genre_agent.plugins import backend_names
from genre_agent.sanitize import for_terminal, redact

err = Console(stderr=True)
out = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML config file (default ./genre-agent.toml)")]
CatalogOpt = Annotated[str | None, typer.Option("--catalog", help="shipped catalog name or a folder")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="where the index and models are cached")]
BACKENDS_HELP = " | ".join(backend_names())  # the registered backends (entry point group genre_agent.backends)
BackendOpt = Annotated[str | None, typer.Option("--backend", help=BACKENDS_HELP)]
ModelOpt = Annotated[str | None, typer.Option("--model", help="model name, .gguf path, or server model")]
AllowOutsideOpt = Annotated[bool, typer.Option(
    "--allow-outside", help="read catalog files outside the catalog folder (only for catalogs you trust)")]
SQL_MAX_INT = 2**63 - 1  # the largest integer SQLite and PostgreSQL take
PromptsOpt = Annotated[str | None, typer.Option("--prompts", help="template set name or folder")]


@contextmanager
def progress_bar() -> Iterator[Any]:
    """A progress bar on stderr for build steps; yields the (step, done, total) callback."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=err, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        yield report


def format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                   line: str | None = None) -> str:
    """A warning as a person reads it (`warnings.formatwarning`): `warning: <what and what to do>`, without the
    Python file and line it was raised from."""
    return f"warning: {for_terminal(redact(str(message)))}\n"


def fail(exc: GenreAgentError) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(for_terminal(redact(str(exc))))}", highlight=False)
    raise typer.Exit(exc.exit_code)


def parse_where(pairs: list[str]) -> dict[str, str]:
    where = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--where expects KEY=VALUE, got {pair!r}")
        where[key.strip()] = value.strip()
    return where
