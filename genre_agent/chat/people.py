"""People named in a message: the catalog's directors, cast and authors, found by the words of their names.

"Tom Hanks", "tom hanks", "Park Chan-wook" and "Chan Wook Park" name the same people as the catalog spells them
(words compared without case, accents or hyphens, in any order). A surname alone ("Nolan", "Miyazaki") names the
person when it is unambiguous in the catalog — one person holds most of the credits of everyone with that surname —
and it is written as a name: with a capital letter, or after "by", "with", "starring". Names that follow such a
word but that the catalog does not know are returned as unknown, so the reply can say so.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from genre_agent.data.credits import fold, name_key

_TOKEN = re.compile(r"[^\W\d_]+")
_CUE = re.compile(r"(?:\b(?:directed|written|made|produced|helmed)\s+by|\bby|\bwith|\bstarring|\bfeaturing|"
                  r"\bfrom\s+director|\bactor|\bactress|\bdirector|\bauthor)\s*$", re.I)
_ROLE_CUES = (("director", re.compile(r"\b(?:directed|helmed|made)\s+by\s*$|\bdirector\s*$", re.I)),
              ("cast", re.compile(r"\b(?:with|starring|featuring|actor|actress)\s*$", re.I)),
              ("author", re.compile(r"\b(?:written\s+by|author)\s*$", re.I)))
_NEGATED = re.compile(r"\b(?:no|not|without|except|avoid|skip|hate|nothing (?:with|by|starring)|anything but|"
                      r"none with|never)\b(?:\s+(?:movies?|films?|books?|anything|one|ones|with|by|starring|"
                      r"featuring|from|more|of))*\s*$", re.I)
_KIND_AFTER = re.compile(r"['\u2019]s\b|\s+(?:movies?|films?|books?|novels?|flicks?|classics?|stuff|work|one|"
                         r"version)\b", re.I)
SURNAME_SHARE = 2.0  # a surname names its most credited bearer when they hold this many times the next one's
SURNAME_MIN = 3  # ... and at least this many credits (a surname of one film names nobody on its own)


@dataclass(frozen=True)
class PersonMention:
    """A person written in a message: the name as the catalog spells it (None: unknown to the catalog), the
    words of the name as written, where (with the words that introduce it: "directed by"), the role the words
    around it give ("director", "cast", "author" or ""), and
    whether it is denied ("no Adam Sandler")."""

    name: str | None
    text: str
    begin: int
    end: int
    role: str = ""
    negated: bool = False


class PeopleIndex:
    """Every person the catalog credits, by the words of their name and by surname."""

    def __init__(self, items: pd.DataFrame, common: Iterable[str] = ()) -> None:
        spellings: dict[frozenset[str], Counter[str]] = {}
        self.works: dict[frozenset[str], set[str]] = {}  # each person's items
        people = items["people"] if "people" in items.columns else pd.Series(dtype=object)
        for item_id, credits in people.items():
            for name in {n for names in credits.values() for n in names}:
                spellings.setdefault(name_key(name), Counter())[name] += 1
                self.works.setdefault(name_key(name), set()).add(str(item_id))
        self.display = {key: names.most_common(1)[0][0] for key, names in spellings.items() if key}
        credits = {key: sum(names.values()) for key, names in spellings.items()}
        by_surname: dict[str, list[tuple[int, frozenset[str]]]] = {}
        for key, name in self.display.items():
            words = fold(name).split()
            if len(words) > 1:
                by_surname.setdefault(words[-1], []).append((credits[key], key))
        self.common = frozenset(common)
        self.surnames: dict[str, frozenset[str]] = {}
        for surname, bearers in by_surname.items():
            bearers.sort(key=lambda ck: -ck[0])
            top = bearers[0][0]
            runner = bearers[1][0] if len(bearers) > 1 else 0
            if top >= SURNAME_MIN and top >= SURNAME_SHARE * runner and surname not in self.common and \
                    len(surname) > 2:  # "J" of "LL Cool J" is no name to go by
                self.surnames[surname] = bearers[0][1]
        self.max_words = max((len(k) for k in self.display), default=0)

    def __bool__(self) -> bool:
        return bool(self.display)

    def find(self, text: str) -> list[PersonMention]:
        """The people written in `text` (titles already blanked out), in order, and names after "by",
        "with", "starring" that the catalog does not know."""
        tokens = [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]
        folded = [fold(t) for t, _, _ in tokens]
        used = [False] * len(tokens)
        found: list[PersonMention] = []
        for size in range(min(self.max_words, 4), 0, -1):
            for start in range(len(tokens) - size + 1):
                end = start + size
                if any(used[start:end]) or not self._adjacent(text, tokens, start, end):
                    continue
                words = folded[start:end]
                key = frozenset(words)
                before = text[: tokens[start][1]]
                cued = bool(_CUE.search(before))
                written = all(t[0][:1].isupper() for t in tokens[start:end])
                if len(key) == size and key in self.display and (size > 1 or self._single(tokens[start][0],
                                                                                          cued)):
                    name = self.display[key]
                elif size == 1 and words[0] in self.surnames and (cued or (written and self._alone(
                        text, tokens, start))):
                    name = self.display[self.surnames[words[0]]]
                else:
                    continue
                used[start:end] = [True] * size
                found.append(self._mention(name, text, tokens[start][1], tokens[end - 1][2]))
        found += self._unknown(text, tokens, used)
        return sorted(found, key=lambda m: m.begin)

    def _single(self, token: str, cued: bool) -> bool:
        """A one-word name ("Madonna") counts only written as a name, and not when it is a common word."""
        return (cued or token[:1].isupper()) and len(token) >= 4 and fold(token) not in self.common

    @staticmethod
    def _alone(text: str, tokens: list[tuple[str, int, int]], at: int) -> bool:
        """A capitalised surname is a person by itself when no capitalised word stands next to it ("Harry
        Potter" is no Deborah Harry) and the words say so: "Tarantino films", "Nolan's", or a request of a few
        words ("Spielberg, anything good")."""
        beside = [tokens[i][0] for i in (at - 1, at + 1) if 0 <= i < len(tokens)
                  and PeopleIndex._adjacent(text, tokens, min(i, at), max(i, at) + 1)]
        if any(word[:1].isupper() for word in beside):
            return False
        after = text[tokens[at][2]:]
        return bool(_KIND_AFTER.match(after)) or len(tokens) <= 5

    @staticmethod
    def _adjacent(text: str, tokens: list[tuple[str, int, int]], start: int, end: int) -> bool:
        """The words are one name: only spaces, hyphens and full stops ("J. K.") between them, no word the tail
        of a contraction ("haven't": "t"), and a one-letter word only as a capital initial ("J. K. Rowling") or
        inside a name ("samuel l jackson")."""
        if any(text[tokens[i][1] - 1:tokens[i][1]] in ("'", "\u2019") for i in range(start, end) if tokens[i][1]):
            return False
        initial = [len(t) > 1 or (t.isupper() and text[e:e + 1] == ".") or start < n < end - 1
                   for n, (t, _, e) in enumerate(tokens[start:end], start)]
        if not all(initial):
            return False
        return all(re.fullmatch(r"[\s.\-\u2010]{1,3}", text[tokens[i][2]:tokens[i + 1][1]])
                   for i in range(start, end - 1))

    @staticmethod
    def _mention(name: str | None, text: str, begin: int, end: int) -> PersonMention:
        before = text[max(0, begin - 40): begin]
        role = next((r for r, cue in _ROLE_CUES if cue.search(before)), "")
        written = text[begin:end]
        denied = _NEGATED.search(text[:begin])
        cue = _CUE.search(before)
        if denied:  # "no Adam Sandler comedies": the denial is the person's, not the genre's
            begin = denied.start()
        elif cue:  # the cue words are part of the mention: "directed by" says nothing else
            begin -= len(before) - cue.start()
        negated = denied is not None
        return PersonMention(name, written, begin, end, role, negated)

    def _unknown(self, text: str, tokens: list[tuple[str, int, int]], used: list[bool]) -> list[PersonMention]:
        """Two or three capitalised words after "by", "starring", "with" that name nobody the catalog knows."""
        out = []
        for start in range(len(tokens)):
            if used[start] or not _CUE.search(text[: tokens[start][1]]):
                continue
            end = start
            while end < len(tokens) and end - start < 3 and not used[end] and tokens[end][0][:1].isupper() and \
                    fold(tokens[end][0]) not in self.common and self._adjacent(text, tokens, start, end + 1):
                end += 1
            if end - start >= 2:
                used[start:end] = [True] * (end - start)
                out.append(self._mention(None, text, tokens[start][1], tokens[end - 1][2]))
        return out
