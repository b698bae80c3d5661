"""genre-agent: an offline conversational recommender — Chroma + CF retrieval, Jinja prompts, a local LLM."""

from .candidates import Rules
from .errors import (
    BackendUnavailableError,
    CatalogError,
    ConfigError,
    GenreAgentError,
    InvalidModelOutputError,
    TemplateError,
    UnknownUserError,
)
from .pipeline import Recommender
from .schemas import Recommendation, Recommendations
from .settings import Settings, load_settings

__all__ = [
    "BackendUnavailableError",
    "CatalogError",
    "ConfigError",
    "GenreAgentError",
    "InvalidModelOutputError",
    "Recommendation",
    "Recommendations",
    "Recommender",
    "Rules",
    "Settings",
    "TemplateError",
    "UnknownUserError",
    "load_settings",
]
