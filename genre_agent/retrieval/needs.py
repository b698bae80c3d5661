"""Needs matched by meaning: the words of a request mapped to the catalog's own genres and tags.

The vocabulary is learned from the catalog itself: every genre, and every tag given to at least two items.
Each is embedded once (next to the request's words, with the same sentence model), so "tear jerker" finds the
tag "tearjerking", "scary" the genre Horror and "feel good" the tag "feel-good", without a hand list per word.
An item then scores by the needs it carries — never by words of its title, which a plain vector search over
"title. genres. tags." lets dominate ("tear jerker" -> The Man Who Cried).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

MIN_ITEMS = 2  # a tag is part of the vocabulary once it describes this many items
THRESHOLD = 0.6  # cosine between a request phrase and a genre or tag for it to count as that need


def _spellings(name: str) -> set[str]:
    """How a person writes a genre or tag in words: 'graphic-novels' -> {'graphic novels', 'graphic novel'}."""
    spaced = name.lower().replace("-", " ")
    return {spaced, spaced.removesuffix("s")}


def _part_of(phrase: str, name: str) -> bool:
    """Words that name only part of an entry do not mean it: "cult" is not the tag "cult film", "story" not
    "true story", "white" not "black and white"."""
    return set(phrase.split()) < set(name.lower().replace("-", " ").split())


@dataclass(frozen=True)
class Need:
    phrase: str  # the request's words
    name: str  # the genre or tag they mean
    kind: str  # "genre" or "tag"
    similarity: float


class NeedLexicon:
    """The catalog's genres and tags, embedded, and which items carry each."""

    def __init__(self, items: pd.DataFrame, embed: Callable[[list[str]], np.ndarray],
                 threshold: float = THRESHOLD) -> None:
        self.embed = embed
        self.threshold = threshold
        genres = sorted({g for gs in items["genres"] for g in gs})
        tag_items = Counter(t.lower() for ts in items["tags"] for t in set(ts))
        tags = sorted(t for t, n in tag_items.items() if n >= MIN_ITEMS and t not in {g.lower() for g in genres})
        self.names = [*genres, *tags]
        self.kinds = ["genre"] * len(genres) + ["tag"] * len(tags)
        self.spelled = {form for name in self.names for form in _spellings(name)}
        # a catalog with no genres and no shared tags (only id and title) has no vocabulary: no need matches
        self.vectors = (np.asarray(embed([n.lower() for n in self.names]), dtype=np.float32) if self.names
                        else np.zeros((0, 0), dtype=np.float32))
        column = {name: i for i, name in enumerate(self.names)}
        rows, cols = [], []
        for row, (gs, ts) in enumerate(zip(items["genres"], items["tags"], strict=True)):
            for col in {column[name] for name in (*gs, *(t.lower() for t in ts)) if name in column}:
                rows.append(row)
                cols.append(col)
        # sparse: an item carries a handful of the vocabulary (dense, 1M items x 400 needs would take 1.6 GB)
        self.carries = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                                     shape=(len(items), len(self.names)))

    def match(self, words: str) -> list[Need]:
        """The genres and tags a request's words mean: each word and each pair of neighbouring words is
        compared with the vocabulary; the closest entry above the threshold is kept per phrase. A pair that
        spells an entry's name ("science fiction" for science-fiction) means only that entry, not what its words
        mean alone (the genres science and fiction)."""
        tokens = re.findall(r"[a-z0-9-]+", words.lower())
        pairs = [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
        named = {w for p in pairs if p in self.spelled for w in p.split()}
        phrases = list(dict.fromkeys([*(t for t in tokens if t not in named), *pairs]))
        if not phrases or not self.names:
            return []
        sims = np.asarray(self.embed(phrases), dtype=np.float32) @ self.vectors.T
        out: dict[str, Need] = {}
        for phrase, row in zip(phrases, sims, strict=True):
            best = int(np.argmax(row))
            if row[best] >= self.threshold and not _part_of(phrase, self.names[best]):
                need = Need(phrase, self.names[best], self.kinds[best], float(row[best]))
                if need.name not in out or out[need.name].similarity < need.similarity:
                    out[need.name] = need
        return list(out.values())

    def scores(self, needs: list[Need]) -> np.ndarray:
        """Per item: the summed similarity of the needs it carries (zeros when there are none)."""
        if not needs:
            return np.zeros(self.carries.shape[0])
        column = {name: i for i, name in enumerate(self.names)}
        weights = np.zeros(len(self.names), dtype=np.float32)
        for need in needs:
            weights[column[need.name]] = need.similarity
        return np.asarray(self.carries @ weights, dtype=np.float64)
