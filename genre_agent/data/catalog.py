"""Load, clean and validate a catalog: items, interactions and tags described by `catalog.toml` (data/spec.py).

A folder in plain MovieLens layout (`movies.csv`, `ratings.csv`, optional `tags.csv`) works without a
`catalog.toml`. Files may be CSV, JSONL or Parquet. Every problem is a `CatalogError` that names the
file, the column and the row, so the user knows what to fix; nothing is written while loading.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from genre_agent.data import credits as credit_columns
from genre_agent.data import descriptions, reading
from genre_agent.data.paths import check_catalog_files
from genre_agent.data.reading import read_table
from genre_agent.data.resources import shipped_dir
from genre_agent.data.spec import CatalogSpec, GenresSpec, TagNamesSpec, load_spec
from genre_agent.errors import CatalogError
from genre_agent.settings import CatalogFilesSettings

_YEAR_IN_TITLE = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
MAX_TITLE_CHARS = 300  # longer titles are cut (and counted in the cleaning report): they go into every prompt


@dataclass
class CleaningReport:
    """What cleaning changed, so the user can see it."""

    duplicate_items_dropped: int = 0
    duplicate_interactions_dropped: int = 0
    unknown_item_interactions_dropped: int = 0
    unknown_item_tags_dropped: int = 0
    long_titles_cut: int = 0
    notes: list[str] = field(default_factory=list)  # warnings that name the rows (descriptions)

    def lines(self) -> list[str]:
        counts = {k: v for k, v in self.__dict__.items() if k != "notes"}
        return [f"{k.replace('_', ' ')}: {v}" for k, v in counts.items() if v] + self.notes


@dataclass
class Catalog:
    """A loaded catalog.

    `items` is indexed by item_id (str) with columns title, name (title without a trailing year),
    genres (tuple), year (nullable int), tags (tuple), summary and description (what the item is about: shown /
    matched, "" without one), text (what is embedded) and the metadata columns.
    `interactions` has user_id, item_id (str), rating (float) and timestamp (int)."""

    spec: CatalogSpec
    root: Path
    items: pd.DataFrame
    interactions: pd.DataFrame
    report: CleaningReport = field(default_factory=CleaningReport)
    genre_aliases: dict[str, list[str]] = field(default_factory=dict)  # genre -> the words for it ([genres])

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def positive_min(self) -> float:
        return self.spec.interactions.positive_min if self.spec.interactions else 4.0

    def items_fingerprint(self, column: str = "text") -> str:
        """Changes when any item's embedded text (`text`, or `about`) changes."""
        return _digest(self.items.index.to_series() + "\x1f" + self.items[column])

    def interactions_fingerprint(self) -> str:
        """Changes when any interaction changes."""
        df = self.interactions
        return _digest(df.user_id + "\x1f" + df.item_id + "\x1f" + df.rating.astype(str))

    def has_user(self, user_id: str) -> bool:
        return bool((self.interactions.user_id == user_id).any())


def _digest(lines: pd.Series) -> str:
    return hashlib.sha256("\n".join(lines.tolist()).encode()).hexdigest()[:16]


def resolve_catalog_dir(name_or_path: str) -> Path:
    """A folder path as given, else a shipped catalog of that name."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve()
    shipped = shipped_dir("catalogs")
    if (shipped / name_or_path).is_dir():
        return shipped / name_or_path
    names = sorted(p.name for p in shipped.iterdir() if p.is_dir())
    raise CatalogError(
        f"No catalog '{name_or_path}': it is neither a folder nor a shipped catalog "
        f"(shipped: {', '.join(names)}). Pass a folder with catalog.toml or movies.csv + ratings.csv."
    )


def load_catalog(name_or_path: str, files: CatalogFilesSettings | None = None) -> Catalog:
    """Load, clean and validate a catalog by shipped name or folder path; its files are checked first
    (`data.paths`: inside the folder, within the size limits of `files`)."""
    root = resolve_catalog_dir(name_or_path)
    spec = load_spec(root)
    check_catalog_files(root, spec, files or CatalogFilesSettings())
    report = CleaningReport()
    items_table = read_table(root / spec.items.path)
    items = _load_items(items_table, root, spec, report)
    interactions = _load_interactions(root, spec, items, report)
    tags = _load_tags(root, spec, items, report).reindex(items.index)
    every_tag = tags.apply(lambda t: t if isinstance(t, tuple) else ())
    if spec.tags and spec.tags.genres:
        items["genres"] = _genres_from_tags(items.genres, every_tag, spec.tags.genres)
    top = spec.tags.top if spec.tags else 0
    items["tags"] = every_tag.apply(lambda t: t[:top])
    items["summary"], items["description"] = load_descriptions(root, spec, items, report, items_table)
    _load_credits(root, spec, items, report, items_table)
    _check_template(root, spec, items)
    rows = items.to_dict("records")
    items["text"] = [_compose_text(spec.text.template, row) for row in rows]
    items["about"] = [_compose_text(spec.text.about, row) for row in rows] if spec.text.about else ""
    return Catalog(spec=spec, root=root, items=items, interactions=interactions, report=report,
                   genre_aliases=_genre_aliases(root, spec.genres))


def _genre_aliases(root: Path, spec: GenresSpec) -> dict[str, list[str]]:
    """Genre -> the words for it, from `[genres].aliases` and the [genres] table of `[genres].path`."""
    aliases = {genre: list(words) for genre, words in spec.aliases.items()}
    if spec.path is None:
        return aliases
    path = root / spec.path
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("genres", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read the genre words ({exc}). Fix [genres].path in catalog.toml.") \
            from exc
    if not isinstance(table, dict) or not all(isinstance(w, list) for w in table.values()):
        raise CatalogError(f"{path}: [genres] must map each genre to a list of words "
                           '(fantasy = ["high-fantasy"]).')
    for genre, words in table.items():
        aliases.setdefault(genre, []).extend(str(w) for w in words)
    return aliases


def _where(path: Path, index: int) -> str:
    """A row position the user can find: data row number, and the line for CSV files."""
    line = f" (line {index + 2})" if path.suffix.lower() in (".csv", ".tsv") else ""
    return f"row {index + 1}{line}"


def _require(df: pd.DataFrame, path: Path, section: str, key: str, column: str) -> pd.Series:
    if column not in df.columns:
        raise CatalogError(
            f"{path}: column '{column}' not found (columns: {', '.join(df.columns)}). "
            f"Fix [{section}].{key} in catalog.toml or rename the column."
        )
    values = df[column]
    empty = values.eq("") | values.eq("nan") | values.eq("None")
    if empty.any():
        at = int(np.flatnonzero(empty.to_numpy())[0])
        raise CatalogError(f"{path}: column '{column}' is empty at {_where(path, at)}. Fill it or drop the row.")
    return values


def _numeric(df: pd.DataFrame, path: Path, section: str, key: str, column: str) -> pd.Series:
    values = _require(df, path, section, key, column)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() | ~np.isfinite(numbers.astype(float))
    if bad.any():
        at = int(np.flatnonzero(bad.to_numpy())[0])
        raise CatalogError(
            f"{path}: column '{column}' has a non-number {values.iloc[at]!r} at {_where(path, at)}."
        )
    return numbers


def _load_items(df: pd.DataFrame, root: Path, spec: CatalogSpec, report: CleaningReport) -> pd.DataFrame:
    """The items of `df`, the items file as read."""
    s = spec.items
    path = root / s.path
    ids = _require(df, path, "items", "id", s.id)
    titles = _require(df, path, "items", "title", s.title)
    long = titles.str.len() > MAX_TITLE_CHARS
    report.long_titles_cut = int(long.sum())
    titles = titles.where(~long, titles.str.slice(0, MAX_TITLE_CHARS - 1).str.rstrip() + "\u2026")
    out = pd.DataFrame({"item_id": ids, "title": titles})
    dup = out.duplicated("item_id", keep=False)
    if dup.any():
        clash = out[dup].groupby("item_id").title.nunique()
        conflicted = clash[clash > 1]
        if len(conflicted):
            bad_id = conflicted.index[0]
            rows = [_where(path, int(i)) for i in np.flatnonzero((out.item_id == bad_id).to_numpy())]
            raise CatalogError(
                f"{path}: column '{s.id}': id {bad_id!r} appears with different titles at {', '.join(rows)}. "
                "Give each item a unique id."
            )
        report.duplicate_items_dropped = int(out.duplicated("item_id").sum())
    keep = ~out.duplicated("item_id").to_numpy()
    df, out = df[keep], out[keep]
    if s.genres:
        raw = _column(df, path, "items", "genres", s.genres)
        out["genres"] = [_split_genres(v, s.genre_separator, s.missing_genre) for v in raw]
    else:
        out["genres"] = [()] * len(out)
    if s.year:
        out["year"] = pd.to_numeric(_column(df, path, "items", "year", s.year), errors="coerce")
    elif s.year_from_title:
        out["year"] = pd.to_numeric(out.title.str.extract(_YEAR_IN_TITLE, expand=False), errors="coerce")
    else:
        out["year"] = np.nan
    out["name"] = out.title.str.replace(_YEAR_IN_TITLE, "", regex=True).str.strip() if s.year_from_title \
        else out.title
    out["year"] = out["year"].round().astype("Int64")
    out["filed_title"] = out.title  # as the file writes it (ids, stored data and matching keep it)
    if s.titles == "article-last":
        out["title"] = [natural_title(t) for t in out.title]
    for column in s.metadata:
        out[column] = _column(df, path, "items", "metadata", column).to_numpy()
    hidden = [c for c in s.show if c not in s.metadata]
    if hidden:
        raise CatalogError(f"{root / 'catalog.toml'}: [items].show lists '{hidden[0]}', which is not in "
                           "[items].metadata; add it there first.")
    return out.set_index("item_id")


_ARTICLE_LAST = re.compile(r"^(.+?), (The|A|An|Les|La|Le|L'|Il|El|Die|Der|Das|Los|Las|Une|Un)$")
_BRACKETS = re.compile(r"\s*\((?!\d{4}[-\u2013]?\d{0,4}\))[^()]*\)")


def natural_title(filed: str) -> str:
    """A title as people write it: "Matrix, The (1999)" -> "The Matrix (1999)", "Host, The (Gwoemul) (2006)" ->
    "The Host (2006)" (a.k.a. forms in brackets left out); a title that is only brackets or an article stays."""
    year = _YEAR_IN_TITLE.search(filed)
    name = filed[: year.start()].strip() if year else filed.strip()
    plain = _BRACKETS.sub("", name).strip() or name
    match = _ARTICLE_LAST.match(plain)
    if match:
        article = match.group(2)
        plain = f"{article}{'' if article.endswith(chr(39)) else ' '}{match.group(1)}"
    return f"{plain} {year.group(0).strip()}" if year else plain


def _column(df: pd.DataFrame, path: Path, section: str, key: str, column: str) -> pd.Series:
    if column not in df.columns:
        raise CatalogError(
            f"{path}: column '{column}' not found (columns: {', '.join(df.columns)}). "
            f"Fix [{section}].{key} in catalog.toml."
        )
    return df[column]


def _split_genres(value: str, separator: str, missing: str | None) -> tuple[str, ...]:
    if not value or value == missing:
        return ()
    return tuple(dict.fromkeys(g.strip() for g in value.split(separator) if g.strip()))


def _load_interactions(
    root: Path, spec: CatalogSpec, items: pd.DataFrame, report: CleaningReport
) -> pd.DataFrame:
    s = spec.interactions
    if s is None:
        return pd.DataFrame({"user_id": pd.Series(dtype=str), "item_id": pd.Series(dtype=str),
                             "rating": pd.Series(dtype=float), "timestamp": pd.Series(dtype="int64")})
    path = root / s.path
    df = read_table(path)
    out = pd.DataFrame({
        "user_id": _require(df, path, "interactions", "user", s.user),
        "item_id": _require(df, path, "interactions", "item", s.item),
    })
    out["rating"] = (_numeric(df, path, "interactions", "rating", s.rating).astype(float)
                     if s.rating else 1.0)
    if s.timestamp:
        out["timestamp"] = _numeric(df, path, "interactions", "timestamp", s.timestamp).astype("int64")
    elif s.order == "unknown":
        out["timestamp"] = np.random.default_rng(0).permutation(len(out)).astype("int64")
    else:
        out["timestamp"] = np.arange(len(out), dtype="int64")
    known = out.item_id.isin(items.index)
    report.unknown_item_interactions_dropped = int((~known).sum())
    out = out[known]
    out = out.sort_values(["user_id", "timestamp"], kind="mergesort")
    dup = out.duplicated(["user_id", "item_id"], keep="last")
    report.duplicate_interactions_dropped = int(dup.sum())
    return out[~dup].reset_index(drop=True)


def _load_tags(root: Path, spec: CatalogSpec, items: pd.DataFrame, report: CleaningReport) -> pd.Series:
    """Every tag of each item, most often given first. Rows of unknown items or without a tag name, and tag
    names given to several ids (counted once per item: the largest count), are named in the report's notes."""
    s = spec.tags
    if s is None:
        return pd.Series(dtype=object)
    path = root / s.path
    df = read_table(path)
    tags = pd.DataFrame({"item_id": _column(df, path, "tags", "item", s.item),
                         "tag": _column(df, path, "tags", "tag", s.tag)})
    tags["n"] = _numeric(df, path, "tags", "count", s.count).to_numpy() if s.count else 1.0
    if s.names:  # several ids may bear one name: each id counts once per item (see below)
        tags["source"] = tags.tag
        tags["tag"] = tags.tag.map(_tag_names(root, s.names, report)).fillna("")
    if s.item_key:
        if s.item_key not in items.columns:
            raise CatalogError(f"{root / 'catalog.toml'}: [tags].item_key '{s.item_key}' must be listed in "
                               "[items].metadata, so the tags can be joined to the items.")
        to_id = pd.Series(items.index.to_numpy(), index=items[s.item_key].to_numpy())
        to_id = to_id[~to_id.index.duplicated()]
        tags["item_id"] = tags.item_id.map(to_id).fillna("")
    tags["tag"] = tags.tag.str.lower()
    if not s.names:
        tags["source"] = tags.tag
    unnamed = (tags.tag == "").to_numpy()
    unknown = ~tags.item_id.isin(items.index).to_numpy()
    report.unknown_item_tags_dropped = int((unknown & ~unnamed).sum())
    for label, rows in (("tags without a name skipped at", unnamed), ("tags of unknown items skipped at",
                                                                     unknown & ~unnamed)):
        if rows.any():
            report.notes.append(descriptions.rows_note(f"{path.name}: {label}",
                                                       [_where(path, int(i)) for i in np.flatnonzero(rows)]))
    tags = tags[~unnamed & ~unknown & ~tags.tag.isin([t.lower() for t in s.exclude]).to_numpy()]
    per_source = tags.groupby(["item_id", "tag", "source"]).n.sum().reset_index()
    counts = per_source.groupby(["item_id", "tag"]).n.max().reset_index()
    counts = counts.sort_values(["item_id", "n", "tag"], ascending=[True, False, True], kind="mergesort")
    return counts.groupby("item_id").tag.agg(tuple)


def _tag_names(root: Path, spec: TagNamesSpec, report: CleaningReport) -> pd.Series:
    """Tag id -> name from the names file. Empty names are left out (their tags are then skipped), a repeated
    id keeps its first name, and a name written under several ids is noted: all of them are one tag."""
    path = root / spec.path
    names = read_table(path)
    lookup = pd.Series(_column(names, path, "tags.names", "name", spec.name).to_numpy(),
                       index=_column(names, path, "tags.names", "id", spec.id).to_numpy())
    where = np.array([_where(path, i) for i in range(len(lookup))], dtype=object)
    lower = lookup.str.lower().to_numpy()
    checks = {"empty tag names at": lower == "",
              "repeated tag ids (the first name is kept) at": lookup.index.duplicated(),
              "tag names given to several ids (read as one tag) at": (lower != "") & pd.Series(lower).duplicated(
                  keep=False).to_numpy()}
    for label, rows in checks.items():
        if rows.any():
            report.notes.append(descriptions.rows_note(f"{path.name}: {label}", list(where[rows])))
    keep = ~lookup.index.duplicated() & (lower != "")
    return lookup[keep]


def load_descriptions(root: Path, spec: CatalogSpec, items: pd.DataFrame, report: CleaningReport,
                      items_table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Per item (in `items` order): its summary and its matching text, "" where it has none. Rows whose text
    is empty, whose id is unknown or repeated, or that needed cleaning are named in the report's notes.
    `items_table` is the items file as read, where the descriptions are columns of it; a file of their own is
    read in chunks, each row of an unknown id dropped as it is read (memory holds the known items' rows)."""
    s = spec.descriptions
    if s is None:
        return [""] * len(items), [""] * len(items)
    path = root / (s.path or spec.items.path)
    id_column = s.item or spec.items.id
    columns = list(dict.fromkeys([id_column, s.summary, *([s.match] if s.match else [])]))
    tables = reading.chunks(path, columns) if s.path else [(0, items_table)]
    kept: dict[str, tuple[str, str, str]] = {}  # item id -> (summary, match, where), its first row's
    # in the items file, an item without a description is an ordinary item and a repeated row is
    # counted as a duplicate item already: only a file of descriptions of its own is checked for those
    unknown = descriptions.RowsNoted(f"{path.name}: descriptions of unknown ids skipped at")
    empty = descriptions.RowsNoted(f"{path.name}: empty descriptions skipped at")
    repeated = descriptions.RowsNoted(f"{path.name}: repeated descriptions skipped (the first is kept) at")
    for start, df in tables:
        ids = _column(df, path, "descriptions", "item", id_column).astype(str).to_numpy()
        summary = _column(df, path, "descriptions", "summary", s.summary).to_numpy()
        match = _column(df, path, "descriptions", "match", s.match).to_numpy() if s.match else summary
        blank = (summary == "") & (match == "")
        known = pd.Index(ids).isin(items.index)
        unknown.add([_where(path, start + int(i)) for i in np.flatnonzero(~known & ~blank)])
        for i in np.flatnonzero(known):
            at = _where(path, start + int(i))
            if ids[i] in kept:
                repeated.add([at] if not blank[i] else [])
            elif blank[i]:
                empty.add([at])
            else:
                kept[ids[i]] = (summary[i], match[i], at)
    rows = list(kept.values())
    cleaned = descriptions.clean([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                                 s.summary_chars, s.match_chars, path.name)
    for at, short, long in zip([r[2] for r in rows], cleaned.summaries, cleaned.matches, strict=True):
        if not short and not long:
            empty.add([at])
    report.notes += unknown.note() + (empty.note() + repeated.note() if s.path is not None else [])
    report.notes += cleaned.notes
    table = pd.DataFrame({"summary": cleaned.summaries, "match": cleaned.matches}, index=list(kept), dtype=object)
    return (table.summary.reindex(items.index, fill_value="").tolist(),
            table.match.reindex(items.index, fill_value="").tolist())


def _load_credits(root: Path, spec: CatalogSpec, items: pd.DataFrame, report: CleaningReport,
                  items_table: pd.DataFrame) -> None:
    """Add the columns people (role -> names), countries, language and minutes (Int64, NA unknown) to `items`
    from `[credits]` (none without it); rows that cannot be read are named in the report's notes."""
    s = spec.credits
    if s is None:
        return
    clash = [c for c in ("people", "countries", "language", "minutes") if c in items.columns]
    if clash:
        raise CatalogError(f"{root / 'catalog.toml'}: [items].metadata has a column '{clash[0]}', which "
                           "[credits] also fills; rename that metadata column.")
    path = root / (s.path or spec.items.path)
    df = read_table(path) if s.path else items_table
    ids = _column(df, path, "credits", "item", s.item or spec.items.id).astype(str)
    found = credit_columns.read(s, df, ids, items.index, lambda i: _where(path, i), path.name,
                                lambda key, name: _column(df, path, "credits", key, name))
    report.notes += found.notes
    items["people"] = found.people
    items["countries"] = found.countries
    items["language"] = found.language
    items["minutes"] = pd.array(found.minutes, dtype="Int64")


def _genres_from_tags(genres: pd.Series, tags: pd.Series, listed: list[str]) -> pd.Series:
    """Add every tag of an item that is `listed` as a genre to its genres (in the order of the list), not only
    those among its top tags."""
    wanted = [g.lower() for g in listed]
    return pd.Series([tuple(dict.fromkeys([*g, *(w for w in wanted if w in t)]))
                      for g, t in zip(genres, tags, strict=True)], index=genres.index)


def _check_template(root: Path, spec: CatalogSpec, items: pd.DataFrame) -> None:
    known = {"title", "name", "genres", "tags", "year", "summary", "description", *spec.items.metadata}
    for key, template in (("template", spec.text.template), ("about", spec.text.about or "")):
        for name in _PLACEHOLDER.findall(template):
            if name not in known:
                raise CatalogError(
                    f"{root / 'catalog.toml'}: [text].{key} uses '{{{name}}}', which is not an item field "
                    f"(fields: {', '.join(sorted(known))})."
                )


def _compose_text(template: str, row: dict[str, object]) -> str:
    def value(match: re.Match[str]) -> str:
        v = row[match.group(1)]
        if isinstance(v, tuple):
            return ", ".join(v) if v else "none"
        return "unknown" if v is None or v is pd.NA else str(v)

    return _PLACEHOLDER.sub(value, template).strip()  # an empty last field ({description}) leaves no space
