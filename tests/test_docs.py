"""The README stays a landing page CI can run, and every transcript the docs show was written by
scripts/make_docs_transcripts.py (issue 25)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
MARKED = re.compile(r"<!-- transcript: ([\w-]+) -->\n(.*?)<!-- /transcript -->", re.S)


def test_the_readme_is_short_and_its_test_command_builds_the_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    install, test = re.findall(r"```bash\n(.*?)```", readme, re.S)[:2]
    assert "pip install -e \".[test]\"" in install and "genre-agent chat" in install
    assert "mkdocs build --strict" in test and "pytest" in test


def test_every_transcript_is_filled_in() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    made = {name: body for page in pages for name, body in MARKED.findall(page.read_text(encoding="utf-8"))}
    assert {"chat", "chat-short", "recommend", "recommend-json", "feedback", "mcp", "config-show"} <= set(made)
    empty = [name for name, body in made.items() if "```\n$ " not in body and "```\ngenre-agent" not in body
             and "```\n>>> " not in body]
    assert not empty, f"transcripts not made: {empty} (run scripts/make_docs_transcripts.py)"
