"""Regenerate every transcript the README and the docs show, from the current code, so none can drift.

    python scripts/make_docs_transcripts.py [--data-dir DIR]

Each transcript sits in a Markdown file between `<!-- transcript: NAME -->` and `<!-- /transcript -->`; this
runs the commands behind each NAME (the bundled MovieLens catalog and model, real `genre-agent` processes: the
chat through a pseudo-terminal, the MCP server through the MCP SDK's stdio client) and rewrites the text
between the markers. Only what a terminal would leave on screen is kept: spinner frames and progress bars,
which redraw in place, are dropped. A marker whose NAME this script does not make is an error. DIR (default: a new
temporary folder) holds the index, models and feedback the commands use; a fresh one takes about a minute to
build here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from chat_transcript import chat

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKED = re.compile(r"(<!-- transcript: (?P<name>[\w-]+) -->\n)(.*?)(<!-- /transcript -->)", re.S)
SPINNER = re.compile(r"[\u2800-\u28ff] thinking\u2026")  # the REPL's spinner frames while a turn runs
PROGRESS = re.compile(r"^(?:[\w ]+ \u2501+ \d+/\d+ \S+)+$")  # rich progress bars (build steps), redrawn
CHAT = ["I loved The Matrix and Alien, no horror please", "more like the second one", "why that one?"]
# what people write beyond genres and titles (issue 37): people, places, denial, quality, length, missing titles
OPEN = ["Any good Tom Hanks movies?", "A movie about artificial intelligence that isn't dystopian",
        "I loved Parasite and Oldboy. Any other Korean thrillers?", "Best movies of 2015?",
        "Something like The Notebook but less sappy, and not too long please",
        "I loved Knives Out, something like it"]
COLUMNS = "120"


def _fenced(text: str) -> str:
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    return "```\n" + "\n".join(lines) + "\n```\n"


def _settled(text: str) -> str:
    """Screen text as it ends up: a progress bar or spinner redraws itself in place on a terminal, so only
    what stays is kept (each bar's last state is dropped too: it is gone once the command's output follows)."""
    text = SPINNER.sub("", text)
    return "\n".join(line for line in text.splitlines() if not PROGRESS.match(line))


def _run(*args: str, env: dict[str, str], cwd: Path | None = None) -> str:
    """`$ genre-agent ARGS` and what it printed (stdout, then stderr), as a terminal shows it."""
    done = subprocess.run([sys.executable, "-m", "genre_agent.interfaces.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=1800, check=False)
    shown = " ".join(a if re.fullmatch(r"[\w./:=-]+", a) else json.dumps(a) for a in args)
    printed = [part.strip("\n") for part in (done.stdout, _settled(done.stderr)) if part.strip()]
    return "\n".join([f"$ genre-agent {shown}", *printed])


def _chat(env: dict[str, str]) -> dict[str, str]:
    banner, _, turns = chat(CHAT, [], env)
    banner = banner[banner.index("genre-agent \u2014"):]  # after the build steps' progress bars
    lines = [banner] + [f"you> {t.said}\n{_settled(t.answer).strip()}" for t in turns]
    times = ", ".join(f"{t.seconds:.2f} s" for t in turns)
    caption = f"Wall time per turn, measured when this transcript was made: {times}.\n\n"
    return {"chat": caption + _fenced("\n".join(lines)),
            "chat-short": _fenced("\n".join(lines[:2]))}


def _feedback(env: dict[str, str]) -> str:
    """The chat's like of The Matrix in the feedback log, taken back, and the log after it."""
    newest = _run("feedback", "list", "--limit", "1", env=env)
    found = re.search(r"^([0-9a-f]{16})\s+\S+ \S+\s+(\S+)", newest, re.M)  # id, date time, user
    if found is None:
        raise SystemExit("the chat stored no feedback: `feedback list` has no event to show")
    event, user = found.groups()
    steps = [_run("feedback", "list", "--user", user, env=env), _run("feedback", "undo", event, env=env),
             _run("feedback", "list", "--user", user, env=env)]
    return _fenced("\n".join(steps))


def _config_show(env: dict[str, str]) -> str:
    """Where settings come from: a file (k = 7), the environment (ranking.retries), a flag (--prompts); the rows
    of those settings and two defaults."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "genre-agent.toml").write_text("k = 7\n", encoding="utf-8")
        shown = _run("config", "show", "--prompts", "critic", env={**env, "GENRE_AGENT_RANKING__RETRIES": "3"},
                     cwd=Path(folder))
    rows = [line for line in shown.splitlines()
            if re.match(r"│ (catalog|prompts|k|backend\.model|ranking\.retries) +│", line)]
    command = shown.splitlines()[0].replace("$ ", "$ GENRE_AGENT_RANKING__RETRIES=3 ", 1)
    return _fenced("\n".join([f"{command}     (excerpt: {len(rows)} rows)", *rows]))


def _mcp(env: dict[str, str]) -> str:
    """An MCP client (the SDK's) launching `genre-agent mcp` over stdio: the tools, then one `recommend`."""
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=["-m", "genre_agent.interfaces.cli", "mcp"],
                                   env=env)

    async def session() -> str:
        async with Client(params, read_timeout_seconds=600) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            arguments = {"query": "light-hearted space adventure", "k": 2, "exclude_genres": ["Horror"]}
            result = await client.call_tool("recommend", arguments)
        answer = result.structured_content or {}
        items = [{k: r[k] for k in ("rank", "item_id", "title", "reason")} for r in answer["recommendations"]]
        return (f">>> [t.name for t in (await client.list_tools()).tools]\n{tools}\n"
                f">>> (await client.call_tool(\"recommend\", {json.dumps(arguments)})).structured_content"
                f"[\"recommendations\"]  # rank, item_id, title, reason of each\n"
                f"{json.dumps(items, indent=2, ensure_ascii=False)}")

    return _fenced(asyncio.run(session()))


def transcripts(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "GENRE_AGENT_DATA_DIR": str(data_dir), "COLUMNS": COLUMNS,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("GENRE_AGENT_CATALOG", None)
    made: dict[str, str] = {}
    made.update(_chat(env))  # first: it builds the index, and `feedback` reads the like it stores
    makers: dict[str, Callable[[], str]] = {
        "feedback": lambda: _feedback(env),
        "recommend": lambda: _fenced(_run("recommend", "--user", "42", env=env)),
        "recommend-query": lambda: _fenced(_run("recommend", "--user", "42", "--query",
                                                "light-hearted space adventure", "--exclude-genre", "Horror",
                                                "-k", "5", env=env)),
        "recommend-json": lambda: _fenced(_run("recommend", "--user", "42", "--json", "-k", "2", env=env)),
        "recommend-unknown": lambda: _fenced(_run("recommend", "--user", "4242", env=env)),
        "open-requests": lambda: _fenced("\n".join(_run("recommend", "--query", q, "-k", "4", env=env)
                                                   for q in OPEN)),
        "mcp": lambda: _mcp(env),
        "config-show": lambda: _config_show(env),
    }
    for name, make in makers.items():
        made[name] = make()
        print(f"made {name}", file=sys.stderr)
    return made


def rewrite(pages: list[Path], made: dict[str, str]) -> None:
    """Put each transcript between its markers; a marker this script has no transcript for is an error."""
    for page in pages:
        text = page.read_text(encoding="utf-8")
        unknown = {m["name"] for m in MARKED.finditer(text)} - set(made)
        if unknown:
            raise SystemExit(f"{page}: no transcript named {', '.join(sorted(unknown))}")
        new = MARKED.sub(lambda m: m[1] + made[m["name"]] + m[4], text)
        if new != text:
            page.write_text(new, encoding="utf-8")
            print(f"rewrote {page.relative_to(ROOT)}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="genre-agent-docs-"))
    print(f"data dir {data_dir}; started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", file=sys.stderr)
    rewrite(PAGES, transcripts(data_dir))


if __name__ == "__main__":
    main()
