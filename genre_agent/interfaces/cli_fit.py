"""`genre-agent fit`: train the learned ranker of the catalog as served."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genre_agent.errors import GenreAgentError
from genre_agent.interfaces.console import (
    AllowOutsideOpt,
    CatalogOpt,
    ConfigOpt,
    DataDirOpt,
    err,
    fail,
    out,
    progress_bar,
)


def fit(
    allow_outside: AllowOutsideOpt = False,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    dialogues: Annotated[list[Path] | None, typer.Option(
        "--dialogues", help="ReDial-format JSONL (repeatable): its dev part trains the ranker of conversations "
        "(default: rank.dialogues)")] = None,
    training_dialogues: Annotated[list[Path] | None, typer.Option(
        "--training-dialogues", help="ReDial-format JSONL of a training split (repeatable), read whole: never a "
        "file whose held-out part `eval --dialogues` reports (default: rank.training_dialogues)")] = None,
    requests: Annotated[list[Path] | None, typer.Option(
        "--requests", help="a request set (repeatable, see tests/data/requests): its dev requests train the "
        "ranker of conversations (default: rank.requests)")] = None,
) -> None:
    """Train the learned ranker (LightGBM LambdaRank) on the catalog's interactions: each user's last liked
    item is held out and learnt as the answer; answers to a catalog user without words then follow it. Given
    dialogues or request sets, also train the ranker of conversations (words, named titles, new users)."""
    from genre_agent.eval.ranker_fit import fit as fit_ranker
    from genre_agent.pipeline import served_catalog
    from genre_agent.settings import load_settings

    try:
        settings = load_settings(config, catalog=catalog, data_dir=data_dir,
                                 **{"catalog_files.allow_outside": allow_outside or None,
                                    "rank.dialogues": dialogues or None, "rank.requests": requests or None,
                                    "rank.training_dialogues": training_dialogues or None})
        with progress_bar() as report:
            result = fit_ranker(settings, served_catalog(settings), report)
    except GenreAgentError as exc:
        fail(exc)
        return
    groups = ", ".join(f"{g} {share:.0%}" for g, share in result.importance.items() if share)
    out.print(f"ranker: {result.users} users, {result.requests} requests, {result.rows} rows, "
              f"{result.trees} trees, {result.size_bytes / 1024:.0f} KB, {result.seconds:.1f} s", markup=False)
    out.print(f"feature groups by gain: {groups}", markup=False)
    if result.conversation_importance is not None:
        talk = ", ".join(f"{g} {share:.0%}" for g, share in result.conversation_importance.items())
        out.print(f"conversations: {result.conversations} read, {result.conversation_requests} requests with an "
                  f"answer among the candidates, {result.conversation_rows} rows", markup=False)
        out.print(f"conversation feature groups by gain: {talk}", markup=False)
    err.print(f"saved {result.path}", markup=False)
