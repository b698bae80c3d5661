"""Rank candidates by the model's next-token log-probabilities over their labels (LlamaRec's verbalizer).

The candidates are labelled A, B, C … in one prompt; one forward pass gives the log-probability of each
label as the answer "which one fits best". Small models prefer early labels (position bias), so the list is
scored in several orders (the first is the retrieval order, the rest seeded shuffles) and the
log-probabilities, normalised over the labels, are averaged per item (LLMRank's bootstrapping).
"""

from __future__ import annotations

import string

import numpy as np
from scipy.special import log_softmax

from genre_agent.llm.backends import Backend, Message
from genre_agent.llm.contexts import ScoringContext
from genre_agent.llm.prompts import Prompts
from genre_agent.schemas import Candidate, HistoryItem

LABELS = string.ascii_uppercase


def verbalizer_scores(backend: Backend, prompts: Prompts, candidates: list[Candidate], permutations: int,
                      seed: int, *, item_noun: str, item_noun_plural: str, history: list[HistoryItem],
                      query: str | None) -> np.ndarray:
    """Mean label log-probability of each candidate (in the given order) over `permutations` orders."""
    if len(candidates) > len(LABELS):
        raise ValueError(f"at most {len(LABELS)} candidates can be labelled, got {len(candidates)}")
    rng = np.random.default_rng(seed)
    n = len(candidates)
    total = np.zeros(n)
    for p in range(max(permutations, 1)):
        order = np.arange(n) if p == 0 else rng.permutation(n)
        shown = [candidates[i] for i in order]
        labels = list(LABELS[:n])
        messages = scoring_messages(prompts, shown, item_noun=item_noun, item_noun_plural=item_noun_plural,
                                    history=history, query=query)
        total[order] += log_softmax(backend.option_logprobs(messages, labels))  # normalised over the labels
    return total / max(permutations, 1)


def scoring_messages(prompts: Prompts, shown: list[Candidate], *, item_noun: str, item_noun_plural: str,
                     history: list[HistoryItem], query: str | None) -> list[Message]:
    """The one-letter question of `score.j2` over the candidates in the order shown, labelled A, B, C …
    (what `verbalizer_scores` asks and `genre-agent tune` trains on)."""
    context = ScoringContext(item_noun=item_noun, item_noun_plural=item_noun_plural, history=history,
                             candidates=shown, labels=list(LABELS[:len(shown)]), query=query)
    return [{"role": "user", "content": prompts.render("score.j2", context)}]


def rank_fusion(hybrid: np.ndarray, llm: np.ndarray, weight: float) -> np.ndarray:
    """Weighted Borda fusion of two score matrices over the same candidates (finite entries of `llm`):
    score = -((1 - w) * rank_hybrid + w * rank_llm); ties go to the hybrid order."""
    out = np.full_like(llm, -np.inf)
    for n in range(llm.shape[0]):
        cols = np.flatnonzero(np.isfinite(llm[n]))
        r_h = np.argsort(np.argsort(-hybrid[n, cols], kind="stable"), kind="stable")
        r_l = np.argsort(np.argsort(-llm[n, cols], kind="stable"), kind="stable")
        out[n, cols] = -((1 - weight) * r_h + weight * r_l) - 1e-6 * r_h
    return out
