"""Who made an item, where, and how long it is: the catalog's `[credits]` section.

People come in roles the catalog names (director and cast for films, author for books), each a column of
names: a list (JSONL, Parquet) or names joined by `separator` (CSV). Countries are a list column the same way;
a language is one string; a duration is a number in `duration_unit`, or written as people write it ("2h 10m",
"1:45", "136 min"). What cannot be read is skipped, and the rows are named in the cleaning report: unknown ids,
durations that are no length, and lists longer than `max_names` (cut to it).
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from genre_agent.data.descriptions import rows_note

MAX_MINUTES = 6000  # the longest films listed anywhere run about 100 hours; beyond that a duration is a typo


class CreditsSpec(BaseModel):
    """`[credits]` in catalog.toml: the columns that say who made an item, where, and how long it runs."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None  # a file of its own; default: columns of the items file
    item: str | None = None  # that file's item id column (default: the items file's id column name)
    people: dict[str, str] = Field({}, description="role -> column of names (\"director\" = \"directors\")")
    separator: str = "|"  # between names (and countries) written in one text cell
    countries: str | None = None
    language: str | None = None
    duration: str | None = None
    duration_unit: Literal["minutes", "hours", "seconds"] = "minutes"
    max_names: int = Field(40, ge=1, le=1000)  # per role and item: the rest is cut (and named)


@dataclass
class Credits:
    """Per item (in the items' order): its people by role, countries, language and minutes (None unknown)."""

    people: list[dict[str, tuple[str, ...]]]
    countries: list[tuple[str, ...]]
    language: list[str]
    minutes: list[int | None]
    notes: list[str] = field(default_factory=list)


def fold(text: str) -> str:
    """Lower case without accents, hyphens and punctuation as spaces: how names are compared."""
    plain = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in plain if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^\w]+", " ", plain).split())


def name_key(name: str) -> frozenset[str]:
    """A person as the set of their folded name's words: "Park Chan-wook" and "Chan Wook Park" are one."""
    return frozenset(fold(name).split())


def names(value: object, separator: str) -> tuple[str, ...]:
    """The names of one cell: a list as read from JSONL or Parquet, a list written as text ("['a', 'b']"), or
    names joined by `separator`; blanks dropped, repeats kept once, in order."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        try:
            value = json.loads(value)
        except ValueError:
            try:
                value = ast.literal_eval(str(value))
            except (ValueError, SyntaxError):
                pass
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value if v is not None]
    elif value is None or (isinstance(value, float) and pd.isna(value)):
        parts = []
    else:
        parts = str(value).split(separator)
    return tuple(dict.fromkeys(" ".join(p.split()) for p in parts if p and p.strip()))


_HOURS_MINUTES = re.compile(r"^(?:(\d+(?:\.\d+)?)\s*h(?:ours?|rs?)?)?\s*(?:(\d+)\s*m(?:in(?:utes?|s)?)?)?$")
_CLOCK = re.compile(r"^(\d+):([0-5]\d)$")
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:min(?:utes?|s)?|m)?$")
_UNIT = {"minutes": 1.0, "hours": 60.0, "seconds": 1 / 60}


def minutes(value: object, unit: str = "minutes") -> int | None:
    """A duration in whole minutes from a number in `unit` or text such as "2h 10m", "1:45", "136 min"; None
    when the cell is empty, and ValueError when it is not a length (negative, zero, text)."""
    text = " ".join(str(value).lower().split()) if value is not None else ""
    if not text or text in ("nan", "none", "<na>"):
        return None
    if match := _NUMBER.match(text):
        found = float(match.group(1)) * _UNIT[unit]
    elif match := _CLOCK.match(text):
        found = int(match.group(1)) * 60 + int(match.group(2))
    elif (match := _HOURS_MINUTES.match(text)) and (match.group(1) or match.group(2)):
        found = float(match.group(1) or 0) * 60 + int(match.group(2) or 0)
    else:
        raise ValueError(f"not a duration: {text!r}")
    if not 0 < round(found) <= MAX_MINUTES:
        raise ValueError(f"not a length: {text!r}")
    return int(round(found))


def read(spec: CreditsSpec, table: pd.DataFrame, ids: pd.Series, item_index: pd.Index,
         where: Callable[[int], str], source: str, column: Callable[[str, str], pd.Series]) -> Credits:
    """The credits of every item of `item_index` from `table` (its item ids `ids`, row positions named by
    `where`, columns fetched by `column(key, name)`, which raises a CatalogError naming a missing one)."""
    known = ids.isin(item_index).to_numpy()
    repeated = ids.duplicated().to_numpy() & known
    keep = known & ~repeated
    notes = []
    for label, rows in (("credits of unknown ids skipped at", ~known), ("repeated credits skipped (the first "
                                                                         "is kept) at", repeated)):
        if rows.any():
            notes.append(rows_note(f"{source}: {label}", [where(i) for i in range(len(ids)) if rows[i]]))
    positions = [i for i in range(len(ids)) if keep[i]]
    at = pd.Series(range(len(positions)), index=ids.to_numpy()[keep])
    cut: list[str] = []

    def listed(key: str, name: str) -> list[tuple[str, ...]]:
        cells = column(key, name).to_numpy()
        out = []
        for i in positions:
            values = names(cells[i], spec.separator)
            if len(values) > spec.max_names:
                cut.append(where(i))
                values = values[: spec.max_names]
            out.append(values)
        return out

    people_by_role = {role: listed(f"people.{role}", name) for role, name in spec.people.items()}
    countries = listed("countries", spec.countries) if spec.countries else [()] * len(positions)
    language = ([" ".join(str(v).split()) for v in column("language", spec.language).to_numpy()[positions]]
                if spec.language else [""] * len(positions))
    durations: list[int | None] = [None] * len(positions)
    bad: list[str] = []
    if spec.duration:
        cells = column("duration", spec.duration).to_numpy()
        for n, i in enumerate(positions):
            try:
                durations[n] = minutes(cells[i], spec.duration_unit)
            except ValueError:
                bad.append(where(i))
    if cut:
        notes.append(rows_note(f"{source}: more than {spec.max_names} names (cut) at", cut))
    if bad:
        notes.append(rows_note(f"{source}: durations that are no length (left unknown) at", bad))
    order = [at.get(i) for i in item_index]
    return Credits(
        people=[{} if n is None else {r: v[n] for r, v in people_by_role.items() if v[n]} for n in order],
        countries=[() if n is None else countries[n] for n in order],
        language=["" if n is None else language[n] for n in order],
        minutes=[None if n is None else durations[n] for n in order],
        notes=notes,
    )


def credited(people: dict[str, tuple[str, ...]], wanted: Sequence[frozenset[str]]) -> list[tuple[str, str]]:
    """(role, name as the catalog spells it) of each wanted person credited in `people`."""
    return [(role, name) for role, listed in people.items() for name in listed if name_key(name) in wanted]
