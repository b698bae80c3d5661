"""Where the shipped catalogs and prompt templates live (source checkout or installed wheel)."""

from __future__ import annotations

from pathlib import Path

from genre_agent.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent.parent  # genre_agent/


def shipped_dir(kind: str) -> Path:
    """The shipped `catalogs` or `prompts` folder: top-level in a checkout, `_shipped/` in a wheel."""
    for candidate in (_PACKAGE.parent / kind, _PACKAGE / "_shipped" / kind):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"The shipped '{kind}' folder is missing: reinstall genre-agent.")
