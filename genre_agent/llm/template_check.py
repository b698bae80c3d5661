"""`genre-agent prompts check`: find what would break a template set before a request does.

Checks, each reported as `file:line: message`: Jinja syntax; variables a template uses but does not receive
(with a suggestion for misspellings) or does not document in its header; and that the answer form the
templates show the model matches what the ranking and understanding steps validate.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2 import nodes

from genre_agent.errors import TemplateError
from genre_agent.llm.prompts import Prompts, resolve_prompts_dir

_RANK = {"item_noun", "item_noun_plural", "k", "reason_max_chars", "history", "candidates", "query", "rules"}
RECEIVES: dict[str, set[str]] = {
    "system.j2": _RANK,
    "rank.j2": _RANK,
    "understand_system.j2": {"genres"},
    "understand.j2": {"message", "state", "last", "genres"},
    "score.j2": {"item_noun", "item_noun_plural", "history", "candidates", "labels", "query"},
}
_JINJA_GLOBALS = {"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop", "true", "false", "none",
                  "True", "False", "None"}


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _header(source: str) -> str:
    match = re.match(r"\s*\{#-?(.*?)-?#\}", source, re.S)
    return match.group(1) if match else ""


def _names_used(tree: nodes.Template) -> dict[str, int]:
    """Variables read from the context (not set inside the template), with the first line of each."""
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    used: dict[str, int] = {}
    for n in tree.find_all(nodes.Name):
        if n.ctx == "load" and n.name not in assigned and n.name not in _JINJA_GLOBALS:
            used.setdefault(n.name, n.lineno)
    return used


def _source_line(data: bytes, offset: int) -> int:
    """The line number of a byte offset."""
    return data.count(b"\n", 0, offset) + 1


def _check_template(env: jinja2.Environment, path: Path, name: str, headers: bool = True) -> list[Problem]:
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return [Problem(path, _source_line(path.read_bytes(), exc.start), f"not UTF-8 text ({exc.reason} at byte "
                        f"{exc.start}); save the file as UTF-8")]
    try:
        tree = env.parse(source, name, str(path))
    except jinja2.TemplateSyntaxError as exc:
        return [Problem(path, exc.lineno, f"syntax error: {exc.message}")]
    problems = []
    header = _header(source) if headers else ""
    if headers and (not header or "Variables" not in header):
        problems.append(Problem(path, 1, "no header: start with a {#- ... -#} comment listing 'Variables:'"))
    receives = RECEIVES[name]
    for var, line in sorted(_names_used(tree).items(), key=lambda kv: kv[1]):
        if var not in receives:
            close = difflib.get_close_matches(var, sorted(receives), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else f" It receives: {', '.join(sorted(receives))}."
            problems.append(Problem(path, line, f"'{var}' is not a variable of {name}.{hint}"))
        elif header and not re.search(rf"\b{re.escape(var)}\b", header):
            problems.append(Problem(path, 1, f"uses '{var}' but its header does not document it"))
    return problems


def load_problems(prompts: Prompts) -> list[Problem]:
    """Syntax errors and unknown variables: what makes a set unusable, checked when it is loaded."""
    return [problem for name, path in prompts.files().items()
            for problem in _check_template(prompts.env, path, name, headers=False)]


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return number
    return 1


def _check_answer_form(prompts: Prompts, sample: dict[str, object]) -> list[Problem]:
    """The JSON form shown in the ranking prompt must have exactly the fields the ranking step validates."""
    from genre_agent.llm.ranking import answer_schema

    schema = answer_schema([], 1, 40)  # the fields are what matters here, not the bounds
    item_fields = list(schema["properties"]["recommendations"]["items"]["properties"])
    expected = {"recommendations": [dict.fromkeys(item_fields, "")]}
    system = prompts.path_of("system.j2")
    text = "\n".join(m["content"] for m in prompts.messages(**sample))
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
    text = prompts.render("understand_system.j2", genres=["Drama"])
    return [Problem(path, 1, f"does not mention the field '{f}' of the state update the chat step expects")
            for f in ModelUpdate.model_fields if f not in text]


def check(directory: str | Path) -> list[Problem]:
    """Every problem of a template set (a shipped name or a folder); [] when it is fine."""
    try:
        root = resolve_prompts_dir(str(directory))
        prompts = Prompts(root, validate=False)
    except TemplateError as exc:
        return [Problem(Path(str(directory)), 1, str(exc))]
    problems = [problem for name, path in prompts.files().items()
                for problem in _check_template(prompts.env, path, name)]
    if problems:
        return problems  # rendering would fail on the same errors
    try:
        problems += _check_answer_form(prompts, sample_variables())
        problems += _check_update_fields(prompts)
    except TemplateError as exc:  # raised by a render: "file:line: message"
        where = re.match(r"(.+?):(\d+): (.*)", str(exc), re.S)
        problems.append(Problem(Path(where[1]), int(where[2]), where[3]) if where else Problem(root, 1, str(exc)))
    return problems


def sample_variables() -> dict[str, object]:
    """Variables of a ranking request on made-up data, to render the templates without a catalog."""
    from genre_agent.schemas import Candidate, Evidence, HistoryItem, Scores

    evidence = Evidence(shared_genres=["Sci-Fi"], similar_liked=["Alien (1979)"], liked_by=12,
                        drawbacks=["older (1968) than most movies you liked (around 1995)"])
    candidate = Candidate(item_id="1", title="Solaris (1972)", genres=["Sci-Fi", "Drama"], year=1972, tags=[],
                          scores=Scores(vector=0.5, cf=0.1, fused=1.0), evidence=evidence,
                          facts=["like Alien (1979) (user liked)"], why="Close to Alien (1979).")
    history = [HistoryItem(item_id="2", title="Alien (1979)", genres=["Sci-Fi"], year=1979, rating=5.0)]
    return {"item_noun": "movie", "item_noun_plural": "movies", "k": 1, "reason_max_chars": 140,
            "history": history, "candidates": [candidate], "query": None, "rules": []}
