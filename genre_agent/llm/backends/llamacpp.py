"""The default backend: a local GGUF model through llama-cpp-python, decoding constrained by the JSON schema."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from genre_agent.errors import BackendUnavailableError, ContextLengthError
from genre_agent.llm.backends.base import (
    Backend,
    BackendOptions,
    Capabilities,
    Completion,
    Message,
    OutputMode,
    cancel_event,
    heard,
    raise_if_cancelled,
)

if TYPE_CHECKING:
    from genre_agent.settings import Settings


class LlamaCppOptions(BackendOptions):
    """Options of the llamacpp backend (a local GGUF through llama-cpp-python)."""

    n_ctx: int = Field(8192, ge=512, description="context window in tokens")
    threads: int = Field(2, ge=1, le=512, description="CPU threads")
    seed: int = 0
    adapter: str = Field("auto", description="LoRA adapter: 'auto' = the one `genre-agent tune` wrote for this "
                         "catalog and model (if any), 'none', or the path of a GGUF LoRA")


class ChatTokens:
    """Messages to the prompt's tokens through the GGUF's own chat template and tokenizer, as llama.cpp sees
    them (the template is compiled once)."""

    def __init__(self, llm: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise BackendUnavailableError("the GGUF has no chat template.")
        text = lambda t: llm.detokenize([t], special=True).decode(errors="ignore")  # noqa: E731
        self.llm = llm
        self._formatter = Jinja2ChatFormatter(template, text(llm.token_eos()), text(llm.token_bos()))

    def __call__(self, messages: list[Message]) -> list[int]:
        prompt = str(self._formatter(messages=messages).prompt)  # type: ignore[arg-type]
        return list(self.llm.tokenize(prompt.encode(), add_bos=False, special=True))


class LlamaCppBackend(Backend):
    """One `Llama` object per backend, so consecutive calls reuse the longest common prompt prefix."""

    name = "llamacpp"
    capabilities = Capabilities(logprobs=True, output_mode=OutputMode.GRAMMAR, local_tokenizer=True)
    Options = LlamaCppOptions

    def __init__(self, model_path: Path, model_name: str, n_ctx: int = 4096, threads: int = 2,
                 seed: int = 0, temperature: float = 0.0, lora_path: Path | None = None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendUnavailableError(
                "llama-cpp-python is not installed: see the README install line."
            ) from exc
        try:
            self.llm = Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=threads,
                             n_threads_batch=threads, seed=seed, verbose=False,
                             lora_path=str(lora_path) if lora_path else None)
        except (ValueError, RuntimeError) as exc:
            what = f"{model_path} with the adapter {lora_path}" if lora_path else str(model_path)
            raise BackendUnavailableError(f"{what}: llama.cpp cannot load it ({exc}).") from exc
        self.model = model_name + (f"+{lora_path.stem}" if lora_path else "")
        self._tokens = ChatTokens(self.llm)
        self.temperature = temperature
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> LlamaCppBackend:
        """`adapter = "auto"` is resolved where the catalog is known (`llm.adapters.with_adapter`); here it
        means the base model."""
        from genre_agent.llm.models import resolve_model

        options = settings.backend.options(LlamaCppOptions)
        name, path = resolve_model(settings.backend.model, settings.data_dir / "models")
        lora = None if options.adapter in ("auto", "none") else Path(options.adapter).expanduser()
        if lora is not None and not lora.is_file():
            raise BackendUnavailableError(f"{lora}: no such LoRA adapter (backend.llamacpp.adapter); use 'auto', "
                                          "'none' or the path of a GGUF LoRA.")
        return cls(path, name, n_ctx=options.n_ctx, threads=options.threads, seed=options.seed,
                   temperature=settings.backend.temperature, lora_path=lora)

    @classmethod
    def count_tokens(cls, settings: Settings, messages: list[Message]) -> tuple[int, str]:
        """Exact: the GGUF's own tokenizer and chat template, loading only its vocabulary."""
        from llama_cpp import Llama

        from genre_agent.llm.models import resolve_model

        name, path = resolve_model(settings.backend.model, settings.data_dir / "models")
        llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
        return len(ChatTokens(llm)(messages)), f"{name} tokenizer, chat template included"

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        """Decoded token by token (streamed), so a cancelled turn stops between two tokens."""
        fmt: dict[str, Any] = {"type": "json_object", "schema": schema} if schema else {"type": "text"}
        event = cancel_event()
        with self._holding_lock():  # a Llama context is not thread-safe
            parts: list[str] = []
            try:
                chunks = self.llm.create_chat_completion(
                    messages=messages, response_format=fmt,  # type: ignore[arg-type]
                    temperature=self.temperature, max_tokens=max_tokens, stream=True,
                )
                for chunk in chunks:  # type: ignore[union-attr]
                    if event is not None and event.is_set():
                        chunks.close()  # type: ignore[union-attr]
                        raise_if_cancelled()
                    delta: dict[str, Any] = dict(chunk["choices"][0]["delta"])  # type: ignore[index, arg-type]
                    if delta.get("content"):
                        parts.append(str(delta["content"]))
                        heard(parts[-1])
            except ValueError as exc:  # llama-cpp-python: "Requested tokens (N) exceed context window of M"
                found = re.search(r"Requested tokens \((\d+)\) exceed context window", str(exc))
                if found:
                    raise self._too_long(int(found[1])) from exc
                raise
            prompt = self._tokens(messages)
        return Completion(text="".join(parts), prompt_tokens=len(prompt), completion_tokens=len(parts))

    @contextmanager
    def _holding_lock(self) -> Iterator[None]:
        """The model's lock, given up waiting for (TurnCancelled) if this thread's turn is cancelled."""
        while not self._lock.acquire(timeout=0.05):
            raise_if_cancelled()
        try:
            raise_if_cancelled()
            yield
        finally:
            self._lock.release()

    def option_logprobs(self, messages: list[Message], options: list[str]) -> list[float]:
        """One forward pass over the chat prompt; the next-token log-softmax at each option's token. The
        longest common prefix with the previous call is kept in the KV cache, as in generation."""
        import llama_cpp
        import numpy as np
        from scipy.special import log_softmax

        with self._holding_lock():
            llm = self.llm
            tokens = self._tokens(messages)
            if len(tokens) >= llm.n_ctx():
                raise self._too_long(len(tokens))
            option_ids = [llm.tokenize(o.encode(), add_bos=False, special=False)[0] for o in options]
            keep = 0
            for a, b in zip(llm.input_ids[: llm.n_tokens].tolist(), tokens[:-1], strict=False):
                if a != b:
                    break
                keep += 1
            llm.n_tokens = keep
            llm.eval(tokens[keep:])
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
            logprobs = log_softmax(logits.astype(np.float64))
            return [float(logprobs[i]) for i in option_ids]

    def _too_long(self, tokens: int) -> ContextLengthError:
        holds = self.llm.n_ctx()
        return ContextLengthError(f"The prompt is {tokens} tokens and the model's context holds {holds}: "
                                  "shorten the message, or raise backend.llamacpp.n_ctx.")
