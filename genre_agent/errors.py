"""The named family of errors genre-agent raises; each message says what to do next."""

from __future__ import annotations


class GenreAgentError(Exception):
    """Base class of every error genre-agent raises on purpose."""

    exit_code = 2


class ConfigError(GenreAgentError):
    """A setting is missing, unknown or out of range."""


class CatalogError(GenreAgentError):
    """A catalog file is unreadable, empty, or has a bad column or row."""


class UnknownUserError(GenreAgentError):
    """The user id has no interactions in the catalog and no query was given."""


class TemplateError(GenreAgentError):
    """A prompt template has a syntax error or uses an undefined variable."""


class BackendUnavailableError(GenreAgentError):
    """The LLM backend cannot be loaded or reached (model file, package, server)."""



class ContextLengthError(GenreAgentError):
    """A prompt does not fit the model's context window."""


class TurnCancelled(GenreAgentError):
    """The turn was cancelled (the client left, a deadline passed, the server stopped, Ctrl-C) while the model
    was answering; nothing of it was kept."""


class DataDirError(GenreAgentError):
    """A file in the data directory is corrupted, or the directory cannot be written."""
