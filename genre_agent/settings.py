"""Every knob in one place: `genre-agent.toml` (or --config), then GENRE_AGENT_* env vars, then CLI flags."""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from genre_agent.errors import ConfigError
from genre_agent.filters import Filters


def default_data_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genre-agent"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackendSettings(_Section):
    name: Literal["llamacpp", "openai", "langchain", "fake"] = "llamacpp"
    model: str = Field("smollm2-135m", description="llamacpp: registered name or .gguf path; openai: the "
                       "server's model id; langchain: 'provider:model' for init_chat_model; fake: answers file")
    base_url: str | None = Field(None, description="OpenAI-compatible server URL (openai backend)")
    api_key: SecretStr | None = Field(None, description="set with GENRE_AGENT_BACKEND__API_KEY")
    temperature: float = 0.0
    max_tokens: int = 1024
    timeout_s: float = 120.0
    retries: int = Field(1, ge=0, le=5, description="re-asks after an invalid answer, then fallback")
    reason_max_chars: int = Field(140, ge=40, le=400)
    n_ctx: int = 8192
    threads: int = 2
    seed: int = 0


class RetrievalSettings(_Section):
    candidates: int = Field(20, ge=1, le=200)
    cf_model: Literal["ease", "itemknn", "als"] = "ease"
    weight_query: float = 1.0
    weight_profile: float = 0.1  # tuned on a validation split (genre-agent eval --tune), 0.3 scored lower
    weight_cf: float = 1.0
    weight_popularity: float = 0.05
    weight_needs: float = Field(1.0, description="weight of the request's needs (its words mapped to the "
                                "catalog's genres and tags by meaning) in the fused score; 1.0 raised "
                                "Recall@10 on the ReDial dev dialogues from 0.033 to 0.050 (300 cases)")
    vector_pool: int = Field(1000, ge=10, description="nearest items fetched from Chroma per vector query")
    mmr_lambda: float = Field(1.0, ge=0.0, le=1.0, description="diversity of the candidate list: 1 = by score "
                              "only (default), lower = maximal marginal relevance trades score for variety")


class ConversationSettings(_Section):
    understand_with_llm: bool = Field(True, description="also ask the LLM to read each chat message "
                                      "(its proposals are kept only where grounded in the message)")


class ChromaSettings(_Section):
    host: str | None = Field(None, description="a `chroma run` server; unset = embedded PersistentClient")
    port: int = 8000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GENRE_AGENT_", env_nested_delimiter="__", extra="forbid", toml_file="genre-agent.toml"
    )

    catalog: str = "movielens"
    data_dir: Path = Field(default_factory=default_data_dir)
    prompts: str = Field("default", description="a shipped prompt set name or a folder of templates")
    k: int = Field(10, ge=1, le=50)
    backend: BackendSettings = BackendSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    rules: Filters = Field(default_factory=Filters,
                           description="standing filters, applied to every request on top of its own")
    chroma: ChromaSettings = ChromaSettings()
    conversation: ConversationSettings = ConversationSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def _sections() -> dict[str, type[BaseModel]]:
    """The [section] tables of the settings, by name."""
    return {name: field.annotation for name, field in Settings.model_fields.items()
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)}


def known_keys() -> list[str]:
    """Every settable key, dotted: "k", "backend.model", ..."""
    sections = _sections()
    return [key for name in Settings.model_fields
            for key in ([f"{name}.{sub}" for sub in sections[name].model_fields] if name in sections else [name])]


def flatten(data: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of settings data: sections are opened one level, values that are tables (rules.where)
    stay whole."""
    sections = _sections()
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in sections and isinstance(value, dict):
            out.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            out[key] = value
    return out


def _config_path(config: Path | None) -> Path | None:
    path = config if config is not None else Path("genre-agent.toml")
    return path if path.is_file() else None


def file_values(config: Path | None) -> dict[str, Any]:
    """The dotted keys set in the config file (the explicit one, else ./genre-agent.toml if present)."""
    path = _config_path(config)
    if path is None:
        return {}
    try:
        return flatten(tomllib.loads(path.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc


def env_values() -> dict[str, str]:
    """The dotted keys set by GENRE_AGENT_* environment variables."""
    prefix = "GENRE_AGENT_"
    return {k[len(prefix):].lower().replace("__", "."): v for k, v in os.environ.items()
            if k.startswith(prefix) and k != "GENRE_AGENT_API_KEY"}  # the server's key, not a setting


def _check_keys(keys: dict[str, Any], where: str) -> None:
    known = known_keys()
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else " `genre-agent config show` lists every key."
            raise ConfigError(f"{where}: unknown setting '{key}'.{hint}")


def sources(config: Path | None, overrides: dict[str, Any]) -> dict[str, str]:
    """Where each key's effective value comes from: flag, env, file or default."""
    file, env = file_values(config), env_values()
    flags = {k for k, v in overrides.items() if v is not None}
    path = _config_path(config)
    return {key: "flag" if key in flags else "env" if key in env else f"file {path}" if key in file
            else "default" for key in known_keys()}


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the TOML file (default ./genre-agent.toml), env vars and `overrides` (highest).

    Nested overrides use dotted keys, e.g. ``{"backend.name": "fake"}``; None values are ignored."""
    if config is not None and not config.is_file():
        raise ConfigError(f"{config}: config file not found.")
    _check_keys(file_values(config), str(_config_path(config)))
    _check_keys(env_values(), "environment (GENRE_AGENT_*)")
    cls: type[Settings] = Settings
    if config is not None:
        cls = type("Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": config}})
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = key.split(".")
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    try:
        return cls(**nested)  # init values win; nested sections are deep-merged with the other sources
    except ValidationError as exc:
        raise ConfigError(f"Invalid settings ({config or 'genre-agent.toml / env'}): {exc}") from exc
