"""The items an answer showed, written into its text, for a conversation whose client keeps only the text.

A stateless HTTP conversation comes back as the messages the client kept, and OpenAI-compatible clients (the
SDKs' chat loops, chat UIs) keep an assistant message's role and content only: a field of the response beside
the message (`genre_agent`) or inside it is dropped. So the ids travel in the content, as the last line:

    [//]: # (genre-agent shown: 10 20 30)

A Markdown link reference definition: every CommonMark renderer shows nothing for it (no raw HTML involved,
unlike an HTML comment that some clients escape and print), and a plain-text client shows one short line. Ids
are percent-encoded, so any id fits. Reading a conversation back, these ids are what was shown; the numbered
"N. Title — reason" lines are read only when a message has no such line (an older client, or one that edits
what it keeps).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    import pandas as pd

    from genre_agent.chat.titles import TitleIndex

_SHOWN = re.compile(r"^\[//\]: # \(genre-agent shown:((?: [^\s()]+)*)\)[ \t]*$", re.M)
# A streamed answer is the list shown at once, then this line and the model's list (a client shows the text as
# it arrives and cannot take text back); rebuilding a conversation reads the list after the last such line.
REVISED = "Revised by the model:"
_LISTED = re.compile(r"^\s*\d+\. (.+?) \u2014 ", re.M)  # "1. Title (1999) — reason", as an answer lists items


def with_shown(text: str, item_ids: list[str]) -> str:
    """`text` with, after a blank line, the line that names the items it shows in their order (unchanged when
    it shows none). `with_shown("", ids)` is that ending alone, for a stream's last piece."""
    if not item_ids:
        return text
    return f"{text}\n\n[//]: # (genre-agent shown:{''.join(' ' + quote(i, safe='') for i in item_ids)})"


def shown_in(text: str) -> list[str] | None:
    """The ids the last such line of `text` names, in order; None when it has none."""
    found = list(_SHOWN.finditer(text))
    return [unquote(i) for i in found[-1].group(1).split()] if found else None


class ShownReader:
    """The catalog items an assistant turn showed, in order, read back from its text: the ids its ids line
    names, else the titles of its numbered list (after the last REVISED line) looked up."""

    def __init__(self, titles: TitleIndex, items: pd.DataFrame) -> None:
        self.titles = titles
        self.items = items
        self._title_ids: dict[str, str] | None = None

    def __call__(self, text: str) -> list[str]:
        marked = shown_in(text)
        if marked is not None:
            return [i for i in dict.fromkeys(marked) if self.titles.knows(i)]
        listed = [self._item(m.group(1)) for m in _LISTED.finditer(text.rpartition(REVISED)[2])]
        return list(dict.fromkeys(i for i in listed if i is not None))  # streamed reasons repeat items

    def _item(self, title: str) -> str | None:
        if self._title_ids is None:
            self._title_ids = {str(t): str(i) for i, t in reversed(list(self.items["title"].items()))}
        return self._title_ids.get(title.strip()) or self.titles.resolve(title)
