"""Backend plug-ins: the classes registered in the entry-point group `genre_agent.backends`.

genre-agent's own backends (fake, llamacpp, openai, langchain) are registered there by its pyproject.toml,
exactly as a third-party package registers one; nothing in the code lists them. An entry point's name is the
backend's name (`backend.name`), its value the class (`package.module:Class`). Loading imports each backend's
module only: a backend imports its heavy SDK when it is created, so this stays cheap.

This module imports nothing of the package, so the settings (which build their [backend.<name>] sections
from each backend's `Options` model) and the backend registry can both read it.
"""

from __future__ import annotations

import warnings
from functools import cache
from importlib.metadata import entry_points

from genre_agent.errors import ConfigError

GROUP = "genre_agent.backends"
BUILT_IN = "llamacpp"  # the default backend; its absence means genre-agent's metadata is stale


def backend_names() -> list[str]:
    """The registered backends' names, sorted, read from the metadata without importing any (for `--help`)."""
    return sorted(set(entry_points(group=GROUP).names))


@cache
def backend_plugins() -> dict[str, type]:
    """Backend name -> its class, for every entry point of the group that loads and names a class whose `name`
    is the entry point's and whose `Options` is a pydantic model. One that does not is left out with a
    warning that says what to fix (a broken plug-in does not stop the others)."""
    from pydantic import BaseModel

    found: dict[str, type] = {}
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        where = f"backend plug-in '{point.name}' ({point.value}, entry point group {GROUP})"
        try:
            cls = point.load()
        except Exception as exc:  # any error of a third-party module: say which and go on
            warnings.warn(f"{where} cannot be imported ({exc!r}): it is left out; fix or uninstall its package "
                          "(a backend module imports genre_agent.settings only under TYPE_CHECKING: the "
                          "settings load the backends).", stacklevel=2)
            continue
        options = getattr(cls, "Options", None)
        if not (isinstance(cls, type) and getattr(cls, "name", None) == point.name and isinstance(options, type)
                and issubclass(options, BaseModel)):
            warnings.warn(f"{where} is not a backend class named '{point.name}' with a pydantic Options model: "
                          "it is left out; subclass genre_agent.llm.backends.Backend and set name and Options.",
                          stacklevel=2)
            continue
        if point.name in found and found[point.name] is not cls:
            raise ConfigError(f"Two packages register the backend '{point.name}' ({GROUP}): uninstall one.")
        found[point.name] = cls
    if BUILT_IN not in found:
        raise ConfigError(f"genre-agent's own backends are not registered (entry point group {GROUP}): its "
                          "installed metadata is missing or older than its code; reinstall it "
                          "(`pip install -e .` in a checkout).")
    return found
