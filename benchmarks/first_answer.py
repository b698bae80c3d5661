"""The first answer after a fresh install: `genre-agent chat` on an empty data directory, timed to its first list.

Runs the real command in a subprocess (a new data directory each run), sends one message on standard input and
times the wall clock until the process has printed its answer and ended. Rows: the bundled catalog as shipped
(item vectors from the shipped vector file), and the same catalog with the vector file left out (every item
embedded: the baseline, measured in the same run), each the given number of times.

    python benchmarks/first_answer.py [--runs 1] [--catalog movielens] [--message "A vampire movie."]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from genre_agent.data.catalog import resolve_catalog_dir


def first_answer(catalog: Path, message: str) -> float:
    """Seconds from starting `genre-agent chat` on an empty data directory to its answer."""
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "GENRE_AGENT_DATA_DIR": data, "GENRE_AGENT_CATALOG": str(catalog)}
        started = time.perf_counter()
        done = subprocess.run(["genre-agent", "chat"], input=f"{message}\n", env=env, capture_output=True,
                              text=True, timeout=1800)
        seconds = time.perf_counter() - started
    if done.returncode != 0 or not re.search(r"│\s+1\s+│", done.stdout):  # the first row of the list
        raise SystemExit(f"no list in the answer (exit {done.returncode}):\n{done.stdout[-2000:]}\n"
                         f"{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--catalog", default="movielens")
    ap.add_argument("--message", default="A vampire movie.")
    args = ap.parse_args()
    shipped = resolve_catalog_dir(args.catalog)
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / shipped.name
        shutil.copytree(shipped, bare)
        toml = bare / "catalog.toml"
        toml.write_text(re.sub(r"(?m)^(about_)?vectors\s*=.*\n", "", toml.read_text()))
        rows = {"shipped vectors": [first_answer(shipped, args.message) for _ in range(args.runs)],
                "every item embedded (baseline)": [first_answer(bare, args.message) for _ in range(args.runs)]}
    base = statistics.median(rows["every item embedded (baseline)"])
    print(f"| {args.catalog}: first `genre-agent chat` answer, empty data directory | median s | runs | "
          "ratio to baseline |\n|---|---:|---:|---:|")
    for name, times in rows.items():
        median = statistics.median(times)
        print(f"| {name} | {median:.1f} | {len(times)} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
