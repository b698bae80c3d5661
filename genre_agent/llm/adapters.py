"""Tuned LoRA adapters: the record `genre-agent tune` saves, and which adapter a request's model runs with.

An adapter is saved in the data directory as `adapters/<catalog>-<model>.json` (the record) beside the GGUF
it names, keyed by the catalog's items fingerprint and the base model. `backend.llamacpp.adapter = "auto"`
(the default) uses it when the record matches the catalog and model, the file matches its sha256 and the
adapter beat the base model on its validation users;
`"none"` runs the base model; a path runs that GGUF LoRA. The adapter is part of the model's identity: the
model id becomes `<model>+<adapter file stem>`, so calibrations and cached answers of the base model are never
taken for the tuned one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from genre_agent.data.catalog import Catalog
from genre_agent.llm.backends.llamacpp import LlamaCppOptions
from genre_agent.settings import Settings


class Checkpoint(BaseModel):
    step: int
    examples: int = Field(description="training examples seen")
    seconds: float
    val_ndcg10: float = Field(description="sampled NDCG@10 on the tuning-validation users")
    train_loss: float | None = Field(description="mean training loss since the previous checkpoint")


class Adapter(BaseModel):
    """What `genre-agent tune` trained and kept, with the numbers it was kept on."""

    model_config = ConfigDict(frozen=True)

    catalog: str
    catalog_fingerprint: str
    base_model: str
    file: str = Field(description="the GGUF LoRA, relative to the record's folder")
    sha256: str
    size: int
    rank: int
    alpha: float
    layers: list[int]
    modules: list[str]
    train_examples: int
    val_users: int
    base_val_ndcg10: float
    best: Checkpoint

    @property
    def beats_base(self) -> bool:
        """Whether the kept checkpoint beat the base model on validation (else `auto` does not use it)."""
        return self.best.val_ndcg10 > self.base_val_ndcg10

    history: list[Checkpoint]
    seconds: float
    threads: int
    command: str
    created: str

    def path(self, folder: Path) -> Path:
        return folder / self.file


def adapters_dir(data_dir: Path) -> Path:
    return data_dir / "adapters"


def record_path(data_dir: Path, catalog: str, model: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in f"{catalog}-{model}")
    return adapters_dir(data_dir) / f"{safe}.json"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(adapter: Adapter, data_dir: Path) -> Path:
    """Write the record beside its GGUF (already in place), atomically."""
    path = record_path(data_dir, adapter.catalog, adapter.base_model)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(adapter.model_dump_json(indent=1))
    os.replace(tmp, path)
    return path


def find(data_dir: Path, catalog: Catalog, model: str) -> tuple[Adapter | None, str]:
    """The tuned adapter of this catalog and base model, and why there is none if there is not."""
    path = record_path(data_dir, catalog.name, model)
    if not path.is_file():
        return None, "none tuned"
    adapter = Adapter.model_validate_json(path.read_text())
    if adapter.catalog_fingerprint != catalog.items_fingerprint():
        return None, f"{path.name} is stale (the catalog's items changed): rerun `genre-agent tune`"
    gguf = adapter.path(path.parent)
    if not gguf.is_file() or sha256_of(gguf) != adapter.sha256:
        return None, f"{gguf} is missing or does not match its sha256: rerun `genre-agent tune`"
    if not adapter.beats_base:
        return None, (f"{adapter.file} did not beat the base model on validation (NDCG@10 "
                      f"{adapter.base_val_ndcg10:.3f} -> {adapter.best.val_ndcg10:.3f}); set "
                      "backend.llamacpp.adapter to its path to use it anyway")
    return adapter, f"tuned {adapter.created[:10]}"


def with_adapter(settings: Settings, catalog: Catalog) -> tuple[Settings, str]:
    """`settings` with `backend.llamacpp.adapter` resolved to a path or "none", and what was chosen, in words."""
    options = settings.backend.options(LlamaCppOptions)
    if settings.backend.name != "llamacpp" or options.adapter == "none":
        return _pinned(settings, "none"), "none"
    if options.adapter != "auto":
        return settings, f"{options.adapter} (configured)"
    adapter, why = find(settings.data_dir, catalog, settings.backend.model)
    if adapter is None:
        return _pinned(settings, "none"), f"none ({why})"
    path = adapter.path(adapters_dir(settings.data_dir))
    return _pinned(settings, str(path)), f"{adapter.file} ({why}, validation NDCG@10 " \
        f"{adapter.base_val_ndcg10:.3f} -> {adapter.best.val_ndcg10:.3f})"


def _pinned(settings: Settings, adapter: str) -> Settings:
    backend = settings.backend
    llamacpp = backend.options(LlamaCppOptions).model_copy(update={"adapter": adapter})
    return settings.model_copy(update={"backend": backend.with_options(llamacpp)})


def adapter_tag(settings: Settings) -> str:
    """'' for the base model, else `+<adapter file stem>` (the model id's suffix)."""
    adapter = settings.backend.options(LlamaCppOptions).adapter
    if settings.backend.name != "llamacpp" or adapter in ("auto", "none"):
        return ""
    return "+" + Path(adapter).stem
