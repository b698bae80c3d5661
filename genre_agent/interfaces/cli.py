"""The `genre-agent` command line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from genre_agent.errors import ConfigError, GenreAgentError
from genre_agent.sanitize import for_terminal, redact

if TYPE_CHECKING:
    from genre_agent.chat.agent import Agent
    from genre_agent.llm.calibration import Calibration
    from genre_agent.settings import Settings

app = typer.Typer(help="genre-agent: an offline conversational recommender (Chroma + CF + a local LLM).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
err = Console(stderr=True)
out = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML config file (default ./genre-agent.toml)")]
CatalogOpt = Annotated[str | None, typer.Option("--catalog", help="shipped catalog name or a folder")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="where the index and models are cached")]
BackendOpt = Annotated[str | None, typer.Option("--backend", help="llamacpp | openai | langchain | fake")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="model name, .gguf path, or server model")]
AllowOutsideOpt = Annotated[bool, typer.Option(
    "--allow-outside", help="read catalog files outside the catalog folder (only for catalogs you trust)")]
SQL_MAX_INT = 2**63 - 1  # the largest integer SQLite and PostgreSQL take
PromptsOpt = Annotated[str | None, typer.Option("--prompts", help="template set name or folder")]


@contextmanager
def _progress() -> Iterator[Any]:
    """A progress bar on stderr for build steps; yields the (step, done, total) callback."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=err, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        yield report


def _fail(exc: GenreAgentError) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(for_terminal(redact(str(exc))))}", highlight=False)
    raise typer.Exit(exc.exit_code)


def _parse_where(pairs: list[str]) -> dict[str, str]:
    where = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--where expects KEY=VALUE, got {pair!r}")
        where[key.strip()] = value.strip()
    return where


@app.command()
def recommend(
    user: Annotated[str | None, typer.Option("--user", "-u", help="user id in the catalog")] = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="what the user asks for")] = None,
    k: Annotated[int | None, typer.Option("-k", help="how many recommendations (default 10)")] = None,
    include_genre: Annotated[list[str] | None, typer.Option("--include-genre", help="only these genres")] = None,
    exclude_genre: Annotated[list[str] | None, typer.Option("--exclude-genre", help="never these genres")] = None,
    year_min: Annotated[int | None, typer.Option("--year-min")] = None,
    year_max: Annotated[int | None, typer.Option("--year-max")] = None,
    where: Annotated[list[str] | None, typer.Option("--where", help="metadata equality, KEY=VALUE")] = None,
    include_seen: Annotated[bool, typer.Option("--include-seen", help="allow already-rated items")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON output contract")] = False,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    prompts: PromptsOpt = None,
    allow_outside: AllowOutsideOpt = False,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Top-k recommendations for a user (and/or a query), each with a reason."""
    from genre_agent.data.catalog import load_catalog
    from genre_agent.data.feedback import open_store, with_feedback
    from genre_agent.errors import DataDirError
    from genre_agent.filters import Filters
    from genre_agent.pipeline import Recommender, build
    from genre_agent.schemas import RecommendRequest
    from genre_agent.settings import load_settings

    try:
        settings = load_settings(config, catalog=catalog, data_dir=data_dir, k=k, prompts=prompts,
                                 **{"backend.name": backend, "backend.model": model,
                                    "catalog_files.allow_outside": allow_outside or None})
        filters = Filters(exclude_seen=not include_seen, include_genres=include_genre or [],
                          exclude_genres=exclude_genre or [], year_min=year_min, year_max=year_max,
                          where=_parse_where(where or []))
        loaded = load_catalog(settings.catalog, settings.catalog_files)
        try:  # a catalog user's likes, dislikes and "seen" from chats count as their ratings
            if settings.store.url or (settings.data_dir / "feedback.sqlite3").exists():
                loaded = with_feedback(loaded, open_store(settings.store.url, settings.data_dir))
        except DataDirError as exc:
            err.print(f"[dim]note: stored feedback not read ({escape(for_terminal(redact(str(exc))))})[/]")
        with _progress() as report:
            retriever, _ = build(settings, loaded, report)
        rec = Recommender(settings, loaded, retriever)
        info = rec.catalog_info()
        for line in info.cleaning:
            err.print(f"[dim]catalog cleaning: {escape(line)}[/]")
        if not info.interactions:
            err.print("[dim]note: this catalog has no interactions, so CF is skipped; candidates come from "
                      "text similarity to the query.[/]")
        with err.status("thinking…"):
            result = rec.run(RecommendRequest(user_id=user, query=query, k=settings.k, filters=filters)).result
    except GenreAgentError as exc:
        _fail(exc)
        return
    if as_json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
        return
    table = Table(title=escape(f"{len(result.recommendations)} for user {user or '(new)'}"
                               + (f' — "{query}"' if query else "")), show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("title")
    table.add_column("reason")
    table.add_column("fused", justify="right")
    for r in result.recommendations:
        table.add_row(str(r.rank), Text(for_terminal(r.title)), Text(for_terminal(r.reason)),
                      f"{r.scores.fused:.2f}")
    out.print(table)
    t = result.timings_ms
    err.print(f"{result.backend}:{result.model}; {result.what_the_llm_did()}; re-asks {result.reasks}; "
              f"retrieve {t.retrieve:.0f} ms, LLM {t.llm / 1000:.1f} s, {result.prompt_tokens} prompt tokens\n"
              f"{result.calibration}", style="dim", markup=False, highlight=False)


@app.command()
def chat(
    user: Annotated[str | None, typer.Option("--user", "-u", help="chat as this catalog user")] = None,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    prompts: PromptsOpt = None,
    k: Annotated[int | None, typer.Option("-k", help="recommendations per answer (default 10)")] = None,
    allow_outside: AllowOutsideOpt = False,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Chat in the terminal: say what you like, refine, ask why. /help inside lists the commands."""
    from genre_agent.chat.agent import Agent
    from genre_agent.interfaces.repl import Repl
    from genre_agent.settings import load_settings

    try:
        with _progress() as report:
            settings = load_settings(config, catalog=catalog, data_dir=data_dir, k=k, prompts=prompts,
                                     **{"backend.name": backend, "backend.model": model,
                                        "catalog_files.allow_outside": allow_outside or None})
            agent = Agent.from_config(settings, progress=report)
        repl = Repl(agent, out, history_file=agent.settings.data_dir / "chat_history")
        repl.run(user)
    except GenreAgentError as exc:
        _fail(exc)


@app.command()
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
    from genre_agent.interfaces.limits import uvicorn_options
    from genre_agent.interfaces.server import Server, create_app

    settings, keys, agent = _served(host, api_key, backend, model, allow_outside, catalog, data_dir, config)
    import uvicorn

    err.print(f"serving {escape(agent.catalog_info().name)} on http://{escape(host)}:{port}/v1 "
              "(model id 'genre-agent')")
    Server(uvicorn.Config(create_app(agent, settings.server, keys), host=host, port=port, log_level="warning",
                          **uvicorn_options(settings.server))).run()


def _served(host: str, api_key: str | None, backend: str | None, model: str | None, allow_outside: bool,
            catalog: str | None, data_dir: Path | None, config: Path | None
            ) -> tuple[Settings, dict[str, str | None], Agent]:
    """The settings, API keys and agent of a server on `host` (`serve`, `mcp --http`); exits 2 on a bind off
    localhost without a key."""
    from genre_agent.chat.agent import Agent
    from genre_agent.interfaces.server import is_local, key_table
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
        with _progress() as report:
            agent = Agent.from_config(settings, progress=report)
    except GenreAgentError as exc:
        _fail(exc)
    return settings, keys, agent


@app.command()
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


@app.command()
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
    from genre_agent.data.catalog import load_catalog
    from genre_agent.pipeline import build
    from genre_agent.retrieval import vector_file
    from genre_agent.settings import load_settings

    try:
        settings = load_settings(config, catalog=catalog, data_dir=data_dir,
                                 **{"catalog_files.allow_outside": allow_outside or None})
        cat = load_catalog(settings.catalog, settings.catalog_files)
        with _progress() as report:
            retriever, built = build(settings, cat, report)
        if export_vectors is not None:
            indexes = {"text": (retriever.index, export_vectors)}
            if retriever.about is not None:
                indexes["about"] = (retriever.about, export_vectors.with_suffix(".about.npz"))
            for column, (index, path) in indexes.items():
                vector_file.save(path, index.embedding.model_id(), cat.items_fingerprint(column),
                                 *index.export(cat.items))
                err.print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)", markup=False)
    except GenreAgentError as exc:
        _fail(exc)
        return
    for line in cat.report.lines():
        err.print(f"catalog cleaning: {line}", markup=False)
    cf = (f"CF {'trained' if built.cf_trained else 'reused'} ({settings.retrieval.cf_model})"
          if len(cat.interactions) else "no interactions: CF and popularity skipped, retrieval is by text only")
    out.print(f"{escape(cat.name)}: {len(cat.items)} items, {len(cat.interactions)} interactions, "
              f"{cat.interactions.user_id.nunique()} users; embedded {built.embedded}, reused {built.reused}; "
              f"{cf}; {built.seconds:.1f} s")


@app.command("eval")
def evaluate(
    catalog: CatalogOpt = None,
    protocol: Annotated[str, typer.Option("--protocol", help="sampled, full, or both (comma-separated)")] =
        "sampled,full",
    candidates: Annotated[int, typer.Option("--candidates", help="sampled list size (reference: 20)")] = 20,
    users: Annotated[int | None, typer.Option("--users", help="evaluate this many users (default: all)")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    methods: Annotated[str, typer.Option("--methods", help="comma-separated")] =
        "random,pop,itemknn,ease,als,vector,hybrid",
    ks: Annotated[str, typer.Option("--ks", help="cut-offs")] = "1,5,10",
    out_dir: Annotated[Path, typer.Option("--out", help="where report.json/.md/.png go")] = Path("eval-out"),
    no_cache: Annotated[bool, typer.Option("--no-cache", help="do not reuse cached LLM answers")] = False,
    tune: Annotated[bool, typer.Option("--tune", help="tune the fusion weights on a validation split "
                                                      "carved from training data first")] = False,
    permutations: Annotated[int, typer.Option("--permutations", min=1, help="candidate orders scored by "
                                                                            "llm-score / llm-fused")] = 3,
    tune_users: Annotated[int, typer.Option("--tune-users", min=1, help="validation users that tune the "
                                                                        "llm-fused weight")] = 100,
    backend: Annotated[str | None, typer.Option("--backend")] = None,
    model: Annotated[str | None, typer.Option("--model")] = None,
    dialogues: Annotated[Path | None, typer.Option("--dialogues", help="ReDial-format JSONL: evaluate the chat "
                                                   "agent on real conversations instead")] = None,
    requests: Annotated[Path | None, typer.Option("--requests", help="a request set (JSONL, see "
                                                  "tests/data/requests): the share of the top 10 that "
                                                  "satisfies each request, per category")] = None,
    cases: Annotated[int | None, typer.Option("--cases", min=1, help="--dialogues: draw this many cases "
                                              "(default: all)")] = None,
    split: Annotated[str | None, typer.Option("--split", help="dev, test (held out) or all: --dialogues "
                                              "(default test), --requests (default all)")] = None,
    no_llm: Annotated[bool, typer.Option("--no-llm", help="--dialogues: rules only, the fake backend")] = False,
    no_adapter: Annotated[bool, typer.Option("--no-adapter", help="the base model, not the LoRA adapter "
                                             "`genre-agent tune` wrote for this catalog")] = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Offline metrics of every method against the classical baselines, on the reference protocol; with
    --dialogues, Recall@k of the chat agent on real dialogues next to popularity and item-kNN; with --requests,
    the share of the top 10 that satisfies each request next to popularity and plain vector search."""
    if dialogues is not None or requests is not None:
        overrides = {"catalog": catalog, "data_dir": data_dir, "backend.name": "fake" if no_llm else backend,
                     "backend.model": model, "conversation.understand_with_llm": False if no_llm else None}
        _eval_conversations(dialogues, requests, cases, split, seed, out_dir, overrides, config, no_llm)
        return
    from genre_agent.data.catalog import load_catalog
    from genre_agent.eval import report as report_files
    from genre_agent.eval.evaluate import METHODS, N_NEG, EvalConfig, run
    from genre_agent.settings import load_settings

    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    unknown = [m for m in chosen if m not in METHODS]
    protocols = tuple(p.strip() for p in protocol.split(",") if p.strip())
    if unknown or not set(protocols) <= {"sampled", "full"}:
        raise typer.BadParameter(f"methods are {', '.join(METHODS)}; protocols are sampled, full")
    if candidates != N_NEG + 1:
        raise typer.BadParameter(f"--candidates: only {N_NEG + 1} (the reference protocol) is implemented")
    try:
        settings = load_settings(config, catalog=catalog, data_dir=data_dir,
                                 **{"backend.name": backend, "backend.model": model,
                                    "backend.llamacpp.adapter": "none" if no_adapter else None})
        cat = load_catalog(settings.catalog, settings.catalog_files)
        cfg = EvalConfig(methods=chosen, protocols=protocols, users=users, seed=seed,
                         ks=tuple(int(k) for k in ks.split(",")), cache=not no_cache, tune=tune,
                         permutations=permutations, tune_users=tune_users)
        with _progress() as report:
            result = run(settings, cat, cfg, out_dir, report)
    except GenreAgentError as exc:
        _fail(exc)
        return
    report_files.write(result, out_dir)
    out.print(report_files.markdown(result))
    err.print(f"wrote {out_dir}/report.json, report.md, report.png in {result['seconds']} s")


def _eval_conversations(dialogues: Path | None, requests: Path | None, cases: int | None, split: str | None,
                        seed: int,
                        out_dir: Path, overrides: dict[str, Any], config: Path | None, no_llm: bool) -> None:
    from genre_agent.eval import dialogues as conversations
    from genre_agent.eval import requests as request_set
    from genre_agent.llm.routing import Routes
    from genre_agent.pipeline import Recommender
    from genre_agent.settings import load_settings

    if split not in (None, "dev", "test", "all"):
        raise typer.BadParameter("--split is dev, test or all")
    if dialogues is not None and requests is not None:
        raise typer.BadParameter("give --dialogues or --requests, not both")
    try:
        settings = load_settings(config, **overrides)
        with _progress() as report:
            rec = Recommender.open(settings, progress=report)
            if no_llm:  # no role goes to a model, whatever a calibration says
                rec.pinned_routes = Routes(ranking_weight=0.0, ranking_method="json", permutations=1,
                                           reasons=False, calibration="pinned by --no-llm: no model call")
            if requests is not None:
                result = request_set.evaluate_requests(settings, requests, split or "all", seed, report, rec)
                writer, render = request_set.write, request_set.markdown
            else:
                assert dialogues is not None
                result = conversations.evaluate_dialogues(settings, dialogues, split or "test",  # type: ignore[arg-type]
                                                          cases, seed, report, rec)
                writer, render = conversations.write, conversations.markdown
    except GenreAgentError as exc:
        _fail(exc)
        return
    writer(result, out_dir)
    typer.echo(render(result))
    err.print(f"wrote {out_dir}/report.json, report.md in {result['seconds']} s")


@app.command("calibrate")
def calibrate_command(
    users: Annotated[int, typer.Option("--users", min=1, help="validation users that tune the ranking weight")]
        = 40,
    reason_users: Annotated[int, typer.Option("--reason-users", min=1, help="users whose top k the model "
                                                                            "writes reasons for")] = 8,
    permutations: Annotated[int, typer.Option("--permutations", min=1, help="candidate orders scored per user "
                                                                            "(label log-probabilities)")] = 3,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    dialogues: Annotated[Path | None, typer.Option("--dialogues", help="ReDial-format JSONL: measure the model's "
                                                   "reading of chat messages on its dev part (else rules only)")]
        = None,
    dialogue_cases: Annotated[int | None, typer.Option("--dialogue-cases", min=1, help="dev cases for the "
                                                       "reading (default: all)")] = None,
    roles: Annotated[str, typer.Option("--roles", help="roles to measure, comma-separated; the others are kept "
                                       "from this model's local calibration")] = "ranking,reasons,reading",
    backend: BackendOpt = None,
    model: ModelOpt = None,
    prompts: PromptsOpt = None,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Measure what the configured model does well on this catalog (ranking, reasons, reading) on a
    validation split of the training data, and save it: answers then ask the model only for those roles."""
    import time

    from genre_agent.data.catalog import load_catalog
    from genre_agent.eval.calibrate import ROLES, calibrate
    from genre_agent.llm.adapters import with_adapter
    from genre_agent.llm.backends import make_backend
    from genre_agent.llm.calibration import find, key_for, save
    from genre_agent.llm.prompts import Prompts, resolve_prompts_dir
    from genre_agent.pipeline import Recommender, build

    chosen = tuple(r.strip() for r in roles.split(",") if r.strip())
    if not chosen or set(chosen) - set(ROLES):
        raise typer.BadParameter(f"--roles takes some of {', '.join(ROLES)}, comma-separated")
    from genre_agent.settings import load_settings

    started = time.perf_counter()
    try:
        settings = load_settings(config, catalog=catalog, data_dir=data_dir, prompts=prompts,
                                 **{"backend.name": backend, "backend.model": model})
        cat = load_catalog(settings.catalog, settings.catalog_files)
        if cat.interactions.empty:
            raise ConfigError(f"Catalog '{cat.name}' has no interactions: there is nothing to calibrate on, "
                              "and answers come from text retrieval and evidence only.")
        templates = Prompts(resolve_prompts_dir(settings.prompts))
        settings, _ = with_adapter(settings, cat)
        with _progress() as report:
            retriever, _ = build(settings, cat, report)
            measured = make_backend(settings)
            in_force = find(settings.data_dir, key_for(settings, cat, templates))
            result = calibrate(settings, Recommender(settings, cat, retriever, measured), measured, templates,
                               settings.prompts, users=users, reason_users=reason_users,
                               permutations=permutations, seed=seed, dialogues=dialogues,
                               dialogue_cases=dialogue_cases, roles=chosen,
                               keep=in_force.calibration if in_force.state in ("local", "shipped") else None,
                               command=" ".join(["genre-agent", *sys.argv[1:]]), progress=report)
        path = save(result, settings.data_dir)
    except GenreAgentError as exc:
        _fail(exc)
        return
    out.print(_calibration_table(result))
    err.print(f"saved {path} in {time.perf_counter() - started:.0f} s")


def _calibration_table(result: Calibration) -> Table:
    table = Table(title=f"{result.key.backend}:{result.key.model} on {result.key.catalog} "
                        f"(templates {result.prompts})")
    for column in ("role", "measured", "routed to"):
        table.add_column(column)
    for row in result.summary():
        table.add_row(*row)
    return table


@app.command("tune")
def tune_command(
    budget_minutes: Annotated[float, typer.Option("--budget-minutes", min=2, help="wall time for everything: "
                                                  "examples, training, validation")] = 30,
    val_users: Annotated[int, typer.Option("--val-users", min=5, help="users held out of training, whose "
                                           "validation NDCG@10 picks the checkpoint")] = 40,
    threads: Annotated[int, typer.Option("--threads", min=1, help="CPU threads for training")] = 2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    calibrate_after: Annotated[bool, typer.Option("--calibrate/--no-calibrate", help="rerun the calibration "
                                                  "with the adapter, so the router decides whether to use it")]
        = True,
    model: ModelOpt = None,
    prompts: PromptsOpt = None,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """LoRA fine-tuning of the local model as a ranker of this catalog, on CPU, within a time budget (needs
    `pip install -e ".[tune]"`). Keeps the checkpoint with the best validation NDCG@10, writes it as a GGUF
    LoRA into the data directory, and recalibrates."""
    import time

    from genre_agent.eval.calibrate import calibrate
    from genre_agent.llm.adapters import Checkpoint, adapters_dir, with_adapter
    from genre_agent.llm.backends import make_backend
    from genre_agent.llm.calibration import save
    from genre_agent.llm.prompts import Prompts, resolve_prompts_dir
    from genre_agent.pipeline import Recommender
    from genre_agent.settings import load_settings
    from genre_agent.tune.run import tune
    from genre_agent.tune.train import TrainConfig

    started = time.perf_counter()
    command = " ".join(["genre-agent", *sys.argv[1:]])

    def checkpoint(point: Checkpoint) -> None:
        what = "base model" if point.examples == 0 else f"checkpoint after {point.examples} examples"
        loss = f", training loss {point.train_loss:.3f}" if point.train_loss is not None else ""
        err.print(f"{what}: validation NDCG@10 {point.val_ndcg10:.4f} ({point.seconds:.0f} s{loss})")

    try:
        settings = load_settings(config, catalog=catalog, data_dir=data_dir, prompts=prompts,
                                 **{"backend.name": "llamacpp", "backend.model": model,
                                    "backend.llamacpp.adapter": "none"})
        templates = Prompts(resolve_prompts_dir(settings.prompts))
        with _progress() as report:
            rec = Recommender.open(settings, progress=report)
            result = tune(rec, templates, budget_minutes=budget_minutes, val_users=val_users,
                          config=TrainConfig(threads=threads, seed=seed), command=command, progress=report,
                          on_checkpoint=checkpoint)
        trained = result.trained
        err.print(f"base model: validation NDCG@10 {trained.base_val_ndcg10:.4f} on {val_users} users; "
                  f"{result.info['train_examples']} training examples ({result.info['mean_prompt_tokens']} tokens "
                  f"on average); trained {trained.seconds:.0f} s")
        if result.adapter is None:
            err.print("the budget ended before a first checkpoint: no adapter written; raise --budget-minutes.")
            return
        adapter = result.adapter
        out.print(f"adapter {adapter.file}: {adapter.size / 1e6:.1f} MB, sha256 {adapter.sha256[:16]}…, "
                  f"validation NDCG@10 {adapter.base_val_ndcg10:.4f} -> {adapter.best.val_ndcg10:.4f} "
                  f"(after {adapter.best.examples} examples)")
        if not adapter.beats_base:
            kept = adapter.path(adapters_dir(settings.data_dir))
            err.print("it did not beat the base model on validation: answers keep the base model (set "
                      f"backend.llamacpp.adapter = \"{kept}\" to measure it anyway).")
        elif calibrate_after:
            tuned, _ = with_adapter(load_settings(config, catalog=catalog, data_dir=data_dir, prompts=prompts,
                                                  **{"backend.name": "llamacpp", "backend.model": model}),
                                    rec.catalog)
            backend = make_backend(tuned)
            with _progress() as report:
                calibration = calibrate(tuned, Recommender(tuned, rec.catalog, rec.retriever, backend), backend,
                                        templates, tuned.prompts, users=40, reason_users=8, permutations=3,
                                        seed=seed, command=command, progress=report)
            path = save(calibration, tuned.data_dir)
            out.print(_calibration_table(calibration))
            err.print(f"saved {path}")
        else:
            err.print("not calibrated (--no-calibrate): answers ask the tuned model for every role until "
                      "`genre-agent calibrate` measures it, or set backend.llamacpp.adapter = \"none\".")
    except GenreAgentError as exc:
        _fail(exc)
        return
    err.print(f"done in {time.perf_counter() - started:.0f} s")


prompts_app = typer.Typer(help="Template sets: list, show, check, render, and copy for editing.",
                          no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")
config_app = typer.Typer(help="The effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
feedback_app = typer.Typer(help="Stored feedback: the log of every like, dislike and seen, and undoing one.",
                           no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


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
        _fail(exc)
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
    query: Annotated[str | None, typer.Option("--query", "-q")] = None,
    k: Annotated[int | None, typer.Option("-k")] = None,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print the exact ranking prompt for a request, with real candidates, without calling the LLM."""
    from genre_agent.pipeline import Recommender
    from genre_agent.schemas import RecommendRequest
    from genre_agent.settings import load_settings

    try:
        settings = load_settings(config, catalog=catalog, data_dir=data_dir, k=k, prompts=prompts or name)
        with _progress() as report:
            rec = Recommender.open(settings, progress=report)
        messages = rec.render(RecommendRequest(user_id=user, query=query))
        for m in messages:
            typer.echo(f"--- {m['role']} ---\n{m['content']}")
        tokens, counted_by = rec.count_prompt_tokens(messages)
        err.print(f"{tokens} prompt tokens ({counted_by})")
    except GenreAgentError as exc:
        _fail(exc)


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
        _fail(exc)
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


@config_app.command("show")
def config_show(
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    prompts: Annotated[str | None, typer.Option("--prompts")] = None,
    backend: Annotated[str | None, typer.Option("--backend")] = None,
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
        _fail(exc)
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
        _fail(exc)
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
        _fail(exc)
        return
    line = f"undone: {undone.kind} of item {undone.item_id} by {undone.user_key} ({undone.source})"
    out.print(for_terminal(line, one_line=True), markup=False, highlight=False, soft_wrap=True)


@app.command()
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


if __name__ == "__main__":
    app()
