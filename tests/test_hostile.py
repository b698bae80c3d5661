"""Hostile input and careless operators (issue 13, points 6 and 7): each input from the issue gives a clear
error from the named family, or works; never a traceback, never a write outside the data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from genre_agent.chat.agent import Agent
from genre_agent.data.catalog import load_catalog
from genre_agent.errors import CatalogError, ConfigError, TemplateError
from genre_agent.interfaces.cli import app
from genre_agent.interfaces.repl import Repl
from genre_agent.interfaces.template_check import check
from genre_agent.llm.backends import FakeBackend
from genre_agent.llm.prompts import Prompts
from genre_agent.settings import load_settings

from conftest import TINY, tiny_settings

runner = CliRunner()


def _cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def _set_toml(tiny_dir: Path, old: str, new: str) -> None:
    path = tiny_dir / "catalog.toml"
    path.write_text(path.read_text().replace(old, new))


# -- point 7: path traversal --------------------------------------------------------------------------------
def test_a_catalog_name_cannot_leave_the_data_dir(tiny_dir: Path, tmp_path: Path) -> None:
    _set_toml(tiny_dir, 'name = "tiny"', 'name = "a/../../../../escape2"')
    with pytest.raises(CatalogError, match="name"):
        load_catalog(str(tiny_dir))
    data = tmp_path / "deep" / "er" / "data"
    code, _, err = _cli("index", "--catalog", str(tiny_dir), "--data-dir", str(data))
    assert code == 2 and "catalog.toml" in err
    assert not [p for p in tmp_path.rglob("*escape2*")]


# -- point 6: catalogs ----------------------------------------------------------------------------------------
def test_an_infinite_timestamp_names_the_row(tiny_dir: Path) -> None:
    ratings = tiny_dir / "ratings.csv"
    lines = ratings.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",inf"
    ratings.write_text("\n".join(lines) + "\n")
    with pytest.raises(CatalogError, match=r"ratings.csv: column 'ts' has a non-number 'inf' at row 3 \(line 4\)"):
        load_catalog(str(tiny_dir))


def test_a_metadata_column_named_class(tiny_dir: Path) -> None:
    items = pd.read_csv(tiny_dir / "items.csv", dtype=str)
    items["class"] = "A"
    items.to_csv(tiny_dir / "items.csv", index=False)
    _set_toml(tiny_dir, 'year_from_title = true', 'year_from_title = true\nmetadata = ["class"]')
    _set_toml(tiny_dir, 'template = "{name}.', 'template = "{name} ({class}).')
    catalog = load_catalog(str(tiny_dir))
    assert catalog.items.at["1", "text"].startswith("Star Quest (A).")


@pytest.mark.parametrize(("fmt", "table", "column"), [("jsonl", "items", "title"), ("parquet", "ratings", "user")])
def test_null_titles_and_user_ids_are_reported(tiny_dir: Path, fmt: str, table: str, column: str) -> None:
    df = pd.read_csv(tiny_dir / f"{table}.csv", dtype=str)
    df[column] = df[column].astype(object)
    df.loc[2, column] = None
    (tiny_dir / f"{table}.csv").unlink()
    if fmt == "jsonl":
        df.to_json(tiny_dir / f"{table}.jsonl", orient="records", lines=True)
    else:
        df.to_parquet(tiny_dir / f"{table}.parquet")
    _set_toml(tiny_dir, f"{table}.csv", f"{table}.{fmt}")
    with pytest.raises(CatalogError, match=rf"column '{column}' is empty at row 3"):
        load_catalog(str(tiny_dir))


def test_a_very_long_title_is_cut_and_reported(tiny_dir: Path) -> None:
    items = pd.read_csv(tiny_dir / "items.csv", dtype=str)
    items.loc[0, "title"] = "Star Quest " + "x" * 1_000_000 + " (1990)"
    items.to_csv(tiny_dir / "items.csv", index=False)
    catalog = load_catalog(str(tiny_dir))
    assert len(catalog.items.at["1", "title"]) <= 300
    assert any("cut" in line for line in catalog.report.lines())


# -- point 6: settings ----------------------------------------------------------------------------------------
def test_rules_where_that_is_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENRE_AGENT_RULES__WHERE", "notjson")
    with pytest.raises(ConfigError, match="GENRE_AGENT_RULES__WHERE"):
        load_settings()


@pytest.mark.parametrize("key", ["n_ctx", "threads"])
def test_negative_context_or_threads(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv(f"GENRE_AGENT_BACKEND__LLAMACPP__{key.upper()}", "-4")
    with pytest.raises(ConfigError, match="greater than or equal"):
        load_settings()


# -- point 6: templates ---------------------------------------------------------------------------------------
def test_a_non_utf8_template(tmp_path: Path) -> None:
    code, _, _ = _cli("prompts", "init", str(tmp_path / "mine"))
    assert code == 0
    rank = tmp_path / "mine" / "rank.j2"
    rank.write_bytes(rank.read_bytes() + b"\n\xff\xfe caf\xe9\n")
    problems = check(tmp_path / "mine")
    assert problems and "UTF-8" in str(problems[0]) and "rank.j2" in str(problems[0])
    with pytest.raises(TemplateError, match="UTF-8"):
        Prompts(tmp_path / "mine")


def test_a_template_loop_of_ten_billion_steps_is_stopped(tmp_path: Path) -> None:
    code, _, _ = _cli("prompts", "init", str(tmp_path / "mine"))
    assert code == 0
    rank = tmp_path / "mine" / "rank.j2"
    rank.write_text(rank.read_text() + "{% for i in range(100000) %}{% for j in range(100000) %}"
                    "{% endfor %}{% endfor %}\n")
    problems = check(tmp_path / "mine")
    assert problems and "loop steps" in str(problems[0])
    too_big = tmp_path / "mine" / "rank.j2"
    too_big.write_text(rank.read_text().replace("range(100000)", "range(10**10)", 1))
    assert "range" in str(check(tmp_path / "mine")[0]).lower()


# -- point 6: square brackets (rich markup) -----------------------------------------------------------------
def test_square_brackets_in_a_query_and_a_title(tiny_dir: Path, tmp_path: Path) -> None:
    items = tiny_dir / "items.csv"
    items.write_text(items.read_text().replace("Laugh Riot (1995)", "Arabian Nights [and Days] (1995)"))
    code, out, _ = _cli("recommend", "--catalog", str(tiny_dir), "--data-dir", str(tmp_path),
                        "--query", "[/x] space", "-k", "6", "--backend", "fake")
    assert code == 0
    assert '"[/x] space"' in out and "[and Days]" in out


def test_square_brackets_in_the_repl(tmp_path: Path) -> None:
    agent = Agent.from_config(tiny_settings(tmp_path, k=2), backend=FakeBackend())
    console = Console(record=True, width=200)
    repl = Repl(agent, console)
    repl.command("/user [/x]")
    repl.turn(lambda cancel, first, reason: agent.chat("terminal", "[/x] I loved Star Quest [bold]",
                                                       cancel=cancel, on_first=first, on_reason=reason))
    text = console.export_text()
    assert "'[/x]' has no ratings" in text
    assert "Star Quest II" in text


# -- point 6: caches and the data directory -------------------------------------------------------------------
def _recommend(data: Path) -> tuple[int, str, str]:
    return _cli("recommend", "--catalog", str(TINY), "--data-dir", str(data), "--user", "a", "--json",
                "--backend", "fake")


def test_a_truncated_cf_cache_is_rebuilt(tmp_path: Path) -> None:
    code, before, _ = _recommend(tmp_path)
    assert code == 0
    cut = list((tmp_path / "cf").rglob("*.np*"))
    for f in cut:
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    with pytest.warns(UserWarning, match="unreadable"):
        code, after, _ = _recommend(tmp_path)
    assert code == 0 and cut
    ids = [[r["item_id"] for r in json.loads(out)["recommendations"]] for out in (before, after)]
    assert ids[0] == ids[1]


def test_a_garbage_feedback_database_says_what_to_do(tmp_path: Path) -> None:
    assert _recommend(tmp_path)[0] == 0
    (tmp_path / "feedback.sqlite3").write_bytes(b"this is not a database" * 100)
    agent_run = runner.invoke(app, ["chat", "--catalog", str(TINY), "--data-dir", str(tmp_path),
                                    "--backend", "fake"], input="")
    assert agent_run.exit_code == 2, agent_run.exception
    assert "feedback.sqlite3" in agent_run.stderr and "move it aside" in agent_run.stderr


def test_a_corrupted_chroma_store_says_what_to_delete(tmp_path: Path) -> None:
    assert _recommend(tmp_path)[0] == 0
    (tmp_path / "chroma" / "chroma.sqlite3").write_bytes(b"garbage" * 1000)
    code, _, err = _recommend(tmp_path)
    assert code == 2 and f"rm-r{tmp_path / 'chroma'}" in "".join(err.split())  # rich wraps long lines
    assert "Delete the folder" in " ".join(err.split())


def test_a_data_dir_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("a file where the data directory should be")
    code, _, err = _recommend(data)
    assert code == 2 and "writable folder" in " ".join(err.split())


def _read_only(data: Path, *args: str, stdin: str = "",
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`genre-agent ARGS` with `data` mounted read-only: a bind mount in a private mount namespace (util-linux
    `unshare`), which refuses writes to root too (EROFS), where permission bits do not; it ends with the
    process. Skips where this machine cannot make one."""
    mount = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    prefix = ["unshare", "--mount", "--map-root-user", "sh", "-c", mount, "sh", str(data)]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no read-only mount here: {probe.stderr.strip()}")
    return subprocess.run([*prefix, sys.executable, "-m", "genre_agent.interfaces.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"},
                          cwd=cwd)


def test_a_read_only_data_dir_serves_read_only_commands(tmp_path: Path) -> None:
    assert _recommend(tmp_path)[0] == 0  # built while writable
    where = ["--catalog", str(TINY), "--data-dir", str(tmp_path), "--backend", "fake"]
    liked = subprocess.run([sys.executable, "-m", "genre_agent.interfaces.cli", "chat", *where],
                           input="I loved Star Quest\n", capture_output=True, text=True, timeout=600)
    assert liked.returncode == 0 and "Traceback" not in liked.stderr, liked.stderr  # the CF model is now stale
    relative = ["--catalog", str(TINY), "--data-dir", tmp_path.name, "--backend", "fake"]
    ranked = _read_only(tmp_path, "recommend", *relative, "--user", "a", "--json", cwd=tmp_path.parent)
    assert ranked.returncode == 0, ranked.stderr
    assert json.loads(ranked.stdout[ranked.stdout.index("{"):])["recommendations"]
    assert "used without being saved" in ranked.stderr  # trained again in memory, with the stored like
    listed = _read_only(tmp_path, "feedback", "list", "--data-dir", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    chat = _read_only(tmp_path, "chat", *where, stdin="something funny\nI loved Star Quest\n/like 1\n")
    assert chat.returncode == 0 and "Traceback" not in chat.stdout + chat.stderr, chat.stdout + chat.stderr
    assert "Laugh Riot" in chat.stdout  # the turns that store nothing are answered
    said = " ".join(chat.stdout.split())
    assert said.count("cannot store feedback") == 2 and "read-only data directory" in said  # the others say why
    assert "read-only: reading a temporary copy" in chat.stderr

