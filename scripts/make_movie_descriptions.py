"""Make the bundled movie catalog's descriptions from the Wikipedia plots in ../shared/datasets/movie-plots.

    python scripts/make_movie_descriptions.py [PLOTS_JSONL_GZ] [OUT_JSONL_GZ]

Writes one JSON object a line: `movieId`, `summary` (the plot's opening sentences, at most SUMMARY_CHARS:
spoiler-free enough to show) and `plot_start` (the plot's first MATCH_WORDS words: what is embedded for matching;
never shown, since it goes on past the opening). The licence notice (catalogs/movielens/PLOTS-LICENSE.md) ships
beside the file. Deterministic: the same input gives the same bytes (gzip without a timestamp).
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

from genre_agent.data.descriptions import cut_sentences

ROOT = Path(__file__).resolve().parent.parent
PLOTS = ROOT.parent / "shared" / "datasets" / "movie-plots" / "plots.jsonl.gz"
OUT = ROOT / "catalogs" / "movielens" / "descriptions.jsonl.gz"
SUMMARY_CHARS = 300  # the opening sentences that fit; the first one is cut with "…" if it alone is longer
MATCH_WORDS = 180  # MiniLM reads 256 word pieces at most: ~180 words fill them


def summary(plot: str, max_chars: int = SUMMARY_CHARS) -> str:
    """The plot's opening sentences that fit in `max_chars` (at least the first, cut with an ellipsis)."""
    return cut_sentences(" ".join(plot.split()), max_chars)


def plot_start(plot: str, words: int = MATCH_WORDS) -> str:
    return " ".join(plot.split()[:words])


def main(plots: Path = PLOTS, out: Path = OUT) -> None:
    rows = [json.loads(line) for line in gzip.decompress(plots.read_bytes()).decode("utf-8").splitlines()]
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        for row in sorted(rows, key=lambda r: int(r["movieId"])):
            line = {"movieId": int(row["movieId"]), "summary": summary(row["plot"]),
                    "plot_start": plot_start(row["plot"])}
            gz.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
    out.write_bytes(buffer.getvalue())
    print(f"wrote {out}: {len(rows)} descriptions, {out.stat().st_size / 2**20:.1f} MB")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:3]))
