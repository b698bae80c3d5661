"""Text crossing a boundary, made safe for where it goes: a message into the agent (`clean_message`)."""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls (0x9b is a one-byte CSI), and the bidi overrides and
# isolates that make a terminal show text in another order than it is
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))  # split a word, mean nothing


def valid_unicode(text: str) -> str:
    """The text with every lone surrogate (JSON may carry "\\ud800"; no UTF-8 can) replaced by U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_message(text: str) -> str:
    """A message as the agent reads it: valid Unicode, without the zero-width characters that would split a
    word ("com\u200bedy"), control characters as spaces, trimmed."""
    return _CONTROLS.sub(" ", valid_unicode(text).translate(_ZERO_WIDTH)).strip()
