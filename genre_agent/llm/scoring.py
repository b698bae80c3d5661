"""Rank candidates by the model's next-token log-probabilities over their labels (LlamaRec's verbalizer).

The candidates are labelled A, B, C … in one prompt; one forward pass gives the log-probability of each
label as the answer "which one fits best". Small models prefer early labels (position bias), so the list is
scored in several orders (the first is the retrieval order, the rest seeded shuffles) and the
log-probabilities, normalised over the labels, are averaged per item (LLMRank's bootstrapping).
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from scipy.special import log_softmax

from genre_agent.llm.backends import Backend
from genre_agent.llm.prompts import Prompts
from genre_agent.schemas import Candidate

LABELS = string.ascii_uppercase


def verbalizer_scores(backend: Backend, prompts: Prompts, candidates: list[Candidate], permutations: int,
                      seed: int, **variables: Any) -> np.ndarray:
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
        messages = [{"role": "user", "content": prompts.render("score.j2", candidates=shown, labels=labels,
                                                               **variables)}]
        total[order] += log_softmax(backend.option_logprobs(messages, labels))  # normalised over the labels
    return total / max(permutations, 1)
