"""What a message says beyond genres, years and titles, each read into its own filter field with its scope:
places and languages ("Korean", "in Spanish", "foreign"), length ("under 90 minutes", "not too long"), quality and
popularity as orders ("best", "hidden gems"), words denied ("isn't dystopian", "less sappy") and the contrast that
makes a clause no constraint ("I usually like action but tonight ...").

Each reader takes the message in lower case (titles and people already blanked), sets its fields on the filters
and returns the text with what it read blanked out (same length, so offsets stay valid): what is left is the
request's description.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from genre_agent.filters import Filters
from genre_agent.retrieval.rules import ENGLISH_SPEAKING

# What people call a place, and what it means: the countries (as the catalog's credits name them) and the
# languages. "English" is left out: it says little about a film of an English-speaking catalog.
PLACES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "korean": (("South Korea",), ("Korean",)), "south korean": (("South Korea",), ("Korean",)),
    "korea": (("South Korea",), ("Korean",)),
    "french": (("France",), ("French",)), "france": (("France",), ("French",)),
    "british": (("United Kingdom",), ()), "uk": (("United Kingdom",), ()), "england": (("United Kingdom",), ()),
    "scottish": (("United Kingdom",), ()), "irish": (("Ireland",), ()),
    "japanese": (("Japan",), ("Japanese",)), "japan": (("Japan",), ("Japanese",)),
    "italian": (("Italy",), ("Italian",)), "italy": (("Italy",), ("Italian",)),
    "german": (("Germany", "West Germany", "East Germany"), ("German",)),
    "germany": (("Germany", "West Germany", "East Germany"), ("German",)),
    "spanish": (("Spain", "Mexico", "Argentina", "Chile", "Colombia", "Peru", "Cuba"), ("Spanish",)),
    "spain": (("Spain",), ("Spanish",)), "mexican": (("Mexico",), ("Spanish",)),
    "argentinian": (("Argentina",), ()), "argentine": (("Argentina",), ()),
    "chinese": (("China", "Hong Kong", "Taiwan"), ("Mandarin", "Cantonese", "Chinese")),
    "china": (("China",), ("Mandarin", "Chinese")), "hong kong": (("Hong Kong",), ("Cantonese",)),
    "taiwanese": (("Taiwan",), ()), "cantonese": (("Hong Kong",), ("Cantonese",)),
    "mandarin": (("China", "Taiwan"), ("Mandarin",)),
    "indian": (("India",), ("Hindi", "Bengali", "Tamil", "Telugu")), "bollywood": (("India",), ("Hindi",)),
    "hindi": (("India",), ("Hindi",)),
    "swedish": (("Sweden",), ("Swedish",)), "danish": (("Denmark",), ("Danish",)),
    "norwegian": (("Norway",), ("Norwegian",)), "finnish": (("Finland",), ("Finnish",)),
    "icelandic": (("Iceland",), ("Icelandic",)),
    "scandinavian": (("Sweden", "Denmark", "Norway", "Finland", "Iceland"), ()),
    "nordic": (("Sweden", "Denmark", "Norway", "Finland", "Iceland"), ()),
    "russian": (("Russia", "Soviet Union"), ("Russian",)), "soviet": (("Soviet Union",), ("Russian",)),
    "brazilian": (("Brazil",), ("Portuguese",)), "portuguese": (("Portugal", "Brazil"), ("Portuguese",)),
    "iranian": (("Iran",), ("Persian",)), "persian": (("Iran",), ("Persian",)),
    "australian": (("Australia",), ()), "aussie": (("Australia",), ()), "canadian": (("Canada",), ()),
    "new zealand": (("New Zealand",), ()), "kiwi": (("New Zealand",), ()),
    "american": (("United States",), ()), "hollywood": (("United States",), ()),
    "dutch": (("Netherlands",), ("Dutch",)), "belgian": (("Belgium",), ()), "polish": (("Poland",), ("Polish",)),
    "czech": (("Czech Republic", "Czechoslovakia"), ("Czech",)), "hungarian": (("Hungary",), ("Hungarian",)),
    "greek": (("Greece",), ("Greek",)), "turkish": (("Turkey",), ("Turkish",)),
    "israeli": (("Israel",), ("Hebrew",)),
    "thai": (("Thailand",), ("Thai",)), "austrian": (("Austria",), ()), "swiss": (("Switzerland",), ()),
    "south african": (("South Africa",), ()), "romanian": (("Romania",), ("Romanian",)),
    "european": (("France", "United Kingdom", "Germany", "West Germany", "Italy", "Spain", "Sweden", "Denmark",
                  "Norway", "Finland", "Netherlands", "Belgium", "Poland", "Czech Republic", "Austria",
                  "Switzerland",
                  "Ireland", "Greece", "Hungary", "Romania", "Portugal", "Iceland", "Soviet Union", "Russia"), ()),
    "asian": (("Japan", "South Korea", "China", "Hong Kong", "Taiwan", "India", "Thailand"), ()),
    "latin american": (("Mexico", "Argentina", "Brazil", "Chile", "Colombia", "Peru", "Cuba"), ("Spanish",)),
}
_FOREIGN = re.compile(r"\b(?:foreign(?: language)?|non english|not in english|world cinema|international|"
                      r"subtitled|"
                      r"with subtitles)\b")
_PLACE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, PLACES), key=len, reverse=True)) + r")\b")
_PLACE_DENIED = re.compile(r"\b(?:no|not|non|nothing|without|avoid|except)\s+(?:\w+\s+)?$")

_NUM = {"one": 1, "an": 1, "a": 1, "two": 2, "three": 3, "four": 4, "half an": 0.5}
_AMOUNT = r"(\d+(?:\.\d+)?|one|two|three|four|an|a)"
_LENGTH = re.compile(
    rf"\b(?:(under|less than|shorter than|below|at most|no more than|no longer than|within|max(?:imum)?|up to)|"
    rf"(over|more than|longer than|at least|minimum|min))\s+(?:about\s+)?{_AMOUNT}\s*"
    rf"(hours?|hrs?|h|minutes?|mins?|m)\b(\s+and\s+(?:a\s+)?half)?")
_LENGTH_AFTER = re.compile(rf"\b{_AMOUNT}\s*(hours?|hrs?|minutes?|mins?)(\s+and\s+(?:a\s+)?half)?\s+"
                           r"(or (?:more|longer)|plus|or (?:less|shorter)|(?:or )?max|tops|at most|long|or so)\b")
_NOT_LONG = re.compile(r"\b(?:not (?:too |very |that |so )?long|isn'?t (?:too |very )?long|nothing (?:too )?long|"
                       r"not a long one)\b")
_SHORT = re.compile(r"\b(?:short|quick|brief)(?! (?:stor(?:y|ies)|films?|film collections?))\b")
# "a long movie", "a long, epic adventure", "an epic." -- not "a long week" or "an epic fantasy"
_EPIC = re.compile(r"\b(?:(?:long|epic|lengthy|marathon)\s+(?:movies?|films?|ones?|watch|epics?)\b|"
                   r"a long,? epic\b|an epic\b(?=\s*(?:[,.!?]|$|movie|film|one)))")
_AROUND = re.compile(rf"\b(?:around|about|roughly|approximately)\s+{_AMOUNT}\s*(hours?|hrs?|minutes?|mins?)"
                     r"(\s+and\s+(?:a\s+)?half)?(?:\s+long\b)?")
# time told in passing around an amount: "I watched about 20 minutes", "about an hour into it", "... ago"
_PASSING = re.compile(r"\b(?:watched|watching|saw|seen|slept|asleep|after|for|first|last|only)\s+$")
_SPENT = re.compile(r"\s+(?:of|in|into|later|ago|before|after|left|until)\b")
NOT_TOO_LONG = 120  # minutes: "not too long" is two hours at most
SHORT = 100  # minutes: a "short" feature
LONG = 150  # minutes: a "long" or "epic" watch

_BEST = re.compile(r"\b(?:best|top rated|top-rated|highest rated|highly rated|greatest|masterpieces?|acclaimed|"
                   r"finest|all time|top \d+|top ten)\b")
_HIDDEN = re.compile(r"\b(?:hidden gems?|underrated|under rated|lesser known|lesser-known|little known|"
                     r"little-known|"
                     r"overlooked|obscure|under the radar|nobody talks about|not many people (?:know|have seen)|"
                     r"sleepers?|gems)\b")
_POPULAR = re.compile(r"\b(?:most popular|popular|crowd pleasers?|crowd-pleasers?|blockbusters?|"
                      r"everyone (?:loves|likes)|everyone should (?:see|watch|read)|must see|must-see|essential|"
                      r"well known|famous|mainstream|trending)\b")

_CONTRAST = re.compile(r"\b(?:i\s+)?(?:usually|normally|typically|generally|often|mostly|most of the time|"
                       r"in general)\b[^.!?;]*?\b(?:but|though|however)\b")
_DENY = re.compile(r"\b(?:isn'?t|is not|aren'?t|are not|not|no|without|nothing|less|avoid|skip|except|"
                   r"never|minus|but not)\s+((?:(?:a|an|the|too|so|very|overly|remotely|at all|any|anything|"
                   r"something|really|super|that|more|with|about|involving|featuring|having|of|set in|"
                   r"in)\s+)*)([a-z][a-z-]{2,}(?:[ \t]+[a-z0-9][a-z0-9-]*){0,2})\b")
# words after a negation that deny no content ("no idea", "not sure", "nothing special")
_NOT_CONTENT = frozenset("""idea problem problems rush hurry worries worry clue matter bad special sure way
clue thanks thank preference preferences opinion restrictions restriction limits limit rules""".split())


def blank(text: str, begin: int, end: int) -> str:
    return text[:begin] + " " * (end - begin) + text[end:]


def drop_contrast(text: str) -> str:
    """"I usually like action movies but tonight ...": what one usually likes is no constraint of this request."""
    for m in _CONTRAST.finditer(text):
        text = blank(text, m.start(), m.end())
    return text


def read_places(text: str, filters: Filters) -> str:
    """Countries and languages asked for or denied; "foreign" is none of the English-speaking countries."""
    for m in list(_FOREIGN.finditer(text)):
        filters.exclude_countries += [c for c in ENGLISH_SPEAKING if c not in filters.exclude_countries]
        text = blank(text, m.start(), m.end())
    for m in list(_PLACE.finditer(text)):
        countries, languages = PLACES[m.group(1)]
        if _PLACE_DENIED.search(text[max(0, m.start() - 30): m.start()]):
            filters.exclude_countries += [c for c in countries if c not in filters.exclude_countries]
        else:
            filters.countries += [c for c in countries if c not in filters.countries]
            filters.languages += [lang for lang in languages if lang not in filters.languages]
        text = blank(text, m.start(), m.end())
    text = re.sub(r"\b(?:in|language|spoken)\b(?=\s*(?:$|[.,!?;]))", lambda m: " " * len(m.group(0)), text)
    return text


def _minutes(amount: str, unit: str, half: str | None) -> int:
    value = float(_NUM.get(amount, amount) if not amount.replace(".", "").isdigit() else amount)
    value = value * 60 if unit.startswith("h") else value
    return int(round(value + (30 if half else 0)))


def read_length(text: str, filters: Filters) -> str:
    """Length bounds: "under 90 minutes", "over two hours", "three hours or more", "not too long", "short"."""
    for m in list(_AROUND.finditer(text)):
        if _PASSING.search(text[max(0, m.start() - 30): m.start()]) or _SPENT.match(text, m.end()):
            continue  # "I only watched about 20 minutes of it": time told, not a length asked for
        found = _minutes(m.group(1), m.group(2), m.group(3))
        filters.minutes_min, filters.minutes_max = max(1, found - 10), found + 10
        text = blank(text, m.start(), m.end())
    for m in list(_LENGTH.finditer(text)):
        found = _minutes(m.group(3), m.group(4), m.group(5))
        denied = re.search(r"\b(?:nothing|not|no|never)\s+(?:\w+\s+)?$", text[max(0, m.start() - 20): m.start()])
        if bool(m.group(1)) != bool(denied):  # "nothing over 100 minutes" is at most 100
            filters.minutes_max = found
        else:
            filters.minutes_min = found
        text = blank(text, m.start(), m.end())
    for m in list(_LENGTH_AFTER.finditer(text)):
        found = _minutes(m.group(1), m.group(2), m.group(3))
        if re.search(r"less|shorter|max|tops|most", m.group(4)):
            filters.minutes_max = found
        elif m.group(4) == "or so":
            filters.minutes_min, filters.minutes_max = max(1, found - 15), found + 15
        else:
            filters.minutes_min = found
        text = blank(text, m.start(), m.end())
    for pattern, field, value in ((_NOT_LONG, "minutes_max", NOT_TOO_LONG), (_SHORT, "minutes_max", SHORT),
                                  (_EPIC, "minutes_min", LONG)):
        for m in list(pattern.finditer(text)):
            if getattr(filters, field) is None:
                setattr(filters, field, value)
            text = blank(text, m.start(), m.end())
    return text


def read_order(text: str, filters: Filters) -> str:
    """Quality and popularity as an order: the best rated, hidden gems, the most popular."""
    for pattern, order in ((_HIDDEN, "hidden"), (_POPULAR, "popular"), (_BEST, "best")):
        found = list(pattern.finditer(text))
        if found and filters.order is None:
            filters.order = order  # type: ignore[assignment]
        for m in found:
            text = blank(text, m.start(), m.end())
    return text


def read_denied(text: str, filters: Filters, read: Iterable[str], fillers: Iterable[str]) -> str:
    """Words denied ("isn't dystopian", "not a slasher", "less sappy", "not about World War II"): items about
    them are left out. A denial that opens with a word `read` elsewhere (a genre) is not one of these; the
    phrase runs up to a word of `fillers` ("nothing sad or dark": "sad")."""
    filler = set(fillers) | _NOT_CONTENT
    skip = set(read) | filler
    for m in list(_DENY.finditer(text)):
        if re.fullmatch(r"(?:not|never)\s+", text[m.start():m.start(2)]) and (
                re.match(r"[a-z-]+(?:ing|ed)\b", m.group(2)) or re.match(r"\s+(?:it|that|this|them)\b",
                                                                        text[m.end(2):])):
            continue  # "not seeing it", "never liked": a verb denied, not what an item is about
        words: list[str] = []
        for word in m.group(2).split():
            if word in (filler if words else skip):
                break
            words.append(word)
        if not words:
            continue
        denied = " ".join(words)  # as said: the filter matches its forms ("dystopian": dystopia)
        filters.exclude_words += [denied] if denied not in filters.exclude_words else []
        text = blank(text, m.start(2), m.start(2) + len(" ".join(words)))
    return text
