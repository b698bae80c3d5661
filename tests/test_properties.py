"""Property-based hostile input (hypothesis): chat messages, config values, template text and catalog cells.
Whatever comes in, the answer is a reply or an error of the named family; never a traceback, never an item
outside the catalog's candidates. Bounded (few examples, no deadline) so the file runs in seconds."""

from __future__ import annotations

import json
import os
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import Environment, TemplateSyntaxError

from genre_agent.chat.agent import Agent
from genre_agent.data.catalog import load_catalog
from genre_agent.errors import GenreAgentError
from genre_agent.interfaces.template_check import check
from genre_agent.llm.backends import FakeBackend
from genre_agent.llm.prompts import resolve_prompts_dir
from genre_agent.settings import known_keys, load_settings

from conftest import TINY, tiny_settings

BOUNDED = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text a hostile user would type: markup, template syntax, ordinals, titles, control and wide characters.
FRAGMENTS = ["[/x]", "[bold]", "{{ x }}", "{% for %}", "\x00", "\u202e", "🎬", "the second one", "not", "no",
             "I loved", "hated", "Star Quest", "Night Terror", "why", "more", "reset", "after 2000",
             "before 1990", "comedy", "horror", "'", '"', "\\", "\n", " ", "9" * 30, "-1", "inf", "nan"]
hostile_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=20)), max_size=12).map("".join)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    return Agent.from_config(tiny_settings(tmp_path_factory.mktemp("props"), k=3), backend=FakeBackend())


@BOUNDED
@given(turns=st.lists(hostile_text, min_size=1, max_size=3))
def test_any_chat_message_gets_a_reply_with_only_catalog_items(agent: Agent, turns: list[str]) -> None:
    session = f"s{abs(hash(tuple(turns)))}"
    items = set(agent.recommender.catalog.items.index)
    try:
        for text in turns:
            reply = agent.chat(session, text)
            shown = [r.item_id for r in reply.recommendations.recommendations] if reply.recommendations else []
            assert set(shown) <= items and len(shown) == len(set(shown))
            assert reply.explained_item is None or reply.explained_item in items
    except GenreAgentError:
        pass
    finally:
        agent.forget(session)


@BOUNDED
@given(history=st.lists(st.tuples(st.sampled_from(["user", "assistant", "system", "tool"]), hostile_text),
                        max_size=6))
def test_any_conversation_history_can_be_restored(agent: Agent, history: list[tuple[str, str]]) -> None:
    session = f"r{abs(hash(tuple(history)))}"
    try:
        agent.restore(session, history)
        state = agent.session(session)
        items = set(agent.recommender.catalog.items.index)
        assert set(state.last) <= items and set(state.liked) <= items
    finally:
        agent.forget(session)


@BOUNDED
@given(key=st.sampled_from(known_keys()),
       value=st.one_of(st.text(max_size=30), st.sampled_from(["-1", "0", "1e309", "nan", "inf", "notjson",
                                                              "{}", "[]", "null", '{"a": 1}', "true", "-99999"])))
def test_any_config_value_is_accepted_or_a_config_error(key: str, value: str) -> None:
    if "\x00" in value:
        value = value.replace("\x00", "")  # the OS cannot carry NUL in an environment variable
    name = "GENRE_AGENT_" + key.upper().replace(".", "__")
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        load_settings()
    except GenreAgentError as exc:  # refused: the message names the setting, so the user knows which to fix
        assert name in str(exc) or re.search(rf"(^|[ (]){re.escape(key)}[.:]", str(exc)), str(exc)
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


TEMPLATE_BITS = ["{{", "}}", "{%", "%}", "{#", "#}", " for x in range(100000) ", " endfor ", " if ", " endif ",
                 " candidates ", " k ", " query ", "|", "join", "(", ")", "'", "*", "**", "9", "x", ".",
                 "__class__", " set ", "=", " macro m() ", " endmacro ", "m()", "\n", "\xff"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(TEMPLATE_BITS), max_size=20).map("".join))
def test_any_template_text_is_checked_without_a_traceback(tmp_path_factory: pytest.TempPathFactory,
                                                          text: str) -> None:
    folder = tmp_path_factory.mktemp("tpl")
    (folder / "profile.toml").write_text('extends = "default"\n')
    (folder / "rank.j2").write_text(text, encoding="utf-8")
    problems = check(folder)
    try:
        Environment().parse(text)
    except TemplateSyntaxError:
        assert any(p.path.name == "rank.j2" for p in problems)  # text Jinja cannot parse is reported
    for p in problems:  # each names a file of the set (or of the set it extends) and a line of that file
        lines = p.path.read_text(encoding="utf-8").count("\n") + 1
        assert p.path.parent in (folder, resolve_prompts_dir("default")) and 1 <= p.line <= lines, p


CELLS = st.one_of(st.text(alphabet=string.printable, max_size=12), st.none(), st.integers(), st.floats(),
                  st.sampled_from(["inf", "-inf", "nan", "", "None", "[/x]", "a/../b", "1e400"]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(CELLS, CELLS, CELLS, CELLS), min_size=1, max_size=6))
def test_any_jsonl_ratings_load_or_name_the_problem(tmp_path_factory: pytest.TempPathFactory,
                                                    rows: list[tuple[object, ...]]) -> None:
    folder = tmp_path_factory.mktemp("cat")
    for name in ("catalog.toml", "items.csv", "tags.csv"):
        (folder / name).write_bytes((TINY / name).read_bytes())
    lines = [json.dumps({"user": u, "item": i, "rating": r, "ts": t}) for u, i, r, t in rows]
    (folder / "ratings.jsonl").write_text("\n".join(lines) + "\n")
    toml = folder / "catalog.toml"
    toml.write_text(toml.read_text().replace("ratings.csv", "ratings.jsonl"))
    try:
        catalog = load_catalog(str(folder))
    except GenreAgentError:
        return
    assert set(catalog.interactions.item_id) <= set(catalog.items.index)
    assert catalog.interactions.timestamp.dtype == "int64"

