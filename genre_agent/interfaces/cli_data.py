"""What an installation and its data directory hold: `genre-agent index` (a catalog's vector index and CF
model), `config` (the effective configuration), `feedback` (the stored feedback) and `models` (the local
models)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from genre_agent.errors import GenreAgentError
from genre_agent.interfaces.console import (
    SQL_MAX_INT,
    AllowOutsideOpt,
    BackendOpt,
    CatalogOpt,
    ConfigOpt,
    DataDirOpt,
    err,
    fail,
    out,
    progress_bar,
)
from genre_agent.sanitize import for_terminal, redact

config_app = typer.Typer(help="The effective configuration.", no_args_is_help=True)
feedback_app = typer.Typer(help="Stored feedback: the log of every like, dislike and seen, and undoing one.",
                           no_args_is_help=True)


def index(
    allow_outside: AllowOutsideOpt = False,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    export_vectors: Annotated[Path | None, typer.Option("--export-vectors", help="also write the item vectors "
                                                        "to this .npz file, to ship beside the catalog "
                                                        "([text].vectors in catalog.toml; the [text].about "
                                                        "vectors go to NAME.about.npz)")] = None,
) -> None:
    """Validate a catalog and build (or update) its vector index and CF model."""
    import time

    from genre_agent.pipeline import build, served_catalog
    from genre_agent.retrieval import vector_file
    from genre_agent.settings import load_settings

    started = time.perf_counter()
    try:
        settings = load_settings(config, catalog=catalog, data_dir=data_dir,
                                 **{"catalog_files.allow_outside": allow_outside or None})
        cat = served_catalog(settings)
        read_s = time.perf_counter() - started
        with progress_bar() as report:
            retriever, built = build(settings, cat, report, same_items_fallback=True)  # the served catalog
        if export_vectors is not None:
            indexes = {"text": (retriever.index, export_vectors)}
            if retriever.about is not None:
                indexes["about"] = (retriever.about, export_vectors.with_suffix(".about.npz"))
            for column, (index, path) in indexes.items():
                vector_file.save(path, index.embedding.model_id(), cat.items_fingerprint(column),
                                 *index.export(cat.items))
                err.print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)", markup=False)
    except GenreAgentError as exc:
        fail(exc)
        return
    for line in cat.report.lines():
        err.print(f"catalog cleaning: {line}", markup=False)
    cf = (f"CF {'trained' if built.cf_trained else 'reused'} ({settings.retrieval.cf_model})"
          if len(cat.interactions) else "no interactions: CF and popularity skipped, retrieval is by text only")
    out.print(f"{escape(cat.name)}: {len(cat.items)} items, {len(cat.interactions)} interactions, "
              f"{cat.interactions.user_id.nunique()} users; embedded {built.embedded}, reused {built.reused}; "
              f"{cf}; {time.perf_counter() - started:.1f} s (catalog read {read_s:.1f} s, index and CF "
              f"{built.seconds:.1f} s)")


def models() -> None:
    """List the named local models and whether their package is installed."""
    import importlib.util

    from genre_agent.llm.models import MODELS

    table = Table()
    for column in ("name", "model", "installed", "install with"):
        table.add_column(column)
    for spec in MODELS.values():
        installed = all(importlib.util.find_spec(pkg) is not None for pkg, _ in spec.files)
        table.add_row(spec.name, spec.description, "yes" if installed else "no", spec.install)
    out.print(table)




@config_app.command("show")
def config_show(
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    prompts: Annotated[str | None, typer.Option("--prompts")] = None,
    backend: BackendOpt = None,
    model: Annotated[str | None, typer.Option("--model")] = None,
    config: ConfigOpt = None,
) -> None:
    """Every setting's effective value and where it came from (flag > env > file > default)."""
    from genre_agent.settings import flatten, load_settings, sources

    flags = {"catalog": catalog, "data_dir": data_dir, "prompts": prompts, "backend.name": backend,
             "backend.model": model}
    try:
        settings = load_settings(config, **flags)
        where = sources(config, flags)
    except GenreAgentError as exc:
        fail(exc)
        return
    values = flatten(settings.model_dump(mode="json"))
    table = Table()
    for column in ("key", "value", "from"):
        table.add_column(column)
    for key, source in where.items():
        value = "(secret)" if key.endswith(("api_key", "api_keys")) and values.get(key) else values.get(key)
        table.add_row(key, Text(for_terminal(redact(str(value)), one_line=True)), Text(source))
    table.add_row("(calibration)", *(Text(v) for v in _calibration_in_force(settings)))
    out.print(table)


def _calibration_in_force(settings: Any) -> tuple[str, str]:
    """(what the model is asked to do, the calibration that says so) for `config show`."""
    from genre_agent.data.catalog import load_catalog
    from genre_agent.llm.calibration import find, key_for
    from genre_agent.llm.prompts import Prompts, resolve_prompts_dir
    from genre_agent.llm.routing import routes_for

    try:
        catalog = load_catalog(settings.catalog, settings.catalog_files)
        templates = Prompts(resolve_prompts_dir(settings.prompts))
        in_force = find(settings.data_dir, key_for(settings, catalog, templates))
    except GenreAgentError as exc:
        return "unknown", f"cannot read the catalog or templates: {exc}"
    return routes_for(in_force, settings).describe(), in_force.describe()


@feedback_app.command("list")
def feedback_list(
    user: Annotated[str | None, typer.Option("--user", help="a catalog user id or a chat pseudonym")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=SQL_MAX_INT)] = 50,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The newest feedback events of the catalog: id, who, item, kind, when, and the message it came from."""
    import datetime

    from genre_agent.data.catalog import load_catalog
    from genre_agent.data.feedback import open_store
    from genre_agent.settings import load_settings

    try:
        settings = load_settings(config, catalog=catalog, data_dir=data_dir)
        name = load_catalog(settings.catalog, settings.catalog_files).name
        events = open_store(settings.store.url, settings.data_dir).events(name, user, limit)
    except GenreAgentError as exc:
        fail(exc)
        return
    out.print(f"feedback on {name}, newest first: id, when (UTC), user, kind, item, the message it came from",
              markup=False, highlight=False, soft_wrap=True)
    for e in events:
        when = datetime.datetime.fromtimestamp(e.created, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        kind = f"{e.kind} (undone)" if e.undone else e.kind
        line = f"{e.id}  {when}  {e.user_key}  {kind}  {e.item_id}  \u2014 {e.source}"
        out.print(for_terminal(line, one_line=True), markup=False, highlight=False, soft_wrap=True)


@feedback_app.command("undo")
def feedback_undo(
    event: Annotated[str, typer.Argument(help="an event id from `genre-agent feedback list`")],
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Take a feedback event back: the item's feedback becomes the user's latest event still standing."""
    from genre_agent.data.feedback import open_store
    from genre_agent.settings import load_settings

    try:
        settings = load_settings(config, data_dir=data_dir)
        undone = open_store(settings.store.url, settings.data_dir).undo(event)
    except GenreAgentError as exc:
        fail(exc)
        return
    line = f"undone: {undone.kind} of item {undone.item_id} by {undone.user_key} ({undone.source})"
    out.print(for_terminal(line, one_line=True), markup=False, highlight=False, soft_wrap=True)
