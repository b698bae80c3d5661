"""Every knob in one place: `genre-agent.toml` (or --config), then GENRE_AGENT_* env vars, then CLI flags."""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from genre_agent.errors import ConfigError
from genre_agent.filters import Filters
from genre_agent.plugins import GROUP, backend_plugins
from genre_agent.sanitize import redact


def default_data_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genre-agent"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


OptionsT = TypeVar("OptionsT", bound=BaseModel)


class BackendSettings(_Section):
    """Which backend and model; each registered backend's own options in its sub-table ([backend.llamacpp],
    …), of the backend's `Options` model (see `with_backend_sections`)."""

    name: str = Field("llamacpp", description="a backend registered in the entry point group "
                      "genre_agent.backends: llamacpp, openai, langchain, fake or a plug-in's")
    model: str = Field("smollm2-135m", description="llamacpp: registered name or .gguf path; openai: the "
                       "server's model id; langchain: 'provider:model' for init_chat_model; fake: answers file")
    temperature: float = 0.0

    def options(self, kind: type[OptionsT]) -> OptionsT:
        """The sub-table of the model `kind`, e.g. `settings.backend.options(LlamaCppOptions)`."""
        value = getattr(self, self._section(kind))
        assert isinstance(value, kind)
        return value

    def with_options(self, options: BaseModel) -> Self:
        """A copy with the sub-table of `options`' model replaced by it."""
        return self.model_copy(update={self._section(type(options)): options})

    def _section(self, kind: type[BaseModel]) -> str:
        """The name of the sub-table of the model `kind`: the configured backend's if it is of that model (two
        backends may share one), else the first one."""
        fields = type(self).model_fields
        for name in sorted(fields, key=lambda n: n != self.name):
            if fields[name].annotation is kind:
                return name
        raise ConfigError(f"No backend of these settings has the options {kind.__name__}: register its backend "
                          f"in the entry point group {GROUP}.")


def with_backend_sections(base: type[BackendSettings]) -> type[BackendSettings]:
    """`base` with one sub-table per registered backend ([backend.<name>], of its `Options` model), and `name`
    restricted to the registered backends."""
    plugins = backend_plugins()
    sections: dict[str, Any] = {name: (cls.Options, Field(default_factory=cls.Options,  # type: ignore[attr-defined]
                                                          description=f"options of the {name} backend"))
                                for name, cls in plugins.items()}
    names = Literal[tuple(plugins)]  # type: ignore[valid-type]
    return create_model("BackendSettings", __base__=base, __doc__=base.__doc__,
                        name=(names, base.model_fields["name"]), **sections)  # type: ignore[arg-type]


if TYPE_CHECKING:  # the type checker sees the static part (name, model, temperature, options())
    Backends = BackendSettings
else:  # at run time: one sub-table per backend registered when the package is imported
    Backends = with_backend_sections(BackendSettings)


class RankingSettings(_Section):
    """Ranking policy, whatever the backend: answer budget, re-asks, reason length."""

    retries: int = Field(1, ge=0, le=5, description="re-asks after an invalid answer, then fallback")
    reason_max_chars: int = Field(140, ge=40, le=400, description="a template set's profile.toml may override")
    max_tokens: int = Field(1024, ge=16, description="answer budget of one ranking call")
    reasons_deadline_s: float = Field(
        20.0, gt=0, description="the model writes reasons item by item for at most this long; the items it has "
        "not reached by then keep their evidence sentence (the target is ten reasons in 15 s on 2 cores)")


class RetrievalSettings(_Section):
    candidates: int = Field(20, ge=1, le=200)
    cf_model: Literal["ease", "itemknn", "als"] = "ease"
    als_factors: Path | None = Field(None, description="with cf_model = 'als': load factors trained elsewhere "
                                     "(Spark MLlib: userFactors/ and itemFactors/ Parquet, columns id, features) "
                                     "instead of training here")
    weight_query: float = 1.0
    weight_profile: float = 0.1  # chosen by `genre-agent eval --tune`: docs/evaluation.md, `hybrid`
    weight_profile_new_user: float = Field(
        1.0, description="the taste profile's weight for a user the catalog has no history of: their profile is "
        "the titles they said they liked. ReDial dev Recall@10 (600 cases, rules only): 0.093 at 0.1 (the catalog "
        "users' weight) -> 0.102 at 1.0; books 'like <book>' requests (tests/data/requests/books.jsonl, dev): "
        "Harry Potter + The Hobbit 0.2 -> 0.8 (docs/eval/requests/books-goodbooks)")
    weight_cf: float = 1.0
    weight_popularity: float = 0.05
    weight_popularity_new_user: float = Field(
        2.0, ge=0, description="popularity's weight for a user the catalog has no history of (a chat user known "
        "only by what they said), divided by 1 + the titles they named, with the recent popularity below; "
        "Recall@10 on the 1823 ReDial dev cases, re-scored: 0.038 at 0.05 (the catalog users' weight) -> 0.088 "
        "(docs/eval/redial/dev-measurements.md)")
    popularity_half_life_days: float | None = Field(
        1461.0, gt=0, description="for new users, a like counts half as much this many days before the catalog's "
        "newest interaction (what is popular now); unset = all likes count the same. Ignored when the catalog "
        "has no timestamp column")
    weight_needs: float = Field(1.0, description="weight of the request's needs (its words mapped to the "
                                "catalog's genres and tags by meaning) in the fused score; 1.0 raised "
                                "Recall@10 on the ReDial dev dialogues from 0.033 to 0.050 (300 cases)")
    weight_about: float = Field(1.0, description="weight of the similarity of a request's words to what items are "
                                "about ([text].about in catalog.toml) in the fused score, where the gate below "
                                "applies. Themed dev requests (tests/data/requests): 0.71 at 0 -> 0.73 at 1.0; "
                                "added to every request it cost ReDial dev Recall@10 0.093 -> 0.087 (600 cases)")
    match_pool: int | None = Field(20, ge=1, description="when a request names no title and some items are about "
                                   "its words (theme_min), only the N items that fit them best (by what they are "
                                   "about and the genres and tags the words mean) are ranked; popularity and CF "
                                   "order those. Themed dev requests: 0.34 ungated -> 0.73 at 20 (0.71 at 30); "
                                   "ReDial dev Recall@10 0.097 ungated -> 0.093 (600 cases). Otherwise, when at "
                                   "least N items carry the genres or tags the words mean, only those that carry "
                                   "them best are ranked (books dev requests 0.72 -> 0.76; themed requests 0.76 "
                                   "-> 0.77, ReDial dev 0.093 -> 0.093). Unset: no gate")
    theme_min: float = Field(0.42, description="the gate applies when some item is about the request's words "
                             "beyond its genres at least this closely (cosine): the first quartile of the best "
                             "match of themed dev requests (0.43), above most ReDial small talk (median 0.41 "
                             "with genre words in; at 0.47 the themed share fell to 0.69)")
    vector_pool: int = Field(1000, ge=10, description="nearest items fetched from Chroma per vector query")
    mmr_lambda: float = Field(1.0, ge=0.0, le=1.0, description="diversity of the candidate list: 1 = by score "
                              "only (default), lower = maximal marginal relevance trades score for variety")


class RankSettings(_Section):
    enabled: bool = Field(True, description="order answers by the learned ranker `genre-agent fit` trains (a "
                          "catalog user's request without words by its model of histories, conversations by its "
                          "model of conversations), when one is trained for the catalog as served; false = the "
                          "hand-weighted order of [retrieval]")
    pool: int = Field(200, ge=1, description="items the ranker orders: the top N by the hand-weighted score ...")
    cf_pool: int = Field(50, ge=0, description="... plus the top N of each CF model")
    depths: int = Field(3, ge=1, le=10, description="`fit`: held-out positives per user the model of histories "
                        "learns from, each on the history before it (the last, then the one before, ...); on "
                        "ml-latest-small's validation shortlists, NDCG@10 0.769 learning from 1 (EASE 0.736), "
                        "0.785 from 2, 0.793 from 3 (docs/ranker.md)")
    users: int | None = Field(2000, ge=1, description="`fit`: learn from at most this many users (drawn with a "
                              "fixed seed), which bounds its time: ~0.15 s of CPU per user; unset = all")
    dialogues: list[Path] = Field([], description="`fit`: ReDial-format dialogue files whose dev part (never the "
                                  "held-out part `eval --dialogues` reports) trains the ranker of conversations")
    training_dialogues: list[Path] = Field([], description="`fit`: ReDial-format dialogue files read whole "
                                           "(files of a training split, such as redial-train-500, no part of "
                                           "which an evaluation reports); they train the ranker of "
                                           "conversations as `dialogues` do")
    requests: list[Path] = Field([], description="`fit`: request sets (tests/data/requests) whose dev requests "
                                 "train the ranker of conversations, the items that satisfy each as its answers")
    leave_out: list[str] = Field([], description="feature groups the ranker of conversations does not read "
                                 "(a measurement: [\"popularity\"] is the ranker without popularity features)")


class ConversationSettings(_Section):
    understand_with_llm: bool | None = Field(
        None, description="also ask the LLM to read each chat message (its proposals are kept only where "
        "grounded in the message). Unset: the calibration in force decides; true or false wins over it")


class ServerSettings(_Section):
    """The HTTP server (`genre-agent serve`): who may call it, and the limits every request lives within."""

    api_keys: dict[str, str] = Field({}, description="API key -> the catalog user it speaks for ('' = a new "
                                     "user); as JSON in GENRE_AGENT_SERVER__API_KEYS. Keys are >= 16 characters")
    max_body: int = Field(64 * 1024, ge=1024, description="request body limit in bytes (413 above it)")
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="request line and headers limit in bytes "
                                  "(431 above it, and the connection is closed)")
    read_timeout_s: float = Field(30.0, gt=0, description="a client must send a request's headers within this "
                                  "of connecting (or of its last answer), and its body within this of its "
                                  "headers (408); else the connection is closed")
    deadline_s: float = Field(300.0, gt=0, description="a turn still running after this is cancelled (503)")
    max_concurrent: int = Field(8, ge=1, description="turns running at once; more get 429")
    max_concurrent_per_key: int = Field(4, ge=1, description="turns one API key may have running at once (so "
                                        "no key holds every slot); more get 429")
    session_ttl_s: float = Field(1800.0, gt=0, description="a session unused this long is forgotten")
    max_sessions: int = Field(10_000, ge=1, description="sessions kept in all; when full, a key's new session "
                              "replaces its own least recently used one, never another key's (429 if it has none)")
    max_sessions_per_key: int = Field(100, ge=1, description="sessions one API key keeps; its least recently "
                                      "used one goes beyond this")
    mcp_transports_per_key: int = Field(10, ge=1, description="MCP streamable-HTTP transport sessions (each "
                                        "Mcp-Session-Id) one API key may hold open; a new one over it gets 429")
    turns_per_minute: int = Field(60, ge=1, description="turns one API key may start per minute, in bursts up "
                                  "to this many (per replica); more get 429 with Retry-After")
    feedback_per_minute: int = Field(30, ge=1, description="likes, dislikes and 'seen' one API key may store "
                                     "per minute (per replica); a turn over it gets 429 and keeps nothing")
    docs: bool = Field(False, description="serve /docs and /openapi.json (behind the API key)")
    shutdown_s: int = Field(10, ge=0, description="on SIGTERM, how long running turns may finish")


class CatalogFilesSettings(_Section):
    """Which files a catalog may read, and how big: checked before any is read."""

    allow_outside: bool = Field(False, description="read files that catalog.toml names outside the catalog "
                                "folder (directly or through a symlink); `--allow-outside` sets it for one "
                                "command. Only for catalogs you trust: a path can name any file you can read")
    max_file_mb: int = Field(512, ge=1, description="the largest catalog file, in MB (loading one takes "
                             "several times its size in memory)")
    max_columns: int = Field(1000, ge=1, description="the most columns a catalog file may have")


class StoreSettings(_Section):
    """Where feedback is kept."""

    url: str | None = Field(None, description="unset: SQLite (feedback.sqlite3 in the data directory); "
                            "postgresql://USER:PASSWORD@HOST/DB: a PostgreSQL server several server replicas "
                            "share (the password may come from GENRE_AGENT_STORE__URL)")


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
    backend: Backends = Field(default_factory=Backends)
    ranking: RankingSettings = RankingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    rank: RankSettings = RankSettings()
    rules: Filters = Field(default_factory=Filters,
                           description="standing filters, applied to every request on top of its own")
    chroma: ChromaSettings = ChromaSettings()
    catalog_files: CatalogFilesSettings = CatalogFilesSettings()
    store: StoreSettings = StoreSettings()
    conversation: ConversationSettings = ConversationSettings()
    server: ServerSettings = ServerSettings()

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


def _sections(model: type[BaseModel] = Settings) -> dict[str, type[BaseModel]]:
    """The [section] tables of a settings model (or of a section: [backend.llamacpp] …), by name."""
    return {name: field.annotation for name, field in model.model_fields.items()
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)}


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    sections = _sections(model)
    return [key for name in model.model_fields
            for key in (_keys(sections[name], f"{prefix}{name}.") if name in sections else [f"{prefix}{name}"])]


def known_keys() -> list[str]:
    """Every settable key, dotted: "k", "backend.model", "backend.llamacpp.threads", ..."""
    return _keys(Settings)


# Keys that moved when the ranking policy and each backend's options got their own sections.
MOVED = {"backend.retries": "ranking.retries", "backend.reason_max_chars": "ranking.reason_max_chars",
         "backend.max_tokens": "ranking.max_tokens", "backend.n_ctx": "backend.llamacpp.n_ctx",
         "backend.threads": "backend.llamacpp.threads", "backend.seed": "backend.llamacpp.seed",
         "backend.base_url": "backend.openai.base_url (or backend.langchain.base_url)",
         "backend.api_key": "backend.openai.api_key (or backend.langchain.api_key)",
         "backend.timeout_s": "backend.openai.timeout_s"}


def flatten(data: dict[str, Any], model: type[BaseModel] = Settings, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of settings data: sections are opened (and their sub-sections), values that are tables
    (rules.where) stay whole."""
    sections = _sections(model)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in sections and isinstance(value, dict):
            out.update(flatten(value, sections[key], f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
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
        if key in MOVED:
            raise ConfigError(f"{where}: the setting '{key}' is now '{MOVED[key]}'.")
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
        raise ConfigError(redact(f"Invalid settings ({config or 'genre-agent.toml / env'}): {_problems(exc)}. "
                                 "`genre-agent config show` lists every key.")) from None
    except SettingsError as exc:  # an env var of a table or list setting that is not JSON
        raise ConfigError(redact(f"{exc} ({_json_hint()}).")) from None


def _problems(exc: ValidationError) -> str:
    """Each invalid setting and what is wrong with it, without the value given (it may be a secret, and so may
    a table's key: the keys of server.api_keys are API keys)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = [str(part) for part in error["loc"]]
        if "api_keys" in where:
            where = where[:where.index("api_keys") + 1]
        problems.append(f"{'.'.join(where)}: {error['msg']}")
    return "; ".join(problems)


def _json_hint() -> str:
    """Which GENRE_AGENT_* variables hold something other than the JSON their setting needs."""
    import json
    import typing

    sections = _sections()
    structured = {f"{name}.{sub}" for name, model in sections.items() for sub, f in model.model_fields.items()
                  if typing.get_origin(f.annotation) in (dict, list)}
    bad = []
    for key, value in env_values().items():
        try:
            json.loads(value)
        except ValueError:
            if key in structured:
                bad.append(f"GENRE_AGENT_{key.upper().replace('.', '__')} is not JSON")  # its value may be a key
    return "; ".join(bad) + ". Tables and lists take JSON, e.g. GENRE_AGENT_RULES__WHERE='{\"language\": \"en\"}'"
