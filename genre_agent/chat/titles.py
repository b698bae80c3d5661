"""Resolve titles written by a person (or proposed by a model) to catalog item ids, by fuzzy match.

A title is accepted only if it matches a catalog name closely; titles a model invents do not match and are
dropped, so nothing downstream ever trusts a made-up title.
"""

from __future__ import annotations

import re

import pandas as pd
from rapidfuzz import fuzz, process

_ARTICLE_LAST = re.compile(r"^(.*), (the|a|an|les|la|le|il|el|die|der|das)$", re.I)
_AKA = re.compile(r"\s*\((?:a\.k\.a\.|aka)[^)]*\)|\s*\([^)]*\)$", re.I)
_NON_WORD = re.compile(r"[^a-z0-9 ]+")


def normalise(title: str) -> str:
    """'Matrix, The (1999)' -> 'the matrix'; lower case, no year, no a.k.a., article first."""
    text = _AKA.sub("", title.strip())
    text = re.sub(r"\s*\(\d{4}\)\s*$", "", text)
    match = _ARTICLE_LAST.match(text)
    if match:
        text = f"{match.group(2)} {match.group(1)}"
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


class TitleIndex:
    """Normalised catalog names for exact and fuzzy lookup; popular items win ties."""

    def __init__(self, items: pd.DataFrame, popularity: pd.Series | None = None) -> None:
        names = items["title"].map(normalise)
        order = (popularity.reindex(items.index).fillna(0) if popularity is not None
                 else pd.Series(0, index=items.index)).sort_values(ascending=False, kind="mergesort")
        self.by_name: dict[str, str] = {}
        for item_id in order.index:  # most popular first: it keeps the name when titles collide
            self.by_name.setdefault(names[item_id], str(item_id))
        self.names = list(self.by_name)
        self._titles: dict[str, str] = {str(k): str(v) for k, v in items["title"].items()}

    def title_of(self, item_id: str) -> str:
        return self._titles.get(item_id, item_id)

    def resolve(self, title: str, cutoff: float = 88.0) -> str | None:
        """The item id of the closest catalog title, or None if nothing is close enough."""
        key = normalise(title)
        if not key:
            return None
        if key in self.by_name:
            return self.by_name[key]
        best = process.extractOne(key, self.names, scorer=fuzz.ratio, score_cutoff=cutoff)
        return self.by_name[best[0]] if best else None

    def find_in_text(self, text: str, max_words: int = 8) -> list[str]:
        """Item ids of catalog titles mentioned in free text, longest mentions first, in order of appearance."""
        words = normalise(text).split()
        found: list[tuple[int, str]] = []
        used = [False] * len(words)
        for size in range(min(max_words, len(words)), 0, -1):
            for start in range(len(words) - size + 1):
                if any(used[start : start + size]):
                    continue
                phrase = " ".join(words[start : start + size])
                if size == 1 and len(phrase) < 5:
                    continue  # single short words ("it", "up") are names of obscure films
                item = self.by_name.get(phrase)
                if item is not None:
                    found.append((start, item))
                    used[start : start + size] = [True] * size
        return [item for _, item in sorted(found)]
