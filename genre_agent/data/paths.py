"""Which files a catalog may read, and how big, decided before any of them is read: every path its
catalog.toml names must resolve (symlinks followed) inside the catalog folder unless the user allows otherwise,
and each file must be within the size and column limits of `[catalog_files]`."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from genre_agent.errors import CatalogError
from genre_agent.settings import CatalogFilesSettings

HEADER_BYTES = 1 << 20  # a header line is read up to this much to count its columns


def check_catalog_files(root: Path, spec: BaseModel, limits: CatalogFilesSettings) -> None:
    """Check every file the spec names (each `path` field of each of its sections), as `catalog_file` does."""
    for relative in _paths(spec):
        catalog_file(root, relative, limits)


def catalog_file(root: Path, relative: str, limits: CatalogFilesSettings) -> Path:
    """The file `relative` names in the catalog folder `root`, resolved; CatalogError when it is outside the
    folder (unless allowed) or over a limit."""
    path = (root / relative).resolve()
    folder = root.resolve()
    if not limits.allow_outside and not path.is_relative_to(folder):
        raise CatalogError(f"{root / 'catalog.toml'}: '{relative}' resolves to {path}, outside the catalog "
                           f"folder {folder}. Copy the file into the folder, or, if you trust this catalog, pass "
                           "--allow-outside (or set catalog_files.allow_outside = true).")
    if not path.is_file():
        return path  # the reader says it is missing
    size, most = path.stat().st_size, limits.max_file_mb * 1024 * 1024
    if size > most:
        raise CatalogError(f"{path}: {size / 1024 / 1024:,.0f} MB is over the {limits.max_file_mb} MB a catalog "
                           "file may have (catalog_files.max_file_mb); raise it if this machine has the memory "
                           "(loading takes several times the file's size).")
    columns = _columns(path)
    if columns > limits.max_columns:
        raise CatalogError(f"{path}: {columns:,} columns is over the {limits.max_columns} a catalog file may "
                           "have (catalog_files.max_columns); keep the columns catalog.toml names, or raise it.")
    return path


FILE_FIELDS = ("path", "vectors", "about_vectors")  # the spec's fields that name a file in the catalog folder


def _paths(model: BaseModel) -> Iterator[str]:
    for name, value in model:
        if name in FILE_FIELDS and isinstance(value, str):
            yield value
        elif isinstance(value, BaseModel):
            yield from _paths(value)


def file_kind(path: Path) -> tuple[str, bool]:
    """The file's type suffix (".csv", ".jsonl", …) and whether it is gzipped ("items.csv.gz": ".csv", True)."""
    gzipped = path.suffix.lower() == ".gz"
    return (Path(path.stem).suffix if gzipped else path.suffix).lower(), gzipped


def _columns(path: Path) -> int:
    """How many columns the file's header (CSV, TSV), first record (JSON lines) or schema (Parquet) has, read
    without reading the file."""
    suffix, gzipped = file_kind(path)
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            return len(pq.read_schema(path).names)
        except (OSError, ValueError):
            return 0  # not Parquet: the reader says so
    with (gzip.open(path, "rb") if gzipped else path.open("rb")) as f:
        try:
            head = f.readline(HEADER_BYTES)
        except (OSError, EOFError):
            return 0  # not gzip after all: the reader says so
    if suffix in (".csv", ".tsv"):
        return head.count(b"\t" if suffix == ".tsv" else b",") + 1
    if suffix in (".jsonl", ".ndjson"):
        try:
            first = json.loads(head)
        except ValueError:
            return head.count(b":")  # cut at HEADER_BYTES, or not JSON: an upper bound of its keys
        return len(first) if isinstance(first, dict) else 0
    return 0
