"""genre-agent: an offline conversational recommender — Chroma + CF retrieval, Jinja prompts, a local LLM.

Exports are resolved lazily (PEP 562) so that `genre-agent --help` does not import pandas or Chroma."""

from importlib import import_module
from typing import Any

from genre_agent.errors import (
    BackendUnavailableError,
    CatalogError,
    ConfigError,
    GenreAgentError,
    TemplateError,
    UnknownUserError,
)

_LAZY = {
    "Agent": "chat.agent",
    "Filters": "filters",
    "Reply": "chat.agent",
    "RecommendRequest": "schemas",
    "Recommender": "pipeline",
    "Recommendation": "schemas",
    "Recommendations": "schemas",
    "Run": "pipeline",
    "Settings": "settings",
    "load_settings": "settings",
}

__all__ = [
    "Agent",
    "BackendUnavailableError",
    "CatalogError",
    "ConfigError",
    "Filters",
    "GenreAgentError",
    "RecommendRequest",
    "Recommendation",
    "Recommendations",
    "Recommender",
    "Reply",
    "Run",
    "Settings",
    "TemplateError",
    "UnknownUserError",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'genre_agent' has no attribute {name!r}")
