"""The command line as a user runs it (in-process, fake LLM backend)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from genre_agent.interfaces.cli import app

from conftest import TINY

runner = CliRunner()


def _run(*args: str, data_dir: Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir), "--backend", "fake"])
    return result.exit_code, result.stdout, result.stderr


def test_recommend_json(tmp_path: Path) -> None:
    code, out, _ = _run("recommend", "--catalog", str(TINY), "--user", "alice", "-k", "2", "--json",
                        data_dir=tmp_path)
    assert code == 0
    data = json.loads(out)
    assert data["recommendations"][0]["item_id"] == "2"
    assert data["fallback"] is True and data["k"] == 2


def test_recommend_table_and_filters(tmp_path: Path) -> None:
    code, out, err = _run("recommend", "--catalog", str(TINY), "--user", "alice", "--exclude-genre", "Sci-Fi",
                          "--year-min", "1996", data_dir=tmp_path)
    assert code == 0
    assert "Laugh Riot Again (1997)" in out and "Star Quest" not in out
    assert "fallback" in err


def test_a_warning_reads_as_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "genre_agent.interfaces.cli", "recommend", "--catalog", str(TINY),
                           "--user", "alice", "-k", "2", "--data-dir", str(tmp_path), "--backend", "fake"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0
    assert "warning: the learned ranker of this catalog has not been trained" in done.stderr
    assert "UserWarning" not in done.stderr and ".py:" not in done.stderr


def test_fake_responses_from_a_file(tmp_path: Path) -> None:
    answers = tmp_path / "answers.txt"
    answers.write_text(json.dumps({"recommendations": [
        {"item_id": "6", "reason": "Sci-Fi like Star Quest (1990), which you rated highly."}]}) + "\n")
    result = runner.invoke(app, ["recommend", "--catalog", str(TINY), "--user", "alice", "-k", "1", "--json",
                                 "--data-dir", str(tmp_path / "d"), "--backend", "fake", "--model", str(answers)])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["fallback"] is False and data["recommendations"][0]["item_id"] == "6"


def test_unknown_user_exits_2(tmp_path: Path) -> None:
    code, _, err = _run("recommend", "--catalog", str(TINY), "--user", "zed", data_dir=tmp_path)
    assert code == 2 and "has no ratings" in err


def test_bad_catalog_exits_non_zero_and_writes_nothing(tmp_path: Path, tiny_dir: Path) -> None:
    (tiny_dir / "items.csv").write_text("id,title\n1,A (1990)\n1,B (1991)\n")
    data_dir = tmp_path / "data"
    code, _, err = _run("recommend", "--catalog", str(tiny_dir), "--user", "alice", data_dir=data_dir)
    assert code == 2
    assert "items.csv" in err and "different titles" in err
    assert not data_dir.exists()


def test_bad_where_is_reported(tmp_path: Path) -> None:
    code, _, err = _run("recommend", "--catalog", str(TINY), "--user", "alice", "--where", "director=x",
                        data_dir=tmp_path)
    assert code == 2 and "director" in err


def test_index_builds_then_reuses(tmp_path: Path) -> None:
    result = runner.invoke(app, ["index", "--catalog", str(TINY), "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "embedded 6, reused 0; CF trained" in result.stdout
    again = runner.invoke(app, ["index", "--catalog", str(TINY), "--data-dir", str(tmp_path)])
    assert again.exit_code == 0 and "embedded 0, reused 6; CF reused" in again.stdout


def test_models_lists_the_default() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and "smollm2-135m" in result.stdout


def test_help_for_every_command() -> None:
    for command in ("recommend", "index", "models"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.stdout
