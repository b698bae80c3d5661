"""Request fidelity: the share of the top 10 that satisfies what was asked, per category, with intervals.

A request set is JSONL (tests/data/requests/README.md): each request's turns go through the agent's public chat
API, one fresh session per request, and the last answer's top 10 is judged by the request's rule — its words in
what the catalog says about an item (summary, description, tags; never the title) or one of its genres, and
every constraint it states (all of some genres, a year range, genres and titles that must not come back). A
request that asks for the impossible is satisfied only by a reply that names the conflict.
Popularity and plain vector search (the request's last message against the item texts, Chroma's nearest
neighbours) answer the same requests in the same run. Items that share a word with the request only through
their title and do not satisfy it are counted: a title word alone must never make an item fit.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genre_agent.chat.agent import Agent
from genre_agent.chat.understanding import descriptive_words
from genre_agent.data.feedback import SQLiteStore
from genre_agent.errors import ConfigError
from genre_agent.eval.metrics import bootstrap_ci
from genre_agent.eval.report import git_commit, write_texts
from genre_agent.pipeline import Recommender
from genre_agent.settings import Settings

K = 10
LOW = 0.7  # a request whose share is below this is listed


@dataclass(frozen=True)
class Request:
    id: str
    category: str
    split: str
    turns: list[str]
    words: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)  # any one of them
    all_genres: list[str] = field(default_factory=list)  # every one of them
    exclude_genres: list[str] = field(default_factory=list)
    exclude_titles: list[str] = field(default_factory=list)  # catalog titles, year included
    year_min: int | None = None
    year_max: int | None = None
    conflict: bool = False  # only a reply that names the conflict satisfies it

    @property
    def checks(self) -> bool:
        """Whether the request states anything to judge by."""
        return bool(self.words or self.genres or self.all_genres or self.exclude_genres or self.exclude_titles
                    or self.year_min is not None or self.year_max is not None or self.conflict)


def _lower(raw: dict[str, Any], key: str) -> list[str]:
    return [str(v).lower() for v in raw.get(key, [])]


def _year(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    return None if value is None else int(value)


def load_requests(path: Path) -> list[Request]:
    """The requests of a JSONL file; a malformed line is a ConfigError naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the request set ({exc}).") from exc
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            judge = raw.get("judge", {})
            request = Request(id=str(raw["id"]), category=str(raw.get("category", "all")),
                              split=str(raw.get("split", "dev")), turns=[str(t) for t in raw["turns"]],
                              words=_lower(judge, "words"), genres=_lower(judge, "genres"),
                              all_genres=_lower(judge, "all_genres"),
                              exclude_genres=_lower(judge, "exclude_genres"),
                              exclude_titles=[str(t) for t in judge.get("exclude_titles", [])],
                              year_min=_year(judge, "year_min"), year_max=_year(judge, "year_max"),
                              conflict=bool(judge.get("conflict", False)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path} line {n}: not a request ({exc}); see tests/data/requests/README.md "
                              "for the fields.") from exc
        if not request.turns or not request.checks:
            raise ConfigError(f"{path} line {n}: a request needs turns and something to judge by (judge.words, "
                              "genres, all_genres, exclude_genres, exclude_titles, year_min, year_max or "
                              "conflict).")
        out.append(request)
    if not out:
        raise ConfigError(f"{path}: no requests in it.")
    return out


class Judge:
    """Whether an item satisfies a request, by the rule above, from the catalog's own facts."""

    def __init__(self, items: pd.DataFrame) -> None:
        self.facts = {str(i): " ".join([s, d, " ; ".join(t)]).lower() for i, s, d, t in
                      zip(items.index, items["summary"], items["description"], items["tags"], strict=True)}
        self.genres = {str(i): {g.lower() for g in gs} for i, gs in zip(items.index, items["genres"], strict=True)}
        self.titles = {str(i): set(descriptive_words(str(n))) for i, n in zip(items.index, items["name"],
                                                                               strict=True)}
        filed = items["filed_title"] if "filed_title" in items.columns else items["title"]
        self.full_titles = {str(i): str(t) for i, t in filed.items()}  # request files write the file's form
        self.years = {str(i): None if pd.isna(y) else int(y) for i, y in items["year"].items()}
        self.known_titles = set(self.full_titles.values())

    def check(self, request: Request) -> None:
        """Raise ConfigError if the request names a title the catalog does not hold (a typo would make the
        check pass for nothing)."""
        unknown = [t for t in request.exclude_titles if t not in self.known_titles]
        if unknown:
            raise ConfigError(f"request {request.id}: {unknown[0]!r} is not a title of this catalog; write it "
                              "as the catalog does, year included.")

    def satisfies(self, request: Request, item_id: str) -> bool:
        """The item is what was asked for (its words or genres, when the request gives any) and breaks none
        of the request's constraints."""
        genres = self.genres.get(item_id, set())
        text = self.facts.get(item_id, "")
        year = self.years.get(item_id)
        wanted = not (request.words or request.genres) or bool(genres & set(request.genres)) or any(
            re.search(rf"(?<![a-z0-9]){re.escape(w)}", text) for w in request.words)
        return (wanted and set(request.all_genres) <= genres and not genres & set(request.exclude_genres)
                and self.full_titles.get(item_id) not in request.exclude_titles
                and (request.year_min is None or (year is not None and year >= request.year_min))
                and (request.year_max is None or (year is not None and year <= request.year_max)))

    def share(self, request: Request, listed: list[str], conflict_named: bool) -> float:
        """The share of a top K that satisfies the request; a request for the impossible scores 1 when the
        reply names the conflict and 0 otherwise."""
        if request.conflict:
            return float(conflict_named)
        return sum(self.satisfies(request, i) for i in listed) / K

    def title_word_only(self, request: Request, item_id: str) -> bool:
        """The item shares a word with the request only through its title, and does not satisfy it."""
        asked = set(descriptive_words(" ".join(request.turns)))
        return bool(self.titles.get(item_id, set()) & asked) and not self.satisfies(request, item_id)


def _agent_list(agent: Agent, request: Request) -> tuple[list[str], bool, str | None]:
    """The top K of the last answer, whether the last reply names a conflict, and the error if one was raised."""
    session = f"requests-{request.id}"
    ids: list[str] = []
    conflict = False
    try:
        for turn in request.turns:
            reply = agent.chat(session, turn)
            conflict = reply.intent == "conflict"
            if reply.recommendations:
                ids = [r.item_id for r in reply.recommendations.recommendations]
    except Exception as exc:  # noqa: BLE001 - a crash on a request is what this evaluation counts
        return [], False, f"{type(exc).__name__}: {exc}"
    finally:
        agent.forget(session)
    return ids[:K], conflict, None


def _summary(shares: list[float], seed: int) -> dict[str, Any]:
    values = np.array(shares, dtype=np.float64)
    low, high = bootstrap_ci(values, seed) if len(values) > 1 else (float(values.mean()), float(values.mean()))
    return {"n": len(values), "mean": round(float(values.mean()), 3), "ci95": [round(low, 3), round(high, 3)],
            "below_0.7": int((values < LOW).sum())}


def evaluate_requests(settings: Settings, path: Path, split: str = "all", seed: int = 0,
                      progress: Callable[[str, int, int], None] | None = None,
                      recommender: Recommender | None = None) -> dict[str, Any]:
    """Run the agent, popularity and plain vector search on the requests of `path` (`split`: dev, test, all)."""
    if split not in ("dev", "test", "all"):
        raise ConfigError("--split is dev, test or all")
    started = time.perf_counter()
    requests = [r for r in load_requests(path) if split == "all" or r.split == split]
    if not requests:
        raise ConfigError(f"{path}: no request in split '{split}'.")
    rec = recommender or Recommender.open(settings)
    judge = Judge(rec.catalog.items)
    for request in requests:
        judge.check(request)
    popular = rec.popular(K)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:  # these sessions' likes must not become training data
        agent = Agent(rec, SQLiteStore(Path(tmp) / "feedback.sqlite3"))
        for done, request in enumerate(requests, 1):
            ids, conflict, error = _agent_list(agent, request)
            nearest = rec.retriever.index.nearest(rec.retriever.index.embed([request.turns[-1]])[0], K)
            lists = {"agent": ids, "pop": popular, "vector": list(nearest)}
            row: dict[str, Any] = {"id": request.id, "category": request.category, "split": request.split,
                                   "request": " / ".join(request.turns), "error": error, "conflict": conflict,
                                   "titles": [rec.catalog.items.at[i, "title"] for i in ids]}
            for method, listed in lists.items():
                row[method] = judge.share(request, listed, conflict and method == "agent")
            row["title_word_only"] = [rec.catalog.items.at[i, "title"] for i in ids
                                      if judge.title_word_only(request, i)]
            rows.append(row)
            if progress:
                progress("requests", done, len(requests))
    results: dict[str, Any] = {}
    for method in ("agent", "pop", "vector"):
        groups: dict[str, list[float]] = {}
        for row in rows:
            for key in (f"{row['split']} / all", f"{row['split']} / {row['category']}", "all / all"):
                groups.setdefault(key, []).append(row[method])
        results[method] = {key: _summary(v, seed) for key, v in sorted(groups.items())}
    return {"kind": "requests", "requests_file": str(path), "catalog": rec.catalog.name, "commit": git_commit(),
            "config": {"split": split, "seed": seed, "k": K}, "results": results, "requests": rows,
            "errors": sum(r["error"] is not None for r in rows),
            "title_word_only": sum(len(r["title_word_only"]) for r in rows),
            "seconds": round(time.perf_counter() - started, 1)}


def markdown(report: dict[str, Any]) -> str:
    names = {"agent": "agent", "pop": "popularity", "vector": "vector search (item texts)"}
    lines = [f"# Request fidelity on {Path(report['requests_file']).name} (commit {report['commit'][:10]})", "",
             f"Catalog {report['catalog']}: the share of the top {report['config']['k']} that satisfies each "
             f"request (mean over requests [95% bootstrap CI], requests below {LOW}).", "",
             "| split / category | n | " + " | ".join(names.values()) + " |", "|---|---:|---:|---:|---:|"]
    for key, entry in report["results"]["agent"].items():
        cells = []
        for method in names:
            e = report["results"][method][key]
            cells.append(f"{e['mean']:.2f} [{e['ci95'][0]:.2f}, {e['ci95'][1]:.2f}] ({e['below_0.7']} < {LOW})")
        lines.append(f"| {key} | {entry['n']} | " + " | ".join(cells) + " |")
    lines += ["", f"Errors: {report['errors']}. Items recommended that share only a title word with the request: "
              f"{report['title_word_only']}.", "", "| request | split | agent | first titles |",
              "|---|---|---:|---|"]
    for row in report["requests"]:
        shown = "; ".join(row["titles"][:4]) if not row["error"] else f"error: {row['error']}"
        lines.append(f"| {row['request']} | {row['split']} | {row['agent']:.1f} | {shown} |")
    lines.append(f"\n{report['seconds']} s in all.")
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out: Path) -> None:
    """report.json and report.md, each written aside and renamed when complete."""
    write_texts(out, {"report.json": json.dumps(report, indent=2), "report.md": markdown(report)})
