"""Offline evaluation on the protocol of `shared/baselines.py`, with the classical baselines in the same run.

Ratings >= 4 are positives; each user's last positive (by time, ties by item id) is held out; users with at
least 5 positives are evaluated. `full` ranks the test item against every item the user had not rated before
it; `sampled` against 19 items the user never rated (seeded, users in ascending id order). Metrics are exact
expectations under random tie-breaking, as in the reference, so "random" is exactly chance level.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genre_agent.data.catalog import Catalog
from genre_agent.data.interactions import InteractionMatrix
from genre_agent.errors import ConfigError
from genre_agent.llm.backends.base import Backend, Completion, Message, Wrapper
from genre_agent.llm.ranking import rank
from genre_agent.llm.scoring import verbalizer_scores
from genre_agent.retrieval.candidates import Retriever, UserView, minmax
from genre_agent.retrieval.cf import make_cf
from genre_agent.schemas import Candidate, HistoryItem
from genre_agent.settings import Settings

N_NEG = 19
SECRETS: dict[str, Any] = {"backend": {"openai": {"api_key"}, "langchain": {"api_key"}}}
LLM_METHODS = ("llm", "llm-score", "llm-fused")
METHODS = ("random", "pop", "itemknn", "ease", "als", "vector", "hybrid", *LLM_METHODS)


def _id_order(ids: pd.Series) -> np.ndarray:
    """Sorted unique ids: numerically when every id is a number (as the reference sorts them)."""
    unique = ids.unique()
    numeric = pd.to_numeric(pd.Series(unique), errors="coerce")
    if numeric.notna().all():
        return unique[np.argsort(numeric.to_numpy(), kind="stable")]
    return np.sort(unique)


@dataclass
class Split:
    items: np.ndarray  # item ids, the column order
    users: np.ndarray  # user ids, the row order of X
    X: sp.csr_matrix  # training positives
    rows: np.ndarray  # rows of X that are evaluated
    test_item: np.ndarray  # column of each evaluated user's held-out item
    seen: sp.csr_matrix  # evaluated users x items: rated before the test item (excluded in `full`)
    cands: np.ndarray  # evaluated users x 20: test item first, then 19 negatives
    before: pd.DataFrame  # every rating before the test item (or all, for users not evaluated)
    info: dict[str, int] = field(default_factory=dict)

    def subsample(self, n: int | None, seed: int) -> np.ndarray:
        """Positions (into `rows`) of n evaluated users drawn with the seed; all of them if n is None."""
        if n is None or n >= len(self.rows):
            return np.arange(len(self.rows))
        return np.sort(np.random.default_rng(seed).choice(len(self.rows), n, replace=False))


def make_split(interactions: pd.DataFrame, positive_min: float = 4.0, min_pos: int = 5,
               seed: int = 0) -> Split:
    """The reference split (`baselines.split`, mode pos4) on a catalog's interactions."""
    items, users = _id_order(interactions.item_id), _id_order(interactions.user_id)
    iidx = pd.Series(np.arange(len(items)), index=items)
    uidx = pd.Series(np.arange(len(users)), index=users)
    d = interactions.assign(u=uidx[interactions.user_id].to_numpy(), i=iidx[interactions.item_id].to_numpy())
    d = d.sort_values(["u", "timestamp", "i"], kind="mergesort").reset_index(drop=True)
    d["pos"] = d.rating >= positive_min
    d["seq"] = d.groupby("u").cumcount()
    pos = d[d.pos]
    npos = pos.groupby("u").size()
    rows = np.sort(npos.index[npos >= min_pos].to_numpy())
    test = pos.groupby("u").tail(1).set_index("u").loc[rows]
    cut = d.u.map(pd.Series(test.seq.to_numpy(), index=rows)).fillna(np.inf).to_numpy()
    before_mask = d.seq.to_numpy() < cut
    train = d[d.pos.to_numpy() & before_mask]
    X = sp.csr_matrix((np.ones(len(train), dtype=np.float32), (train.u.to_numpy(), train.i.to_numpy())),
                      shape=(len(users), len(items)))
    before = d[before_mask]
    ev = pd.Series(np.arange(len(rows)), index=rows)
    sb = before[before.u.isin(rows)]
    seen = sp.csr_matrix((np.ones(len(sb), dtype=bool), (ev[sb.u].to_numpy(), sb.i.to_numpy())),
                         shape=(len(rows), len(items)))
    ever = sp.csr_matrix((np.ones(len(d), dtype=bool), (d.u.to_numpy(), d.i.to_numpy())),
                         shape=(len(users), len(items)))[rows]
    rng = np.random.default_rng(seed)
    cands = np.empty((len(rows), 1 + N_NEG), dtype=np.int64)
    all_items = np.arange(len(items))
    test_item = test.i.to_numpy()
    for r in range(len(rows)):
        pool = np.setdiff1d(all_items, ever.indices[ever.indptr[r]:ever.indptr[r + 1]], assume_unique=True)
        cands[r, 0] = test_item[r]
        cands[r, 1:] = rng.choice(pool, N_NEG, replace=False)
    info = {"users": len(users), "items": len(items), "eval_users": len(rows), "train_nnz": int(X.nnz)}
    return Split(items, users, X, rows, test_item, seen, cands, before, info)


# --------------------------------------------------------------------------- metrics
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


# --------------------------------------------------------------------------- methods
class Scorer:
    """Scores of every method for the evaluated users, on one split (all trained on split.X only)."""

    def __init__(self, split: Split, catalog: Catalog, vectors: Callable[[list[str]], np.ndarray],
                 settings: Settings, pos: np.ndarray) -> None:
        self.split, self.catalog, self.settings, self.pos = split, catalog, settings, pos
        self.rows = split.rows[pos]
        self._vectors = vectors
        self.cache: dict[str, np.ndarray] = {}
        self.extras: dict[str, dict[str, Any]] = {}  # columns of methods computed outside `scores`
        self.pop = np.asarray(split.X.sum(0)).ravel().astype(np.float64)

    def scores(self, method: str) -> np.ndarray:
        if method not in self.cache:
            self.cache[method] = getattr(self, f"_{method}")()
        return self.cache[method]

    def _random(self) -> np.ndarray:
        return np.zeros((len(self.rows), len(self.split.items)))

    def _pop(self) -> np.ndarray:
        return np.tile(self.pop, (len(self.rows), 1))

    def _cf(self, name: str) -> np.ndarray:
        model = make_cf(name)
        model.fit(self.split.X)
        return model.score(self.rows, self.split.X[self.rows])

    def _itemknn(self) -> np.ndarray:
        return self._cf("itemknn")

    def _ease(self) -> np.ndarray:
        return self._cf("ease")

    def _als(self) -> np.ndarray:
        return self._cf("als")

    def _vector(self) -> np.ndarray:
        """Cosine to the mean embedding of the user's 50 most recent training positives (as served)."""
        emb = self._vectors(list(self.split.items))
        X = self.split.X
        before = self.split.before
        profiles = np.zeros((len(self.rows), emb.shape[1]), dtype=np.float32)
        recent = before[before.pos].sort_values(["u", "seq"], ascending=[True, False]).groupby("u").head(50)
        by_user = recent.groupby("u").i.apply(np.asarray)
        for n, row in enumerate(self.rows):
            cols = by_user.get(row, X[row].indices)
            mean = emb[cols].mean(0)
            profiles[n] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return profiles @ emb.T

    def _hybrid(self) -> np.ndarray:
        s = self.settings.retrieval
        return self.fused(s.weight_cf, s.weight_profile, s.weight_popularity)

    def fused(self, w_cf: float, w_profile: float, w_pop: float) -> np.ndarray:
        """The served fusion: weighted min-max-normalised CF, profile similarity and popularity."""
        everything = np.ones(len(self.split.items), dtype=bool)
        cf = self.scores(self.settings.retrieval.cf_model)
        vec = self.scores("vector")
        pop = minmax(np.log1p(self.pop), everything)
        out = np.empty_like(cf)
        for n in range(len(self.rows)):
            out[n] = w_cf * minmax(cf[n], everything) + w_profile * minmax(vec[n], everything) + w_pop * pop
        return out


@dataclass
class LLMStats:
    json_valid: list[bool] = field(default_factory=list)
    reasked: list[bool] = field(default_factory=list)
    fallback: list[bool] = field(default_factory=list)
    hallucinated: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        lat = np.array(self.latency_s or [0.0])
        return {"json_valid_pct": 100 * float(np.mean(self.json_valid)) if self.json_valid else 0.0,
                "reask_pct": 100 * float(np.mean(self.reasked)) if self.reasked else 0.0,
                "fallback_pct": 100 * float(np.mean(self.fallback)) if self.fallback else 0.0,
                "hallucinated_id_pct": 100 * float(np.mean(self.hallucinated)) if self.hallucinated else 0.0,
                "mean_prompt_tokens": float(np.mean(self.prompt_tokens or [0])),
                "mean_completion_tokens": float(np.mean(self.completion_tokens or [0])),
                "latency_p50_s": float(np.percentile(lat, 50)), "latency_p95_s": float(np.percentile(lat, 95))}


class _RecordingBackend(Wrapper):
    """Wraps a backend: caches answers by prompt hash and records every call of the current request."""

    def __init__(self, backend: Backend, cache_dir: Path | None) -> None:
        super().__init__(backend)
        self.cache_dir = cache_dir
        self.calls: list[tuple[str, float, int, int]] = []

    def _cached(self, key_parts: list[Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        key = hashlib.sha256(json.dumps([self.model, *key_parts], sort_keys=True).encode()).hexdigest()
        path = self.cache_dir / f"{key}.json" if self.cache_dir else None
        if path and path.is_file():
            return dict(json.loads(path.read_text()))
        started = time.perf_counter()
        data = compute()
        data["seconds"] = time.perf_counter() - started
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(path)
        return data

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        def ask() -> dict[str, Any]:
            c = self.inner.complete(messages, schema, max_tokens)
            return {"text": c.text, "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}

        data = self._cached([messages, schema], ask)
        self.calls.append((data["text"], data["seconds"], data["prompt_tokens"], data["completion_tokens"]))
        return Completion(data["text"], data["prompt_tokens"], data["completion_tokens"])

    def option_logprobs(self, messages: list[Message], options: list[str]) -> list[float]:
        data = self._cached([messages, options], lambda: {"logprobs": self.inner.option_logprobs(messages,
                                                                                                 options)})
        self.calls.append(("", data["seconds"], 0, 0))
        return list(data["logprobs"])


@dataclass
class UserRequest:
    """One evaluated user's sampled candidates as the pipeline would present them."""

    n: int
    order: np.ndarray  # split columns of the 20 candidates, in hybrid order
    history: list[HistoryItem]
    candidates: list[Candidate]


def user_requests(scorer: Scorer, index: Any) -> Iterator[UserRequest]:
    """For each evaluated user: the 20 sampled candidates in hybrid order, described with their evidence
    from the user's training history only."""
    split, catalog, settings = scorer.split, scorer.catalog, scorer.settings
    items = catalog.items
    hybrid = scorer.scores("hybrid")
    col_of = items.index.get_indexer(split.items)  # split column -> catalog row
    X_cat = sp.csr_matrix((split.X.data, col_of[split.X.indices], split.X.indptr),
                          shape=(split.X.shape[0], len(items)))
    matrix = InteractionMatrix(X_cat, pd.Index(split.users), items.index)
    retriever = Retriever(catalog, index, None, matrix, settings.retrieval)
    before = split.before
    for n, (p, row) in enumerate(zip(scorer.pos, scorer.rows, strict=True)):
        cands = split.cands[p]
        order = cands[np.argsort(-hybrid[n, cands], kind="stable")]
        mine = before[(before.u == row)].sort_values(["rating", "timestamp"], ascending=[False, False])
        liked = [str(split.items[i]) for i in mine[mine.pos].i]
        history = [HistoryItem(item_id=str(split.items[r.i]), title=items.at[split.items[r.i], "title"],
                               genres=list(items.at[split.items[r.i], "genres"]), year=None,
                               rating=float(r.rating)) for r in mine.head(15).itertuples()]
        view = UserView(None, -1, set(), liked, history)
        fused = np.zeros(len(items))
        fused[col_of[order]] = hybrid[n, order]
        candidates = retriever._describe(col_of[order], view, fused, None, None,
                                         retriever._profile(liked), None, settings.ranking.reason_max_chars)
        yield UserRequest(n, order, history, candidates)


def llm_sampled_scores(scorer: Scorer, backend: Any, prompts: Any, index: Any,
                       cache_dir: Path | None, progress: Callable[[int, int], None] | None = None
                       ) -> tuple[np.ndarray, LLMStats]:
    """The full pipeline on the sampled protocol: the 20 candidates in hybrid order, with evidence, are
    ranked by the LLM (validated, re-asked, fallback); the LLM's k come first, then the rest in hybrid order."""
    split, catalog, settings = scorer.split, scorer.catalog, scorer.settings
    recorder = _RecordingBackend(backend, cache_dir)
    stats = LLMStats()
    S = np.full((len(scorer.rows), len(split.items)), -np.inf)
    k = min(settings.k, N_NEG + 1)
    spec = catalog.spec
    for req in user_requests(scorer, index):
        candidates = req.candidates
        messages = prompts.messages(item_noun=spec.item_noun, item_noun_plural=spec.item_noun_plural, k=k,
                                    reason_max_chars=settings.ranking.reason_max_chars, history=req.history,
                                    candidates=candidates, query=None, rules=[])
        recorder.calls.clear()
        outcome = rank(recorder, messages, candidates, k, retries=settings.ranking.retries,
                       reason_max_chars=settings.ranking.reason_max_chars, max_tokens=settings.ranking.max_tokens)
        first = recorder.calls[0][0]
        ids = {c.item_id for c in candidates}
        try:
            answer = json.loads(first)
            returned = [str(r.get("item_id")) for r in answer.get("recommendations", [])]
            stats.json_valid.append(True)
            stats.hallucinated.append(float(np.mean([i not in ids for i in returned])) if returned else 0.0)
        except (json.JSONDecodeError, AttributeError, TypeError):
            stats.json_valid.append(False)
        stats.reasked.append(outcome.reasks > 0)
        stats.fallback.append(outcome.fallback)
        stats.prompt_tokens.append(sum(c[2] for c in recorder.calls))
        stats.completion_tokens.append(sum(c[3] for c in recorder.calls))
        stats.latency_s.append(sum(c[1] for c in recorder.calls))
        ranked = [str(i.item_id) for i in outcome.items]
        final = ranked + [c.item_id for c in candidates if c.item_id not in ranked]
        column = dict(zip((c.item_id for c in candidates), req.order, strict=True))  # candidates are in order
        S[req.n, [column[i] for i in final]] = -np.arange(len(final), dtype=np.float64)
        if progress:
            progress(req.n + 1, len(scorer.rows))
    return S, stats


def verbalizer_matrix(scorer: Scorer, backend: Any, prompts: Any, index: Any, cache_dir: Path | None,
                      permutations: int, progress: Callable[[int, int], None] | None = None
                      ) -> tuple[np.ndarray, LLMStats]:
    """Each user's 20 candidates scored by label log-probabilities (no decoding), averaged over
    `permutations` candidate orders. Returns the scores (-inf outside the candidates) and timing stats."""
    split, spec = scorer.split, scorer.catalog.spec
    recorder = _RecordingBackend(backend, cache_dir)
    stats = LLMStats()
    S = np.full((len(scorer.rows), len(split.items)), -np.inf)
    for req in user_requests(scorer, index):
        recorder.calls.clear()
        logp = verbalizer_scores(recorder, prompts, req.candidates, permutations, seed=int(req.order[0]),
                                 item_noun=spec.item_noun, item_noun_plural=spec.item_noun_plural,
                                 history=req.history, query=None)
        S[req.n, req.order] = logp
        stats.latency_s.append(sum(c[1] for c in recorder.calls))
        if progress:
            progress(req.n + 1, len(scorer.rows))
    return S, stats


FUSION_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


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


PROFILE_GRID = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)
POPULARITY_GRID = (0.0, 0.02, 0.05, 0.1)


def validation_split(split: Split, positive_min: float, seed: int = 0) -> Split:
    """A split of the training data of `split` only: every evaluated user's last training positive is held
    out, so nothing tuned on it has seen a test item."""
    train_only = split.before.assign(user_id=split.users[split.before.u], item_id=split.items[split.before.i])
    return make_split(train_only[["user_id", "item_id", "rating", "timestamp"]], positive_min, seed=seed)


def tune_fusion(val: Split, catalog: Catalog, settings: Settings, vectors: Callable[[list[str]], np.ndarray]
                ) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Pick the fusion weights (CF weight fixed at 1) by sampled NDCG@10 on the validation split."""
    pos = np.arange(len(val.rows))
    scorer = Scorer(val, catalog, vectors, settings, pos)
    table = []
    for w_profile in PROFILE_GRID:
        for w_pop in POPULARITY_GRID:
            _, sampled = rank_metrics(scorer.fused(1.0, w_profile, w_pop), val, pos, (10,))
            table.append({"weight_profile": w_profile, "weight_popularity": w_pop,
                          "val_NDCG@10": float(sampled["NDCG@10"].mean())})
    best = max(table, key=lambda r: r["val_NDCG@10"])
    return {"weight_profile": best["weight_profile"], "weight_popularity": best["weight_popularity"]}, table


def tune_llm_fusion(val: Split, catalog: Catalog, settings: Settings, index: Any,
                    score: Callable[[Scorer], np.ndarray], users: int, seed: int = 0
                    ) -> tuple[float, list[dict[str, float]]]:
    """The weight of the LLM's ranking in `rank_fusion`, by sampled NDCG@10 on `users` users of the
    validation split; ties go to the smaller weight (the retrieval order)."""
    pos = val.subsample(users, seed)
    scorer = Scorer(val, catalog, index.vectors, settings, pos)
    llm, hybrid = score(scorer), scorer.scores("hybrid")
    table = []
    for w in FUSION_GRID:
        _, sampled = rank_metrics(rank_fusion(hybrid, llm, w), val, pos, (10,))
        table.append({"weight_llm": w, "val_NDCG@10": float(sampled["NDCG@10"].mean())})
    best = max(table, key=lambda r: (round(r["val_NDCG@10"], 6), -r["weight_llm"]))
    return best["weight_llm"], table


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@dataclass
class EvalConfig:
    methods: tuple[str, ...] = METHODS
    protocols: tuple[str, ...] = ("sampled", "full")
    users: int | None = 200
    seed: int = 0
    ks: tuple[int, ...] = (1, 5, 10)
    cache: bool = True
    tune: bool = False
    permutations: int = 3  # candidate orders scored by the llm-score / llm-fused methods
    tune_users: int = 100  # validation users for the llm-fused weight


def run(settings: Settings, catalog: Catalog, config: EvalConfig, out: Path,
        progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Evaluate every method on one split and return the report (numbers, config, commit)."""
    from genre_agent.pipeline import build

    started = time.perf_counter()
    split = make_split(catalog.interactions, catalog.positive_min, seed=config.seed)
    pos = split.subsample(config.users, config.seed)
    needs_index = config.tune or any(m in config.methods for m in ("vector", "hybrid", *LLM_METHODS))
    retriever = build(settings, catalog, progress)[0] if needs_index else None
    tuning: dict[str, Any] = {}

    @functools.cache
    def validation() -> Split:
        return validation_split(split, catalog.positive_min, config.seed)

    if config.tune and retriever is not None:
        best, table = tune_fusion(validation(), catalog, settings, retriever.index.vectors)
        settings = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(update=best)})
        tuning = {"chosen": best, "grid": table}
    scorer = Scorer(split, catalog, retriever.index.vectors if retriever else (lambda ids: np.zeros((0, 0))),
                    settings, pos)
    genres = [set(catalog.items.at[i, "genres"]) for i in split.items]
    results: dict[str, Any] = {}

    @functools.cache
    def llm_parts() -> LLMParts:  # one backend (one model load, one KV cache) for every LLM method
        from genre_agent.llm.prompts import Prompts, resolve_prompts_dir

        return LLMParts(_backend(settings), Prompts(resolve_prompts_dir(settings.prompts)),
                        out / "llm-cache" if config.cache else None)

    def report(step: str) -> Callable[[int, int], None] | None:
        return (lambda d, t: progress(step, d, t)) if progress else None

    for n, method in enumerate(config.methods):
        if progress:
            progress("methods", n, len(config.methods))
        t0 = time.perf_counter()
        extra: dict[str, Any] = {}
        if method in LLM_METHODS and retriever is not None:
            S, extra = llm_method(method, scorer, llm_parts(), retriever.index, config, validation, tuning, report)
            protocols = tuple(p for p in config.protocols if p == "sampled")
        else:
            S = scorer.scores(method)
            protocols = config.protocols
        seconds = time.perf_counter() - t0
        full, sampled = rank_metrics(S, split, pos, config.ks)
        for protocol, per_user in (("full", full), ("sampled", sampled)):
            if protocol not in protocols:
                continue
            k = max(config.ks)
            masked = S.copy() if protocol == "full" else np.full_like(S, -np.inf)
            if protocol == "full":
                masked[split.seen[pos].nonzero()] = -np.inf
            else:
                r = np.arange(len(pos))[:, None]
                masked[r, split.cands[pos]] = S[r, split.cands[pos]]
            top = np.argsort(-masked, axis=1, kind="stable")[:, :k]
            entry: dict[str, Any] = {name: float(v.mean()) for name, v in per_user.items()}
            for name in (f"NDCG@{k}", f"HR@{k}"):
                entry[f"{name}_ci95"] = bootstrap_ci(per_user[name], config.seed)
            entry.update(beyond_accuracy(top, genres, scorer.pop))
            entry["seconds"] = round(seconds, 2)
            entry.update(extra)
            results.setdefault(protocol, {})[method] = entry
    return {
        "catalog": catalog.name, "commit": git_commit(), "seconds": round(time.perf_counter() - started, 1),
        "config": {"methods": list(config.methods), "protocols": list(config.protocols), "users": len(pos),
                   "seed": config.seed, "ks": list(config.ks), "candidates": N_NEG + 1,
                   "settings": settings.model_dump(mode="json", exclude=SECRETS)},
        "split": split.info, "results": results, "tuning": tuning,
        "notes": ["RMSE/MAE: not reported, no method here predicts ratings (all rank implicit positives).",
                  "llm: sampled protocol only (ranking all ~9.7k items with an LLM is not feasible)."],
    }


@dataclass
class LLMParts:
    backend: Any
    prompts: Any
    cache_dir: Path | None


def llm_method(method: str, scorer: Scorer, parts: LLMParts, index: Any, config: EvalConfig,
               validation: Callable[[], Split], tuning: dict[str, Any],
               report: Callable[[str], Callable[[int, int], None] | None]) -> tuple[np.ndarray, dict[str, Any]]:
    """Scores and LLM columns of one LLM method on the sampled protocol (tuning recorded in `tuning`)."""
    backend, prompts, cache_dir = parts.backend, parts.prompts, parts.cache_dir
    if method == "llm":
        S, stats = llm_sampled_scores(scorer, backend, prompts, index, cache_dir, report("llm users"))
        return S, stats.summary()

    def score(s: Scorer, step: str = "llm-score users") -> tuple[np.ndarray, LLMStats]:
        if not backend.capabilities.logprobs:
            raise ConfigError(f"{method} reads next-token probabilities, which the {backend.name} backend "
                              "cannot: use the llamacpp (or fake) backend.")
        return verbalizer_matrix(s, backend, prompts, index, cache_dir, config.permutations, report(step))

    if "llm-score" not in scorer.cache:
        scorer.cache["llm-score"], stats = score(scorer)
        summary = stats.summary()
        scorer.extras["llm-score"] = {"permutations": config.permutations,
                                      "latency_p50_s": summary["latency_p50_s"],
                                      "latency_p95_s": summary["latency_p95_s"]}
    llm = scorer.cache["llm-score"]
    extra = dict(scorer.extras["llm-score"])
    if method == "llm-score":
        return llm, extra
    weight, table = tune_llm_fusion(validation(), scorer.catalog, scorer.settings, index,
                                    lambda s: score(s, "tuning llm-fused")[0], config.tune_users, config.seed)
    tuning["llm_fused"] = {"chosen_weight_llm": weight, "validation_users": config.tune_users, "grid": table}
    return rank_fusion(scorer.scores("hybrid"), llm, weight), {**extra, "weight_llm": weight}


def _backend(settings: Settings) -> Backend:
    from genre_agent.llm.backends import make_backend

    return make_backend(settings)
