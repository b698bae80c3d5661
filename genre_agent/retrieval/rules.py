"""The business rules: which items may be recommended for a request's filters, as boolean masks over the catalog.

Every fact a filter reads (genres, people, countries, language, length, the words of what an item is about, the
words of its title) is indexed once, so a filter costs a few array operations rather than a pass over every
item."""

from __future__ import annotations

import functools
import re

import numpy as np
import pandas as pd

from genre_agent.data.credits import fold, name_key
from genre_agent.filters import Filters

# the countries whose films an English-speaking catalog does not call "foreign"
ENGLISH_SPEAKING = ("United States", "United Kingdom", "Canada", "Australia", "Ireland", "New Zealand")
_WORD = re.compile(r"[a-z]{3,}")  # a word of a title or request that can be shared by chance
_TITLE_STOP = frozenset({"the", "and", "for", "with", "from", "les", "der", "die", "das"})


def stem(word: str) -> str:
    """The start of a word that its forms share: "dystopian" -> "dystopi", "depressing" -> "depress"."""
    for suffix in ("ness", "ing", "ian", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: len(word) - len(suffix)] + ("i" if suffix == "ian" else "")
    return word


def genre_masks(items: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per genre (lower case), which items carry it: built once, so a filter costs a few array operations
    rather than a pass over every item's genres (at 100k items that pass was 70% of a request)."""
    masks: dict[str, np.ndarray] = {}
    for row, genres in enumerate(items["genres"]):
        for genre in genres:
            masks.setdefault(genre.lower(), np.zeros(len(items), dtype=bool))[row] = True
    return masks


def _column(items: pd.DataFrame, name: str, empty: object) -> list[object]:
    return items[name].tolist() if name in items.columns else [empty] * len(items)


class ItemMasks:
    """The catalog's facts indexed for filtering."""

    def __init__(self, items: pd.DataFrame) -> None:
        self.items = items
        self.genres = genre_masks(items)
        self.people: dict[frozenset[str], list[int]] = {}
        for row, credits in enumerate(_column(items, "people", {})):
            for name in {n for names in credits.values() for n in names}:  # type: ignore[attr-defined]
                self.people.setdefault(name_key(name), []).append(row)
        self.countries = [{c.lower() for c in cs} for cs in _column(items, "countries", ())]  # type: ignore[attr-defined]
        self.languages = [set(fold(str(lang)).split()) for lang in _column(items, "language", "")]
        minutes = items["minutes"] if "minutes" in items.columns else pd.Series(pd.NA, index=items.index)
        self.minutes = minutes.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)

    @functools.cached_property
    def texts(self) -> pd.Series:
        """What each item is about, in lower case: its tags, summary and description (never its title)."""
        tags = self.items["tags"].map(" ; ".join)
        return (tags + " " + self.items["summary"] + " " + self.items["description"]).str.lower()

    @functools.cached_property
    def _title_words(self) -> tuple[list[frozenset[str]], dict[str, list[int]]]:
        """Each item's title words (three letters or more, not "the"/"and"...), and the rows of each word."""
        each = [frozenset(_WORD.findall(str(title).lower())) - _TITLE_STOP for title in self.items["title"]]
        rows: dict[str, list[int]] = {}
        for row, words in enumerate(each):
            for word in words:
                rows.setdefault(word, []).append(row)
        return each, rows

    def titled(self, words: str) -> np.ndarray:
        """Per catalog row, whether the item's title has one of these words but not all of its title's
        words are among them ("space" in Office Space; "jaws" names Jaws, whose title it all is)."""
        said = frozenset(_WORD.findall(words.lower()))
        each, rows = self._title_words
        out = np.zeros(len(self.items), dtype=bool)
        for row in {r for word in said for r in rows.get(word, [])}:
            out[row] = not each[row] <= said
        return out

    def credits(self, names: list[str]) -> np.ndarray:
        """Items crediting one of these people."""
        out = np.zeros(len(self.items), dtype=bool)
        for name in names:
            out[self.people.get(name_key(name), [])] = True
        return out

    def places(self, countries: list[str], languages: list[str], national: bool = True) -> np.ndarray:
        """Items from one of `countries` or in one of `languages`; `national`: not made with an English-speaking
        country that was not asked for ("a French comedy" is not a Hollywood co-production)."""
        wanted = {c.lower() for c in countries}
        spoken = {fold(lang) for lang in languages}
        others = {c.lower() for c in ENGLISH_SPEAKING} - wanted if national else set()
        return np.array([(bool(cs & wanted) or bool(ls & spoken)) and not cs & others
                         for cs, ls in zip(self.countries, self.languages, strict=True)])

    def words(self, denied: list[str]) -> np.ndarray:
        """Items whose tags or description have one of these words or phrases, in any of its forms (a word's
        `stem` starts a word of the text)."""
        pattern = "|".join(re.escape(stem(s.lower()) if " " not in s else s.lower()) for s in denied)
        return self.texts.str.contains(rf"(?<![a-z0-9])(?:{pattern})", regex=True).to_numpy(dtype=bool)

    def allowed(self, filters: Filters, seen: set[str]) -> np.ndarray:
        """True where an item passes every filter."""
        items = self.items
        ok = np.ones(len(items), dtype=bool)
        none = np.zeros(len(items), dtype=bool)
        if filters.include_genres:
            ok &= np.logical_or.reduce([self.genres.get(g.lower(), none) for g in filters.include_genres])
        for genre in filters.require_genres:
            ok &= self.genres.get(genre.lower(), none)
        for genre in filters.exclude_genres:
            ok &= ~self.genres.get(genre.lower(), none)
        year = items["year"]
        if filters.year_min is not None:
            ok &= (year >= filters.year_min).fillna(False).to_numpy(dtype=bool)
        if filters.year_max is not None:
            ok &= (year <= filters.year_max).fillna(False).to_numpy(dtype=bool)
        if filters.people:
            ok &= self.credits(filters.people)
        if filters.exclude_people:
            ok &= ~self.credits(filters.exclude_people)
        if filters.countries or filters.languages:
            ok &= self.places(filters.countries, filters.languages)
        if filters.exclude_countries:
            known = np.array([bool(cs) for cs in self.countries])
            ok &= known & ~self.places(filters.exclude_countries, [], national=False)
        with np.errstate(invalid="ignore"):  # an unknown length passes no length filter
            if filters.minutes_min is not None:
                ok &= self.minutes >= filters.minutes_min
            if filters.minutes_max is not None:
                ok &= self.minutes <= filters.minutes_max
        if filters.exclude_words:
            ok &= ~self.words(filters.exclude_words)
        for column, value in filters.where.items():
            ok &= (items[column].astype(str).str.lower() == str(value).lower()).to_numpy()
        if filters.only_items is not None:
            ok &= items.index.isin(filters.only_items)
        blocked = set(filters.exclude_items) | (seen if filters.exclude_seen else set())
        if blocked:  # by title too: the catalog may list the same film under two ids
            titles = items.loc[items.index.intersection(list(blocked)), "title"]
            ok &= ~(items.index.isin(list(blocked)) | items["title"].isin(titles).to_numpy())
        return ok

    def known_minutes(self) -> int:
        """How many items have a known length."""
        return int(np.isfinite(self.minutes).sum())
