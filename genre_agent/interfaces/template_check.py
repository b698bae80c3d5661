"""`genre-agent prompts check`: find what would break a template set before a request does.

Checks, each reported as `file:line: message`: Jinja syntax; variables a template uses but does not receive
(with a suggestion for misspellings) or does not document in its header — what a template receives is its
context in `llm.contexts`; and that the answer form the templates show the model matches what the ranking and
understanding steps validate, rendering each template on its context's example values.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from genre_agent.errors import TemplateError
from genre_agent.llm.contexts import RankingContext, ReasonContext, UnderstandingSystemContext
from genre_agent.llm.prompts import Problem, Prompts, resolve_prompts_dir


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return number
    return 1


def _check_answer_form(prompts: Prompts) -> list[Problem]:
    """The JSON form shown in the ranking prompt must have exactly the fields the ranking step validates."""
    from genre_agent.llm.ranking import answer_schema

    schema = answer_schema([], 1, 40)  # the fields are what matters here, not the bounds
    item_fields = list(schema["properties"]["recommendations"]["items"]["properties"])
    expected = {"recommendations": [dict.fromkeys(item_fields, "")]}
    system = prompts.path_of("system.j2")
    sample = RankingContext.sample()
    text = "\n".join(m["content"] for m in prompts.messages(sample))
    start = text.find('{"recommendations"')
    if start < 0:
        return [Problem(system, 1, 'the ranking prompt never shows the answer form {"recommendations": '
                                   '[{"item_id": ..., "reason": ...}]} that the ranking step validates')]
    try:
        shown, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        return [Problem(system, _line_of(system, '{"recommendations"'), f"the answer form is not JSON: {exc}")]
    items = shown.get("recommendations")
    fields = set(items[0]) if isinstance(items, list) and items and isinstance(items[0], dict) else set()
    if set(shown) != set(schema["properties"]) or fields != set(item_fields):
        return [Problem(system, _line_of(system, '{"recommendations"'),
                        f"the answer form shows {json.dumps(shown)[:120]}, but the ranking step expects "
                        f"{json.dumps(expected)} (keys recommendations, {', '.join(item_fields)})")]
    return []


def _check_update_fields(prompts: Prompts) -> list[Problem]:
    from genre_agent.chat.understanding import ModelUpdate

    path = prompts.path_of("understand_system.j2")
    text = prompts.render("understand_system.j2", UnderstandingSystemContext.sample())
    return [Problem(path, 1, f"does not mention the field '{f}' of the state update the chat step expects")
            for f in ModelUpdate.model_fields if f not in text]


def check(directory: str | Path) -> list[Problem]:
    """Every problem of a template set (a shipped name or a folder); [] when it is fine."""
    try:
        root = resolve_prompts_dir(str(directory))
        prompts = Prompts(root, validate=False)
    except TemplateError as exc:
        return [Problem(Path(str(directory)), 1, str(exc))]
    problems = prompts.problems()
    if problems:
        return problems  # rendering would fail on the same errors
    try:
        problems += _check_answer_form(prompts)
        problems += _check_update_fields(prompts)
        sample = ReasonContext.sample()
        prompts.reason_writer(140, sample.item_noun, sample.item_noun_plural)(
            sample.evidence, sample.year, "space", frozenset(sample.said_liked))
    except TemplateError as exc:  # raised by a render: "file:line: message"
        where = re.match(r"(.+?):(\d+): (.*)", str(exc), re.S)
        problems.append(Problem(Path(where[1]), int(where[2]), where[3]) if where else Problem(root, 1, str(exc)))
    return problems
