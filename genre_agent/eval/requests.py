"""Request fidelity: the share of the top 10 that satisfies what was asked, per category, with intervals.

A request set is JSONL (tests/data/requests/README.md): each request's turns go through the agent's public chat
API, one fresh session per request, and the last answer's top 10 is judged by the request's rule — its words in
what the catalog says about an item (summary, description, tags; never the title) or one of its genres.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genre_agent.chat.agent import Agent
from genre_agent.chat.understanding import descriptive_words
from genre_agent.data.feedback import SQLiteStore
from genre_agent.errors import ConfigError
from genre_agent.eval.evaluate import git_commit
from genre_agent.eval.metrics import bootstrap_ci
from genre_agent.eval.report import write_texts
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
    words: list[str]
    genres: list[str]


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
                              words=[str(w).lower() for w in judge.get("words", [])],
                              genres=[str(g).lower() for g in judge.get("genres", [])])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path} line {n}: not a request ({exc}); see tests/data/requests/README.md "
                              "for the fields.") from exc
        if not request.turns or not (request.words or request.genres):
            raise ConfigError(f"{path} line {n}: a request needs turns and judge.words or judge.genres.")
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

    def satisfies(self, request: Request, item_id: str) -> bool:
        text = self.facts.get(item_id, "")
        return bool(self.genres.get(item_id, set()) & set(request.genres)) or any(
            re.search(rf"(?<![a-z0-9]){re.escape(w)}", text) for w in request.words)

    def title_word_only(self, request: Request, item_id: str) -> bool:
        """The item shares a word with the request only through its title, and does not satisfy it."""
        asked = set(descriptive_words(" ".join(request.turns)))
        return bool(self.titles.get(item_id, set()) & asked) and not self.satisfies(request, item_id)


def _agent_list(agent: Agent, request: Request) -> tuple[list[str], str | None]:
    session = f"requests-{request.id}"
    ids: list[str] = []
    try:
        for turn in request.turns:
            reply = agent.chat(session, turn)
            if reply.recommendations:
                ids = [r.item_id for r in reply.recommendations.recommendations]
    except Exception as exc:  # noqa: BLE001 - a crash on a request is what this evaluation counts
        return [], f"{type(exc).__name__}: {exc}"
    finally:
        agent.forget(session)
    return ids[:K], None


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
    popular = rec.popular(K)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:  # these sessions' likes must not become training data
        agent = Agent(rec, SQLiteStore(Path(tmp) / "feedback.sqlite3"))
        for done, request in enumerate(requests, 1):
            ids, error = _agent_list(agent, request)
            nearest = rec.retriever.index.nearest(rec.retriever.index.embed([request.turns[-1]])[0], K)
            lists = {"agent": ids, "pop": popular, "vector": list(nearest)}
            row: dict[str, Any] = {"id": request.id, "category": request.category, "split": request.split,
                                   "request": " / ".join(request.turns), "error": error,
                                   "titles": [rec.catalog.items.at[i, "title"] for i in ids]}
            for method, listed in lists.items():
                row[method] = sum(judge.satisfies(request, i) for i in listed) / K
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
