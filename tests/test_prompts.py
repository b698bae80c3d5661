"""The shipped templates render exactly as expected; template errors name the file and line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from genre_agent.errors import TemplateError
from genre_agent.llm.contexts import CONTEXT_OF, RankingContext, UnderstandingSystemContext
from genre_agent.llm.prompts import OPTIONAL, REQUIRED, Prompts, header, resolve_prompts_dir
from genre_agent.schemas import HistoryItem

from conftest import TINY
from helpers import CANDIDATES

VARIABLES = RankingContext(
    item_noun="movie", item_noun_plural="movies", k=2, reason_max_chars=140,
    history=[HistoryItem(item_id="1", title="Alien (1979)", genres=["Horror", "Sci-Fi"], year=1979, rating=5.0)],
    candidates=CANDIDATES[:2], query="space action", rules=["already-rated items are excluded", "no Horror"],
)

EXPECTED_SYSTEM = """\
You are a movie recommender. You choose movies only from the numbered candidate list you are given and explain each choice to the user.
Answer with JSON only, in this form:
{"recommendations": [{"item_id": "<an id from the candidate list>", "reason": "<one sentence>"}]}
Rules for each reason:
- one sentence, at most 140 characters, written to the user ("you");
- built only from the facts listed under that movie: name a movie the user liked, a shared genre, a tag or the year;
- never just the title or a genre name, never facts that are not listed."""

EXPECTED_RANK = """\
The user rated these movies highly:
- Alien (1979): 5.0/5

Candidates, best retrieval match first:
[10] Aliens (1986) | Sci-Fi, Action
  why: Close to Alien (1979), which you rated highly; Sci-Fi like your favourites.
[20] Predator (1987) | Action, Sci-Fi
  why: Close to Terminator, The (1984), which you rated highly; Action like your favourites.

The user asks for: "space action"
Already applied: already-rated items are excluded; no Horror.
Pick the 2 best movies for this user from the candidates, best first. For each, write a reason from its "why" line."""


def test_default_templates_render_exactly() -> None:
    prompts = Prompts(resolve_prompts_dir("default"))
    messages = prompts.messages(VARIABLES)
    assert messages == [{"role": "system", "content": EXPECTED_SYSTEM}, {"role": "user", "content": EXPECTED_RANK}]


def test_new_user_without_query() -> None:
    prompts = Prompts(resolve_prompts_dir("default"))
    text = prompts.render("rank.j2", VARIABLES.model_copy(update={"history": [], "query": None, "rules": []}))
    assert text.startswith("The user is new: no ratings yet.")
    assert "asks for" not in text and "Already applied" not in text


def _copy(tmp_path: Path) -> Path:
    src = resolve_prompts_dir("default")
    for name in ("system.j2", "rank.j2", "understand_system.j2", "understand.j2"):
        (tmp_path / name).write_text((src / name).read_text())
    return tmp_path


def test_misspelled_variable_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "rank.j2").write_text("line one\n{{ querry }}\n")
    with pytest.raises(TemplateError) as info:
        Prompts(folder).render("rank.j2", VARIABLES)
    assert f"{folder / 'rank.j2'}:2:" in str(info.value) and "querry" in str(info.value)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "system.j2").write_text("ok\n\n{% for x in %}\n")
    with pytest.raises(TemplateError, match=r"system.j2:3:"):
        Prompts(folder).render("system.j2", VARIABLES)


def test_sandbox_blocks_python_internals(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "rank.j2").write_text("{{ candidates[0].__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError):
        Prompts(folder).render("rank.j2", VARIABLES)


def test_edits_take_effect_on_the_next_render(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    prompts = Prompts(folder)
    before = prompts.render("rank.j2", VARIABLES)
    rank = folder / "rank.j2"
    rank.write_text(rank.read_text() + "\nAnswer in French.")
    os.utime(rank, (rank.stat().st_atime, rank.stat().st_mtime + 5))
    after = prompts.render("rank.j2", VARIABLES)
    assert after == before + "\n\nAnswer in French."


def test_missing_template_or_unknown_set(tmp_path: Path) -> None:
    (tmp_path / "system.j2").write_text("x")
    with pytest.raises(TemplateError, match="rank.j2"):
        resolve_prompts_dir(str(tmp_path))
    with pytest.raises(TemplateError, match="default"):
        resolve_prompts_dir("no-such-set")


def test_every_template_has_one_context_whose_fields_are_documented_and_sampled() -> None:
    assert set(CONTEXT_OF) == set(REQUIRED) | set(OPTIONAL)
    for context in set(CONTEXT_OF.values()):
        for name, field in context.model_fields.items():
            assert field.description and field.examples, (context.__name__, name)
        assert set(context.sample().variables()) == context.names()
    shipped = Prompts(resolve_prompts_dir("default")).files()
    for context in set(CONTEXT_OF.values()):  # the shipped headers document every variable the code passes
        doc = " ".join(header(shipped[name].read_text(encoding="utf-8")) for name in context.templates)
        assert all(var in doc for var in context.names()), context.__name__


def test_a_template_renders_only_with_its_own_context() -> None:
    prompts = Prompts(resolve_prompts_dir("default"))
    assert "Sci-Fi" in prompts.render("understand_system.j2", UnderstandingSystemContext(genres=["Sci-Fi"]))
    with pytest.raises(TypeError, match="rank.j2 receives a RankingContext"):
        prompts.render("rank.j2", UnderstandingSystemContext(genres=["Sci-Fi"]))


@pytest.mark.parametrize("role, expected", [
    ("ranking", ["[6] Deep Space Comedy (2001) | Sci-Fi, Comedy", "[3] Laugh Riot (1995) | Comedy",
                 "Star Quest II (1992)"]),  # the candidates and the user's history
    ("reasons", ["The movie: Deep Space Comedy (2001)", "Star Quest II (1992)"]),  # the first candidate's
    ("understand", ['Message: "something funny"', "Adventure, Comedy, Horror, Sci-Fi"]),  # the catalog's genres
])
def test_each_role_s_prompt_renders_with_the_catalog_s_data(tmp_path: Path, role: str, expected: list[str]
                                                               ) -> None:
    from typer.testing import CliRunner

    from genre_agent.interfaces.cli import app

    result = CliRunner().invoke(app, ["prompts", "render", "--catalog", str(TINY), "--data-dir", str(tmp_path),
                                      "--user", "a", "--query", "something funny", "--role", role])
    assert result.exit_code == 0, result.output
    assert all(text in result.stdout for text in expected), result.stdout
    assert result.stdout.count("--- system ---") == 1 and "prompt tokens" in result.stderr
