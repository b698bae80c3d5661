"""LLM backends, chosen by name from config among the classes registered in the entry point group
`genre_agent.backends` (the built-ins are registered there too: see pyproject.toml and docs/backends.md). Each
backend module imports its heavy SDK (llama_cpp, openai, langchain) only when a backend is created, so
importing this package stays cheap."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genre_agent.errors import ConfigError
from genre_agent.llm.backends.base import (
    Backend,
    BackendOptions,
    Capabilities,
    Completion,
    Message,
    OutputMode,
    Wrapper,
    heard,
    raise_if_cancelled,
)
from genre_agent.llm.backends.fake import FakeBackend
from genre_agent.plugins import GROUP, backend_plugins

if TYPE_CHECKING:
    from genre_agent.settings import Settings

__all__ = ["Backend", "BackendOptions", "Capabilities", "Completion", "FakeBackend", "Message", "OutputMode",
           "Wrapper", "backend_class", "heard", "make_backend", "raise_if_cancelled"]


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under a name (`backend.name` in the settings)."""
    cls = backend_plugins().get(name)
    if cls is None:
        raise ConfigError(f"No backend '{name}': choose one of {', '.join(backend_plugins())}, or install the "
                          f"package that registers it (entry point group {GROUP}).")
    if not issubclass(cls, Backend):
        raise ConfigError(f"The backend '{name}' ({cls.__module__}.{cls.__qualname__}) is not a subclass of "
                          "genre_agent.llm.backends.Backend: fix its package or uninstall it.")
    return cls


def make_backend(settings: Settings) -> Backend:
    """The configured backend, built from its own options."""
    return backend_class(settings.backend.name).from_settings(settings)
