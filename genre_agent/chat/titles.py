"""Resolve titles written by a person (or proposed by a model) to catalog item ids.

People write "The Matrix", "Matrix (1999)", "Dumb and Dumber", "dumb & dumber"; the catalog says
"Matrix, The (1999)" and "Dumb & Dumber (Dumb and Dumber) (1994)". Every catalog title is indexed under each
of its names (the main one and every a.k.a. form in parentheses), normalised the same way as free text:
article first, "&" read as "and", punctuation dropped. A year written next to a title picks among items of the
same name and must be within one year of the catalog's. A series named as Goodreads does ("Harry Potter and the
Sorcerer's Stone (Harry Potter, #1)") is known by its name too: "Harry Potter" names every book of the series
(numbered in it, or titled by its name first: "Harry Potter Schoolbooks Box Set"), while a name that is also a
title ("Twilight", "The Hobbit") names that title. A title is accepted only if it matches a catalog name closely;
titles a model invents do not match and are dropped, so nothing downstream trusts a made-up title.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

import pandas as pd
from rapidfuzz import fuzz, process

_ARTICLES = "the|a|an|les|la|le|il|el|die|der|das|l'"
_ARTICLE_LAST = re.compile(rf"^(.*), ({_ARTICLES})$", re.I)
_PAREN = re.compile(r"\(([^()]*)\)")
_YEAR_AT_END = re.compile(r"\s*\(\s*(\d{4})\s*\)?\s*$")
_AKA_PREFIX = re.compile(r"^(?:a\.k\.a\.|aka)\s*", re.I)
_WORD = re.compile(r"[a-z0-9]+")
# Common words that are also one-word titles ("It", "Her", "Up", "Heat"): a one-word mention counts only when
# written with a capital letter or followed by its year.
_STOPWORDS = frozenset("""a an the and or of to in on for with at by from is are was i im me my you your it its
this that these those he she they we us her him them one up out so not no yes all any some what who how why
when where there here good great love like more new old big little last first next other nothing something anything
everything actually""".split())
# Words that open the next sentence when a message runs on without a stop ("I love Dirty Dancing Can you help",
# "I loved Thor Thank you"): after a found title they are no part of a longer title the catalog lacks.
_OPENERS = frozenset("""can could would will do did does have has had thank thanks please hope oh wow ok okay well
also but just maybe anyway lol haha hmm""".split())


# Nouns after a one-word title that make it say what kind of item is wanted ("zombie films").
_KINDS = frozenset("film films movie movies flick flicks book books novel novels story stories show shows".split())


_LIKE_A = frozenset("kind type sort style".split())
# "a movie about a kid left home alone": words after "about a" describe what it is about
_ABOUT_WHAT = _KINDS | {"something", "anything", "one"}  # "a movie about ...", "something about ..."
_ABOUT_A = re.compile(r"\babout (?:a|an)\b[^.,;:!?]*$", re.IGNORECASE)


def _words(text: str) -> list[str]:
    text = text.lower().replace("&", " and ").replace("'", "").replace("\u2019", "")
    return _WORD.findall(text)


def _article_first(name: str) -> str:
    match = _ARTICLE_LAST.match(name.strip())
    return f"{match.group(2)} {match.group(1)}" if match else name


def normalise(title: str) -> str:
    """'Matrix, The (1999)' -> 'the matrix'; lower case, no year, no a.k.a., article first, '&' -> 'and'."""
    name, _ = split_year(title)
    name = _PAREN.sub(" ", name)
    return " ".join(_words(_article_first(" ".join(name.split()))))


def split_year(title: str) -> tuple[str, int | None]:
    """('Heat', 1995) from 'Heat (1995)'; the year is None when the title has none."""
    match = _YEAR_AT_END.search(title)
    if not match:
        return title.strip(), None
    return title[: match.start()].strip(), int(match.group(1))


def names_of(title: str) -> list[str]:
    """Every normalised name of a catalog title: the main one and each form in parentheses."""
    name, _ = split_year(title)
    main = _PAREN.sub(" ", name)
    out = [" ".join(_words(_article_first(" ".join(main.split()))))]
    for alt in _PAREN.findall(name):
        alt = _AKA_PREFIX.sub("", alt.strip())
        words = " ".join(_words(_article_first(alt)))
        if words and not words.isdigit():
            out.append(words)
    bare = [n.split(" ", 1)[1] for n in out if " " in n and n.split(" ", 1)[0] in ("the", "a", "an")]
    numbered = [v for n in out + bare for v in _volume_forms(n)]
    return [n for n in dict.fromkeys(out + bare + numbered) if n]


_VOLUME = re.compile(r"^(.+?) ((?:vol|volume) )?(\d{1,2})$")
_SERIES = re.compile(r"^(.*?),?\s*#\s*(\d+(?:\.\d+)?)(?:\s*-\s*\d+)?$")


def series_of(title: str) -> list[tuple[str, float]]:
    """The series a title says it belongs to, with its number: 'Dune Messiah (Dune Chronicles #2)' ->
    [('dune chronicles', 2.0)]; several when the parentheses list several ('(Harry Bosch, #7; Terry McCaleb, #2)');
    the name also without a leading article. None for a title without a numbered series."""
    name, _ = split_year(title)
    out = []
    for group in _PAREN.findall(name):
        for part in group.split(";"):
            match = _SERIES.match(part.strip())
            if not match:
                continue
            words = " ".join(_words(_article_first(match.group(1))))
            bare = words.split(" ", 1)[1] if words.split(" ", 1)[0] in ("the", "a", "an") and " " in words else ""
            out += [(n, float(match.group(2))) for n in dict.fromkeys([words, bare]) if n]
    return out


def _volume_forms(name: str) -> list[str]:
    """'kill bill vol 2' and 'guardians of the galaxy 2' are also written with 'vol', 'volume' or neither;
    a volume 1 also by its bare name ("Kill Bill")."""
    match = _VOLUME.match(name)
    if not match:
        return []
    stem, volume, number = match.groups()
    first = [stem] if volume and number == "1" else []
    return [f"{stem} {number}", f"{stem} vol {number}", f"{stem} volume {number}", *first]


@dataclass(frozen=True)
class Mention:
    """A catalog title found in free text: its item and where it is written (character offsets). A series
    named by its name is its first book, and `also` the others."""

    item_id: str
    begin: int
    end: int
    text: str
    also: tuple[str, ...] = ()

    @property
    def items(self) -> tuple[str, ...]:
        return (self.item_id, *self.also)


class TitleIndex:
    """Catalog names for exact and fuzzy lookup; popular items win ties between items of the same name."""

    def __init__(self, items: pd.DataFrame, popularity: pd.Series | None = None) -> None:
        order = (popularity.reindex(items.index).fillna(0) if popularity is not None
                 else pd.Series(0, index=items.index)).sort_values(ascending=False, kind="mergesort")
        self._titles: dict[str, str] = {str(k): str(v) for k, v in items["title"].items()}
        filed = items["filed_title"] if "filed_title" in items.columns else items["title"]
        ranked = [(str(i), str(filed[i])) for i in order.index]  # most popular first, as the file writes them
        self.by_name: dict[str, list[str]] = {}
        for item_id, title in ranked:
            for name in names_of(title):
                self.by_name.setdefault(name, []).append(item_id)
        self.names = list(self.by_name)
        self._rank = {item_id: n for n, (item_id, _) in enumerate(ranked)}
        self._sorted: list[str] | None = None  # the names in order, for `starting` (built on first use)
        self.compact: dict[str, list[str]] = {}  # "oldboy" is also "Old Boy (2003)": names without spaces
        for name, ids in self.by_name.items():
            self.compact.setdefault(name.replace(" ", ""), []).extend(ids)
        self.series = self._series(ranked)
        years = items["year"] if "year" in items.columns else pd.Series(pd.NA, index=items.index)
        self._years: dict[str, int] = {str(k): int(v) for k, v in years.items() if not pd.isna(v)}
        self.max_words = max((len(n.split()) for n in [*self.names, *self.series]), default=1)

    def _series(self, ranked: list[tuple[str, str]]) -> dict[str, list[str]]:
        """Series name -> its books, first book first (most popular first within a number), then the books
        titled by its name first; a name that is also a title names the title, not the series."""
        volumes: dict[str, list[tuple[float, int, str]]] = {}
        for rank, (item_id, title) in enumerate(ranked):
            for name, number in series_of(title):
                volumes.setdefault(name, []).append((number, rank, item_id))
        numbered = {i for v in volumes.values() for _, _, i in v}
        for rank, (item_id, title) in enumerate(ranked):  # "Harry Potter Schoolbooks Box Set": of it too
            words = normalise(title).split()
            for size in range(2, len(words)):  # a series of two words or more ("Death" is too common a word)
                if item_id not in numbered and (prefix := " ".join(words[:size])) in volumes:
                    volumes[prefix].append((float("inf"), rank, item_id))
        return {name: list(dict.fromkeys(i for _, _, i in sorted(v))) for name, v in volumes.items()
                if name not in self.by_name}

    def named(self, name: str) -> list[str] | None:
        """The items of a normalised name, spaces or not ("oldboy", "old boy"), the most popular first."""
        ids = [*self.by_name.get(name, []), *self.compact.get(name.replace(" ", ""), [])]
        return sorted(dict.fromkeys(ids), key=self._rank.__getitem__) or None

    def starting(self, name: str) -> str | None:
        """The most popular item whose name goes on from `name` ("harry potter": Harry Potter and the
        Sorcerer's Stone), None when none does or `name` is a single word."""
        if " " not in name:
            return None
        if self._sorted is None:
            self._sorted = sorted(self.by_name)
        at = bisect.bisect_left(self._sorted, name + " ")
        ids = []
        while at < len(self._sorted) and self._sorted[at].startswith(name + " "):
            ids += self.by_name[self._sorted[at]]
            at += 1
        return min(ids, key=self._rank.__getitem__) if ids else None

    def pick(self, name: str, year: int) -> str | None:
        """The item of a normalised name made in `year` (or a year next to it), None when none is."""
        ids = self.named(name)
        return self._pick(ids, year) if ids else None

    def title_of(self, item_id: str) -> str:
        return self._titles.get(item_id, item_id)

    def knows(self, item_id: str) -> bool:
        """Whether the catalog has an item of this id."""
        return item_id in self._titles

    def _pick(self, ids: list[str], year: int | None) -> str | None:
        """The item among same-named ones whose year fits (exact first, then ±1); the most popular if no year."""
        if year is None:
            return ids[0]
        for slack in (0, 1):
            for item in ids:
                known = self._years.get(item)
                if known is None or abs(known - year) <= slack:
                    return item
        return None

    def resolve(self, title: str, cutoff: float = 88.0) -> str | None:
        """The item id of the closest catalog title, or None if nothing is close enough. A year written with
        the title ("Heat (1995)") must be within one year of the catalog's."""
        name, year = split_year(title)
        key = normalise(name)
        if not key:
            return None
        if ids := self.named(key):
            return self._pick(ids, year)
        best = process.extractOne(key, self.names, scorer=fuzz.ratio, score_cutoff=cutoff)
        return self._pick(self.by_name[best[0]], year) if best else None

    def mentions(self, text: str) -> list[Mention]:
        """Catalog titles written in free text, longest first, in order of appearance. A year right after a
        title ("Drive (2011)") picks among same-named items and is part of the mention."""
        tokens = [(m.group(0), m.start()) for m in re.finditer(r"[A-Za-z0-9&'\u2019]+", text)]
        words = [" ".join(_words(t)) for t, _ in tokens]
        found: list[Mention] = []
        used = [False] * len(words)
        for size in range(min(self.max_words, len(words)), 0, -1):
            for start in range(len(words) - size + 1):
                end = start + size
                if any(used[start:end]) or not all(words[start:end]):
                    continue
                phrase = " ".join(words[start:end])
                ids = self.named(phrase) or self.series.get(phrase)
                if ids is None:
                    continue
                year = int(words[end]) if end < len(words) and re.fullmatch(r"(?:19|20)\d\d", words[end]) else None
                if size == 1 and year is None and (words[start] in _STOPWORDS or len(words[start]) < 4
                                                   or not tokens[start][0][0].isupper()):
                    continue  # "it", "up", "drive" in a sentence are words, not films
                if size > 1 and year is None and all(w in _STOPWORDS for w in words[start:end]):
                    continue  # "the one", "how about"
                if year is None and start > 0 and tokens[start - 1][0] in ("a", "an") and not (
                        end < len(words) and words[end] in _LIKE_A) and not (
                        size > 1 and all(t[0][0].isupper() for t in tokens[start:end])):
                    continue  # "a road trip", "about a cop and his partner": a thing, not a title (but "a dumb
                    # and dumber kind of movie" and "more of a Notting Hill and ... girl" name one)
                if year is None and not tokens[start][0][0].isupper() and (
                        _ABOUT_A.search(text[:tokens[start][1]]) or (
                            words[start] == "about" and start > 0 and words[start - 1] in _ABOUT_WHAT) or (
                            start > 1 and words[start - 1] == "about" and words[start - 2] in _ABOUT_WHAT)):
                    continue  # "about a family road trip", "a movie about time travel", "movies about aliens
                    # invading Earth": what a film is about in lower case, not Road Trip, About Time or Aliens
                if size == 1 and year is None and end < len(words) and words[end] in _KINDS:
                    continue  # "zombie films", "western movies": what kind of film, not the film "Zombie"
                item = self._pick(ids, year)
                if item is None:
                    continue
                stop = end + 1 if year is not None else end
                used[start:stop] = [True] * (stop - start)
                last = tokens[stop - 1]
                close = last[1] + len(last[0])
                close += 1 if year is not None and text[close:close + 1] == ")" else 0
                series = self.series.get(phrase, []) if phrase not in self.by_name else []
                also = tuple(i for i in series if i != item)
                found.append(Mention(item, tokens[start][1], close, text[tokens[start][1]:close], also))
        return sorted(found, key=lambda m: m.begin)

    def find_in_text(self, text: str) -> list[str]:
        """Item ids of the catalog titles mentioned in free text, in order of appearance, each once."""
        return list(dict.fromkeys(i for m in self.mentions(text) for i in m.items))


_CONNECTORS = frozenset("of the and a an in on to for at from with".split())
_CAPITAL_TOKEN = re.compile(r"[^\W_][\w'\u2019]*")
_CUE_BEFORE = re.compile(r"\b(?:loved|love|liked|like|enjoyed|enjoy|adored|seen|watched|read|similar to|such as|"
                         r"fan of|favou?rite (?:is|was))\s*$", re.I)


def _capital_runs(text: str) -> list[tuple[int, int, int]]:
    """(begin, end, words) of each run of capitalised words, with small words allowed inside ("The Lord of the
    Rings"); a run at a sentence start begins with its second word when the first is a common word ("I")."""
    tokens = [(m.group(0), m.start(), m.end()) for m in _CAPITAL_TOKEN.finditer(text)]
    runs: list[tuple[int, int, int]] = []
    start = None
    for n, (word, at, _) in enumerate(tokens + [("", len(text), len(text))]):
        gap = text[tokens[n - 1][2]:at] if n else ""
        if start is not None and (not re.fullmatch(r"[\s(&:'\u2019-]*\)?\s*", gap) or ")" in gap):
            word = ""  # a sentence end, a comma or a year's closing bracket ends a run
        capital = word[:1].isupper() or word[:1].isdigit()
        inside = start is not None and word.lower() in _CONNECTORS and n + 1 < len(tokens) and \
            tokens[n + 1][0][:1].isupper()
        if capital or inside:
            if start is None:
                start = n
            continue
        if start is not None:
            words = [t for t in tokens[start:n] if t[0].lower() not in _STOPWORDS or t[0][:1].isupper()]
            if words and not (len(words) == 1 and words[0][0].lower() in _STOPWORDS):
                runs.append((tokens[start][1], tokens[n - 1][2], n - start))
            start = None
    return runs


def unmatched_titles(text: str, mentions: list[Mention], taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Where `text` writes a title the catalog lacks: a run of capitalised words that holds a found title and
    more capitalised words beyond it, and opens with an article or follows "I loved", "like", "seen" ("I loved
    The Hunger Games", where the catalog has only "Hunger"); or a run that follows those words and is neither a
    found title nor in `taken` (people, places)."""
    out = []
    for begin, end, size in _capital_runs(text):
        if size < 2 or any(b < end and e > begin for b, e in taken):
            continue
        inside = [m for m in mentions if m.begin < end and m.end > begin]
        left = "".join(" " if any(m.begin <= i < m.end for m in inside) else c
                       for i, c in enumerate(text[begin:end], begin))
        if re.fullmatch(r"(?:.*[.!?])?\s*", text[:begin], re.S):  # "Seen Forrest Gump": a sentence's capital
            left = re.sub(r"^\S+", lambda w: " " * len(w.group(0)), left)
        beyond = [w for w in _CAPITAL_TOKEN.findall(left) if w[:1].isupper() and w.lower() not in _STOPWORDS]
        if inside and beyond and all(w.lower() in _OPENERS for w in beyond):
            continue
        cued = bool(_CUE_BEFORE.search(text[:begin]))
        article = text[begin:end].split(" ", 1)[0] in ("The", "A", "An")
        if (inside and beyond and (cued or article)) or (not inside and cued):
            out.append((begin, end))
    return out
