"""The `genre-agent` command line."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from genre_agent.errors import GenreAgentError
from genre_agent.interfaces.cli_data import config_app, feedback_app, index, models
from genre_agent.interfaces.cli_fit import fit
from genre_agent.interfaces.cli_prompts import prompts_app
from genre_agent.interfaces.cli_serve import mcp, serve
from genre_agent.interfaces.console import (
    AllowOutsideOpt,
    BackendOpt,
    CatalogOpt,
    ConfigOpt,
    DataDirOpt,
    ModelOpt,
    PromptsOpt,
    err,
    fail,
    format_warning,
    out,
    parse_where,
    progress_bar,
)
from genre_agent.sanitize import for_terminal

if TYPE_CHECKING:
    from genre_agent.llm.calibration import Calibration

app = typer.Typer(help="genre-agent: an offline conversational recommender (Chroma + CF + a local LLM).",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _every_command() -> None:
    warnings.formatwarning = format_warning  # "warning: ..." lines, not Python's file:line: UserWarning


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
    from genre_agent.chat.agent import Agent
    from genre_agent.filters import Filters
    from genre_agent.settings import load_settings

    try:
        settings = load_settings(config, catalog=catalog, data_dir=data_dir, k=k, prompts=prompts,
                                 **{"backend.name": backend, "backend.model": model,
                                    "catalog_files.allow_outside": allow_outside or None})
        filters = Filters(exclude_seen=not include_seen, include_genres=include_genre or [],
                          exclude_genres=exclude_genre or [], year_min=year_min, year_max=year_max,
                          where=parse_where(where or []))
        with progress_bar() as report:
            agent = Agent.from_config(settings, progress=report)
        info = agent.catalog_info()
        for line in info.cleaning:
            err.print(f"[dim]catalog cleaning: {escape(line)}[/]")
        if not info.interactions:
            err.print("[dim]note: this catalog has no interactions, so CF is skipped; candidates come from "
                      "text similarity to the query.[/]")
        with err.status("thinking…"):
            result = agent.recommend(user, query, settings.k, filters)
    except GenreAgentError as exc:
        fail(exc)
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
    if result.note:
        out.print(Text(for_terminal(result.note)))
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
        with progress_bar() as report:
            settings = load_settings(config, catalog=catalog, data_dir=data_dir, k=k, prompts=prompts,
                                     **{"backend.name": backend, "backend.model": model,
                                        "catalog_files.allow_outside": allow_outside or None})
            agent = Agent.from_config(settings, progress=report)
        repl = Repl(agent, out, history_file=agent.settings.data_dir / "chat_history")
        repl.run(user)
    except GenreAgentError as exc:
        fail(exc)


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
    backend: BackendOpt = None,
    model: Annotated[str | None, typer.Option("--model")] = None,
    dialogues: Annotated[Path | None, typer.Option("--dialogues", help="ReDial-format JSONL: evaluate the chat "
                                                   "agent on real conversations instead")] = None,
    requests: Annotated[Path | None, typer.Option("--requests", help="a request set (JSONL, see "
                                                  "tests/data/requests): the share of the top 10 that "
                                                  "satisfies each request, per category")] = None,
    cases: Annotated[int | None, typer.Option("--cases", min=1, help="--dialogues: draw this many cases "
                                              "(default: all)")] = None,
    split: Annotated[str | None, typer.Option("--split", help="dev, test (held out) or all, of --dialogues "
                                              "or --requests (default test: never learnt from)")] = None,
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
        with progress_bar() as report:
            result = run(settings, cat, cfg, out_dir, report)
    except GenreAgentError as exc:
        fail(exc)
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
        with progress_bar() as report:
            rec = Recommender.open(settings, progress=report)
            if no_llm:  # no role goes to a model, whatever a calibration says
                rec.pinned_routes = Routes(ranking_weight=0.0, ranking_method="json", permutations=1,
                                           reasons=False, calibration="pinned by --no-llm: no model call")
            if requests is not None:
                result = request_set.evaluate_requests(settings, requests, split or "test", seed, report, rec)
                writer, render = request_set.write, request_set.markdown
            else:
                assert dialogues is not None
                result = conversations.evaluate_dialogues(settings, dialogues, split or "test",  # type: ignore[arg-type]
                                                          cases, seed, report, rec)
                writer, render = conversations.write, conversations.markdown
    except GenreAgentError as exc:
        fail(exc)
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
                                       "from this model's calibration in force")] = "ranking,reasons,reading",
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

    from genre_agent.eval.calibrate import ROLES, run_calibration
    from genre_agent.settings import load_settings

    chosen = tuple(r.strip() for r in roles.split(",") if r.strip())
    if not chosen or set(chosen) - set(ROLES):
        raise typer.BadParameter(f"--roles takes some of {', '.join(ROLES)}, comma-separated")
    started = time.perf_counter()
    try:
        settings = load_settings(config, catalog=catalog, data_dir=data_dir, prompts=prompts,
                                 **{"backend.name": backend, "backend.model": model})
        with progress_bar() as report:
            result, path = run_calibration(settings, users=users, reason_users=reason_users,
                                           permutations=permutations, seed=seed, dialogues=dialogues,
                                           dialogue_cases=dialogue_cases, roles=chosen,
                                           command=" ".join(["genre-agent", *sys.argv[1:]]), progress=report)
    except GenreAgentError as exc:
        fail(exc)
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

    from genre_agent.llm.adapters import Checkpoint, adapters_dir
    from genre_agent.llm.prompts import Prompts, resolve_prompts_dir
    from genre_agent.settings import load_settings
    from genre_agent.tune.run import tune_and_calibrate
    from genre_agent.tune.train import TrainConfig

    started = time.perf_counter()

    def checkpoint(point: Checkpoint) -> None:
        what = "base model" if point.examples == 0 else f"checkpoint after {point.examples} examples"
        loss = f", training loss {point.train_loss:.3f}" if point.train_loss is not None else ""
        err.print(f"{what}: validation NDCG@10 {point.val_ndcg10:.4f} ({point.seconds:.0f} s{loss})")

    try:
        flags = {"catalog": catalog, "data_dir": data_dir, "prompts": prompts, "backend.name": "llamacpp",
                 "backend.model": model}
        settings = load_settings(config, **flags, **{"backend.llamacpp.adapter": "none"})
        with progress_bar() as report:
            result = tune_and_calibrate(settings, load_settings(config, **flags) if calibrate_after else None,
                                        Prompts(resolve_prompts_dir(settings.prompts)),
                                        budget_minutes=budget_minutes, val_users=val_users,
                                        config=TrainConfig(threads=threads, seed=seed),
                                        command=" ".join(["genre-agent", *sys.argv[1:]]), progress=report,
                                        on_checkpoint=checkpoint)
    except GenreAgentError as exc:
        fail(exc)
        return
    trained, adapter = result.trained, result.adapter
    err.print(f"base model: validation NDCG@10 {trained.base_val_ndcg10:.4f} on {val_users} users; "
              f"{result.info['train_examples']} training examples ({result.info['mean_prompt_tokens']} tokens "
              f"on average); trained {trained.seconds:.0f} s")
    if adapter is None:
        err.print("the budget ended before a first checkpoint: no adapter written; raise --budget-minutes.")
        return
    out.print(f"adapter {adapter.file}: {adapter.size / 1e6:.1f} MB, sha256 {adapter.sha256[:16]}…, "
              f"validation NDCG@10 {adapter.base_val_ndcg10:.4f} -> {adapter.best.val_ndcg10:.4f} "
              f"(after {adapter.best.examples} examples)")
    if not adapter.beats_base:
        err.print("it did not beat the base model on validation: answers keep the base model (set "
                  f"backend.llamacpp.adapter = \"{adapter.path(adapters_dir(settings.data_dir))}\" to measure it "
                  "anyway).")
    elif result.calibration is not None:
        out.print(_calibration_table(result.calibration[0]))
        err.print(f"saved {result.calibration[1]}")
    else:
        err.print("not calibrated (--no-calibrate): answers ask the tuned model for every role until "
                  "`genre-agent calibrate` measures it, or set backend.llamacpp.adapter = \"none\".")
    err.print(f"done in {time.perf_counter() - started:.0f} s")


app.command()(serve)
app.command()(mcp)
app.command()(index)
app.command()(fit)
app.command()(models)
app.add_typer(prompts_app, name="prompts")
app.add_typer(config_app, name="config")
app.add_typer(feedback_app, name="feedback")


if __name__ == "__main__":
    app()
