"""The default backend: a local GGUF model through llama-cpp-python, decoding constrained by the JSON schema."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError
from .base import Completion, Message


class LlamaCppBackend:
    """One `Llama` object per backend, so consecutive calls reuse the longest common prompt prefix."""

    name = "llamacpp"

    def __init__(self, model_path: Path, model_name: str, n_ctx: int = 4096, threads: int = 2,
                 seed: int = 0, temperature: float = 0.0) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendUnavailableError(
                "llama-cpp-python is not installed: see the README install line."
            ) from exc
        try:
            self.llm = Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=threads,
                             n_threads_batch=threads, seed=seed, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise BackendUnavailableError(f"{model_path}: llama.cpp cannot load it ({exc}).") from exc
        self.model = model_name
        self.temperature = temperature
        self._lock = threading.Lock()

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        fmt: dict[str, Any] = {"type": "json_object", "schema": schema} if schema else {"type": "text"}
        with self._lock:  # a Llama context is not thread-safe
            out = self.llm.create_chat_completion(
                messages=messages, response_format=fmt,  # type: ignore[arg-type]
                temperature=self.temperature, max_tokens=max_tokens,
            )
        usage = out["usage"]  # type: ignore[index]
        return Completion(text=out["choices"][0]["message"]["content"] or "",  # type: ignore[index]
                          prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"])

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=True))
