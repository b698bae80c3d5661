"""Memory and time of loading a catalog whose descriptions file is big and mostly of unknown ids (issue 41.3):
40 items, and a descriptions file of about --mb MB in which only their 40 rows are known (the rest, rows of
ids the catalog lacks, are dropped). Each variant loads the catalog with `load_catalog` in a child process of
its own, so each peak is its own: the code of a git revision (`--before`, extracted with `git archive`) and
the code of this checkout, in the same run. Memory is the child's peak RSS (VmHWM) above its RSS after the
imports (its baseline), also as a multiple of the file's size.

    python benchmarks/catalog_memory.py [--mb 200] [--format jsonl|csv] [--before efa1ace] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ITEMS = 40
WORDS = ("night city river ghost iron summer last silent golden broken paper winter empire red lost secret "
         "wild blue dark glass heart storm shadow garden king queen star machine ocean fire road").split()

CHILD = """
import json, sys, time
from genre_agent.data.catalog import load_catalog

def rss(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024

baseline = rss("VmRSS:")
started = time.perf_counter()
catalog = load_catalog(sys.argv[1])
seconds = time.perf_counter() - started
described = int((catalog.items["summary"] != "").sum())
print(json.dumps({"seconds": seconds, "baseline_mb": baseline, "peak_mb": rss("VmHWM:"), "described": described}))
"""


def write_catalog(root: Path, mb: int, form: str) -> Path:
    """items.csv (40 items) and descriptions.FORM of about `mb` MB: one row per item, in the middle of rows of
    unknown ids, each about 2,000 characters of words."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "items.csv").write_text("id,title\n" + "".join(f"{n},Item {n}\n" for n in range(ITEMS)))
    path = root / f"descriptions.{form}"
    text = " ".join(WORDS[(n * 7) % len(WORDS)] for n in range(330)).capitalize() + "."
    rows = mb * 2**20 // (len(text) + 30)
    known = {rows * (n + 1) // (ITEMS + 1): str(n) for n in range(ITEMS)}
    with path.open("w", encoding="utf-8") as out:
        out.write("item,summary\n" if form == "csv" else "")
        for row in range(rows):
            item = known.get(row, f"x{row}")
            row_text = f'{item},"{text}"' if form == "csv" else json.dumps({"item": item, "summary": text})
            out.write(row_text + "\n")
    (root / "catalog.toml").write_text(
        'name = "big-descriptions"\n[items]\npath = "items.csv"\nid = "id"\ntitle = "title"\n'
        f'[descriptions]\npath = "{path.name}"\nitem = "item"\nsummary = "summary"\n')
    return path


def export(revision: str, into: Path) -> Path:
    """The package as it was at `revision`, extracted into `into`."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "genre_agent"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def measure(code: Path, catalog: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(catalog)], env=env, capture_output=True, text=True,
                          check=True, cwd=catalog.parent)  # not this checkout's folder: `-c` puts it first
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    parser.add_argument("--before", default="efa1ace", help="the git revision measured as 'before'")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="catalog-memory-"))
    started = time.perf_counter()
    path = write_catalog(work / "catalog", args.mb, args.format)
    size_mb = path.stat().st_size / 2**20
    print(f"{path.name}: {size_mb:.0f} MB, {ITEMS} known rows (written in {time.perf_counter() - started:.0f} s)")
    variants = {f"before ({args.before})": export(args.before, work / "before"), "after (this checkout)": ROOT}
    print("| code | load s | baseline MB | peak MB | peak above baseline MB | × file size | items described |")
    print("|---|---|---|---|---|---|---|")
    for name, code in variants.items():
        got = measure(code, work / "catalog")
        above = got["peak_mb"] - got["baseline_mb"]
        print(f"| {name} | {got['seconds']:.1f} | {got['baseline_mb']:.0f} | {got['peak_mb']:.0f} | {above:.0f} | "
              f"{above / size_mb:.2f} | {got['described']:.0f} |")


if __name__ == "__main__":
    main()
