"""`genre-agent prompts`: the template sets: list, show, check, render, and copy for editing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from genre_agent.errors import GenreAgentError
from genre_agent.interfaces.console import CatalogOpt, ConfigOpt, DataDirOpt, err, fail, out, progress_bar

if TYPE_CHECKING:
    from genre_agent.pipeline import Recommender

Role = Literal["ranking", "reasons", "understand"]
prompts_app = typer.Typer(help="Template sets: list, show, check, render, and copy for editing.",
                          no_args_is_help=True)


@prompts_app.command("list")
def prompts_list() -> None:
    """The shipped template sets."""
    from genre_agent.llm.prompts import load_profile, shipped_sets

    table = Table()
    for column in ("name", "extends", "reason chars", "description"):
        table.add_column(column)
    for name, path in shipped_sets().items():
        p = load_profile(path)
        table.add_row(name, p.extends or "", str(p.reason_max_chars or "config"), p.description)
    out.print(table)


@prompts_app.command("show")
def prompts_show(name: Annotated[str, typer.Argument(help="set name or folder")] = "default") -> None:
    """Print every template of a set, with the file each comes from."""
    from genre_agent.llm.prompts import Prompts, resolve_prompts_dir

    try:
        prompts = Prompts(resolve_prompts_dir(name))
    except GenreAgentError as exc:
        fail(exc)
        return
    for path in prompts.files().values():
        out.rule(str(path))
        out.print(path.read_text(encoding="utf-8", errors="replace"), markup=False, highlight=False)


@prompts_app.command("check")
def prompts_check(path: Annotated[str, typer.Argument(help="set name or folder")] = "default") -> None:
    """Validate syntax, variables and the answer form; print file:line: message for each problem."""
    from genre_agent.interfaces.template_check import check

    problems = check(path)
    for problem in problems:
        typer.echo(str(problem))
    if problems:
        raise typer.Exit(1)
    err.print(f"{path}: ok", markup=False)


@prompts_app.command("render")
def prompts_render(
    name: Annotated[str | None, typer.Argument(help="set name (or use --prompts)")] = None,
    prompts: Annotated[str | None, typer.Option("--prompts", help="set name or folder")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u")] = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="the request's words; with --role "
                                                "understand, the chat message read")] = None,
    k: Annotated[int | None, typer.Option("-k")] = None,
    role: Annotated[Role, typer.Option("--role", help="ranking (the list), reasons (the first candidate's "
                                       "reason) or understand (reading --query as a first chat message)")
                    ] = "ranking",
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print the exact prompt a role of the model would get for a request, with the catalog's real data
    (candidates, history, genres), without calling the LLM."""
    from genre_agent.pipeline import Recommender
    from genre_agent.schemas import RecommendRequest
    from genre_agent.settings import load_settings

    if role == "understand" and not query:
        raise typer.BadParameter("--role understand reads a message: give it as --query")
    try:
        settings = load_settings(config, catalog=catalog, data_dir=data_dir, k=k, prompts=prompts or name)
        with progress_bar() as report:
            rec = Recommender.open(settings, progress=report)
        request = RecommendRequest(user_id=user, query=query)
        messages = _reading(rec, query or "") if role == "understand" else rec.render(request, role)
        if not messages:
            err.print("no item passes the filters: there is no reason to ask for")
        for m in messages:
            typer.echo(f"--- {m['role']} ---\n{m['content']}")
        tokens, counted_by = rec.count_prompt_tokens(messages)
        err.print(f"{tokens} prompt tokens ({counted_by})")
    except GenreAgentError as exc:
        fail(exc)


def _reading(rec: Recommender, message: str) -> list[dict[str, str]]:
    """The messages the model reads a first chat message with (`ask_model`, given a backend that records them
    and answers nothing)."""
    from genre_agent.chat.understanding import ask_model
    from genre_agent.llm.backends import FakeBackend

    recorder = FakeBackend()
    ask_model(recorder, rec.prompts, message, [], [], rec.genres())
    return [dict(m) for m in recorder.calls[0]]


@prompts_app.command("init")
def prompts_init(
    directory: Annotated[Path, typer.Argument(help="new folder for your copy")],
    name: Annotated[str, typer.Option("--from", help="the shipped set to copy")] = "default",
) -> None:
    """Copy a shipped set (every template it uses) into DIR to edit; then set prompts = "DIR"."""
    import json
    import shutil

    from genre_agent.llm.prompts import Prompts, resolve_prompts_dir

    if directory.exists() and any(directory.iterdir()):
        err.print(f"[bold red]error:[/] {escape(str(directory))} exists and is not empty; choose a new folder.")
        raise typer.Exit(2)
    try:
        source = Prompts(resolve_prompts_dir(name))
    except GenreAgentError as exc:
        fail(exc)
        return
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for template, path in source.files().items():
        shutil.copy2(path, tmp / template)
    profile = source.profile.model_copy(update={"extends": None})
    # str and int values: their JSON form is valid TOML
    lines = [f"{k} = {json.dumps(v)}" for k, v in profile.model_dump(exclude_none=True).items()]
    (tmp / "profile.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if directory.exists():
        directory.rmdir()
    tmp.rename(directory)
    err.print(f"copied '{name}' to {directory}. Use it with --prompts {directory} or prompts = \"{directory}\" "
              "in genre-agent.toml; `genre-agent prompts check` validates your edits.")
