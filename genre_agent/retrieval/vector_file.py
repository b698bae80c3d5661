"""Precomputed item vectors shipped beside a catalog, so its first index build embeds nothing it need not.

A `.npz` file holds, per item, its id, the hash of the text that was embedded and the vector (float16), plus the
embedding model's id and the catalog's items fingerprint when it was made. A build takes an item's vector from
the file only when the model is the same and the item's text hash matches; every other item is embedded as
usual. A file made with another model, or unreadable, is ignored with a message saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def text_hash(text: str) -> str:
    """The hash that says whether an item's embedded text changed."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class VectorFile:
    """Vectors by item id, each with the hash of the text it embeds."""

    model: str
    fingerprint: str
    vectors: dict[str, tuple[str, np.ndarray]]

    def matching(self, wanted: dict[str, str]) -> dict[str, np.ndarray]:
        """The vectors of the items whose text is still the one embedded (`wanted`: id -> text hash)."""
        return {i: v for i, (h, v) in self.vectors.items() if wanted.get(i) == h}


def save(path: Path, model: str, fingerprint: str, ids: list[str], hashes: list[str], vectors: np.ndarray) -> None:
    """Write the file atomically (aside, then renamed)."""
    meta = json.dumps({"model": model, "fingerprint": fingerprint, "items": len(ids)})
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        np.savez_compressed(fh, ids=np.array(ids, dtype=str), hashes=np.array(hashes, dtype=str),
                            vectors=np.asarray(vectors, dtype=np.float16), meta=np.array(meta))
    os.replace(tmp, path)


def load(path: Path, model: str, fingerprint: str) -> VectorFile | None:
    """The file's vectors when it was made with `model`; None (with a warning saying why) otherwise."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            ids, hashes = data["ids"].tolist(), data["hashes"].tolist()
            vectors = data["vectors"].astype(np.float32)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        warnings.warn(f"{path}: unreadable ({exc}); ignored, every item is embedded.", stacklevel=2)
        return None
    if meta.get("model") != model or vectors.ndim != 2 or len(ids) != len(vectors) or len(hashes) != len(ids):
        warnings.warn(f"{path} was made with the embedding model {meta.get('model')!r}, this install embeds with "
                      f"{model!r}: ignored, every item is embedded.", stacklevel=2)
        return None
    if meta.get("fingerprint") != fingerprint:
        warnings.warn(f"{path} was made for other item texts: only the items whose text is unchanged take "
                      "their vector from it; the others are embedded.", stacklevel=2)
    return VectorFile(str(meta["model"]), str(meta.get("fingerprint", "")),
                      {str(i): (str(h), v) for i, h, v in zip(ids, hashes, vectors, strict=True)})
