"""The recommendation pipeline: catalog -> index + CF -> candidates -> prompt -> backend -> validated answer."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from genre_agent.data.catalog import Catalog, load_catalog
from genre_agent.data.interactions import InteractionMatrix
from genre_agent.errors import UnknownUserError
from genre_agent.llm.backends import Backend, backend_class, make_backend
from genre_agent.llm.prompts import Prompts, resolve_prompts_dir
from genre_agent.llm.ranking import rank, ranking_context
from genre_agent.retrieval.candidates import Retriever, Rules
from genre_agent.retrieval.cf import CFModel, make_cf
from genre_agent.retrieval.index import VectorIndex, make_client
from genre_agent.schemas import Candidate, Recommendation, Recommendations, Timings
from genre_agent.settings import Settings

# A build step reports (step name, done, total); the CLI shows it as a progress bar.
Progress = Callable[[str, int, int], None]


@dataclass
class Run:
    """One answered request with what produced it."""

    result: Recommendations
    candidates: list[Candidate]
    messages: list[dict[str, str]]


@dataclass
class BuildReport:
    embedded: int
    reused: int
    cf_trained: bool
    seconds: float


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes building into the same data directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def catalog_key(catalog: Catalog) -> str:
    """Stable per catalog folder, so two folders with the same name do not share artifacts."""
    return f"{catalog.name}-{hashlib.sha256(str(catalog.root).encode()).hexdigest()[:6]}"


def _load_or_train_cf(catalog: Catalog, matrix: InteractionMatrix, model_name: str, root: Path,
                      progress: Progress | None) -> tuple[CFModel | None, bool]:
    """The CF model for these interactions: loaded if trained before, else trained and saved atomically."""
    if matrix.matrix.nnz == 0:
        return None, False
    key = f"{model_name}-{catalog.interactions_fingerprint()}-{catalog.items_fingerprint()}"
    target = root / key
    model = make_cf(model_name)
    if (target / "done.json").is_file():
        model.load(target)
        return model, False
    if progress:
        progress(f"training {model_name}", 0, 1)
    model.fit(matrix.matrix)
    tmp = root / f".{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp)
    (tmp / "done.json").write_text(json.dumps({"model": model_name, "users": matrix.matrix.shape[0],
                                               "items": matrix.matrix.shape[1], "nnz": matrix.matrix.nnz}))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    for stale in root.iterdir():  # models of older interactions
        if stale.name.startswith(f"{model_name}-") and stale.name != key:
            shutil.rmtree(stale, ignore_errors=True)
    model.load(target)
    if progress:
        progress(f"training {model_name}", 1, 1)
    return model, True


class Recommender:
    """Everything needed to answer recommendation requests for one catalog. Build once, then reuse."""

    def __init__(self, settings: Settings, catalog: Catalog, retriever: Retriever,
                 backend: Backend | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.retriever = retriever
        self._backend = backend
        self.prompts = Prompts(resolve_prompts_dir(settings.prompts))
        self._prompt_sets: dict[str, Prompts] = {}

    @classmethod
    def open(cls, settings: Settings, backend: Backend | None = None,
             progress: Progress | None = None) -> Recommender:
        """Load the catalog and build (or reuse) the vector index and the CF model."""
        catalog = load_catalog(settings.catalog)
        retriever, _ = build(settings, catalog, progress)
        return cls(settings, catalog, retriever, backend)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = make_backend(self.settings)
        return self._backend

    def recommend(self, user_id: str | None = None, query: str | None = None, k: int | None = None,
                  rules: Rules | None = None, *, liked: list[str] | None = None,
                  anchors: list[str] | None = None, prompts: str | None = None) -> Recommendations:
        """Top-k for a catalog user and/or a query. `liked` adds items liked in this session (they shape
        the profile and CF), `anchors` are items the request should resemble ("more like this one")."""
        return self.run(user_id, query, k, rules, liked=liked, anchors=anchors, prompts=prompts).result

    def prompt_set(self, name_or_path: str | None) -> Prompts:
        """The configured templates, or another set by shipped name or folder (loaded once, then reused)."""
        if name_or_path is None:
            return self.prompts
        if name_or_path not in self._prompt_sets:
            self._prompt_sets[name_or_path] = Prompts(resolve_prompts_dir(name_or_path))
        return self._prompt_sets[name_or_path]

    def render(self, user_id: str | None = None, query: str | None = None, k: int | None = None,
               rules: Rules | None = None) -> list[dict[str, str]]:
        """The exact ranking prompt of a request, with real candidates; the LLM is not called."""
        return self._prepare(user_id, query, k or self.settings.k, rules, None, None, False, self.prompts)[1]

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> tuple[int, str]:
        """Tokens of the messages (chat template included) for the configured model, and what counted them."""
        return backend_class(self.settings.backend.name).count_tokens(self.settings, messages)

    def _prepare(self, user_id: str | None, query: str | None, k: int, rules: Rules | None,
                 liked: list[str] | None, anchors: list[str] | None, allow_popular: bool, prompts: Prompts
                 ) -> tuple[list[Candidate], list[dict[str, str]], float]:
        """Candidates and the rendered prompt of a request (and when retrieval finished)."""
        rules = (rules or Rules()).merged(Rules(**self.settings.rules.model_dump()))
        query = (query or "").strip() or None
        known = user_id is not None and self.catalog.has_user(user_id)
        if user_id is not None and not known and query is None:
            raise UnknownUserError(
                f"User {user_id!r} has no ratings in catalog '{self.catalog.name}'. "
                "Pass --query to get recommendations for a new user, or pick a known user id."
            )
        view = self.retriever.user_view(user_id if known else None, liked)  # unknown + query = cold start
        if not view.liked and query is None and not anchors and not allow_popular:
            raise UnknownUserError("Give a known --user or a --query: there is nothing to recommend from.")
        n = max(self.settings.retrieval.candidates, k)
        max_chars = prompts.reason_max_chars(self.settings.ranking.reason_max_chars)
        candidates = self.retriever.candidates(view, query, rules, n, max_chars, anchors)
        t_retrieved = time.perf_counter()
        messages = prompts.messages(ranking_context(
            self.catalog.spec, k=k, reason_max_chars=max_chars, history=view.history, candidates=candidates,
            query=query, rules=rules.describe(),
        ))
        return candidates, messages, t_retrieved

    def run(self, user_id: str | None = None, query: str | None = None, k: int | None = None,
            rules: Rules | None = None, *, liked: list[str] | None = None,
            anchors: list[str] | None = None, allow_popular: bool = False, prompts: str | None = None) -> Run:
        """`recommend`, also returning the candidates and the exact prompt. With `allow_popular`, a request
        with no user, query or likes gets the most popular items instead of an error; `prompts` overrides
        the configured template set for this request."""
        started = time.perf_counter()
        k = k or self.settings.k
        templates = self.prompt_set(prompts)
        candidates, messages, t_retrieved = self._prepare(user_id, query, k, rules, liked, anchors, allow_popular,
                                                          templates)
        query = (query or "").strip() or None
        t_prompt = time.perf_counter()
        policy = self.settings.ranking
        max_chars = templates.reason_max_chars(policy.reason_max_chars)
        outcome = rank(self.backend, messages, candidates, k, retries=policy.retries,
                       reason_max_chars=max_chars, max_tokens=policy.max_tokens)
        by_id = {c.item_id: c for c in candidates}
        recs = [Recommendation(rank=n + 1, item_id=i.item_id, title=by_id[i.item_id].title, reason=i.reason,
                               scores=by_id[i.item_id].scores) for n, i in enumerate(outcome.items)]
        ms = lambda a, z: round((z - a) * 1000, 1)  # noqa: E731
        done = time.perf_counter()
        result = Recommendations(
            user_id=user_id, query=query, k=k, backend=self.backend.name, model=self.backend.model,
            fallback=outcome.fallback, reasks=outcome.reasks, recommendations=recs,
            timings_ms=Timings(retrieve=ms(started, t_retrieved), prompt=ms(t_retrieved, t_prompt),
                               llm=round(outcome.llm_ms, 1), total=ms(started, done)),
            prompt_tokens=outcome.prompt_tokens,
        )
        return Run(result=result, candidates=candidates, messages=messages)


def build(settings: Settings, catalog: Catalog, progress: Progress | None = None) -> tuple[Retriever, BuildReport]:
    """Build or reuse the vector index and CF model of a catalog (under a lock), and return a Retriever."""
    started = time.perf_counter()
    key = catalog_key(catalog)
    data = settings.data_dir
    with _locked(data / "locks" / f"{key}.lock"):
        client = make_client(data / "chroma", settings.chroma.host, settings.chroma.port)
        index = VectorIndex(client, key)
        report = index.sync(catalog.items, catalog.items_fingerprint(),
                            (lambda d, t: progress("embedding items", d, t)) if progress else None)
        matrix = InteractionMatrix.build(catalog.interactions, catalog.items.index, catalog.positive_min)
        cf, trained = _load_or_train_cf(catalog, matrix, settings.retrieval.cf_model, data / "cf" / key,
                                        progress)
    retriever = Retriever(catalog, index, cf, matrix, settings.retrieval)
    return retriever, BuildReport(report.embedded, report.reused, trained,
                                  round(time.perf_counter() - started, 2))
