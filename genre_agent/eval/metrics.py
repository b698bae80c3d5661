"""Ranking metrics as exact expectations under random tie-breaking (as in the reference, so "random" is exactly
chance level), beyond-accuracy measures and bootstrap confidence intervals."""

from __future__ import annotations

from typing import Any

import numpy as np

from genre_agent.eval.protocol import Split


def expected_ranks(g: np.ndarray, e: np.ndarray, ks: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per-user metrics when the test item has g items strictly above it and e others tied with it."""
    g = np.asarray(g, dtype=np.int64)
    n = np.asarray(e, dtype=np.int64) + 1
    span = int((g + n).max()) + 1
    positions = np.arange(1, span + 1)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / positions)])
    out: dict[str, np.ndarray] = {"MRR": (harmonic[g + n] - harmonic[g]) / n}
    for k in ks:
        dcg = np.concatenate([[0.0], np.cumsum(np.where(positions <= k, 1.0 / np.log2(positions + 1), 0.0))])
        hr = (np.minimum(g + n, k) - np.minimum(g, k)) / n
        out[f"HR@{k}"] = hr
        out[f"NDCG@{k}"] = (dcg[g + n] - dcg[g]) / n
        out[f"P@{k}"] = hr / k
        out[f"R@{k}"] = hr
        out[f"F1@{k}"] = 2 * (hr / k) * hr / np.maximum(hr / k + hr, 1e-12)
    return out


def ndcg_of(scores: np.ndarray, target: int, k: int = 10) -> float:
    """NDCG@k of one held-out item (position `target`) among candidates scored `scores`, ties broken at random
    (in expectation), as `rank_metrics` scores every method."""
    higher = int((scores > scores[target]).sum())
    tied = int((scores == scores[target]).sum()) - 1
    return float(expected_ranks(np.array([higher]), np.array([tied]), (k,))[f"NDCG@{k}"][0])


def rank_metrics(S: np.ndarray, split: Split, pos: np.ndarray, ks: tuple[int, ...]
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(full, sampled) per-user metrics for scores S (users in `pos` x items)."""
    S = np.asarray(S, dtype=np.float64)
    r = np.arange(len(pos))
    C = S[r[:, None], split.cands[pos]]
    sampled = expected_ranks((C[:, 1:] > C[:, :1]).sum(1), (C[:, 1:] == C[:, :1]).sum(1), ks)
    F = S.copy()
    seen = split.seen[pos]
    F[seen.nonzero()] = -np.inf
    t = F[r, split.test_item[pos]][:, None]
    full = expected_ranks((F > t).sum(1), (F == t).sum(1) - 1, ks)
    return full, sampled


def beyond_accuracy(top: np.ndarray, genres: list[set[str]], pop: np.ndarray) -> dict[str, float]:
    """Catalog coverage, intra-list genre diversity (Jaccard distance) and novelty (-log2 popularity share)."""
    coverage = len(np.unique(top)) / len(genres)
    share = (pop + 1) / (pop.sum() + len(pop))
    novelty = float(np.mean(-np.log2(share[top])))
    dists: list[float] = []
    for row in top:
        sets = [genres[i] for i in row]
        pairs = [(a, b) for x, a in enumerate(sets) for b in sets[x + 1:]]
        dists.append(float(np.mean([1 - len(a & b) / max(len(a | b), 1) for a, b in pairs])) if pairs else 0.0)
    return {"coverage": coverage, "diversity": float(np.mean(dists)), "novelty": novelty}


def bootstrap_ci(values: np.ndarray, seed: int = 0, n: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n, len(values)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired_ratio_ci(mine: np.ndarray, base: np.ndarray, seed: int = 0, n: int = 1000) -> tuple[float, float]:
    """95% interval of mean(mine) / mean(base) over the same users drawn with replacement (paired)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(mine), (n, len(mine)))
    ratios = mine[draws].mean(1) / np.maximum(base[draws].mean(1), 1e-12)
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def protocol_summary(S: np.ndarray, split: Split, pos: np.ndarray, protocol: str,
                     per_user: dict[str, np.ndarray], ks: tuple[int, ...], seed: int, genres: list[set[str]],
                     pop: np.ndarray) -> dict[str, Any]:
    """The report's entry of one method on one protocol: mean metrics, CIs of NDCG@k and HR@k (k the largest),
    and the beyond-accuracy measures of each user's top k among the items that protocol ranks."""
    k = max(ks)
    masked = S.copy() if protocol == "full" else np.full_like(S, -np.inf)
    if protocol == "full":
        masked[split.seen[pos].nonzero()] = -np.inf
    else:
        r = np.arange(len(pos))[:, None]
        masked[r, split.cands[pos]] = S[r, split.cands[pos]]
    top = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    entry: dict[str, Any] = {name: float(v.mean()) for name, v in per_user.items()}
    for name in (f"NDCG@{k}", f"HR@{k}"):
        entry[f"{name}_ci95"] = bootstrap_ci(per_user[name], seed)
    entry.update(beyond_accuracy(top, genres, pop))
    return entry
