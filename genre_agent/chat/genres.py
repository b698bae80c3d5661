"""The words a message may use for a catalog's genres.

Each genre is found under its name as people write it ("sci fi" for Sci-Fi, "young adult" for young-adult,
plurals: "comedies", "thrillers") and under the words the catalog declares for it (`[genres]` in catalog.toml:
"scary" for the movies' Horror; for the books, the shelves merged into each genre, "ya" and "teen" for
young-adult). Nothing here knows a domain: the catalog says what its genres are called.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence

from genre_agent.chat.titles import normalise


def _forms(word: str) -> set[str]:
    """A spelling and its plurals: 'comedy' -> {'comedy', 'comedys', 'comedies'}."""
    return {word, f"{word}s", *([f"{word[:-1]}ies"] if word.endswith("y") else [])}


class GenreWords:
    """Which genre each spelling means; `filler` words never mean a genre (a shelf such as "love" for romance
    would turn "I love fantasy" into a romance)."""

    def __init__(self, genres: Sequence[str], aliases: Mapping[str, Sequence[str]] | None = None,
                 filler: Collection[str] = ()) -> None:
        self.genres = list(genres)
        by_name = {g.lower(): g for g in genres}
        self.spellings: dict[str, str] = {}  # normalised spelling -> genre
        named = [(g, [g]) for g in genres]  # a genre's own name first: no alias of another genre takes it
        declared = [(by_name[g.lower()], list(words)) for g, words in (aliases or {}).items()
                    if g.lower() in by_name]
        for genre, words in [*named, *declared]:
            for word in words:
                base = normalise(word)
                if base and base not in filler:
                    for form in _forms(base):
                        self.spellings.setdefault(form, genre)
        longest_first = sorted(self.spellings, key=lambda s: (-len(s), s))
        self._pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, longest_first)) + r")\b") \
            if longest_first else None

    def mentions(self, text: str) -> dict[str, int]:
        """Genres named in normalised text -> the position of their first mention; the longest spelling wins
        ("science fiction" is science-fiction, not fiction)."""
        found: dict[str, int] = {}
        for m in self._pattern.finditer(text) if self._pattern else ():
            found.setdefault(self.spellings[m.group()], m.start())
        return found

    def spans(self, text: str) -> list[tuple[str, int, int]]:
        """Every genre spelling in normalised text: (genre, begin, end), in order."""
        return [(self.spellings[m.group()], m.start(), m.end())
                for m in (self._pattern.finditer(text) if self._pattern else ())]

    def genre_of(self, word: str) -> str | None:
        """The genre a word or phrase means, if any ('comedy' -> Comedy for films, humor for books)."""
        return self.spellings.get(normalise(word))

    def words_of(self, genres: Iterable[str]) -> set[str]:
        """Every word of every spelling of these genres (matched in any case)."""
        wanted = {g.lower() for g in genres}
        return {w for s, g in self.spellings.items() if g.lower() in wanted for w in s.split()}

    def ends_phrase(self, phrase: str) -> bool:
        """A normalised phrase that is a spelling of several words, after at most one word ("for the family",
        "a sci fi")."""
        return any(re.fullmatch(rf"(?:\w+ )?{re.escape(s)}", phrase) for s in self.spellings if " " in s)
