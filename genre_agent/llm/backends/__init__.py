"""LLM backends, chosen by name from config. Heavy SDKs are imported only when a backend is created."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genre_agent.errors import ConfigError
from genre_agent.llm.backends.base import Backend, Completion, Message, Scoring
from genre_agent.llm.backends.fake import FakeBackend
from genre_agent.settings import Settings

__all__ = ["Backend", "Completion", "FakeBackend", "Message", "Scoring", "make_backend"]


def make_backend(settings: Settings) -> Backend:
    b = settings.backend
    if b.name == "fake":
        path = Path(b.model)
        return FakeBackend(path if path.is_file() else ())
    if b.name == "langchain":
        from langchain.chat_models import init_chat_model

        from genre_agent.llm.backends.langchain import LangChainBackend

        options: dict[str, Any] = {"temperature": b.temperature, "max_tokens": b.max_tokens}
        if b.base_url:
            options["base_url"] = b.base_url
        if b.api_key:
            options["api_key"] = b.api_key.get_secret_value()
        chat = init_chat_model(b.model, **options)
        return LangChainBackend(chat, b.model)
    if b.name == "openai":
        from genre_agent.llm.backends.openai_compat import OpenAIBackend

        if not b.base_url and not b.api_key:
            raise ConfigError("The openai backend needs backend.base_url (a local server) or an API key "
                              "(GENRE_AGENT_BACKEND__API_KEY) for the hosted API.")
        return OpenAIBackend(b.model, b.base_url, b.api_key.get_secret_value() if b.api_key else None,
                             b.temperature, b.timeout_s)
    from genre_agent.llm.backends.llamacpp import LlamaCppBackend
    from genre_agent.llm.models import resolve_model

    name, path = resolve_model(b.model, settings.data_dir / "models")
    return LlamaCppBackend(path, name, n_ctx=b.n_ctx, threads=b.threads, seed=b.seed, temperature=b.temperature)
