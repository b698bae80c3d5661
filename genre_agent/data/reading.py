"""Reading catalog files (CSV, TSV, JSONL or Parquet; CSV and JSONL may be gzipped) as strings: whole, or in
chunks of rows for a file whose rows are mostly dropped (`chunks`), so memory holds one chunk at a time.
Every error names the file; a byte that is not UTF-8 names its row and column too."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from genre_agent.data.paths import file_kind
from genre_agent.errors import CatalogError

CHUNK_BYTES = 8 * 2**20  # about this much of a file's text per chunk of rows
SAMPLE_BYTES = 2**20  # what the typical row length is measured on
_ESCAPED = re.compile("[\udc80-\udcff]")  # a byte that is not UTF-8, as `surrogateescape` decodes it


def read_table(path: Path) -> pd.DataFrame:
    """The whole file, every cell a stripped string (nulls as ""); CatalogError naming the file when it is
    missing, empty, of an unknown type or unreadable."""
    [(_, table)] = _read(path, None)
    if table.empty:
        raise CatalogError(f"{path}: no rows. It needs at least one row below the header.")
    return table


def chunks(path: Path, columns: list[str], chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, pd.DataFrame]]:
    """The file's `columns` in chunks of rows (about `chunk_bytes` of text each), each with the position of
    its first row in the file; as `read_table`. When a column is missing, one chunk with every column of the
    file and no row (whoever looks the column up names what the file has)."""
    return _read(path, columns, chunk_bytes)


def _read(path: Path, columns: list[str] | None, chunk_bytes: int | None = None
          ) -> Iterator[tuple[int, pd.DataFrame]]:
    """The file in chunks of about `chunk_bytes`, or whole (None)."""
    if not path.is_file():
        raise CatalogError(f"{path}: file not found. Fix the path in catalog.toml.")
    if path.stat().st_size == 0:
        raise CatalogError(f"{path}: the file is empty. It needs a header row and at least one row.")
    suffix, gzipped = file_kind(path)
    if suffix not in (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq"):
        raise CatalogError(f"{path}: unsupported file type '{suffix}'. Use .csv, .jsonl or .parquet.")
    return _checked(path, suffix, _frames(path, suffix, "gzip" if gzipped else None, columns, chunk_bytes))


def _checked(path: Path, suffix: str, frames: Iterable[pd.DataFrame]) -> Iterator[tuple[int, pd.DataFrame]]:
    """The frames, stripped and counted; a reading error becomes a CatalogError naming the file."""
    start = 0
    try:
        for frame in frames:
            frame.columns = [str(c).strip() for c in frame.columns]
            yield start, frame.apply(lambda col: col.str.strip())
            start += len(frame)
    except UnicodeDecodeError as exc:
        bad = f"byte 0x{exc.object[exc.start]:02x}" if exc.start < len(exc.object) else "a cut-off character"
        raise CatalogError(f"{path}: {not_utf8(path, suffix)} is not UTF-8 ({bad}). Save the file as UTF-8 "
                           "(e.g. `iconv -f latin1 -t utf-8`) or fix that cell.") from exc
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise CatalogError(f"{path}: cannot read: {exc}") from exc


def _frames(path: Path, suffix: str, compression: str | None, columns: list[str] | None,
            chunk_bytes: int | None) -> Iterator[pd.DataFrame]:
    if suffix in (".parquet", ".pq"):
        yield from _parquet(path, columns, chunk_bytes)
        return
    if suffix == ".json":  # one JSON document: read whole
        frame = _as_text(pd.read_json(path, dtype=False, compression=compression))
        yield frame if columns is None or not set(columns) <= set(frame.columns) else frame[columns]
        return
    rows = None if chunk_bytes is None else _rows_per_chunk(path, compression, chunk_bytes)
    if suffix in (".jsonl", ".ndjson"):
        yield from _json_lines(path, compression, columns, rows)
        return
    sep = "\t" if suffix == ".tsv" else ","
    header = pd.read_csv(path, dtype=str, sep=sep, compression=compression, nrows=0).columns
    named = {str(c).strip(): c for c in header}
    if columns is not None and not set(columns) <= set(named):
        yield pd.DataFrame(columns=list(header))
        return
    used = None if columns is None else [named[c] for c in columns]
    read = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, compression=compression, usecols=used,
                       chunksize=rows)
    yield from [read] if rows is None else read


def _json_lines(path: Path, compression: str | None, columns: list[str] | None,
                rows: int | None) -> Iterator[pd.DataFrame]:
    """A JSONL file's rows; a key missing from a chunk's rows is "" there, and a key of `columns` that no row
    has ends the chunks with one that has every key seen and no row."""
    reader: Any = pd.read_json(path, lines=True, dtype=False, compression=compression, chunksize=rows)
    seen: set[str] = set()
    for frame in [reader] if rows is None else reader:
        frame = _as_text(frame)
        seen |= {str(c).strip() for c in frame.columns}
        yield frame if columns is None else frame.reindex(columns=columns, fill_value="")
    if columns is not None and not set(columns) <= seen:
        yield pd.DataFrame(columns=sorted(seen))


def _parquet(path: Path, columns: list[str] | None, chunk_bytes: int | None) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    names = file.schema_arrow.names
    if columns is not None and not set(columns) <= {n.strip() for n in names}:
        yield pd.DataFrame(columns=names)
        return
    used = None if columns is None else [n for n in names if n.strip() in columns]
    if chunk_bytes is None:
        yield _as_text(file.read(columns=used).to_pandas())
        return
    per_row = max(path.stat().st_size // max(file.metadata.num_rows, 1), 1)
    for batch in file.iter_batches(batch_size=max(chunk_bytes // per_row, 1), columns=used):
        yield _as_text(batch.to_pandas())


def _rows_per_chunk(path: Path, compression: str | None, chunk_bytes: int) -> int:
    """Rows of about `chunk_bytes`, from the length of the file's first lines."""
    with _open(path, compression) as raw:
        sample = raw.read(SAMPLE_BYTES)
    lines = max(sample.count(b"\n"), 1)
    return max(chunk_bytes * lines // max(len(sample), 1), 1)


def _open(path: Path, compression: str | None) -> gzip.GzipFile | io.BufferedReader:
    return gzip.open(path, "rb") if compression == "gzip" else path.open("rb")


def _as_text(df: pd.DataFrame) -> pd.DataFrame:
    """Every cell as a string, nulls as "" (as CSV reads them), so the empty-value checks see them."""
    return df.astype(object).where(df.notna(), "").astype(str)


def not_utf8(path: Path, suffix: str) -> str:
    """Where the first byte of the file that is not UTF-8 is: "row 3 (line 4), column 'title'" (the file is
    read again, one row at a time)."""
    compression = "gzip" if file_kind(path)[1] else None
    with _open(path, compression) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        if suffix in (".csv", ".tsv"):
            return _in_csv(csv.reader(text, delimiter="\t" if suffix == ".tsv" else ","))
        return _in_lines(text)


def _in_csv(reader: Any) -> str:
    header: list[str] = next(reader, [])
    if any(_ESCAPED.search(name) for name in header):
        return "the header row (line 1)"
    for row, record in enumerate(reader, start=1):
        for at, cell in enumerate(record):
            if _ESCAPED.search(cell):
                column = header[at].strip() if at < len(header) else f"number {at + 1}"
                return f"row {row} (line {reader.line_num}), column '{column}'"
    return "a cell"


def _in_lines(lines: Iterable[str]) -> str:
    for number, line in enumerate(lines, start=1):
        if not _ESCAPED.search(line):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            return f"line {number}"
        bad = [k for k, v in record.items() if _ESCAPED.search(f"{k}{v}")] if isinstance(record, dict) else []
        return f"row {number} (line {number})" + (f", column '{bad[0]}'" if bad else "")
    return "a cell"
