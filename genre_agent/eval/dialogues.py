"""Conversational evaluation on real recommendation dialogues in ReDial's JSONL format.

A case is a recommender message that suggests a movie nobody mentioned before (questionnaire `suggested = 1`,
not disliked): the seeker's messages before it are the conversation and that movie is the target. Titles are
mapped to the catalog by `TitleIndex` (article order, a.k.a. forms, "&"/"and", year ±1); targets that do not
map are dropped and counted. Dialogues are split by a hash of their id into a dev part (to develop on) and a
held-out test part (30%, nothing is tuned on it).

The agent runs through its public chat API, one fresh session per case, as the stateless server answers a
client: each run of consecutive seeker messages is one turn (a person's lines sent in a row are one thought:
"Im looking for a great documentary" / "do you have any suggestions"), the earlier turns are restored by the
rules and the last turn is answered; its recommendations are scored. Popularity and
item-kNN seeded by the titles the seeker mentioned run on the same cases in the same run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from genre_agent.chat.agent import Agent, Reply
from genre_agent.chat.titles import TitleIndex
from genre_agent.data.feedback import SQLiteStore
from genre_agent.errors import CatalogError
from genre_agent.eval.metrics import bootstrap_ci
from genre_agent.eval.report import git_commit, write_texts
from genre_agent.llm.backends.base import Backend, Completion, Message, Wrapper
from genre_agent.llm.calibration import READING_FIELDS, FieldGain, Reading
from genre_agent.llm.routing import Routes
from genre_agent.pipeline import Recommender
from genre_agent.retrieval.cf import ItemKNN
from genre_agent.settings import Settings

Split = Literal["dev", "test", "all"]
TEST_PERCENT = 30
KS = (1, 5, 10)
_MENTION = re.compile(r"@(\d+)")


@dataclass
class Case:
    """One target of one recommender message. Cases of the same message share their turns."""

    dialogue_id: str
    message_index: int
    turns: list[str]
    mentioned: list[str]  # catalog ids of the titles the seeker named before the suggestion
    target: str


@dataclass
class CaseSet:
    cases: list[Case]
    dialogues: int
    unmapped_targets: int
    without_conversation: int


def split_of(dialogue_id: str) -> Literal["dev", "test"]:
    """Deterministic: the same dialogue is always in the same part, whatever the file order."""
    bucket = int(hashlib.sha256(dialogue_id.encode()).hexdigest()[:8], 16) % 100
    return "test" if bucket < TEST_PERCENT else "dev"


def load_dialogues(path: Path) -> list[dict[str, Any]]:
    """The dialogues of a ReDial-format JSONL file (gzipped if it ends in .gz)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines = raw.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read the dialogues ({exc}); pass ReDial-format JSONL.") from exc
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            dialogue = json.loads(line)
            dialogue["messages"], dialogue["movieMentions"]  # noqa: B018 - the fields every case needs
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CatalogError(f"{path}:{n}: not a ReDial dialogue ({exc}); each line needs messages and "
                               "movieMentions.") from exc
        out.append(dialogue)
    return out


def _title(mentions: dict[str, Any], movie: str) -> str:
    return " ".join(str(mentions.get(movie) or "").split())


def message_text(message: str, mentions: dict[str, Any]) -> str:
    """The message with each @id written as the title the dataset gives for it."""
    return " ".join(_MENTION.sub(lambda m: _title(mentions, m.group(1)), message).split())


def _form(dialogue: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The seeker's questionnaire, or the recommender's when the seeker's is empty (the usual stand-in)."""
    return dialogue.get("initiatorQuestions") or dialogue.get("respondentQuestions") or {}


def dialogue_cases(dialogue: dict[str, Any], titles: TitleIndex) -> tuple[list[Case], int, int]:
    """The cases of one dialogue, the number of targets dropped as unmapped, and of cases with no seeker text."""
    mentions = dialogue["movieMentions"] or {}
    form = _form(dialogue)
    seeker = dialogue.get("initiatorWorkerId")
    dialogue_id = str(dialogue.get("conversationId", ""))
    seen: set[str] = set()
    turns: list[str] = []
    named: list[str] = []
    last_sender: object = None
    cases: list[Case] = []
    unmapped = empty = 0
    for index, message in enumerate(dialogue["messages"]):
        raw = str(message.get("text", ""))
        movies = list(dict.fromkeys(_MENTION.findall(raw)))
        sender = message.get("senderWorkerId")
        if sender == seeker:
            text = message_text(raw, mentions)
            if text:
                if last_sender == seeker and turns:
                    turns[-1] = f"{turns[-1]} {text}"
                else:
                    turns.append(text)
                last_sender = seeker
            for movie in movies:
                item = titles.resolve(_title(mentions, movie))
                if item is not None and item not in named:
                    named.append(item)
        else:
            last_sender = sender
            for movie in movies:
                answers = form.get(movie) or {}
                if movie in seen or answers.get("suggested") != 1 or answers.get("liked") == 0:
                    continue
                target = titles.resolve(_title(mentions, movie))
                if target is None:
                    unmapped += 1
                elif not turns:
                    empty += 1
                elif target not in named:
                    cases.append(Case(dialogue_id, index, list(turns), list(named), target))
        seen.update(movies)
    return cases, unmapped, empty


def dialogue_mentions(dialogue: dict[str, Any], titles: TitleIndex) -> list[str]:
    """The catalog ids of every movie a dialogue mentions (seeker and recommender alike), in mention order."""
    mentions = dialogue["movieMentions"] or {}
    return [i for i in dict.fromkeys(titles.resolve(_title(mentions, m)) for m in mentions) if i is not None]


def build_cases(dialogues: list[dict[str, Any]], titles: TitleIndex, split: Split = "dev",
                limit: int | None = None, seed: int = 0) -> CaseSet:
    """Cases of the dialogues in `split`; with `limit`, that many drawn with the seed (in dialogue order)."""
    cases: list[Case] = []
    unmapped = empty = used = 0
    for dialogue in dialogues:
        if split != "all" and split_of(str(dialogue.get("conversationId", ""))) != split:
            continue
        used += 1
        found, dropped, no_text = dialogue_cases(dialogue, titles)
        cases += found
        unmapped += dropped
        empty += no_text
    if limit is not None and limit < len(cases):
        keep = np.sort(np.random.default_rng(seed).choice(len(cases), limit, replace=False))
        cases = [cases[i] for i in keep]
    return CaseSet(cases, used, unmapped, empty)


@dataclass
class AgentRun:
    """The agent's final list for one conversation, and what happened on the way."""

    ids: list[str]
    turn_seconds: list[float]
    error: str | None = None
    asked: bool = False  # the agent asked for a taste first: the seeker had said nothing to recommend from


def run_agent(agent: Agent, case: Case, session_id: str, *, every_turn: bool = False) -> AgentRun:
    """The agent's list for the conversation so far, as the stateless server answers a client that sends it:
    the seeker's earlier turns restored by the rules and the last turn answered. The seeker wrote those turns
    to a human recommender and never saw the lists the agent would have answered them with, so none of those
    counts as shown (a fed-through replay excluded them from the answer that is scored). `every_turn` feeds
    each turn through `chat` instead, so that a model reading messages reads every turn (the calibration)."""
    seconds: list[float] = []
    reply: Reply | None = None
    try:
        if every_turn:
            for turn in case.turns:
                started = time.perf_counter()
                reply = agent.chat(session_id, turn)
                seconds.append(time.perf_counter() - started)
        else:
            started = time.perf_counter()
            agent.restore(session_id, [("user", turn) for turn in case.turns[:-1]])
            reply = agent.chat(session_id, case.turns[-1])
            seconds.append(time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - a crash on real text is what this evaluation counts
        return AgentRun([], seconds, f"{type(exc).__name__}: {exc}")
    finally:
        agent.forget(session_id)
    if reply is None:
        return AgentRun([], seconds)
    return AgentRun(_listed(reply), seconds, asked=reply.intent == "clarify")


def _listed(reply: Reply) -> list[str]:
    return [r.item_id for r in reply.recommendations.recommendations] if reply.recommendations else []


class Baselines:
    """Popularity, and item-kNN seeded by the mentioned titles (popularity breaks ties), on the catalog; when
    the ranker of conversations learnt what dialogues mention (rank/mentions.py), also those mentions alone:
    the titles named most often beside the mentioned ones, then the most named."""

    def __init__(self, recommender: Recommender) -> None:
        retriever = recommender.retriever
        self.item_ids = [str(i) for i in recommender.catalog.items.index]
        self.matrix = retriever.matrix
        self.popularity = retriever.popularity
        self.knn = ItemKNN()
        self.knn.fit(retriever.matrix.matrix)
        self.mentions = retriever.mentions

    def names(self) -> list[str]:
        return ["pop", "itemknn", *(["comention"] if self.mentions is not None else [])]

    def lists(self, mentioned: list[str], k: int) -> dict[str, list[str]]:
        """Each baseline's top k for a conversation that mentioned these catalog ids."""
        out = {"pop": self.pop(mentioned, k), "itemknn": self.itemknn(mentioned, k)}
        if self.mentions is not None:
            rows = self.matrix.item_index.get_indexer(mentioned)
            beside = self.mentions.with_named(rows[rows >= 0])
            tie = self.mentions.share() * 1e-3 + 1e-6 * self.popularity / max(float(self.popularity.max()), 1.0)
            out["comention"] = self._top((beside if beside is not None else 0.0) + tie, mentioned, k)
        return out

    def _top(self, scores: np.ndarray, exclude: list[str], k: int) -> list[str]:
        cols = self.matrix.item_index.get_indexer(exclude)
        scores = scores.copy()
        scores[cols[cols >= 0]] = -np.inf
        order = np.lexsort((np.arange(len(scores)), -scores))[:k]
        return [self.item_ids[i] for i in order]

    def pop(self, mentioned: list[str], k: int) -> list[str]:
        return self._top(self.popularity, mentioned, k)

    def itemknn(self, mentioned: list[str], k: int) -> list[str]:
        if not mentioned:
            return self.pop(mentioned, k)
        scores = np.asarray(self.knn.score(np.array([-1]), self.matrix.history(mentioned))[0], dtype=np.float64)
        return self._top(scores + 1e-6 * self.popularity / max(float(self.popularity.max()), 1.0), mentioned, k)


def _recall(hits: list[list[bool]], k: int, seed: int) -> dict[str, Any]:
    values = np.array([any(h[:k]) for h in hits], dtype=np.float64)
    lo, hi = bootstrap_ci(values, seed) if len(values) else (0.0, 0.0)
    return {"value": float(values.mean()) if len(values) else 0.0, "ci95": [lo, hi]}


class _ReadOnce(Wrapper):
    """Asks the model to read each seeker turn once and replays that answer to the other variants: the first
    variant to read a turn asks, in the session as that variant built it. Other calls pass through."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.turns: list[str] = []  # the current conversation's seeker turns
        self.answers: dict[str, Completion] = {}

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        prompt = messages[-1]["content"]
        turn = next((t for t in self.turns if t in prompt), None)
        if turn is None:
            return self.inner.complete(messages, schema, max_tokens)
        if turn not in self.answers:
            self.answers[turn] = self.inner.complete(messages, schema, max_tokens)
        return self.answers[turn]


def _conversations(case_set: CaseSet) -> dict[tuple[str, int], list[Case]]:
    """The cases grouped by the recommender message they belong to (they share the seeker's turns)."""
    groups: dict[tuple[str, int], list[Case]] = {}
    for case in case_set.cases:
        groups.setdefault((case.dialogue_id, case.message_index), []).append(case)
    return groups


def reading_gains(recommender: Recommender, path: Path, cases: int | None, seed: int = 0,
                  progress: Callable[[str, int, int], None] | None = None) -> Reading:
    """Recall@10 of the agent on the dev cases with rules alone and with each field group of the model's
    reading added (ranking and reasons held off), and the paired bootstrap interval of each gain. The model
    reads each seeker turn once (in the session of the first variant that reads it) and every variant merges
    that same reading, so the variants differ only in the fields they take. A group is routed to the model
    when its interval lies above 0."""
    reader = _ReadOnce(recommender.backend)
    rec = recommender.with_backend(reader)
    variants = {"rules": frozenset(), **{f: frozenset([f]) for f in READING_FIELDS}}
    hits: dict[str, list[bool]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        agent = Agent(rec, SQLiteStore(Path(tmp) / "feedback.sqlite3"))
        groups = _conversations(build_cases(load_dialogues(path), agent.titles, "dev", cases, seed))
        for n, ((dialogue_id, index), group) in enumerate(groups.items(), 1):
            reader.turns, reader.answers = group[0].turns, {}
            for name, fields in variants.items():
                rec.pinned_routes = Routes(ranking_weight=0.0, ranking_method="json", permutations=1,
                                           reasons=False, reading=fields, calibration="pinned: reading measured")
                run = run_agent(agent, group[0], f"reading-{name}-{dialogue_id}-{index}", every_turn=True)
                hits[name] += [case.target in run.ids[:10] for case in group]
            if progress:
                progress("reading (dev dialogues)", n, len(groups))
    rules = np.array(hits["rules"], dtype=np.float64)
    per_field = {}
    for field in READING_FIELDS:
        with_field = np.array(hits[field], dtype=np.float64)
        lo, hi = bootstrap_ci(with_field - rules, seed) if len(rules) else (0.0, 0.0)
        per_field[field] = FieldGain(recall=float(with_field.mean()) if len(rules) else 0.0,
                                     gain=float((with_field - rules).mean()) if len(rules) else 0.0,
                                     ci95=(round(lo, 4), round(hi, 4)))
    return Reading(measured=True, dialogues=path.name, cases=len(rules),
                   rules_recall=float(rules.mean()) if len(rules) else 0.0, per_field=per_field,
                   fields=[f for f, g in per_field.items() if g.ci95[0] > 0])


def evaluate_dialogues(settings: Settings, path: Path, split: Split = "test", cases: int | None = None,
                       seed: int = 0, progress: Callable[[str, int, int], None] | None = None,
                       recommender: Recommender | None = None) -> dict[str, Any]:
    """Run the agent and the baselines on the cases of `path` and return the report (see `markdown`)."""
    started = time.perf_counter()
    rec = recommender or Recommender.open(settings)
    with tempfile.TemporaryDirectory() as tmp:  # eval sessions' likes must not become training data
        agent = Agent(rec, SQLiteStore(Path(tmp) / "feedback.sqlite3"))
        case_set = build_cases(load_dialogues(path), agent.titles, split, cases, seed)
        baselines = Baselines(rec)
        k = max(KS)
        groups = _conversations(case_set)
        hits: dict[str, list[list[bool]]] = {"agent": [], **{name: [] for name in baselines.names()}}
        turn_seconds: list[float] = []
        errors: list[str] = []
        no_recs = asked = runs_with_named = named_slots = 0
        for done, ((dialogue_id, index), group) in enumerate(groups.items(), 1):
            first = group[0]
            run = run_agent(agent, first, f"eval-{dialogue_id}-{index}")
            turn_seconds += run.turn_seconds
            if run.error:
                errors.append(f"dialogue {dialogue_id}, message {index}: {run.error}")
            elif not run.ids:
                no_recs += 1
                asked += run.asked
            named = set(first.mentioned) & set(run.ids[:k])
            runs_with_named += bool(named)
            named_slots += len(named)
            lists = {"agent": run.ids[:k], **baselines.lists(first.mentioned, k)}
            for case in group:
                for method, ids in lists.items():
                    hits[method].append([i == case.target for i in ids] + [False] * (k - len(ids)))
            if progress:
                progress("dialogue cases", done, len(groups))
    backend, routes = rec.backend, rec.routes()
    llm = backend.name != "fake" and (routes.reading or routes.ranking or routes.reasons)
    agent_name = f"agent ({backend.name}:{backend.model})" if llm else "agent (rules only)"
    seconds = np.array(turn_seconds) if turn_seconds else np.zeros(1)
    return {
        "kind": "dialogues",
        "dialogues_file": str(path),
        "catalog": rec.catalog.name,
        "commit": git_commit(),
        "config": {"split": split, "cases": cases, "seed": seed, "k": k, "test_percent": TEST_PERCENT,
                   "understand_with_llm": settings.conversation.understand_with_llm,
                   "routes": routes.describe(), "calibration": routes.calibration,
                   "backend": backend.name, "model": backend.model, "retries": settings.ranking.retries},
        "counts": {"dialogues": case_set.dialogues, "cases": len(case_set.cases), "conversations": len(groups),
                   "answered_turns": len(turn_seconds), "unmapped_targets_dropped": case_set.unmapped_targets,
                   "targets_without_seeker_text": case_set.without_conversation},
        "agent_name": agent_name,
        "results": {name: {f"Recall@{x}": _recall(h, x, seed) for x in KS} for name, h in hits.items()},
        "agent": {"errors": len(errors), "error_examples": errors[:10],
                  "conversations_without_recommendations": no_recs,
                  "of_them_asking_for_a_taste_first": asked,
                  "conversations_re_recommending_named": runs_with_named,
                  "named_titles_re_recommended": named_slots,
                  "turn_p50_s": round(float(np.percentile(seconds, 50)), 3),
                  "turn_p95_s": round(float(np.percentile(seconds, 95)), 3)},
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(report: dict[str, Any]) -> str:
    c, a, cfg = report["counts"], report["agent"], report["config"]
    names = {"agent": report["agent_name"], "pop": "popularity", "itemknn": "item-kNN (mentioned titles)",
             "comention": "named beside the mentioned titles in the dialogues `fit` learnt from"}
    source = Path(report["dialogues_file"]).name
    lines = [f"# Conversational evaluation on {source} (commit {report['commit'][:10]})", "",
             f"Split `{cfg['split']}` ({c['dialogues']} dialogues), {c['cases']} cases in {c['conversations']} "
             f"conversations, each answered once after its earlier seeker turns were restored by the rules "
             f"(the stateless server's path); {c['unmapped_targets_dropped']} targets dropped as "
             f"not in the catalog, {c['targets_without_seeker_text']} with no seeker message before them. "
             f"Seed {cfg['seed']}, backend {cfg['backend']}:{cfg['model']}: {cfg['routes']} "
             f"({cfg['calibration']}).", "",
             "| method | Recall@1 [95% CI] | Recall@5 [95% CI] | Recall@10 [95% CI] |", "|---|---:|---:|---:|"]
    for method, r in report["results"].items():
        cells = [f"{r[f'Recall@{x}']['value']:.3f} [{r[f'Recall@{x}']['ci95'][0]:.3f}, "
                 f"{r[f'Recall@{x}']['ci95'][1]:.3f}]" for x in KS]
        lines.append(f"| {names[method]} | " + " | ".join(cells) + " |")
    lines += ["", "| agent | errors | conversations without recommendations (of them, asking for a taste first) | "
              "named titles re-recommended "
              "(conversations) | answer p50 | answer p95 |", "|---|---:|---:|---:|---:|---:|",
              f"| {report['agent_name']} | {a['errors']} | {a['conversations_without_recommendations']} "
              f"({a['of_them_asking_for_a_taste_first']}) | "
              f"{a['named_titles_re_recommended']} ({a['conversations_re_recommending_named']}) | "
              f"{a['turn_p50_s']:.2f} s | {a['turn_p95_s']:.2f} s |", ""]
    lines += [f"- {e}" for e in a["error_examples"]]
    lines.append(f"\n{report['seconds']} s in all.")
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out: Path) -> None:
    """report.json and report.md, each written aside and renamed when complete."""
    write_texts(out, {"report.json": json.dumps(report, indent=2), "report.md": markdown(report)})
