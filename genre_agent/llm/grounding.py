"""The grounding check of a model-written reason: it may say only what the item's listed facts say.

A reason may name only titles from that item's evidence or the user's history, only genres the item has,
and only tags, years and numbers that are listed for it, and what its summary says it is about (never what
another item's summary says). Concretely, every content word of the reason must
come from those facts, from the item's evidence sentence (`why`, written by the template set, so the glue
words of the set's language are allowed), or from a short list of connecting words ("you", "fans",
"similar" …). "A film about a dystopian future" for Terminator 2 is rejected: neither "dystopian" nor
"future" is listed for it.

A grounded reason must also be informative (`uninformative`): it says at least one fact the evidence sentence
(`why`, what users read without the model) does not — a content word outside that sentence, the item's
title and the connecting words. Copying the evidence sentence adds nothing, so it is not worth a model call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from genre_agent.schemas import Candidate

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")

# Words that connect facts without adding one (English; other languages' glue comes from `why`).
CONNECTING = frozenset("""
a an the and or but of to in on at for with by from as about than then so if because since while when
it its it's this that these those there here is are was were be been being has have had do does did will
would could should can may might must shall
you your you're you'll you've yours we our us they them their he she his her i me my
also too very much more most just only even still again both all any each every another other same such
like likes liked love loves loved enjoy enjoys enjoyed enjoying adore adored fan fans favourite favourites
favorite favorites rate rates rated rating ratings highly high well top best
close closer similar similarly share shares shared sharing resemble resembles echo echoes match matches
fit fits fitting suit suits recommend recommended recommendation pick picks choice suggest suggested
watch watched read reading try worth want wanted might enjoy if same kind sort type taste tastes
movie movies film films book books item items title titles story stories genre genres tag tagged tags
year years user users people viewers readers one ones many few not no
""".split())

_FILLER = {"a", "an", "the", "and", "or", "of", "it", "is", "this", "that", "with", "for", "to", "in", "on",
           "movie", "film", "book", "item", "genre", "genres", "year", "recommended", "recommend", "because"}


def words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _name(title: str) -> str:
    return re.sub(r"\s*\(\d{4}\)\s*$", "", title).lower()


def reason_problem(reason: str, candidate: Candidate, max_chars: int,
                   history_titles: Iterable[str] = ()) -> str | None:
    """Why a reason is unacceptable, in words the model (and a person) can act on; None if it is grounded."""
    text = reason.strip()
    if not text:
        return "its reason is empty"
    if len(text) > max_chars:
        return f"its reason is {len(text)} characters; the limit is {max_chars}"
    e = candidate.evidence
    titles = [*e.similar_liked, *e.fans_also_liked, *e.talked_with, *history_titles]
    name_text = " ".join([*e.similar_liked, *e.fans_also_liked, *e.talked_with, *e.tags,
                          *e.shared_genres, *e.credited, *e.shared_people, e.place or ""]).lower()
    fact_text = f"{name_text} {candidate.summary.lower()}"
    name = _name(candidate.title)
    if name and name in text.lower() and name not in name_text:
        return "its reason restates the item's own title; cite a fact listed for it instead"
    own = words(candidate.title) | {w for g in candidate.genres for w in words(g)} | _FILLER
    said = words(text)
    if not said - own:
        return "its reason only repeats the title or genres; cite a fact listed for it"
    if not said & (words(fact_text) - _FILLER - words(candidate.title)):
        return "its reason cites none of the facts listed for it (a liked title, a shared genre or a tag)"
    if len(said - words(name_text) - own) < 2:
        return "its reason is a bare list of names; write a sentence saying how they connect it to the user"
    listed_years = {int(y) for y in _YEAR.findall(" ".join([*titles, candidate.why, *candidate.facts]))}
    if candidate.year:
        listed_years.add(candidate.year)
    unlisted_years = sorted({int(y) for y in _YEAR.findall(text)} - listed_years)
    if unlisted_years:
        return f"its reason names the year(s) {', '.join(map(str, unlisted_years))}, which are not listed for it"
    allowed = (words(" ".join([*titles, candidate.title, *candidate.genres, *candidate.tags, *e.tags,
                               candidate.why, *candidate.facts, *candidate.details.values(), candidate.summary]))
               | CONNECTING)
    unsupported = sorted(said - allowed, key=text.lower().find)
    if unsupported:
        shown = ", ".join(f"'{w}'" for w in unsupported[:4])
        return (f"its reason says {shown}, which no fact listed for it supports; name only a liked title, "
                "one of its genres, a listed tag or its year")
    return None


def uninformative(reason: str, candidate: Candidate) -> str | None:
    """Why a grounded reason adds nothing to the evidence sentence; None if it says at least one more fact."""
    new = words(reason) - words(candidate.why) - words(candidate.title) - CONNECTING - _FILLER
    if not new:
        return ("its reason says nothing the evidence sentence does not; add a fact from its summary, genres, "
                "tags or year")
    return None


def shown_problem(reason: str, candidate: Candidate, max_chars: int,
                  history_titles: Iterable[str] = ()) -> str | None:
    """Why a model's reason is not shown (not grounded, or not informative); None if it is shown."""
    return reason_problem(reason, candidate, max_chars, history_titles) or uninformative(reason, candidate)
