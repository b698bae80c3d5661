"""Text crossing a boundary, made safe for where it goes: a message into the agent (`clean_message`), text from
users or catalogs onto a terminal (`for_terminal`), and any message that may carry a configured secret
(`redact`)."""

from __future__ import annotations

import json
import os
import re

# C0 controls but tab and newline, DEL, C1 controls (0x9b is a one-byte CSI), and the bidi overrides and
# isolates that make a terminal show text in another order than it is
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# an escape sequence as a whole (CSI "ESC [ … final", OSC "ESC ] … BEL/ST", or ESC and one character), so that
# none of its printable tail ("[2J") is left behind
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])?")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))  # split a word, mean nothing
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@]*@")
_PASSWORD_PARAM = re.compile(r"(\bpassword\s*=\s*)[^\s&]+", re.IGNORECASE)
_SECRET_VARIABLES = ("API_KEY", "API_KEYS", "PASSWORD", "TOKEN")
MASK = "***"
SECRET_MIN_CHARS = 8  # shorter pieces of a secret's value are not masked: they would mask common words


def valid_unicode(text: str) -> str:
    """The text with every lone surrogate (JSON may carry "\\ud800"; no UTF-8 can) replaced by U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_message(text: str) -> str:
    """A message as the agent reads it: valid Unicode, without the zero-width characters that would split a
    word ("com\u200bedy"), control characters as spaces, trimmed."""
    return _CONTROLS.sub(" ", valid_unicode(text).translate(_ZERO_WIDTH)).strip()


def for_terminal(text: str, one_line: bool = False) -> str:
    """Text from users or catalogs as a terminal may print it: escape sequences and every other control
    character removed (no screen clears, cursor moves, carriage returns over a line, reordering), newlines
    and tabs kept; with `one_line`, newlines and tabs become spaces (a field that must not forge a line)."""
    text = _CONTROLS.sub("", _ESCAPES.sub("", valid_unicode(text)))
    return re.sub(r"[\t\n]", " ", text) if one_line else text


def redact(text: str) -> str:
    """A message that may quote configuration without its secrets: URL passwords, `password=` parameters and
    the values (and the JSON keys: `server.api_keys`) of GENRE_AGENT_* variables holding keys or
    passwords are masked."""
    text = _PASSWORD_PARAM.sub(rf"\g<1>{MASK}", _URL_PASSWORD.sub(rf"\g<1>{MASK}@", text))
    for secret in sorted(_secrets(), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _secrets() -> set[str]:
    found: set[str] = set()
    for name, value in os.environ.items():
        if not (name.startswith("GENRE_AGENT_") and name.endswith(_SECRET_VARIABLES) and value.strip()):
            continue
        found.add(value)
        try:
            table = json.loads(value)
        except ValueError:  # malformed: any long run of key characters in it may be a key
            found.update(re.split(r"[^A-Za-z0-9_.~+/=-]+", value))
            continue
        if isinstance(table, dict):
            found.update(map(str, table))
    return {secret for secret in found if len(secret) >= SECRET_MIN_CHARS}
