"""Compare ways of choosing a movie's summary sentence on the 80 dev films whose every possible summary was
hand-labelled (tests/data/summaries/candidates.jsonl, the rule in that folder's README).

    python scripts/summary_scorings.py

A possible summary is a sentence of the plot's first part with the next one when both fit in 300 characters
(what `make_movie_descriptions.summary` makes); `says_premise` lists the ones labelled as saying what the film
is about. Each scoring picks one per film (sentences over 300 characters and named twists are never picked, as
in the shipped chooser); printed: how many of the 80 picks say the premise, and against the shipped scoring
(cosine to the similarity vector) on how many films each one is right where it is wrong and the reverse. The
best possible pick is printed too: no scoring of these sentences can do better.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from genre_agent.retrieval.embedding import MiniLMEmbeddingFunction

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from make_movie_descriptions import SUMMARY_CHARS, twist  # noqa: E402

CANDIDATES = ROOT / "tests" / "data" / "summaries" / "candidates.jsonl"
MOVIES = ROOT / "catalogs" / "movielens"
# cue words: a goal or conflict ("must", "sets out", "tries to", "is hired", "discovers") against an opener that
# continues a story ("He then", "Meanwhile", "After this") or sets a scene ("The film opens")
GOAL = re.compile(r"\b(must|sets? out|tries to|attempts? to|plans? to|plots? to|is hired|hires?|discovers?"
                  r"|decides? to|seeks?|investigat\w*|to find|to stop|to kill|to rescue|to save|to protect"
                  r"|to steal|to escape|forced to|sent back|in order to|mission|heist|kidnap\w*|wants? to"
                  r"|intends? to|hopes? to|threaten\w*|unless)\b", re.IGNORECASE)
OPENER = re.compile(r"^(he|she|they|it|his|her|their|this|the two|the pair|meanwhile|however|then"
                    r"|after (this|that)|afterwards?|later|soon|eventually|the next (day|morning)|that night"
                    r"|one day|the film (opens|starts|begins))\b", re.IGNORECASE)
NAME = re.compile(r"\b[A-Z][a-z]+\b")
NOT_NAMES = set("""The A An In On At As After When While Before During Despite With Meanwhile However He She They
His Her It This That Their Then Later One Two Three Years Following Since Upon Once Although Though Because By From
For Of To But And Having Soon Eventually Finally Also Even Still Instead There""".split())


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-9)


def main() -> None:
    films = [json.loads(line) for line in CANDIDATES.read_text().splitlines()]
    vectors = {}
    for name in ("vectors", "vectors.about"):
        shipped = np.load(MOVIES / f"{name}.npz")
        pairs = zip(shipped["ids"], shipped["vectors"], strict=True)
        vectors[name] = {int(i): v.astype(np.float32) for i, v in pairs}
    embed = MiniLMEmbeddingFunction()
    features = []
    for film in films:
        s = film["sentences"]
        e = unit(np.array(embed(s)))
        names = Counter(n for x in s for n in NAME.findall(x) if n not in NOT_NAMES)
        main_name = names.most_common(1)[0][0] if names else "\0"
        features.append({
            "similarity": z(e @ unit(vectors["vectors"][film["movieId"]])),
            "about": z(e @ unit(vectors["vectors.about"][film["movieId"]])),
            "mean": z(e @ unit(e.mean(0))),
            "position": -np.arange(len(s), dtype=float),
            "cues": np.array([bool(GOAL.search(x)) - bool(OPENER.match(x)) for x in s], dtype=float),
            "main name": np.array([main_name in x for x in s], dtype=float),
        })
    scorings: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
        "first sentence": lambda f: f["position"],
        "cosine to the similarity vector (shipped)": lambda f: f["similarity"],
        "cosine to the about vector": lambda f: f["about"],
        "cosine to the mean of the first part's sentences": lambda f: f["mean"],
        "cue words (ties: earlier)": lambda f: f["cues"] + 0.01 * f["position"],
        "similarity + about": lambda f: f["similarity"] + f["about"],
        "similarity + 0.5 cue words": lambda f: f["similarity"] + 0.5 * f["cues"],
        "similarity + 0.5 cue words + 0.5 main name":
            lambda f: f["similarity"] + 0.5 * f["cues"] + 0.5 * f["main name"],
        "similarity + position prior (-0.2 a sentence)": lambda f: f["similarity"] + 0.2 * f["position"],
    }
    right: dict[str, list[bool]] = {}
    for name, score in scorings.items():
        right[name] = []
        for film, f in zip(films, features, strict=True):
            s = film["sentences"]
            ok = [i for i, x in enumerate(s) if len(x) <= SUMMARY_CHARS and not twist(x)] or [0]
            values = score(f)
            pick = max(ok, key=lambda i: (values[i], -i))
            right[name].append(pick in film["says_premise"])
    shipped = right["cosine to the similarity vector (shipped)"]
    print(f"| scoring | says the premise (of {len(films)}) | vs shipped: right where it is wrong / the reverse |")
    print("|---|---|---|")
    for name, hits in right.items():
        wins = sum(a and not b for a, b in zip(hits, shipped, strict=True))
        losses = sum(b and not a for a, b in zip(hits, shipped, strict=True))
        print(f"| {name} | {sum(hits)} ({sum(hits) / len(hits):.2f}) | {wins} / {losses} |")
    best = sum(any(i in film["says_premise"] for i, x in enumerate(film["sentences"]) if len(x) <= SUMMARY_CHARS
                   and not twist(x)) for film in films)
    print(f"| best possible pick | {best} ({best / len(films):.2f}) | |")


if __name__ == "__main__":
    main()
