"""Drive a real `genre-agent chat` session through a pseudo-terminal and print it with the wall time per turn.

    python scripts/chat_transcript.py [--turns FILE] [extra chat options, e.g. --catalog goodbooks]

--turns FILE sends the lines of FILE instead of the built-in turns.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass

import pexpect

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
PROMPT_ON, PROMPT_OFF = "\x1b[?2004h", "\x1b[?2004l"  # prompt_toolkit toggles bracketed paste per prompt
TURNS = ["I loved The Matrix and Alien, no horror please", "more like the second one", "why that one?",
         "/like 1", "only films before 1990", "/more", "/filters"]


@dataclass
class Turn:
    said: str
    answer: str
    seconds: float


def chat(turns: list[str], args: list[str], env: dict[str, str] | None = None) -> tuple[str, float, list[Turn]]:
    """Run `genre-agent chat -k 5 ARGS` (this Python's genre_agent) in a 150-column pty, say each turn: the
    banner, the startup wall time and each turn's answer with its wall time."""
    env = {**os.environ, **(env or {}), "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", "COLUMNS": "150"}
    child = pexpect.spawn(sys.executable, ["-m", "genre_agent.interfaces.cli", "chat", "-k", "5", *args],
                          env=env, encoding="utf-8", timeout=600, dimensions=(60, 150))
    started = time.perf_counter()
    child.expect_exact(PROMPT_ON)
    banner, startup = ANSI.sub("", child.before).strip(), time.perf_counter() - started
    said: list[Turn] = []
    for line in turns:
        started = time.perf_counter()
        child.sendline(line)
        child.expect_exact(PROMPT_OFF)
        child.expect_exact(PROMPT_ON)
        said.append(Turn(line, ANSI.sub("", child.before).strip(), time.perf_counter() - started))
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    return banner, startup, said


def main() -> None:
    args = sys.argv[1:]
    turns = TURNS
    if args[:1] == ["--turns"]:
        with open(args[1], encoding="utf-8") as fh:
            turns = [line.rstrip("\n") for line in fh if line.strip()]
        args = args[2:]
    banner, startup, said = chat(turns, args)
    print(banner)
    print(f"[startup {startup:.1f} s]")
    for turn in said:
        print(f"you> {turn.said}")
        print(turn.answer)
        print(f"[turn wall time {turn.seconds:.1f} s]\n")


if __name__ == "__main__":
    main()
