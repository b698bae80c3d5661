"""Make the bundled movie catalog's descriptions from the Wikipedia plots in ../shared/datasets/movie-plots.

    python scripts/make_movie_descriptions.py [PLOTS_JSONL_GZ] [OUT_JSONL_GZ]

Writes one JSON object a line: `movieId`, `summary` (what the film is about, shown to people and to the model)
and `plot_start` (the plot's first MATCH_WORDS words, as they are: what is embedded for matching; never shown,
since it goes on past the opening). The licence notice (catalogs/movielens/PLOTS-LICENSE.md) ships beside the
file. Deterministic: the same input gives the same bytes (gzip without a timestamp).

The summary is the sentence of the plot's first part (the sentences inside `plot_start` and in the plot's first
third: nothing from later, so no late twist) whose embedding is closest to the film's own similarity vector (its
title, genres and users' tags, from the shipped vectors.npz), plus the next one when both fit in SUMMARY_CHARS,
without citation marks; sentences read as giving a twist away (TWISTS) are never shown. On the 80 dev films whose
every possible summary was hand-labelled (tests/data/summaries), this said what the film is about in 35, more
than the first sentence (17), the sentence closest to the `about` vector (29), to the mean of the first part
(24), cue words (26) or their sums with it (33-35): `python scripts/summary_scorings.py`. The best possible pick
among these sentences says it in 60 of the 80.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import sys
from pathlib import Path

import numpy as np

from genre_agent.data.descriptions import cut_sentences, sentences, uncited
from genre_agent.retrieval.embedding import MiniLMEmbeddingFunction

ROOT = Path(__file__).resolve().parent.parent
PLOTS = ROOT.parent / "shared" / "datasets" / "movie-plots" / "plots.jsonl.gz"
OUT = ROOT / "catalogs" / "movielens" / "descriptions.jsonl.gz"
VECTORS = ROOT / "catalogs" / "movielens" / "vectors.npz"
SUMMARY_CHARS = 300
MATCH_WORDS = 180  # MiniLM reads 256 word pieces at most: ~180 words fill them
FIRST_PART = 1 / 3  # the share of a plot's sentences a summary may come from
# Sentences of a first part that were read as giving a twist away (a long plot's first third can reach one):
# never chosen nor added. Found reading the 120 labelled films (tests/data/summaries); no word list tells a twist
# from a premise ("turns out to be an alien named Paul", "his twin brother"), so they are named one by one.
TWISTS = ("Before he dies, Yoda confirms that Darth Vader",  # Return of the Jedi
          "The spirit of Obi-Wan Kenobi confirms that this other Skywalker is Leia")


def plot_start(plot: str, words: int = MATCH_WORDS) -> str:
    return " ".join(plot.split()[:words])


def first_part(plot: str) -> list[str]:
    """The plot's opening sentences, without citation marks, that lie inside `plot_start` and in its first
    third; at least the first sentence."""
    start = uncited(plot_start(plot))
    every = sentences(uncited(" ".join(plot.split())))
    out: list[str] = []
    for sentence in every[: max(1, math.ceil(len(every) * FIRST_PART))]:
        if not start.startswith(" ".join([*out, sentence])):
            break
        out.append(sentence)
    return out or every[:1]


def twist(sentence: str) -> bool:
    return sentence.startswith(TWISTS)


def summary(part: list[str], best: int, max_chars: int = SUMMARY_CHARS) -> str:
    """Sentence `best` of the first part, with the next one when both fit and it is no twist (cut at a word if it
    alone is long)."""
    out = part[best]
    if best + 1 < len(part) and len(out) + 1 + len(part[best + 1]) <= max_chars and not twist(part[best + 1]):
        out = f"{out} {part[best + 1]}"
    return cut_sentences(out, max_chars)


def choose(parts: list[list[str]], targets: list[np.ndarray | None], embed: MiniLMEmbeddingFunction) -> list[int]:
    """Per plot, the index of the sentence of its first part closest (cosine) to its target vector; the first
    sentence when it has no target or one sentence. Sentences longer than SUMMARY_CHARS, or in TWISTS, are not
    chosen."""
    asked = [(p, i) for p, (part, target) in enumerate(zip(parts, targets, strict=True))
             if target is not None and len(part) > 1 for i in range(len(part))]
    vectors = np.array(embed([parts[p][i] for p, i in asked])) if asked else np.zeros((0, 384))
    best = [0] * len(parts)
    score = [-math.inf] * len(parts)
    for (p, i), vector in zip(asked, vectors, strict=True):
        target = targets[p]
        assert target is not None
        cosine = float(vector @ target / max(float(np.linalg.norm(target)), 1e-12))
        if len(parts[p][i]) <= SUMMARY_CHARS and not twist(parts[p][i]) and cosine > score[p]:
            best[p], score[p] = i, cosine
    return best


def main(plots: Path = PLOTS, out: Path = OUT, vectors: Path = VECTORS) -> None:
    rows = [json.loads(line) for line in gzip.decompress(plots.read_bytes()).decode("utf-8").splitlines()]
    rows.sort(key=lambda r: int(r["movieId"]))
    shipped = np.load(vectors)
    by_id = {str(i): v.astype(np.float32) for i, v in zip(shipped["ids"], shipped["vectors"], strict=True)}
    parts = [first_part(r["plot"]) for r in rows]
    best = choose(parts, [by_id.get(str(r["movieId"])) for r in rows], MiniLMEmbeddingFunction())
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        for row, part, i in zip(rows, parts, best, strict=True):
            line = {"movieId": int(row["movieId"]), "summary": summary(part, i),
                    "plot_start": plot_start(row["plot"])}
            gz.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
    out.write_bytes(buffer.getvalue())
    print(f"wrote {out}: {len(rows)} descriptions, {out.stat().st_size / 2**20:.1f} MB")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:4]))
