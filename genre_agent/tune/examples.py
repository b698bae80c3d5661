"""Examples for tuning the model as a ranker (LlamaRec style), from the training interactions only.

The split is carved twice from the evaluation's training data: `eval` holds out each user's last positive
(the test item), the calibration the last positive before it, and tuning the one before that. So neither
the test items nor the calibration's targets are ever trained on.

Each example is the `score.j2` question (exactly as `llm-score` asks it: the same template, chat template and
tokenizer) over 20 candidates labelled A…T, with the held-out positive among them, and the position of that
positive. A training user gives the 19 sampled negatives of the evaluation protocol plus the target and,
when the target is among the retriever's top 20 (LlamaRec keeps only those), these 20; both in a random order
(so the label says nothing). Forcing the target into the retriever's top 19 instead teaches "the odd one
out": it was the only candidate the retriever did not pick, and a model trained so ranked the sampled test
candidates below random (NDCG@10 0.087 on 60 MovieLens test users). Validation users
are held out of training and shown their sampled candidates in a random order too: shown in hybrid order, a
model that only prefers early labels would score as well as the hybrid itself, and what the fusion with the
retrieval order can gain from is what the model knows beyond that order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genre_agent.data.catalog import Catalog
from genre_agent.data.interactions import InteractionMatrix
from genre_agent.errors import ConfigError
from genre_agent.eval.methods import Scorer
from genre_agent.eval.protocol import N_NEG, Split, make_split, validation_split
from genre_agent.llm.prompts import Prompts
from genre_agent.llm.scoring import LABELS, scoring_messages
from genre_agent.retrieval.candidates import HISTORY_ITEMS, Retriever
from genre_agent.retrieval.evidence import ReasonWriter
from genre_agent.retrieval.index import VectorIndex
from genre_agent.retrieval.users import UserView
from genre_agent.schemas import Candidate, HistoryItem
from genre_agent.settings import Settings


@dataclass(frozen=True)
class Example:
    tokens: list[int]  # the chat prompt, through the GGUF's chat template and tokenizer
    labels: list[int]  # the token of each candidate's label, in the order shown
    target: int  # position of the held-out positive among the candidates


@dataclass
class Examples:
    train: list[Example]
    val: list[Example]
    architecture: str  # llama.cpp's name of the model's architecture (general.architecture)
    info: dict[str, Any]


class Tokenizer:
    """The GGUF's own chat template and tokenizer (llama.cpp, vocabulary only), as the llamacpp backend uses."""

    def __init__(self, model_path: Path) -> None:
        from llama_cpp import Llama

        from genre_agent.llm.backends.llamacpp import ChatTokens

        self.llm = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
        self.architecture = str(self.llm.metadata.get("general.architecture", ""))
        self.prompt = ChatTokens(self.llm)

    def label_ids(self, n: int) -> list[int]:
        return [self.llm.tokenize(label.encode(), add_bos=False, special=False)[0] for label in LABELS[:n]]


def tuning_split(catalog: Catalog, seed: int) -> Split:
    """Each user's third-last positive held out (the last is `eval`'s, the one before the calibration's)."""
    test = make_split(catalog.interactions, catalog.positive_min, seed=seed)
    calibration = validation_split(test, catalog.positive_min, seed)
    return validation_split(calibration, catalog.positive_min, seed)


def _target_in_retriever_top(scorer: Scorer) -> np.ndarray:
    """Positions (into the scorer's users) whose target is among the hybrid's top 20 unseen items."""
    split, hybrid = scorer.split, scorer.scores("hybrid")
    keep = []
    for n, p in enumerate(scorer.pos):
        scores = hybrid[n].copy()
        scores[split.seen[p].indices] = -np.inf
        if (scores > scores[split.test_item[p]]).sum() <= N_NEG:
            keep.append(p)
    return np.array(keep, dtype=np.int64)


def _retriever_top(scorer: Scorer, n: int, rng: np.random.Generator) -> np.ndarray:
    """The hybrid's top 20 unseen items (the target among them), shuffled."""
    split, p = scorer.split, scorer.pos[n]
    scores = scorer.scores("hybrid")[n].copy()
    scores[split.seen[p].indices] = -np.inf
    scores[split.test_item[p]] = np.inf  # a tie at the 20th place must not push it out
    return rng.permutation(np.argpartition(-scores, N_NEG)[:N_NEG + 1])


def _sampled_shuffled(scorer: Scorer, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(scorer.split.cands[scorer.pos[n]])


@dataclass
class UserRequest:
    """One evaluated user's sampled candidates as the pipeline would present them."""

    n: int
    order: np.ndarray  # split columns of the candidates, in the order shown
    history: list[HistoryItem]
    candidates: list[Candidate]


def user_requests(scorer: Scorer, index: VectorIndex, reason: ReasonWriter,
                  shown: Callable[[Scorer, int], np.ndarray]) -> Iterator[UserRequest]:
    """For each evaluated user: the candidates `shown` picks (split columns, in the order shown), described as
    served (`reason` words the evidence sentence), with
    their evidence from the user's training history only."""
    split, catalog, settings = scorer.split, scorer.catalog, scorer.settings
    items = catalog.items
    hybrid = scorer.scores("hybrid")
    col_of = items.index.get_indexer(split.items)  # split column -> catalog row
    X_cat = sp.csr_matrix((split.X.data, col_of[split.X.indices], split.X.indptr),
                          shape=(split.X.shape[0], len(items)))
    matrix = InteractionMatrix(X_cat, pd.Index(split.users), items.index)
    retriever = Retriever(catalog, index, None, matrix, settings.retrieval)
    for n, row in enumerate(scorer.rows):
        order = shown(scorer, n)
        liked = [str(split.items[i]) for i in scorer.liked(row)]
        history = [retriever.history_item(str(split.items[r.i]), float(r.rating))
                   for r in scorer.rated[row].head(HISTORY_ITEMS).itertuples()]
        view = UserView(None, -1, set(), liked, history)
        fused = np.zeros(len(items))
        fused[col_of[order]] = hybrid[n, order]
        candidates = retriever.explainer.candidates(col_of[order], view, fused,
                                                   profile_vec=retriever.profile(liked),
                                                   reason=reason)
        yield UserRequest(n, order, history, candidates)


def evidence_writer(prompts: Prompts, scorer: Scorer) -> ReasonWriter:
    """The set's `reason.j2` at the set's reason length, as serving words evidence sentences."""
    spec = scorer.catalog.spec
    return prompts.reason_writer(prompts.reason_max_chars(scorer.settings.ranking.reason_max_chars),
                                 spec.item_noun, spec.item_noun_plural)




def build_examples(settings: Settings, catalog: Catalog, index: VectorIndex, prompts: Prompts,
                   tokenizer: Tokenizer, *, val_users: int, max_tokens: int, train_users: int = 500, seed: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> Examples:
    """Training and validation examples (see the module doc) from at most `train_users` training users (a
    30-minute budget on 2 cores trains on about 500 examples; describing 10k users would take most of it);
    prompts longer than `max_tokens` are left out."""
    split = tuning_split(catalog, seed)
    if len(split.rows) <= val_users:
        raise ConfigError(f"Catalog '{catalog.name}' has {len(split.rows)} users with enough liked items to tune "
                          f"on, and {val_users} are kept for validation: too little data to tune the model.")
    val_pos = split.subsample(val_users, seed)
    train_pos = np.setdiff1d(np.arange(len(split.rows)), val_pos)
    if len(train_pos) > train_users:
        train_pos = np.sort(np.random.default_rng(seed + 1).choice(train_pos, train_users, replace=False))
    spec = catalog.spec
    label_ids = tokenizer.label_ids(N_NEG + 1)
    skipped = 0

    def encode(scorer: Scorer, shown: Callable[[Scorer, int], np.ndarray], done: int, total: int) -> list[Example]:
        nonlocal skipped
        out = []
        for req in user_requests(scorer, index, evidence_writer(prompts, scorer), shown):
            messages = scoring_messages(prompts, req.candidates, item_noun=spec.item_noun,
                                        item_noun_plural=spec.item_noun_plural, history=req.history, query=None)
            tokens = tokenizer.prompt(messages)
            target = int(np.flatnonzero(req.order == scorer.split.test_item[scorer.pos[req.n]])[0])
            if len(tokens) > max_tokens:
                skipped += 1
            else:
                out.append(Example(tokens, label_ids, target))
            if progress:
                progress(done + req.n + 1, total)
        return out

    rng = np.random.default_rng(seed)
    val_scorer = Scorer(split, catalog, index.vectors, settings, val_pos)
    train_scorer = Scorer(split, catalog, index.vectors, settings, train_pos)
    found = Scorer(split, catalog, index.vectors, settings, _target_in_retriever_top(train_scorer))
    total = len(val_pos) + len(train_pos) + len(found.pos)
    val = encode(val_scorer, lambda s, n: _sampled_shuffled(s, n, rng), 0, total)
    easy = encode(train_scorer, lambda s, n: _sampled_shuffled(s, n, rng), len(val_pos), total)
    hard = encode(found, lambda s, n: _retriever_top(s, n, rng), len(val_pos) + len(train_pos), total)
    train = hard + easy
    order = rng.permutation(len(train))
    return Examples(train=[train[i] for i in order], val=val, architecture=tokenizer.architecture,
                    info={"train_users": len(train_pos), "val_users": len(val_pos), "train_examples": len(train),
                          "retriever_examples": len(hard),
                          "skipped_too_long": skipped,
                          "mean_prompt_tokens": round(float(np.mean([len(e.tokens) for e in train])), 1)})
