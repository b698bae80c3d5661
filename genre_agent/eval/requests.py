"""Request fidelity: the share of the top 10 that satisfies what was asked, per category, with intervals.

A request set is JSONL (tests/data/requests/README.md): each request's turns go through the agent's public chat
API, one fresh session per request, and the last answer's top 10 is judged by the request's rule — its words in
what the catalog says about an item (summary, description, tags; never the title) or one of its genres, and
every constraint it states (all of some genres, a year range, genres, words and titles that must not come back,
the people credited or not, countries, language, runtime, how well and how often it was rated). A request that
asks for the impossible is satisfied only by a reply that names the conflict; one that names a title the catalog
lacks, only by a reply that says so.
Popularity and plain vector search (the request's last message against the item texts, Chroma's nearest
neighbours) answer the same requests in the same run. Items that share a word with the request only through
their title and do not satisfy it are counted: a title word alone must never make an item fit.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import unicodedata
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
ROLES = ("director", "cast", "author")


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
    people: list[str] = field(default_factory=list)  # any one of them credited (in `role`, when given)
    role: str | None = None  # director, cast or author
    exclude_people: list[str] = field(default_factory=list)  # none of them credited, in any role
    countries: list[str] = field(default_factory=list)  # any one of the item's countries
    exclude_countries: list[str] = field(default_factory=list)  # its countries known, and none of them
    languages: list[str] = field(default_factory=list)  # the item's language is one of them
    exclude_words: list[str] = field(default_factory=list)  # none of them in what the catalog says about it
    minutes_min: int | None = None  # runtime known and at least this
    minutes_max: int | None = None  # runtime known and at most this
    min_mean_rating: float | None = None  # mean rating in the catalog's interactions
    min_ratings: int | None = None
    max_ratings: int | None = None
    missing_titles: list[str] = field(default_factory=list)  # named titles the catalog lacks (a year when it
    # holds another of that name): only a reply naming each of them (without the year) satisfies the request

    @property
    def checks(self) -> bool:
        """Whether the request states anything to judge by."""
        numbers = (self.year_min, self.year_max, self.minutes_min, self.minutes_max, self.min_mean_rating,
                   self.min_ratings, self.max_ratings)
        return bool(self.words or self.genres or self.all_genres or self.exclude_genres or self.exclude_titles
                    or self.people or self.exclude_people or self.countries or self.exclude_countries
                    or self.languages or self.exclude_words or self.missing_titles or self.conflict
                    or any(n is not None for n in numbers))


def person_key(name: str) -> frozenset[str]:
    """A name as a set of tokens: lower case, accents stripped, hyphens and punctuation as spaces, any order
    ("Park Chan-wook" and "Chan Wook Park" are one key)."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    return frozenset(re.findall(r"[a-z0-9]+", plain.lower()))


def _lower(raw: dict[str, Any], key: str) -> list[str]:
    return [str(v).lower() for v in raw.get(key, [])]


def _year(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    return None if value is None else int(value)


def _number(raw: dict[str, Any], key: str) -> float | None:
    value = raw.get(key)
    return None if value is None else float(value)


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
                              conflict=bool(judge.get("conflict", False)),
                              people=[str(p) for p in judge.get("people", [])],
                              role=None if judge.get("role") is None else str(judge["role"]),
                              exclude_people=[str(p) for p in judge.get("exclude_people", [])],
                              countries=_lower(judge, "countries"),
                              exclude_countries=_lower(judge, "exclude_countries"),
                              languages=_lower(judge, "languages"), exclude_words=_lower(judge, "exclude_words"),
                              minutes_min=_year(judge, "minutes_min"), minutes_max=_year(judge, "minutes_max"),
                              min_mean_rating=_number(judge, "min_mean_rating"),
                              min_ratings=_year(judge, "min_ratings"), max_ratings=_year(judge, "max_ratings"),
                              missing_titles=[str(t) for t in judge.get("missing_titles", [])])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path} line {n}: not a request ({exc}); see tests/data/requests/README.md "
                              "for the fields.") from exc
        if not request.turns or not request.checks:
            raise ConfigError(f"{path} line {n}: a request needs turns and something to judge by (judge.words, "
                              "genres, all_genres, people, countries, minutes_max, min_mean_rating, conflict or "
                              "another field of tests/data/requests/README.md).")
        out.append(request)
    if not out:
        raise ConfigError(f"{path}: no requests in it.")
    return out


def _bare(title: str) -> str:
    """A title without a trailing year: what a reply names."""
    return re.sub(r"\s*\(\d{4}\)$", "", title)


def _has_word(word: str, text: str) -> bool:
    return re.search(rf"(?<![a-z0-9]){re.escape(word)}", text) is not None


class Judge:
    """Whether an item satisfies a request, by the rule above, from the catalog's own facts. A fact the catalog
    does not hold (no `people`, `countries`, `language` or `minutes` column, no interactions) is empty: nothing
    satisfies a rule about it."""

    def __init__(self, items: pd.DataFrame, interactions: pd.DataFrame | None = None) -> None:
        ids = [str(i) for i in items.index]
        self.facts = {str(i): " ".join([s, d, " ; ".join(t)]).lower() for i, s, d, t in
                      zip(items.index, items["summary"], items["description"], items["tags"], strict=True)}
        self.genres = {str(i): {g.lower() for g in gs} for i, gs in zip(items.index, items["genres"], strict=True)}
        self.titles = {str(i): set(descriptive_words(str(n))) for i, n in zip(items.index, items["name"],
                                                                               strict=True)}
        filed = items["filed_title"] if "filed_title" in items.columns else items["title"]
        self.full_titles = {str(i): str(t) for i, t in filed.items()}  # request files write the file's form
        self.years = {str(i): None if pd.isna(y) else int(y) for i, y in items["year"].items()}
        self.known_titles = set(self.full_titles.values())
        self.known_names = {str(n).lower() for n in items["name"]}
        people = items.get("people", pd.Series([{}] * len(ids), index=items.index))
        self.people = {i: {role: {person_key(n) for n in names} for role, names in credits.items()}
                       if isinstance(credits, dict) else {} for i, credits in zip(ids, people, strict=True)}
        countries = items.get("countries", pd.Series([()] * len(ids), index=items.index))
        self.countries = {i: {str(c).lower() for c in cs} if isinstance(cs, (tuple, list)) else set()
                          for i, cs in zip(ids, countries, strict=True)}
        languages = items.get("language", pd.Series([""] * len(ids), index=items.index))
        self.languages = {i: lang.lower() if isinstance(lang, str) else "" for i, lang in zip(ids, languages,
                                                                                             strict=True)}
        minutes = items.get("minutes", pd.Series([pd.NA] * len(ids), index=items.index))
        self.minutes = {i: None if pd.isna(m) else int(m) for i, m in zip(ids, minutes, strict=True)}
        rated = (interactions.groupby(interactions["item_id"].astype(str))["rating"].agg(["mean", "size"])
                 if interactions is not None and len(interactions) else pd.DataFrame(columns=["mean", "size"]))
        self.mean_rating = {str(i): float(m) for i, m in rated["mean"].items()}
        self.n_ratings = {str(i): int(n) for i, n in rated["size"].items()}
        self.credited = {key for credits in self.people.values() for keys in credits.values() for key in keys}
        self.known_countries = {c for cs in self.countries.values() for c in cs}

    def check(self, request: Request) -> None:
        """Raise ConfigError for what would make the check pass or fail for nothing: a title the catalog does not
        hold (a typo), a "missing" title it does hold, an unknown role, an empty runtime range, and — when the
        catalog credits people or names countries at all — a person or country it never names."""
        def fail(what: str) -> None:
            raise ConfigError(f"request {request.id}: {what}")

        unknown = [t for t in request.exclude_titles if t not in self.known_titles]
        if unknown:
            fail(f"{unknown[0]!r} is not a title of this catalog; write it as the catalog does, year included.")
        held = [t for t in request.missing_titles if t in self.known_titles or (
            _bare(t) == t and t.lower() in self.known_names)]
        if held:
            fail(f"{held[0]!r} is in this catalog; missing_titles lists only titles it lacks (give the year when "
                 "the catalog holds another item of that name: 'Parasite (2019)').")
        if request.role is not None and request.role not in ROLES:
            fail(f"role {request.role!r} is not one of {', '.join(ROLES)}.")
        if (request.minutes_min is not None and request.minutes_max is not None
                and request.minutes_min > request.minutes_max):
            fail("minutes_min is above minutes_max.")
        if self.credited:
            nobody = [p for p in request.people + request.exclude_people if person_key(p) not in self.credited]
            if nobody:
                fail(f"{nobody[0]!r} is credited for no item of this catalog.")
        if self.known_countries:
            nowhere = [c for c in request.countries + request.exclude_countries if c not in self.known_countries]
            if nowhere:
                fail(f"{nowhere[0]!r} is the country of no item of this catalog; write it as the catalog does.")

    def _credited(self, item_id: str, names: list[str], role: str | None) -> bool:
        credits = self.people.get(item_id, {})
        keys = set().union(*credits.values()) if role is None else credits.get(role, set())
        return any(person_key(n) in keys for n in names)

    def satisfies(self, request: Request, item_id: str) -> bool:
        """The item is what was asked for (its words or genres, when the request gives any) and breaks none
        of the request's constraints."""
        genres = self.genres.get(item_id, set())
        text = self.facts.get(item_id, "")
        wanted = not (request.words or request.genres) or bool(genres & set(request.genres)) or any(
            _has_word(w, text) for w in request.words)
        return (wanted and set(request.all_genres) <= genres and not genres & set(request.exclude_genres)
                and self.full_titles.get(item_id) not in request.exclude_titles
                and not any(_has_word(w, text) for w in request.exclude_words)
                and self._within(request.year_min, request.year_max, self.years.get(item_id))
                and self._within(request.minutes_min, request.minutes_max, self.minutes.get(item_id))
                and (not request.people or self._credited(item_id, request.people, request.role))
                and not self._credited(item_id, request.exclude_people, None)
                and self._placed(request, item_id) and self._rated(request, item_id))

    @staticmethod
    def _within(low: int | None, high: int | None, value: int | None) -> bool:
        """Inclusive; a bound on an unknown value fails."""
        if low is None and high is None:
            return True
        return value is not None and (low is None or value >= low) and (high is None or value <= high)

    def _placed(self, request: Request, item_id: str) -> bool:
        countries = self.countries.get(item_id, set())
        excluded = set(request.exclude_countries)
        return ((not request.countries or bool(countries & set(request.countries)))
                and (not excluded or bool(countries) and not countries & excluded)
                and (not request.languages or self.languages.get(item_id, "") in request.languages))

    def _rated(self, request: Request, item_id: str) -> bool:
        n = self.n_ratings.get(item_id, 0)
        return ((request.min_ratings is None or n >= request.min_ratings)
                and (request.max_ratings is None or n <= request.max_ratings)
                and (request.min_mean_rating is None
                     or (n > 0 and self.mean_rating[item_id] >= request.min_mean_rating)))

    def share(self, request: Request, listed: list[str], conflict_named: bool, reply_text: str = "") -> float:
        """The share of a top K that satisfies the request; a request for the impossible scores 1 when the
        reply names the conflict and 0 otherwise; one naming titles the catalog lacks scores 0 unless the last
        reply's text names each of them."""
        if request.conflict:
            return float(conflict_named)
        if any(_bare(t).lower() not in reply_text.lower() for t in request.missing_titles):
            return 0.0
        return sum(self.satisfies(request, i) for i in listed) / K

    def title_word_only(self, request: Request, item_id: str) -> bool:
        """The item shares a word with the request only through its title, and does not satisfy it."""
        asked = set(descriptive_words(" ".join(request.turns)))
        return bool(self.titles.get(item_id, set()) & asked) and not self.satisfies(request, item_id)


def _agent_list(agent: Agent, request: Request) -> tuple[list[str], bool, str, str | None]:
    """The top K of the last answer, whether the last reply names a conflict, the last reply's text, and the
    error if one was raised."""
    session = f"requests-{request.id}"
    ids: list[str] = []
    conflict = False
    text = ""
    try:
        for turn in request.turns:
            reply = agent.chat(session, turn)
            conflict = reply.intent == "conflict"
            text = reply.text
            if reply.recommendations:
                ids = [r.item_id for r in reply.recommendations.recommendations]
    except Exception as exc:  # noqa: BLE001 - a crash on a request is what this evaluation counts
        return [], False, "", f"{type(exc).__name__}: {exc}"
    finally:
        agent.forget(session)
    return ids[:K], conflict, text, None


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
    judge = Judge(rec.catalog.items, rec.catalog.interactions)
    for request in requests:
        judge.check(request)
    popular = rec.popular(K)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:  # these sessions' likes must not become training data
        agent = Agent(rec, SQLiteStore(Path(tmp) / "feedback.sqlite3"))
        for done, request in enumerate(requests, 1):
            ids, conflict, text, error = _agent_list(agent, request)
            nearest = rec.retriever.index.nearest(rec.retriever.index.embed([request.turns[-1]])[0], K)
            lists = {"agent": ids, "pop": popular, "vector": list(nearest)}
            row: dict[str, Any] = {"id": request.id, "category": request.category, "split": request.split,
                                   "request": " / ".join(request.turns), "error": error, "conflict": conflict,
                                   "titles": [rec.catalog.items.at[i, "title"] for i in ids]}
            for method, listed in lists.items():
                said = text if method == "agent" else ""  # popularity and vector search say nothing
                row[method] = judge.share(request, listed, conflict and method == "agent", said)
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
