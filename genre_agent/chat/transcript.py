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
from urllib.parse import quote, unquote

_SHOWN = re.compile(r"^\[//\]: # \(genre-agent shown:((?: [^\s()]+)*)\)[ \t]*$", re.M)


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
