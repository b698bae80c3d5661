"""LLM backends, chosen by name from config through one registry. Each backend module imports its heavy SDK
(llama_cpp, openai, langchain) only when a backend is created, so importing this package stays cheap."""

from __future__ import annotations

from genre_agent.errors import ConfigError
from genre_agent.llm.backends.base import Backend, Capabilities, Completion, Message, OutputMode, Wrapper
from genre_agent.llm.backends.fake import FakeBackend
from genre_agent.llm.backends.langchain import LangChainBackend
from genre_agent.llm.backends.llamacpp import LlamaCppBackend
from genre_agent.llm.backends.openai_compat import OpenAIBackend
from genre_agent.settings import Settings

__all__ = ["BACKENDS", "Backend", "Capabilities", "Completion", "FakeBackend", "Message", "OutputMode", "Wrapper",
           "backend_class", "make_backend"]

BACKENDS: dict[str, type[Backend]] = {cls.name: cls for cls in (LlamaCppBackend, OpenAIBackend,
                                                                 LangChainBackend, FakeBackend)}


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under a name (`backend.name` in the settings)."""
    if name not in BACKENDS:
        raise ConfigError(f"No backend '{name}': choose one of {', '.join(BACKENDS)}.")
    return BACKENDS[name]


def make_backend(settings: Settings) -> Backend:
    """The configured backend, built from its own options."""
    return backend_class(settings.backend.name).from_settings(settings)
