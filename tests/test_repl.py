"""The terminal chat driven through a pseudo-terminal, as a person would use it."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pexpect
import pytest

from genre_agent.data.resources import shipped_dir

from conftest import TINY

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
PROMPT_ON, PROMPT_OFF = "\x1b[?2004h", "\x1b[?2004l"  # prompt_toolkit toggles bracketed paste per prompt


class Term:
    """A chat session in a pty; `say` sends a line and returns the screen text up to the next prompt."""

    def __init__(self, *args: str, timeout: int = 120) -> None:
        env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", "COLUMNS": "150"}
        self.child = pexpect.spawn(sys.executable, ["-m", "genre_agent.interfaces.cli", "chat", *args], env=env,
                                   encoding="utf-8", timeout=timeout, dimensions=(50, 150))
        self.child.expect_exact(PROMPT_ON)
        self.banner = ANSI.sub("", self.child.before)

    def say(self, line: str) -> str:
        self.child.sendline(line)
        self.child.expect_exact(PROMPT_OFF)  # the line was accepted
        self.child.expect_exact(PROMPT_ON)  # the answer is printed and the next prompt is up
        return ANSI.sub("", self.child.before)

    def quit(self) -> str:
        self.child.sendcontrol("d")
        self.child.expect(pexpect.EOF)
        return ANSI.sub("", self.child.before)


def test_multi_turn_session_with_slash_commands(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(shipped_dir("prompts") / "default", prompts)
    term = Term("--catalog", str(TINY), "--data-dir", str(tmp_path / "d"), "--backend", "fake", "-k", "2",
                "--prompts", str(prompts))
    assert "chatting as a new user" in term.banner
    assert "name a movie you loved" in term.say("hi")
    first = term.say("I loved Star Quest, no comedy please")
    assert "Star Quest II (1992)" in first and "no Comedy" in first
    # uncalibrated, the fake model is asked to rank and write reasons after the list is shown; it fails
    assert first.count("Star Quest II (1992)") == 1 and "(the model changed nothing: fallback" in first
    assert "Evidence:" in term.say("/why 1")
    assert "Noted: like" in term.say("/like 1")
    filters = term.say("/filters")
    assert "liked: Star Quest (1990), Star Quest II (1992)" in filters and "no Comedy" in filters
    term.child.send("half a line")
    term.child.sendcontrol("c")  # Ctrl-C at the prompt drops the line, the session goes on
    term.child.expect_exact(PROMPT_ON)
    assert "debug on" in term.say("/debug")
    (prompts / "rank.j2").write_text((prompts / "rank.j2").read_text() + "\nAnswer in French.")
    assert "reloaded templates" in term.say("/template reload")
    assert "Answer in French." in term.say("more")  # /debug shows the prompt the answer used
    assert "Unknown command" in term.say("/frobnicate")
    assert "preferences cleared" in term.say("/reset")
    assert "bye" in term.quit()


@pytest.mark.real
def test_real_model_in_the_terminal(tmp_path: Path) -> None:
    term = Term("--catalog", str(TINY), "--data-dir", str(tmp_path), "-k", "2", timeout=300)
    answer = term.say("I loved Star Quest, no comedy please")
    assert "llamacpp:smollm2-135m" in answer
    assert "Laugh Riot" not in answer and "Deep Space Comedy" not in answer
    assert "Evidence:" in term.say("why the first one?")
    assert "bye" in term.quit()


def test_the_repl_shows_the_list_then_the_models_reasons_as_they_come(tmp_path: Path) -> None:
    import json

    from rich.console import Console

    from genre_agent.chat.agent import LIVE, REVISED, Agent
    from genre_agent.interfaces.repl import Repl
    from genre_agent.llm.backends import FakeBackend
    from genre_agent.llm.routing import Routes

    from conftest import tiny_settings

    said = "A Horror film close to Star Quest (1990) that you liked."  # Horror: beyond its evidence sentence
    model = FakeBackend([json.dumps({"reason": "Close to Star Quest (1990), which you liked."}),  # adds nothing
                         json.dumps({"reason": said})])
    agent = Agent.from_config(tiny_settings(tmp_path, k=2), backend=model)
    agent.recommender.pinned_routes = Routes(ranking_weight=0.0, ranking_method="json", permutations=1,
                                             reasons=True)
    console = Console(record=True, width=200)
    repl = Repl(agent, console)
    repl.turn(repl.chat("I loved Star Quest, no comedy please"))
    text = console.export_text()
    table, _, after = text.partition(LIVE)
    assert "Star Quest II (1992)" in table and "Night Terror (1985)" in table  # the list, at once
    assert after.splitlines()[1] == f"2. Night Terror (1985) \u2014 {said}"
    assert "(the model's answer is the list above: LLM roles: reasons" in after
    assert REVISED not in text
