"""Prompt templates: Jinja files users own, rendered in a sandbox where an undefined variable is an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from .errors import TemplateError
from .resources import shipped_dir

REQUIRED = ("system.j2", "rank.j2", "understand_system.j2", "understand.j2")


def resolve_prompts_dir(name_or_path: str) -> Path:
    """A folder of templates as given, else a shipped template set of that name."""
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        shipped = shipped_dir("prompts")
        if not (shipped / name_or_path).is_dir():
            names = ", ".join(sorted(p.name for p in shipped.iterdir() if p.is_dir()))
            raise TemplateError(f"No prompt set '{name_or_path}': not a folder nor a shipped set ({names}).")
        path = shipped / name_or_path
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise TemplateError(f"{path}: missing template(s) {', '.join(missing)}.")
    return path.resolve()


class Prompts:
    """The templates of one folder. Each render re-reads changed files (Jinja's auto_reload)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(directory)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=True,
        )

    def render(self, name: str, **variables: Any) -> str:
        path = self.directory / name
        try:
            return self.env.get_template(name).render(**variables).strip()
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename or path}:{exc.lineno}: {exc.message}") from exc
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{path}:{_line_of(exc, path)}: {exc.message}. "
                                f"See the variable list at the top of {name}.") from exc
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"{path}: template not found.") from exc
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"{path}: blocked by the sandbox: {exc}") from exc

    def messages(self, **variables: Any) -> list[dict[str, str]]:
        """The chat messages of a ranking request: static system prompt first, the request last."""
        return [
            {"role": "system", "content": self.render("system.j2", **variables)},
            {"role": "user", "content": self.render("rank.j2", **variables)},
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
