"""The years a message asks for: explicit bounds ("after 2010", "between 1995 and 2000", "the 90s", "nothing made
before 2000"), eras named relative to the catalog's newest year ("recent", "the last few years", "classic"),
comparisons with the list just shown ("something older") and an order ("the older the better").

The eras are what the words mean, counted back from the catalog's newest year (never a calendar year typed in):
"the last few years" is its last RECENT_YEARS years, a "classic" is CLASSIC_AGE years older than it or more.
"""

from __future__ import annotations

import re

from genre_agent.filters import Filters

RECENT_YEARS = 5  # "recent", "the last few years": the newest year and the four before it
CLASSIC_AGE = 30  # "classic", "old": made this many years before the newest year, or earlier

_YEAR = r"((?:19|20)\d\d)"
_DENIED = r"\b(?:nothing|not|no|none|never|dont|don't)\b(?:\s+\w+){0,2}\s+$"  # "nothing made before"
_RECENT = re.compile(r"\b(?:recent|recently|latest|modern|newest|brand new|these days|nowadays|"
                     r"(?:last|past) (?:few|couple(?: of)?|several) years|(?<!\ba )(?<!something )new(?= (?:\w+ )?"
                     r"(?:movies|films|books|novels|releases|ones|stuff)\b))\b")
_CLASSIC = re.compile(r"(?<!\bis a )(?<!\bwas a )(?<!\bs a )(?<!year )(?<!years )"  # not "a 5 year old"
                      r"\b(?:classic|classics|old|oldies|vintage|golden age)\b")
# what a film is said to be, not a wish: "Forrest Gump is an epic classic", "that was such a cult classic"
_SAID_OF = r"\b(?:is|was|s|are|were)\s+(?:a|an|such a|such an|one of the|real|true)\s+(?:[\w-]+\s+)?$"
_OLDER_FIRST = re.compile(r"\b(?:the older the better|as old as possible|oldest (?:first|ones))\b")
_NEWER_FIRST = re.compile(r"\b(?:the (?:newer|more recent) the better|as (?:new|recent) as possible|"
                          r"(?:newest|latest) (?:first|ones))\b")


def _denied(text: str, at: int) -> bool:
    """Whether the words just before position `at` deny what follows ("nothing made before", "not too old")."""
    return bool(re.search(_DENIED, text[max(0, at - 40) : at]))


def read_years(text: str, filters: Filters, newest: int | None, shown: list[int] | None = None) -> None:
    """Set the year bounds and order `text` (lower case, titles blanked) asks for on `filters`. `newest` is the
    catalog's newest year (None: eras are not read); `shown` the years of the list just shown."""
    if m := re.search(rf"\bbetween {_YEAR} and {_YEAR}\b", text):
        filters.year_min, filters.year_max = sorted((int(m.group(1)), int(m.group(2))))
        return
    if m := re.search(rf"\b(?:after|since|from|newer than|released after)\s+(?:the year\s+)?{_YEAR}\b", text):
        year = int(m.group(1)) + (1 if "after" in m.group(0) else 0)
        if _denied(text, m.start()):  # "nothing after 1990": up to 1990
            filters.year_max = year - 1
        else:
            filters.year_min = year
    if m := re.search(rf"\b(?:before|until|older than|up to|prior to)\s+(?:the year\s+)?{_YEAR}\b", text):
        year = int(m.group(1))
        if _denied(text, m.start()):  # "nothing made before 2000": from 2000 on
            filters.year_min = year
        else:
            filters.year_max = year - (1 if "before" in m.group(0) or "older" in m.group(0) else 0)
    if m := re.search(r"\b((?:19|20)?\d0)'?s\b", text):
        decade = int(m.group(1))
        decade += 1900 if 20 <= decade < 100 else (2000 if decade < 100 else 0)
        filters.year_min, filters.year_max = decade, decade + 9
    if filters.year_min is None and filters.year_max is None and (
            m := re.search(rf"\b(?:of|in)\s+(?:the year\s+)?{_YEAR}\b(?!'?s)|\b{_YEAR}\s+(?:movies|films|releases|"
                           r"books|novels)\b", text)):
        filters.year_min = filters.year_max = int(m.group(1) or m.group(2))  # "best movies of 2015"
    if _OLDER_FIRST.search(text):
        filters.years_order = "older"
    elif _NEWER_FIRST.search(text):
        filters.years_order = "newer"
    if newest is not None and filters.year_min is None and filters.year_max is None:
        if (m := _RECENT.search(text)) and not _denied(text, m.start()):
            filters.year_min = newest - RECENT_YEARS + 1
        elif (m := _CLASSIC.search(text)) and not _denied(text, m.start()) and not re.search(
                _SAID_OF, text[max(0, m.start() - 30): m.start()]):
            filters.year_max = newest - CLASSIC_AGE
    if shown and filters.years_order is None:
        middle = sorted(shown)[len(shown) // 2]
        if filters.year_max is None and re.search(r"\bolder\b", text):
            filters.year_max = middle - 1
        if filters.year_min is None and re.search(r"\b(?:newer|more recent)\b", text):
            filters.year_min = middle + 1
