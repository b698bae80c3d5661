"""The recommendation pipeline: catalog -> index + CF -> candidates -> prompt -> backend -> validated answer."""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genre_agent.data.catalog import Catalog, load_catalog
from genre_agent.data.feedback import FEEDBACK_FILE, Store, open_store, with_feedback
from genre_agent.data.interactions import InteractionMatrix
from genre_agent.errors import ConfigError, DataDirError, UnknownUserError
from genre_agent.filters import Filters
from genre_agent.llm.adapters import with_adapter
from genre_agent.llm.backends import Backend, backend_class, make_backend
from genre_agent.llm.calibration import InForce, Key, find, model_id, template_hash
from genre_agent.llm.contexts import RankingContext, WritingContext
from genre_agent.llm.prompts import Prompts, resolve_prompts_dir
from genre_agent.llm.ranking import ranking_context
from genre_agent.llm.routing import Role, Routes, answer, routes_for
from genre_agent.rank.ranker import feature_settings, open_ranker
from genre_agent.retrieval import vector_file
from genre_agent.retrieval.candidates import Retriever
from genre_agent.retrieval.cf import CFModel, imported_als
from genre_agent.retrieval.cf_store import READ_ONLY, Progress, load_or_train, ranker_models
from genre_agent.retrieval.evidence import ReasonWriter
from genre_agent.retrieval.index import SyncReport, VectorIndex, make_client, remove_orphans
from genre_agent.retrieval.users import UserView
from genre_agent.sanitize import redact
from genre_agent.schemas import (
    Candidate,
    CatalogInfo,
    HistoryItem,
    Recommendation,
    Recommendations,
    RecommendRequest,
    Timings,
)
from genre_agent.settings import Settings


@dataclass
class Run:
    """One answered request with what produced it."""

    result: Recommendations
    candidates: list[Candidate]
    messages: list[dict[str, str]]
    history: list[HistoryItem]  # the user's ratings the prompt showed
    verdicts: list[tuple[str, str, str | None]]  # each reason the model wrote: (id, reason, problem or None)


@dataclass
class _Prepared:
    """A request made ready for the backend."""

    k: int
    reason_max_chars: int
    candidates: list[Candidate]
    messages: list[dict[str, str]]
    context: RankingContext  # the ranking prompt's variables, every candidate shown
    retrieved_at: float
    prompted_at: float


@dataclass
class BuildReport:
    embedded: int
    reused: int
    cf_trained: bool
    seconds: float



@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes building into the same data directory. In a data directory this
    process cannot write (a read-only mount), there is no lock: it can only read what was built."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("a")
    except OSError as exc:
        if exc.errno in READ_ONLY and (path.parent.parent / "chroma").is_dir():
            yield
            return
        raise DataDirError(f"cannot write the data directory ({exc}): make it writable, or set "
                           "GENRE_AGENT_DATA_DIR (or --data-dir) to a writable folder.") from exc
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _copy_of(store: Path) -> Path:
    """A copy of a vector store this process cannot write, in a temporary folder removed at exit: Chroma's
    embedded store writes to its database even to read, so a read-only data directory is served from a copy."""
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    warnings.warn(f"{store} is read-only: reading a temporary copy of it ({size / 2**20:.1f} MB).", stacklevel=3)
    tmp = Path(tempfile.mkdtemp(prefix="genre-agent-chroma-"))
    atexit.register(shutil.rmtree, tmp, True)
    try:
        shutil.copytree(store, tmp / "chroma")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataDirError(f"{store} is read-only and copying it to {tmp} failed ({exc}): make the data "
                           "directory writable, or free space in the temporary folder (TMPDIR).") from exc
    return tmp / "chroma"


def has_stored_feedback(settings: Settings) -> bool:
    """Whether a feedback store is configured or exists in the data directory (opening one would create it)."""
    return bool(settings.store.url) or (settings.data_dir / FEEDBACK_FILE).exists()


def served_catalog(settings: Settings, store: Store | None = None) -> Catalog:
    """The configured catalog as it is served: a user's likes, dislikes and "seen" from chats (in `store`, else
    in the configured store if one exists) count as their ratings. A store that cannot be read is warned about
    and left out."""
    catalog = load_catalog(settings.catalog, settings.catalog_files)
    if store is None:
        if not has_stored_feedback(settings):
            return catalog
        try:
            store = open_store(settings.store.url, settings.data_dir)
        except DataDirError as exc:
            warnings.warn(f"stored feedback not read ({redact(str(exc))})", stacklevel=2)
            return catalog
    return with_feedback(catalog, store)


def catalog_key(catalog: Catalog) -> str:
    """Stable per catalog folder, so two folders with the same name do not share artifacts."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", catalog.name).lstrip(".")  # a file name, never a path
    return f"{name}-{hashlib.sha256(str(catalog.root).encode()).hexdigest()[:6]}"


class Recommender:
    """Everything needed to answer recommendation requests for one catalog. Build once, then reuse."""

    def __init__(self, settings: Settings, catalog: Catalog, retriever: Retriever,
                 backend: Backend | None = None) -> None:
        self.settings, self.adapter = with_adapter(settings, catalog)  # the tuned LoRA of this catalog, if any
        self.catalog = catalog
        self.retriever = retriever
        self._backend = backend
        self._backend_lock = threading.Lock()  # a burst of first turns creates (loads) one backend
        self.prompts = Prompts(resolve_prompts_dir(settings.prompts))
        self._prompt_sets: dict[str, Prompts] = {}
        self._calibrations: dict[Key, InForce] = {}
        self.pinned_routes: Routes | None = None  # set by a measurement that must hold the roles fixed
        self._fingerprint = catalog.items_fingerprint()

    @classmethod
    def open(cls, settings: Settings, backend: Backend | None = None, progress: Progress | None = None, *,
             catalog: Catalog | None = None, store: Store | None = None) -> Recommender:
        """The one way every front-end, evaluation and workflow opens the service: the configured catalog with
        the stored feedback of its users joined to its interactions (`served_catalog`), or exactly `catalog`
        (an evaluation's training part), then its vector index and CF model, built or reused. The served
        catalog may use a ranker of its items trained before the latest feedback; `catalog` only the ranker of
        exactly its state, so an evaluation never reads a model trained on its test interactions."""
        served = catalog is None
        catalog = served_catalog(settings, store) if catalog is None else catalog
        retriever, _ = build(settings, catalog, progress, same_items_fallback=served)
        return cls(settings, catalog, retriever, backend)

    def with_backend(self, backend: Backend, routes: Routes | None = None) -> Recommender:
        """The same catalog, index and CF answering with another backend (a measurement's model), with the
        roles pinned to `routes` if given (else as the calibration routes them)."""
        other = Recommender(self.settings, self.catalog, self.retriever, backend)
        other.pinned_routes = routes
        return other

    def _names(self) -> tuple[str, str]:
        """(backend, model) as the answer reports them, without loading a model that was not needed."""
        if self._backend is not None:
            return self._backend.name, self._backend.model
        return self.settings.backend.name, model_id(self.settings)

    @property
    def backend(self) -> Backend:
        """The backend, created on first use, once."""
        with self._backend_lock:
            if self._backend is None:
                self._backend = make_backend(self.settings)
            return self._backend

    def recommend(self, user_id: str | None = None, query: str | None = None, k: int | None = None,
                  filters: Filters | None = None, *, liked: list[str] | None = None,
                  anchors: list[str] | None = None, prompts: str | None = None) -> Recommendations:
        """Top-k for a catalog user and/or a query: `run` with the request's fields as arguments."""
        return self.run(RecommendRequest(user_id=user_id, query=query, k=k, filters=filters or Filters(),
                                         liked=liked or [], anchors=anchors or [], prompts=prompts)).result

    def prompt_set(self, name_or_path: str | None) -> Prompts:
        """The configured templates, or another set by shipped name or folder (loaded once, then reused)."""
        if name_or_path is None:
            return self.prompts
        if name_or_path not in self._prompt_sets:
            self._prompt_sets[name_or_path] = Prompts(resolve_prompts_dir(name_or_path))
        return self._prompt_sets[name_or_path]

    def reload_templates(self) -> Prompts:
        """Re-read the configured prompt folder; the next request uses it."""
        self.prompts = Prompts(resolve_prompts_dir(self.settings.prompts))
        return self.prompts

    def reason_writer(self, prompts: str | None) -> ReasonWriter:
        """The evidence sentence as the template set (`reason.j2`) words it, at the set's reason length."""
        templates = self.prompt_set(prompts)
        noun = self.catalog.spec
        return templates.reason_writer(self._reason_max_chars(templates), noun.item_noun, noun.item_noun_plural)

    def calibration(self, prompts: str | None = None) -> InForce:
        """The calibration in force for the configured backend and model with this template set."""
        templates = self.prompt_set(prompts)
        key = Key(catalog=self.catalog.name, catalog_fingerprint=self._fingerprint,
                  backend=self.settings.backend.name, model=model_id(self.settings),
                  templates=template_hash(templates))
        if key not in self._calibrations:
            self._calibrations[key] = find(self.settings.data_dir, key)
        return self._calibrations[key]

    def reload_calibrations(self) -> None:
        """Read the calibrations again on the next request (one was saved or removed since)."""
        self._calibrations.clear()

    def routes(self, prompts: str | None = None) -> Routes:
        """What the model is asked to do for requests with this template set (calibration + settings), unless
        a measurement pinned the routes."""
        return self.pinned_routes or routes_for(self.calibration(prompts), self.settings)

    def render(self, request: RecommendRequest, role: Role = "ranking") -> list[dict[str, str]]:
        """The exact prompt of a request's ranking, or of its first candidate's reason, with real candidates;
        the LLM is not called."""
        p = self._prepare(request)
        if role == "ranking":
            return p.messages
        writing = [WritingContext.of(p.context, c) for c in p.candidates[:1]]  # none when nothing passed
        return [m for context in writing for m in self.prompt_set(request.prompts).writing_messages(context)]

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> tuple[int, str]:
        """Tokens of the messages (chat template included) for the configured model, and what counted them."""
        return backend_class(self.settings.backend.name).count_tokens(self.settings, messages)

    # -- what the chat needs to know about the catalog ---------------------------------
    def catalog_info(self) -> CatalogInfo:
        c = self.catalog
        return CatalogInfo(name=c.name, items=len(c.items), interactions=len(c.interactions),
                           item_noun=c.spec.item_noun, item_noun_plural=c.spec.item_noun_plural,
                           cleaning=c.report.lines())

    def has_user(self, user_id: str) -> bool:
        """Whether the catalog has ratings of this user."""
        return self.catalog.has_user(user_id)

    def genres(self) -> list[str]:
        """Every genre of the catalog, sorted."""
        return sorted({g for gs in self.catalog.items["genres"] for g in gs})

    def years(self, item_ids: list[str]) -> list[int]:
        """The known release years of these items."""
        return [int(y) for y in self.catalog.items.loc[item_ids, "year"].dropna()]

    def popular(self, n: int) -> list[str]:
        """The ids of the n items most users liked."""
        return self.retriever.most_popular(n)

    def evidence_for(self, item_id: str, request: RecommendRequest) -> Candidate:
        """One item as a candidate for the request's user, with its evidence (to answer "why this one?")."""
        view = self.retriever.user_view(request.user_id, request.liked)
        return self.retriever.candidate(view, item_id, request.query, self.reason_writer(request.prompts),
                                        request.filters)

    # -- answering -----------------------------------------------------------------------
    def _reason_max_chars(self, templates: Prompts) -> int:
        return templates.reason_max_chars(self.settings.ranking.reason_max_chars)

    def rank_examples(self, request: RecommendRequest) -> list[tuple[np.ndarray, np.ndarray]]:
        """The ranking pool of a request as the served path builds it, and its items' features: (catalog rows,
        features), nothing when no item passes the filters (what `fit` learns conversations from)."""
        view, filters = self._view(request)
        return self.retriever.rank_examples(view, filters, query=request.query, anchors=request.anchors)

    def _view(self, request: RecommendRequest) -> tuple[UserView, Filters]:
        """Who asks (a catalog user, or a new one known by the request's likes) and the filters in force."""
        filters = self.settings.rules.merge(request.filters)
        if request.anchors:  # "more like this one" never answers with that one
            filters = filters.merge(Filters(exclude_items=request.anchors))
        filters.check_columns(self.catalog.items.columns)
        user_id, query = request.user_id, request.query
        known = user_id is not None and self.catalog.has_user(user_id)
        if user_id is not None and not known and query is None:
            raise UnknownUserError(
                f"User {user_id!r} has no ratings in catalog '{self.catalog.name}'. "
                "Pass --query to get recommendations for a new user, or pick a known user id."
            )
        view = self.retriever.user_view(user_id if known else None, request.liked)  # unknown + query = cold start
        if not view.liked and query is None and not request.anchors and not request.allow_popular:
            raise UnknownUserError("Give a known --user or a --query: there is nothing to recommend from.")
        return view, filters

    def _prepare(self, request: RecommendRequest) -> _Prepared:
        """Candidates and the rendered prompt of a request (and when retrieval finished)."""
        view, filters = self._view(request)
        query = request.query
        k = request.k or self.settings.k
        templates = self.prompt_set(request.prompts)
        max_chars = self._reason_max_chars(templates)
        n = max(self.settings.retrieval.candidates, k)
        noun = self.catalog.spec
        reason = templates.reason_writer(max_chars, noun.item_noun, noun.item_noun_plural)
        candidates = self.retriever.candidates(view, query, filters, n, reason, request.anchors)
        retrieved_at = time.perf_counter()
        context = ranking_context(noun, k=k, reason_max_chars=max_chars, history=view.history,
                                  candidates=candidates, query=query, rules=filters.describe(for_prompt=True))
        messages = templates.messages(context)
        return _Prepared(k, max_chars, candidates, messages, context, retrieved_at, time.perf_counter())

    def run(self, request: RecommendRequest, on_first: Callable[[Run], None] | None = None,
            on_reason: Callable[[Recommendation], None] | None = None) -> Run:
        """Answer one request: candidates, prompt, the backend's validated ranking (or the fallback), and what
        produced it. The one entry point every front-end and `recommend` go through.

        With `on_first`, when roles are routed to the model, the answer without them (retrieval order, evidence
        reasons, `pending` naming the model's roles) goes to `on_first` as soon as retrieval is done; the
        model's answer is then returned. A cancelled model call raises TurnCancelled after `on_first` ran.
        With `on_reason`, when the model writes reasons for that first order, each grounded reason goes to
        `on_reason` (the item at its rank there) as soon as the model has written it."""
        started = time.perf_counter()
        p = self._prepare(request)
        routes = self.routes(request.prompts)
        if on_first is not None and routes.model_roles:
            on_first(self._answer(request, p, routes.at_once(), started, pending=routes.model_roles))
        return self._answer(request, p, routes, started, on_reason=on_reason)

    def _answer(self, request: RecommendRequest, p: _Prepared, routes: Routes, started: float,
                pending: list[Role] | None = None, on_reason: Callable[[Recommendation], None] | None = None
                ) -> Run:
        policy = self.settings.ranking
        by_id = {c.item_id: c for c in p.candidates}
        rank_of = {c.item_id: n + 1 for n, c in enumerate(p.candidates)}

        def reason(item_id: str, text: str) -> None:
            c = by_id[item_id]
            assert on_reason is not None
            on_reason(Recommendation(rank=rank_of[item_id], item_id=item_id, title=c.title, reason=text,
                                     reason_from="llm", evidence=c.why, scores=c.scores))

        outcome = answer(lambda: self.backend, routes, self.prompt_set(request.prompts), p.context, p.k,
                         retries=policy.retries, reason_max_chars=p.reason_max_chars, max_tokens=policy.max_tokens,
                         reasons_deadline_s=policy.reasons_deadline_s, on_reason=reason if on_reason else None)
        recs = [Recommendation(rank=n + 1, item_id=i.item_id, title=by_id[i.item_id].title, reason=i.reason,
                               reason_from="llm" if i.item_id in outcome.model_reasons else "evidence",
                               evidence=by_id[i.item_id].why, scores=by_id[i.item_id].scores)
                for n, i in enumerate(outcome.items)]
        ms = lambda a, z: round((z - a) * 1000, 1)  # noqa: E731
        done = time.perf_counter()
        name, model = self._names()
        result = Recommendations(
            user_id=request.user_id, query=request.query, k=p.k, backend=name, model=model,
            fallback=outcome.fallback, llm_roles=outcome.llm_roles, ranked_by=outcome.ranked_by,
            calibration=routes.calibration, reasks=outcome.reasks, pending=pending or [], recommendations=recs,
            timings_ms=Timings(retrieve=ms(started, p.retrieved_at), prompt=ms(p.retrieved_at, p.prompted_at),
                               llm=round(outcome.llm_ms, 1), total=ms(started, done)),
            prompt_tokens=outcome.prompt_tokens,
        )
        return Run(result=result, candidates=p.candidates, messages=p.messages, history=p.context.history,
                   verdicts=outcome.verdicts)


def _sync(index: VectorIndex, catalog: Catalog, column: str, vectors: str | None,
          progress: Progress | None) -> SyncReport:
    """Make `index` hold the catalog's `column` texts ("text" or "about"), taking the vectors of unchanged texts
    from the vector file shipped beside the catalog, if it names one."""
    fingerprint = catalog.items_fingerprint(column)
    shipped = None
    if vectors and not index.is_current(fingerprint):
        shipped = vector_file.load(catalog.root / vectors, index.embedding.model_id(), fingerprint)
    step = "embedding items" if column == "text" else "embedding what items are about"
    return index.sync(catalog.items, fingerprint, (lambda d, t: progress(step, d, t)) if progress else None,
                      shipped, column)


def ranker_dir(settings: Settings) -> Path:
    """The folder of the learned rankers in the data directory: a ranker is named by the catalog state it was
    trained for (`catalog_state`), so the same data in another folder finds it (what `eval` measured is what
    `recommend` serves)."""
    return settings.data_dir / "rankers"


def catalog_state(catalog: Catalog) -> str:
    """What a model trained on the catalog depends on: its interactions and its items' texts."""
    return f"{catalog.interactions_fingerprint()}-{catalog.items_fingerprint()}"


def build(settings: Settings, catalog: Catalog, progress: Progress | None = None, *,
          for_fit: bool = False, same_items_fallback: bool = False) -> tuple[Retriever, BuildReport]:
    """Build or reuse the vector index and CF model of a catalog (under a lock), and return a Retriever: with
    the learned ranker trained for this catalog state (rank.enabled) and every CF model its features read;
    `for_fit`: with those CF models and no ranker (what `genre-agent fit` learns from);
    `same_items_fallback` (serving only): else with a ranker of the same items trained on other interactions
    (`open_ranker`)."""
    started = time.perf_counter()
    key = catalog_key(catalog)
    data = settings.data_dir
    from chromadb.errors import ChromaError

    with _locked(data / "locks" / f"{key}.lock"):
        store = data / "chroma"
        if not settings.chroma.host and store.is_dir() and not os.access(store, os.W_OK):
            store = _copy_of(store)
        try:
            client = make_client(store, settings.chroma.host, settings.chroma.port)
            index = VectorIndex(client, key)
            report = _sync(index, catalog, "text", catalog.spec.text.vectors, progress)
            about = None
            if catalog.spec.text.about:
                about = VectorIndex(client, f"{key}__about", index.embedding)
                about_report = _sync(about, catalog, "about", catalog.spec.text.about_vectors, progress)
                report = SyncReport(report.embedded + about_report.embedded, report.reused + about_report.reused,
                                    report.removed + about_report.removed, report.rebuilt or about_report.rebuilt)
            if report.rebuilt and not settings.chroma.host:
                remove_orphans(store)
        except ChromaError as exc:
            if not settings.chroma.host and not os.access(store, os.W_OK):
                raise DataDirError(f"The vector store {store} is not writable ({exc}): make it writable, or set "
                                   "GENRE_AGENT_DATA_DIR (or --data-dir) to a writable copy.") from exc
            where = f"the folder {store} (`rm -r {store}`)" if not settings.chroma.host else \
                f"this catalog's collections on the Chroma server {settings.chroma.host}"
            raise DataDirError(f"The vector store cannot be read ({type(exc).__name__}: {exc}). Delete {where}; "
                               "the next run rebuilds it (every catalog is embedded again).") from exc
        except OSError as exc:  # a data directory that cannot be written, with no index built in it yet
            raise DataDirError(f"cannot write the vector store {store} ({exc}): make the data directory "
                               "writable, or set GENRE_AGENT_DATA_DIR (or --data-dir) to a writable "
                               "folder.") from exc
        matrix = InteractionMatrix.build(catalog.interactions, catalog.items.index, catalog.positive_min)
        factors = settings.retrieval.als_factors
        cf: CFModel | None
        trained_here: dict[str, CFModel] = {}  # by name: what the ranker's models reuse
        if factors is not None:
            if settings.retrieval.cf_model != "als":
                raise ConfigError("retrieval.als_factors is set: also set retrieval.cf_model = \"als\" (the "
                                  "factors are ALS factors), or unset als_factors.")
            cf, trained = imported_als(factors, matrix.user_index, matrix.item_index), False
        else:
            name = settings.retrieval.cf_model
            cf, trained = load_or_train(catalog, matrix, name, name, data / "cf" / key, progress)
            trained_here = {name: cf} if cf is not None else {}
        ranker = None
        if settings.rank.enabled and not for_fit:
            ranker = open_ranker(ranker_dir(settings), catalog_state(catalog), catalog.root,
                                 settings=feature_settings(settings), same_items_fallback=same_items_fallback,
                                 ratings=len(catalog.interactions))
        cf_models: dict[str, CFModel] = {}
        rated = None
        if ranker is not None or for_fit:
            cf_models, rated = ranker_models(catalog, matrix, data / "cf" / key, progress, trained_here)
    if for_fit:  # `fit` reads the vectors of every example's pool: from memory, read from the index once
        for held in (index, about):
            if held is not None:
                held.hold()
    retriever = Retriever(catalog, index, cf, matrix, settings.retrieval, about, ranker=ranker,
                          cf_models=cf_models, rank=settings.rank, rated=rated)
    return retriever, BuildReport(report.embedded, report.reused, trained,
                                  round(time.perf_counter() - started, 2))
