"""Descriptions made fit to show and to embed: markup removed, bounded length, and a note naming the rows that
were empty, carried markup, were cut, or do not read as English (the embedding model reads English).

A summary is what people and models see, so it is cut at a sentence end where one fits and loses its citation
marks ("[4]", "[a]", "[citation needed]"); one that is nothing but those, or a single word, is no summary. The
matching text is only embedded, so it is cut at a word and otherwise left as it is (a shipped vector file stays
valid for it).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_TAG = re.compile(r"</?[A-Za-z!][^>]{0,200}>")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'\u201c(])")  # "e.g. the" does not end one
# a title or an initial before a name ends no sentence: "Dr. Grant", "J. Edgar", "the U.S. Navy"
_ABBREVIATION = re.compile(r"(?:\b(?:Dr|Mr|Mrs|Ms|Mme|Mt|St|Lt|Sgt|Capt|Col|Gen|Maj|Cpl|Pvt|Adm|Cmdr|Prof|Rev|Gov"
                           r"|Sen|Det|Insp|Supt|Jr|Sr|Bros|Co|No|vs|Ft|Ave)|\b[A-Z]|\bU\.S|\bU\.K)\.$")
_WORD = re.compile(r"[^\W\d_]+")
# Wikipedia's reference and footnote marks and its maintenance tags; "[her]", "[sic]", "[Colonel]" are words
_CITATION = re.compile(r"\s*\[(?:\d{1,3}|[a-z]|(?:n|nb|note)\s?\d{1,3}|[a-z ]{1,30} needed|original research\?"
                       r"|(?:how|when|who|why|which|where|by whom|according to whom)\?|dubious[^\]]{0,20}"
                       r"|failed verification)\]", re.IGNORECASE)
HUGE = 100_000  # characters: a description this long is cut and named (a whole book pasted in a cell)
# The commonest English words: a description of 20 words or more with almost none of them is not English.
_ENGLISH = frozenset("""the a an and of to in is was his her he she they their it its with for on at by from as
that this who which when after but are be has have had into while where one two not""".split())
ENGLISH_MIN_SHARE = 0.08
ROWS_SHOWN = 5


@dataclass
class Cleaned:
    summaries: list[str]
    matches: list[str]
    notes: list[str] = field(default_factory=list)


def _plain(text: str) -> tuple[str, bool]:
    """Text without markup and control characters, whitespace collapsed; and whether it had markup."""
    marked = bool(_TAG.search(text) or _ENTITY.search(text))
    if marked:
        text = html.unescape(_TAG.sub(" ", text))
    return " ".join(_CONTROL.sub(" ", text).split()), marked


def uncited(text: str) -> str:
    """`text` without citation marks: "Set in Los Angeles.[4][5]" -> "Set in Los Angeles."."""
    return _CITATION.sub("", text).strip()


def says_something(text: str) -> bool:
    """Whether a summary has two words or more once its citation marks are gone."""
    return len(_WORD.findall(uncited(text))) >= 2


def sentences(text: str) -> list[str]:
    """`text` split at its sentence ends, not after a title or an initial ("Dr. Grant", "J. Edgar Hoover")."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(text):
        if out and _ABBREVIATION.search(out[-1]):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def cut_sentences(text: str, max_chars: int) -> str:
    """The opening sentences of `text` that fit in `max_chars`; the first alone cut at a word with "…"."""
    if len(text) <= max_chars:
        return text
    return whole_sentences(text, max_chars) or cut_words(text, max_chars)


def whole_sentences(text: str, max_chars: int) -> str:
    """The opening sentences of `text` that fit in `max_chars`, whole; "" when not even the first fits."""
    out = ""
    for sentence in sentences(text):
        longer = f"{out} {sentence}".strip()
        if len(longer) > max_chars:
            break
        out = longer
    return out


def cut_words(text: str, max_chars: int) -> str:
    """`text` cut at the last word that fits in `max_chars`, with "…" when it was cut."""
    if len(text) <= max_chars:
        return text
    head = text[: max_chars - 1]
    head = head.rsplit(" ", 1)[0] if " " in head else head
    return head.rstrip(" ,;:") + "\u2026"


def reads_as_english(text: str) -> bool:
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) < 20:
        return True  # too short to tell
    return sum(w in _ENGLISH for w in words) / len(words) >= ENGLISH_MIN_SHARE


def rows_note(label: str, rows: list[str], total: int | None = None) -> str:
    """"label: row 1, row 4 (+2 more)": the first ROWS_SHOWN `rows` of `total` (default: all of them)."""
    total = len(rows) if total is None else total
    more = f" (+{total - ROWS_SHOWN} more)" if total > ROWS_SHOWN else ""
    return f"{label}: {', '.join(rows[:ROWS_SHOWN])}{more}"


@dataclass
class RowsNoted:
    """The rows that earn a note, counted while a file is read: only the first ROWS_SHOWN are named."""

    label: str
    rows: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, rows: Sequence[str]) -> None:
        self.rows += rows[: ROWS_SHOWN - len(self.rows)]
        self.total += len(rows)

    def note(self) -> list[str]:
        return [rows_note(self.label, self.rows, self.total)] if self.total else []


def clean(summaries: Sequence[str], matches: Sequence[str], where: Sequence[str], summary_chars: int,
          match_chars: int, source: str) -> Cleaned:
    """Clean aligned summaries and matching texts; `where` names each row for the notes ("row 3 (line 4)")."""
    out = Cleaned([], [])
    markup: list[str] = []
    huge: list[str] = []
    foreign: list[str] = []
    wordless: list[str] = []
    for summary, match, at in zip(summaries, matches, where, strict=True):
        summary, marked_s = _plain(summary)
        match, marked_m = _plain(match)
        if marked_s or marked_m:
            markup.append(at)
        if max(len(summary), len(match)) > HUGE:
            huge.append(at)
        if summary and not reads_as_english(match or summary):
            foreign.append(at)
        if summary and not says_something(summary):
            wordless.append(at)
        summary = uncited(summary) if says_something(summary) else ""
        if match and not says_something(match):
            match = ""
        out.summaries.append(cut_sentences(summary, summary_chars))
        out.matches.append(cut_words(match or summary, match_chars))
    if markup:
        out.notes.append(rows_note(f"{source}: markup (HTML) removed from descriptions at", markup))
    if huge:
        out.notes.append(rows_note(f"{source}: descriptions over {HUGE:,} characters cut at", huge))
    if wordless:
        out.notes.append(rows_note(f"{source}: descriptions of only citation marks or a single word give no "
                                   "summary at", wordless))
    if foreign:
        out.notes.append(rows_note(f"{source}: descriptions that do not read as English (kept; matching by "
                               "meaning works on English text) at", foreign))
    return out
