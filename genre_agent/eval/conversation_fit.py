"""What the ranker of conversations learns from: requests read from conversations as the agent reads them.

Two sources, their dev parts only (what evaluation reports as held out is never learnt from):
- dialogues in ReDial format (`rank.dialogues`; the files of `rank.training_dialogues`, a training split that
  no evaluation reports, whole): each recommender message that suggests catalog movies is one
  request, the seeker's turns before it with the earlier ones restored by the rules and the last one read as
  `chat` reads it (`Agent.asks`), as `eval --dialogues` answers it; its answers are the suggested movies.
- request sets (`rank.requests`): each dev request but the conflicts (nothing satisfies them), its earlier turns
  chatted as `eval --requests` chats them and its last one read; its answers are the items that satisfy its
  rule (`Judge`).
The candidates and their features are the served path's (`Recommender.rank_examples`): the ranking pool with
the request's filters applied, kept when it holds an answer. What the dev dialogues mention is learnt too
(rank/mentions.py): a dialogue's request reads the mentions of the other folds, a request set's all of them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from genre_agent.chat.agent import Agent
from genre_agent.data.catalog import Catalog
from genre_agent.data.feedback import SQLiteStore
from genre_agent.errors import CatalogError, ConfigError
from genre_agent.eval.dialogues import Split, build_cases, dialogue_mentions, load_dialogues, split_of
from genre_agent.eval.requests import Judge, load_requests
from genre_agent.llm.backends import FakeBackend
from genre_agent.llm.routing import Routes
from genre_agent.pipeline import Progress, Recommender, build
from genre_agent.rank.examples import Collector, Examples
from genre_agent.rank.mentions import FOLDS, Mentions, fold_of
from genre_agent.schemas import RecommendRequest
from genre_agent.settings import Settings

# (earlier turns, whether they are chatted rather than restored, the last turn, whether an item answers it,
# the dialogue's fold of the mentions or None)
Asked = tuple[list[str], bool, str, Callable[[str], bool], int | None]


def dialogue_files(settings: Settings) -> list[tuple[Path, Split]]:
    """The dialogue files `fit` reads, each with the part it reads: the dev part of `rank.dialogues`, the
    whole of `rank.training_dialogues`."""
    twice = set(settings.rank.dialogues) & set(settings.rank.training_dialogues)
    if twice:
        raise ConfigError(f"{', '.join(map(str, sorted(twice)))}: given both as dialogues (their dev part is "
                          "read) and as training dialogues (read whole); give a file once: as training "
                          "dialogues only if no evaluation reports any part of it.")
    dev: list[tuple[Path, Split]] = [(p, "dev") for p in settings.rank.dialogues]
    return dev + [(p, "all") for p in settings.rank.training_dialogues]


def _in(split: Split, dialogue: dict[str, object]) -> bool:
    return split == "all" or split_of(str(dialogue.get("conversationId", ""))) == split


def read_mentions(agent: Agent, files: list[tuple[Path, Split]]) -> Mentions:
    """What the dialogues `fit` reads mention (each file's part)."""
    return Mentions.of((str(d.get("conversationId", "")), dialogue_mentions(d, agent.titles))
                       for path, split in files for d in load_dialogues(path) if _in(split, d))


def _dialogue_requests(agent: Agent, files: list[tuple[Path, Split]]) -> Iterator[Asked]:
    for path, split in files:
        cases = build_cases(load_dialogues(path), agent.titles, split).cases
        targets: dict[tuple[str, int], set[str]] = {}
        turns: dict[tuple[str, int], list[str]] = {}
        for case in cases:  # the cases of one recommender message share its turns
            key = (case.dialogue_id, case.message_index)
            targets.setdefault(key, set()).add(case.target)
            turns[key] = case.turns
        for key, said in turns.items():
            yield said[:-1], False, said[-1], targets[key].__contains__, fold_of(key[0])


def _set_requests(agent: Agent, paths: list[Path]) -> Iterator[Asked]:
    judge = Judge(agent.recommender.catalog.items, agent.recommender.catalog.interactions)
    for path in paths:
        for request in load_requests(path):
            if request.split != "dev" or request.conflict:
                continue
            judge.check(request)
            yield request.turns[:-1], True, request.turns[-1], \
                lambda item, r=request: judge.satisfies(r, item), None  # type: ignore[misc]


def _read(agent: Agent, session: str, earlier: list[str], chatted: bool, last: str) -> RecommendRequest | None:
    """The request the agent answers the last turn with, after the earlier turns (restored or chatted)."""
    try:
        if chatted:
            for turn in earlier:
                agent.chat(session, turn)
        else:
            agent.restore(session, [("user", turn) for turn in earlier])
        return agent.asks(session, last)
    finally:
        agent.forget(session)


def conversation_examples(settings: Settings, catalog: Catalog, progress: Progress | None = None
                          ) -> tuple[Examples, Mentions]:
    """The requests of `rank.dialogues`, `rank.training_dialogues` and `rank.requests` as ranking examples on this
    catalog, and what the dev dialogues mention (see the module doc); the model's reading is off (the rules
    read, as `--no-llm` measures)."""
    retriever, _ = build(settings, catalog, progress, for_fit=True)
    recommender = Recommender(settings, catalog, retriever, FakeBackend())
    recommender.pinned_routes = Routes(ranking_weight=0.0, ranking_method="json", permutations=1, reasons=False,
                                       reading=frozenset(), calibration="pinned: ranker examples")
    column = retriever.items.index
    collected = Collector()
    with tempfile.TemporaryDirectory() as tmp:  # these sessions' likes must not become training data
        agent = Agent(recommender, SQLiteStore(Path(tmp) / "feedback.sqlite3"))
        files = dialogue_files(settings)
        mentions = read_mentions(agent, files)
        tables = {fold: mentions.without(fold).table(column) for fold in range(FOLDS)}
        every = mentions.table(column)
        asked = [*_dialogue_requests(agent, files),
                 *_set_requests(agent, settings.rank.requests)]
        for n, (earlier, chatted, last, answers, fold) in enumerate(asked):
            retriever.mentions = every if fold is None else tables[fold]
            request = _read(agent, f"fit-{n}", earlier, chatted, last)
            for rows, features in recommender.rank_examples(request) if request is not None else []:
                collected.add(features, np.array([answers(str(i)) for i in column[rows]], dtype=np.float32))
            if progress:
                progress("conversation examples", n + 1, len(asked))
    if not collected:
        raise CatalogError(f"catalog '{catalog.name}': no answer of the dialogues or requests given to `fit` was "
                           "among its request's candidates, so there is nothing to learn conversations from; "
                           "check that they are about this catalog.")
    return collected.build(len(asked)), mentions
