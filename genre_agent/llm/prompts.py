"""Prompt templates: Jinja files users own, rendered in a sandbox where an undefined variable is an error.

Each template receives one typed context (`llm.contexts`); loading a set checks every template's syntax and
that it uses only the variables its context has, so a broken set fails when it is loaded, naming file and line.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment, safe_range
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genre_agent.data.resources import shipped_dir
from genre_agent.errors import TemplateError
from genre_agent.llm.contexts import CONTEXT_OF, RankingContext, ReasonContext, TemplateContext, WritingContext
from genre_agent.retrieval.evidence import ReasonWriter, pack
from genre_agent.schemas import Evidence

REQUIRED = ("system.j2", "rank.j2", "understand_system.j2", "understand.j2")
OPTIONAL = ("score.j2", "reason.j2", "reason_system.j2", "reason_item.j2")
_JINJA_GLOBALS = {"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop", "true", "false", "none",
                  "True", "False", "None"}


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def header(source: str) -> str:
    """The leading {#- ... -#} comment of a template, where its variables are documented."""
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


def template_problems(env: jinja2.Environment, path: Path, name: str, headers: bool = True) -> list[Problem]:
    """Syntax errors and variables the template's context does not have; with `headers`, also a missing
    header or a variable used but not documented in it."""
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes().count(b"\n", 0, exc.start) + 1
        return [Problem(path, line, f"not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8")]
    try:
        tree = env.parse(source, name, str(path))
    except jinja2.TemplateSyntaxError as exc:
        return [Problem(path, exc.lineno, f"syntax error: {exc.message}")]
    problems = []
    doc = header(source) if headers else ""
    if headers and (not doc or "Variables" not in doc):
        problems.append(Problem(path, 1, "no header: start with a {#- ... -#} comment listing 'Variables:'"))
    receives = CONTEXT_OF[name].names()
    for var, line in sorted(_names_used(tree).items(), key=lambda kv: kv[1]):
        if var not in receives:
            close = difflib.get_close_matches(var, sorted(receives), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else f" It receives: {', '.join(sorted(receives))}."
            problems.append(Problem(path, line, f"'{var}' is not a variable of {name}.{hint}"))
        elif doc and not re.search(rf"\b{re.escape(var)}\b", doc):
            problems.append(Problem(path, 1, f"uses '{var}' but its header does not document it"))
    return problems


MAX_LOOP_STEPS = 1_000_000  # range() steps of one render; a template looping longer is stopped
MAX_REPEAT = 1_000_000  # longest string or list a template may build with * (and no ** over this)
_steps: ContextVar[list[int]] = ContextVar("template_loop_steps")


class _CountedRange:
    """`range` in templates: the sandbox's size limit, and every step counted against the render's budget."""

    def __init__(self, *args: int) -> None:
        self._range = safe_range(*args)

    def __len__(self) -> int:
        return len(self._range)

    def __iter__(self) -> Iterator[int]:
        budget = _steps.get(None)
        for i in self._range:
            if budget is not None:
                budget[0] -= 1
                if budget[0] < 0:
                    raise SecurityError(f"the template ran over {MAX_LOOP_STEPS:,} loop steps")
            yield i


class _BoundedEnvironment(SandboxedEnvironment):
    """The sandbox, plus limits on loops and on what `*` and `**` may build, so a template cannot hang or
    exhaust memory."""

    intercepted_binops = frozenset(["*", "**"])

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _CountedRange

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError(f"the template raises to the power {right}; the sandbox allows up to 64")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_REPEAT:
                    raise SecurityError(f"the template builds a sequence over {MAX_REPEAT:,} long")
        return super().call_binop(context, operator, left, right)


class Profile(BaseModel):
    """`profile.toml` of a template set (optional): what it is for, the set it falls back to for templates
    it does not have, and the reason length its wording asks for."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""
    extends: str | None = Field(None, description="a shipped set whose templates fill in the missing ones")
    reason_max_chars: int | None = Field(None, ge=40, le=400)


def load_profile(directory: Path) -> Profile:
    path = directory / "profile.toml"
    if not path.is_file():
        return Profile()
    try:
        return Profile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot parse: {exc}") from exc
    except ValidationError as exc:
        raise TemplateError(f"{path}: {exc}") from exc


def shipped_sets() -> dict[str, Path]:
    shipped = shipped_dir("prompts")
    return {p.name: p for p in sorted(shipped.iterdir()) if p.is_dir()}


def search_path(directory: Path) -> list[Path]:
    """The folder, then the shipped sets it extends, in order."""
    chain = [directory]
    while (parent := load_profile(chain[-1]).extends) is not None:
        sets = shipped_sets()
        if parent not in sets:
            raise TemplateError(f"{chain[-1] / 'profile.toml'}: extends '{parent}', which is not a shipped "
                                f"set ({', '.join(sets)}).")
        if sets[parent] in chain:
            raise TemplateError(f"{chain[-1] / 'profile.toml'}: extends '{parent}' in a cycle.")
        chain.append(sets[parent])
    return chain


def resolve_prompts_dir(name_or_path: str) -> Path:
    """A folder of templates as given, else a shipped template set of that name."""
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        sets = shipped_sets()
        if name_or_path not in sets:
            raise TemplateError(f"No prompt set '{name_or_path}': not a folder nor a shipped set "
                                f"({', '.join(sets)}).")
        path = sets[name_or_path]
    chain = search_path(path)
    missing = [name for name in REQUIRED if not any((d / name).is_file() for d in chain)]
    if missing:
        raise TemplateError(f"{path}: missing template(s) {', '.join(missing)}.")
    return path.resolve()


class Prompts:
    """The templates of one folder (and the sets it extends). Each render re-reads changed files."""

    def __init__(self, directory: Path, validate: bool = True) -> None:
        """With `validate`, a syntax error or an unknown variable in any template is an error now, not at the
        first request."""
        self.directory = directory
        self.chain = search_path(directory)
        if not any((d / "reason.j2").is_file() for d in self.chain):  # a set from before reason.j2 existed
            self.chain.append(shipped_sets()["default"])
        self.profile = load_profile(directory)
        self.env = _BoundedEnvironment(
            loader=jinja2.FileSystemLoader([str(d) for d in self.chain]),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=True,
        )
        problems = self.problems(headers=False) if validate else []
        if problems:
            raise TemplateError("\n".join(str(p) for p in problems) + "\n(`genre-agent prompts check` lists all "
                                "problems of a template set.)")

    def path_of(self, name: str) -> Path:
        """The file a template name resolves to (the first folder of the chain that has it)."""
        return next((d / name for d in self.chain if (d / name).is_file()), self.directory / name)

    def files(self) -> dict[str, Path]:
        """Every template the set has (required and optional), by name, with the file it resolves to."""
        return {name: self.path_of(name) for name in (*REQUIRED, *OPTIONAL) if self.path_of(name).is_file()}

    def problems(self, headers: bool = True) -> list[Problem]:
        """The problems of every template of the set (see `template_problems`)."""
        return [problem for name, path in self.files().items()
                for problem in template_problems(self.env, path, name, headers)]

    def reason_max_chars(self, configured: int) -> int:
        """The profile's reason length if it sets one, else the configured one."""
        return self.profile.reason_max_chars or configured

    def render(self, name: str, context: TemplateContext) -> str:
        """One template rendered with its context (the context's kind must be the one the template receives)."""
        if not isinstance(context, CONTEXT_OF[name]):
            raise TypeError(f"{name} receives a {CONTEXT_OF[name].__name__}, not a {type(context).__name__}")
        path = self.path_of(name)
        token = _steps.set([MAX_LOOP_STEPS])
        try:
            return self.env.get_template(name).render(**context.variables()).strip()
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename or path}:{exc.lineno}: {exc.message}") from exc
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{path}:{_line_of(exc, path)}: {exc.message}. "
                                f"See the variable list at the top of {name}.") from exc
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"{path}: template not found.") from exc
        except (SecurityError, OverflowError) as exc:  # OverflowError: the sandbox's range() limit
            raise TemplateError(f"{path}:{_line_of(exc, path)}: blocked by the sandbox: {exc}") from exc
        except RecursionError as exc:
            raise TemplateError(f"{path}: a macro calls itself without end") from exc
        except UnicodeDecodeError as exc:
            raise TemplateError(f"{path}: not UTF-8 text ({exc}); save it as UTF-8") from exc
        finally:
            _steps.reset(token)

    def reason_writer(self, max_chars: int, item_noun: str, item_noun_plural: str) -> ReasonWriter:
        """The evidence sentence of a candidate, worded by `reason.j2`: one phrase per line, strongest
        first, packed into one sentence of at most `max_chars`."""
        path = self.path_of("reason.j2")

        def write(evidence: Evidence, year: int | None, query: str | None, said_liked: frozenset[str]) -> str:
            context = ReasonContext(evidence=evidence, year=year, query=query, said_liked=sorted(said_liked),
                                    item_noun=item_noun, item_noun_plural=item_noun_plural)
            phrases = [line.strip() for line in self.render("reason.j2", context).splitlines() if line.strip()]
            if not phrases:
                raise TemplateError(f"{path}: rendered nothing for an item; it must write at least one phrase.")
            return pack(phrases, max_chars)

        return write

    def messages(self, context: RankingContext) -> list[dict[str, str]]:
        """The chat messages of a ranking request: static system prompt first, the request last."""
        return [
            {"role": "system", "content": self.render("system.j2", context)},
            {"role": "user", "content": self.render("rank.j2", context)},
        ]

    def writing_messages(self, context: WritingContext) -> list[dict[str, str]]:
        """The chat messages asking the model for one item's reason: static instructions first, the item last."""
        return [
            {"role": "system", "content": self.render("reason_system.j2", context)},
            {"role": "user", "content": self.render("reason_item.j2", context)},
        ]


def _line_of(exc: BaseException, path: Path) -> int | str:
    """The template line where rendering failed, from the traceback Jinja rewrites to template files."""
    tb = exc.__traceback__
    line: int | str = "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
