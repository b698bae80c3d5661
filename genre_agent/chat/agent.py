"""The conversational agent: sessions, understanding, recommendations, explanations and feedback."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from genre_agent.chat.constraints import conflict
from genre_agent.chat.people import PeopleIndex
from genre_agent.chat.session import SessionState, StateUpdate
from genre_agent.chat.titles import TitleIndex
from genre_agent.chat.transcript import shown_in
from genre_agent.chat.understanding import ask_model, common_words, genre_words, merge, parse_rules
from genre_agent.data.feedback import Store, open_store
from genre_agent.errors import TurnCancelled
from genre_agent.filters import Filters
from genre_agent.llm.backends import Backend
from genre_agent.llm.backends.base import cancellable
from genre_agent.llm.prompts import Prompts
from genre_agent.pipeline import Progress, Recommender, Run, has_stored_feedback
from genre_agent.sanitize import clean_message
from genre_agent.schemas import CatalogInfo, Recommendation, Recommendations, RecommendRequest
from genre_agent.settings import Settings, load_settings

_LISTED = re.compile(r"^\s*\d+\. (.+?) \u2014 ", re.M)  # "1. Title (1999) — reason", as _recommend writes it
# A streamed answer is the list shown at once, then this line and the model's list (a client shows the text as
# it arrives and cannot take text back); rebuilding a conversation reads the list after the last such line.
REVISED = "Revised by the model:"
# told a turn's finished session and its count of feedback rows: whether to store them (raises: keep nothing)
Commit = Callable[[SessionState, int], bool]
LIVE = "The model's reasons, as it writes them:"  # each line "N. Title — reason", N its place in the list above
ANSWERED = ("recommend", "refine", "feedback", "more", "other")  # the intents a list answers (with taste)
CLARIFY = ("Tell me a little about your taste first: name a {noun} you loved, a genre, or a mood "
           "(for example \u201cI loved {example}, no horror please\u201d).")


class Reply(BaseModel):
    """One answer of the agent; JSON-serialisable (the HTTP server returns it as `genre_agent`)."""

    session_id: str
    intent: str
    text: str = Field(description="the readable answer")
    recommendations: Recommendations | None = None
    explained_item: str | None = None
    filters: list[str] = []
    debug: dict[str, Any] | None = Field(None, description="prompt, candidates and timings when asked for")

    def listed(self, replaced: dict[str, str] | None = None) -> list[tuple[str, str]]:
        """What the reply shows: its items and their reasons, in order (with the `replaced` reasons by id)."""
        rec, replaced = self.recommendations, replaced or {}
        return [(r.item_id, replaced.get(r.item_id, r.reason)) for r in rec.recommendations] if rec else []


@dataclass
class Listeners:
    """What a streaming front-end is told during a turn: the list shown at once, then each model reason."""

    first: Callable[[Reply], None]
    reason: Callable[[Recommendation], None] | None = None


def _so_far(first: Reply, written: list[Recommendation]) -> Reply:
    """The list shown at once with the reasons the model wrote for it before the turn stopped."""
    if first.recommendations is None or not written:
        return first
    by_id = {r.item_id: r for r in written}
    recs, text = first.recommendations, first.text
    for r in recs.recommendations:
        if r.item_id in by_id:
            text = text.replace(f"{r.rank}. {r.title} \u2014 {r.reason}",
                                f"{r.rank}. {r.title} \u2014 {by_id[r.item_id].reason}")
    kept = recs.model_copy(update={"pending": [], "llm_roles": ["reasons"], "recommendations": [
        by_id.get(r.item_id, r) for r in recs.recommendations]})
    return first.model_copy(update={"recommendations": kept, "text": text})


class Agent:
    """Thread-safe: each session has its own (re-entrant) lock; the LLM backend serialises its own calls."""

    def __init__(self, recommender: Recommender, store: Store) -> None:
        self.recommender = recommender
        self.store = store
        catalog = recommender.catalog
        self.genres = recommender.genres()
        self.genre_words = genre_words(self.genres, catalog.genre_aliases)  # what a message calls each genre
        popularity = catalog.interactions.groupby("item_id").size()
        self.titles = TitleIndex(catalog.items, popularity)
        self.people = PeopleIndex(catalog.items, common_words(self.genre_words))  # who the catalog credits
        years = catalog.items["year"].dropna()
        self.newest = int(years.max()) if len(years) else None  # what "recent" and "classic" count from
        self._sessions: dict[str, SessionState] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        self._title_ids: dict[str, str] | None = None
        self.debug = False

    @classmethod
    def from_config(cls, config: Path | Settings | None = None, *, backend: Backend | None = None,
                    progress: Progress | None = None, **overrides: Any) -> Agent:
        """An agent on the configured catalog; stored feedback joins the CF training data."""
        settings = config if isinstance(config, Settings) else load_settings(config, **overrides)
        if has_stored_feedback(settings):  # opened once: the catalog reads it, then the agent writes to it
            store = open_store(settings.store.url, settings.data_dir)
            return cls(Recommender.open(settings, backend, progress, store=store), store)
        recommender = Recommender.open(settings, backend, progress)  # a bad catalog fails before any write
        return cls(recommender, open_store(settings.store.url, settings.data_dir))

    @property
    def settings(self) -> Settings:
        return self.recommender.settings

    # -- sessions --------------------------------------------------------------------
    def session(self, session_id: str, user: str | None = None) -> SessionState:
        return self._entry(session_id, user)[0]

    def _entry(self, session_id: str, user: str | None = None) -> tuple[SessionState, threading.RLock]:
        """A session and its lock, made together if new (and switched to `user` if given)."""
        with self._guard:
            state = self._sessions.get(session_id)
            if state is None:
                state = self._sessions[session_id] = SessionState(session_id=session_id)
                self._locks[session_id] = threading.RLock()
            if user is not None and user != state.user_id:
                self.set_user(state, user)
            return state, self._locks[session_id]

    @contextmanager
    def held(self, session_id: str) -> Iterator[SessionState]:
        """The session with its lock held: its other turns in this process wait until the block ends (what
        reads a session from a shared store, runs a turn and writes it back does)."""
        state, lock = self._entry(session_id)
        with lock:
            yield state

    def session_ids(self) -> list[str]:
        """The sessions this process holds in memory."""
        with self._guard:
            return list(self._sessions)

    def forget(self, session_id: str) -> None:
        """Drop a session and everything it remembers (the server's expiry and its one-request sessions)."""
        with self._guard:
            self._sessions.pop(session_id, None)
            self._locks.pop(session_id, None)

    def restore(self, session_id: str, history: list[tuple[str, str]], user: str | None = None) -> None:
        """Rebuild a session from an earlier conversation of (role, text) pairs, as a stateless HTTP request
        carries it: user turns are read by the rules alone (no model call, no feedback stored again) and what
        an assistant turn showed is what its ids line names (`transcript.with_shown`), else its numbered list."""
        state, lock = self._entry(session_id, user)
        with lock:
            for role, text in history:
                if role == "assistant":
                    ids = self._shown(text)
                    if ids:
                        state.last = ids
                        state.shown += [i for i in ids if i not in state.shown]
                elif role == "user":
                    update = self._rules(state, clean_message(text))
                    if update.intent == "reset":
                        state.reset()
                        continue
                    self._apply(state, update, [])

    def _shown(self, text: str) -> list[str]:
        """The catalog items an assistant turn showed, in order: the ids its ids line names, else the titles of
        its numbered list (after the last REVISED line) looked up."""
        marked = shown_in(text)
        if marked is not None:
            return [i for i in dict.fromkeys(marked) if self.titles.knows(i)]
        listed = [self._listed_item(m.group(1)) for m in _LISTED.finditer(text.rpartition(REVISED)[2])]
        return list(dict.fromkeys(i for i in listed if i is not None))  # streamed reasons repeat items

    def _listed_item(self, title: str) -> str | None:
        if self._title_ids is None:
            items = self.recommender.catalog.items
            self._title_ids = {str(t): str(i) for i, t in reversed(list(items["title"].items()))}
        return self._title_ids.get(title.strip()) or self.titles.resolve(title)

    def set_user(self, state: SessionState, user: str | None) -> None:
        """Make `state` a fresh conversation of `user` (checked to be in the catalog), with the user's stored
        feedback."""
        from genre_agent.errors import UnknownUserError

        catalog = self.catalog_info().name
        if user is not None and not self.recommender.has_user(user):
            raise UnknownUserError(f"User {user!r} has no ratings in catalog '{catalog}'.")
        state.user_id = user
        state.reset()
        stored = self.store.for_user(catalog, state.feedback_key)
        state.liked = [i for i, kind in stored.items() if kind == "like"]
        state.disliked = [i for i, kind in stored.items() if kind == "dislike"]
        state.seen = [i for i, kind in stored.items() if kind == "seen"]

    # -- the Python API ----------------------------------------------------------------
    def recommend(self, user: str | None = None, query: str | None = None, k: int | None = None,
                  filters: Filters | None = None, prompts: str | None = None,
                  on_reason: Callable[[Recommendation], None] | None = None) -> Recommendations:
        """One-shot recommendations, the same schema as `genre-agent recommend --json`. The query is read as
        `chat` reads a first message (`read`). `prompts` picks a template set (shipped name or folder) for this
        request only. When the model writes the reasons, each goes to `on_reason` as soon as it is written and
        checked; the answer returned has them all."""
        request, note = self.read(query, user, k, filters, prompts)
        result = self.recommender.run(request, on_reason=on_reason).result
        return result.model_copy(update={"query": (query or "").strip() or None, "note": note})

    def read(self, query: str | None, user: str | None = None, k: int | None = None,
             filters: Filters | None = None, prompts: str | None = None) -> tuple[RecommendRequest, str | None]:
        """The request a one-shot query asks for, read as `chat` reads a first message: the titles it names
        are liked (or resembled) and never come back, its genres, years and exclusions join `filters` as
        constraints; with the note that names the constraint to relax when too few items fit them all. A query
        that asks for no list ("why?") or that the reading finds nothing in stays a plain search query."""
        given = filters or Filters()
        plain = RecommendRequest(user_id=user, query=query, k=k, prompts=prompts, filters=given)
        if plain.query is None:
            return plain, None
        state = SessionState(session_id="one-shot", user_id=user)
        update = self._read(state, clean_message(plain.query))
        if update.intent not in ANSWERED:
            return plain, None
        self._apply(state, update, [])
        state.filters = state.filters.merge(given)
        if not self._has_taste(state):
            return plain, None
        notes = self._notes(state, update)
        read = self._request(state)
        request = read.model_copy(update={"k": k or read.k, "prompts": prompts})
        said = [n for n in (self._conflict(state, request), notes) if n]
        return request, " ".join(said) or None

    def _conflict(self, state: SessionState, request: RecommendRequest) -> str | None:
        """In words, the constraints to relax when the session's filters let too few items through."""
        retriever = self.recommender.retriever
        clash = conflict(state.filters, retriever.masks, request.k or self.settings.k)
        if clash is None:
            return None
        info = self.catalog_info()
        return clash.describe(info.item_noun, info.item_noun_plural)

    def catalog_info(self) -> CatalogInfo:
        """The catalog's name, size and item noun (what the front-ends show)."""
        return self.recommender.catalog_info()

    def title_of(self, item_id: str) -> str:
        """The catalog title of an item (the id itself if unknown)."""
        return self.titles.title_of(item_id)

    def chat(self, session_id: str, message: str, user: str | None = None,
             cancel: threading.Event | None = None, on_first: Callable[[Reply], None] | None = None,
             on_reason: Callable[[Recommendation], None] | None = None,
             commit: Commit | None = None) -> Reply:
        """One turn of a conversation: update the session from the message, then answer.
        The session and the feedback store change only when the turn finishes and was not cancelled; a model
        call running when `cancel` is set stops and raises TurnCancelled.

        With `on_first`, an answer in which the model ranks or writes reasons is given twice: first at once
        without the model (retrieval order, evidence reasons, `pending` says what follows) to `on_first`, then
        the model's answer is returned. With `on_reason` too, each reason the model writes for that first list
        goes to `on_reason` as soon as it is written and checked (the item at its rank in the first list). A
        turn cancelled after its first answer keeps that answer with the reasons written so far: the session
        and feedback are committed as they were when it was shown, and it is returned.

        With `commit`, it is told the finished session and how many feedback rows the turn would store, before
        anything is kept: it returns whether they go to the store (the session uses them either way), or raises
        to keep nothing of the turn (the server's session write, its budgets)."""
        state, lock = self._entry(session_id, user)
        message = clean_message(message)
        with lock:
            working = state.model_copy(deep=True)
            writes: list[tuple[str, str]] = []
            shown: list[tuple[Reply, SessionState]] = []

            def first(reply: Reply) -> None:
                shown.append((reply, working.model_copy(deep=True)))
                assert on_first is not None
                on_first(reply)

            written: list[Recommendation] = []

            def reason(rec: Recommendation) -> None:
                written.append(rec)
                if on_reason is not None:
                    on_reason(rec)

            listen = Listeners(first, reason) if on_first else None

            working.turns += 1
            try:
                with cancellable(cancel):  # a model call of this turn stops when `cancel` is set (TurnCancelled)
                    reply = self._turn(working, message, writes, listen)
            except TurnCancelled:
                if not shown:
                    raise
                reply, working = _so_far(shown[0][0], written), shown[0][1]
            if cancel is not None and cancel.is_set():
                if not shown:
                    return reply  # nobody waits for it: nothing is kept
                reply, working = _so_far(shown[0][0], written), shown[0][1]
            if commit is None or commit(working, len(writes)):
                self._store(working, writes, message)
            state.take(working)  # the session becomes the turn's working copy
            return reply

    def explain(self, session_id: str, item_id: str) -> Reply:
        """Why an item fits this session's user, from its metadata and the user's history."""
        state, lock = self._entry(session_id)
        with lock:
            return self._why(state, item_id)

    def feedback(self, session_id: str, item_id: str, kind: str, cancel: threading.Event | None = None,
                 commit: Commit | None = None) -> Reply:
        """Record like / dislike / seen on an item (what `/like N` does); nothing if `cancel` is set first.
        `commit` decides whether it goes to the store, as in `chat` (the session takes it either way)."""
        state, lock = self._entry(session_id)
        with lock:
            working = state.model_copy(deep=True)  # the session changes only once the feedback is stored
            writes: list[tuple[str, str]] = []
            working.turns += 1
            self._apply(working, StateUpdate(**{kind: [item_id]}), writes)
            if cancel is not None and cancel.is_set():
                raise TurnCancelled("the feedback was cancelled; nothing was stored")
            if commit is None or commit(working, len(writes)):
                self._store(working, writes, f"/{kind} {item_id}")
            state.take(working)  # the session becomes the turn's working copy
            title = self.titles.title_of(item_id)
            return Reply(session_id=session_id, intent="feedback", text=f"Noted: {kind} \u2014 {title}.",
                         filters=state.describe())

    # -- one turn --------------------------------------------------------------------
    def asks(self, session_id: str, message: str) -> RecommendRequest | None:
        """The request the agent would answer `message` with in this session, read as `chat` reads it; None
        when the turn would not recommend from what was said (a reset, a question, nothing to go on yet). The
        session does not change (what `fit` learns conversations from)."""
        state, lock = self._entry(session_id)
        with lock:
            working = state.model_copy(deep=True)
            update = self._read(working, clean_message(message))
            if update.intent not in ANSWERED:
                return None
            self._apply(working, update, [])
            return self._request(working) if self._has_taste(working) else None

    def _rules(self, state: SessionState, message: str) -> StateUpdate:
        """What the rules read in a message, in this session (a live turn and a restored one alike)."""
        return parse_rules(message, state, self.genre_words, self.titles, self.recommender.years(state.last),
                           self.newest, self.people)

    def _read(self, state: SessionState, message: str) -> StateUpdate:
        """What a message changes: the rules' reading, and the model's where its reading is routed."""
        update = self._rules(state, message)
        reading = self.recommender.routes().reading  # the field groups the model's reading may add
        if reading and update.intent not in ("reset", "more"):
            model_update = ask_model(self.recommender.backend, self.recommender.prompts, message,
                                     state.describe(), [self.titles.title_of(i) for i in state.last],
                                     self.genres)
            update = merge(update, model_update, message, self.titles, self.genre_words, reading)
        return update

    def _turn(self, state: SessionState, message: str, writes: list[tuple[str, str]],
              listen: Listeners | None = None) -> Reply:
        update = self._read(state, message)
        if update.intent == "reset":
            state.reset()
            return Reply(session_id=state.session_id, intent="reset", text="Starting over: preferences cleared.")
        if update.intent == "why" and update.why:
            return self._why(state, update.why)
        self._apply(state, update, writes)
        if not self._has_taste(state):
            return self._clarify(state, listen)  # e.g. only a disliked title: nothing to recommend from yet
        if update.intent in ANSWERED:
            return self._recommend(state, update.intent, listen, note=self._notes(state, update))
        return Reply(session_id=state.session_id, intent=update.intent, text="Noted.",
                     filters=state.describe())

    def _notes(self, state: SessionState, update: StateUpdate) -> str | None:
        """What the reply says of the reading: titles and people the catalog lacks, lengths it cannot check."""
        notes = list(update.notes)
        f = state.filters
        if f.minutes_min is not None or f.minutes_max is not None:
            masks = self.recommender.retriever.masks
            known, every = masks.known_minutes(), len(masks.items)
            if known < every:
                noun = self.catalog_info().item_noun_plural
                notes.append(f"I know the length of {known:,} of the {every:,} {noun}; only those are shown.")
        return " ".join(notes) or None

    def _has_taste(self, state: SessionState) -> bool:
        f = state.filters
        return bool(state.user_id or state.liked or state.query or state.anchors or f.include_genres or
                    f.require_genres or f.year_min is not None or f.year_max is not None or f.people or
                    f.countries or f.languages or f.exclude_countries or f.order or f.minutes_min is not None
                    or f.minutes_max is not None)

    def _apply(self, state: SessionState, update: StateUpdate, writes: list[tuple[str, str]]) -> None:
        """Let the session take in the update; its feedback rows (item, kind) go to `writes`, stored by the
        caller once the turn is not cancelled. A length asked of a catalog that knows none is dropped (the
        update's notes say so)."""
        writes.extend((item, kind) for kind, item in update.feedback())
        state.apply(update)
        f = state.filters
        if (f.minutes_min is not None or f.minutes_max is not None) and not self.recommender.retriever.masks.\
                known_minutes():  # a length asked of a catalog that knows none: dropped, and said
            state.filters = f.model_copy(update={"minutes_min": None, "minutes_max": None})
            noun = self.catalog_info().item_noun_plural
            update.notes.append(f"This catalog does not say how long its {noun} are, so the length was not "
                                "checked.")

    def _store(self, state: SessionState, writes: list[tuple[str, str]], message: str) -> None:
        """Store a turn's feedback; each event names its source: the session, the turn and the message."""
        catalog = self.catalog_info().name
        source = f"{state.session_id} turn {state.turns}: {message}"
        for item, kind in writes:
            self.store.record(catalog, state.feedback_key, item, kind, source)  # type: ignore[arg-type]

    def _clarify(self, state: SessionState, listen: Listeners | None) -> Reply:
        info = self.catalog_info()
        if not state.asked_clarification:
            state.asked_clarification = True
            popular = self.titles.title_of(self.recommender.popular(1)[0])
            return Reply(session_id=state.session_id, intent="clarify",
                         text=CLARIFY.format(noun=info.item_noun, example=popular))
        note = f"Here are popular {info.item_noun_plural} to start from; tell me which you like."
        return self._recommend(state, "recommend", listen, popular=True, note=note)

    def _recommend(self, state: SessionState, intent: str, listen: Listeners | None,
                   popular: bool = False, note: str | None = None) -> Reply:
        request = self._request(state, popular)
        clash = self._conflict(state, request)
        if clash is not None:  # the constraints cannot fill an answer: say which to relax, show what fits
            intent, note = "conflict", " ".join(n for n in (clash, note) if n)
        if listen is None:
            return self._listing(state, intent, self.recommender.run(request), note)
        run = self.recommender.run(request, lambda quick: listen.first(self._listing(state, intent, quick, note)),
                                   listen.reason)
        return self._listing(state, intent, run, note)

    def _request(self, state: SessionState, popular: bool = False) -> RecommendRequest:
        """What the session asks for now (popular items allowed when asked, or when only filters were given:
        "only comedies")."""
        only_filters = not (state.user_id or state.liked or state.query or state.anchors)  # "Tom Hanks movies"
        return state.request(self.settings.k, allow_popular=popular or only_filters)

    def _listing(self, state: SessionState, intent: str, run: Run, note: str | None) -> Reply:
        """The reply showing an answer; what it shows becomes the session's latest list."""
        result = run.result
        ids = [r.item_id for r in result.recommendations]
        state.shown += [i for i in ids if i not in state.shown]
        state.last = ids
        state.focus = None
        if ids:
            text = "\n".join(f"{r.rank}. {r.title} \u2014 {r.reason}" for r in result.recommendations)
        elif note:
            text = ""
        else:
            text = "Nothing left that fits these filters: try /filters and /reset, or loosen a filter."
        text = "\n".join(t for t in (note, text) if t)
        return Reply(session_id=state.session_id, intent=intent, text=text,
                     recommendations=result, filters=state.describe(),
                     debug=self._debug(run) if self.debug else None)

    def _why(self, state: SessionState, item_id: str) -> Reply:
        c = self.recommender.evidence_for(item_id, state.request())
        state.focus = item_id
        genres = ", ".join(c.genres) or "no genre listed"
        facts = "; ".join(c.facts) if c.facts else "no facts tie it to your history yet"
        text = f"{c.title} ({genres}): {c.why} Evidence: {facts}."
        return Reply(session_id=state.session_id, intent="why", text=text, explained_item=item_id,
                     filters=state.describe())

    def _debug(self, run: Run) -> dict[str, Any]:
        return {"routes": self.recommender.routes().describe(), "calibration": run.result.calibration,
                "messages": run.messages,
                "candidates": [{"item_id": c.item_id, "title": c.title, **c.scores.model_dump()}
                               for c in run.candidates],
                "timings_ms": run.result.timings_ms.model_dump()}

    def reload_templates(self) -> Prompts:
        """Re-read the prompt folder (the REPL's /template reload)."""
        return self.recommender.reload_templates()
