"""The conversational agent: sessions, understanding, recommendations, explanations and feedback."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from genre_agent.chat.reading import Reader, has_taste
from genre_agent.chat.replies import Listeners, Reply, debug_of, listing, why
from genre_agent.chat.session import SessionState, StateUpdate
from genre_agent.chat.sessions import Sessions
from genre_agent.chat.titles import TitleIndex
from genre_agent.chat.transcript import REVISED as REVISED
from genre_agent.chat.transcript import ShownReader
from genre_agent.chat.turn import Writes, run_turn
from genre_agent.data.feedback import Store, open_store
from genre_agent.errors import TurnCancelled
from genre_agent.filters import Filters
from genre_agent.llm.backends import Backend
from genre_agent.llm.prompts import Prompts
from genre_agent.pipeline import Progress, Recommender, Run, has_stored_feedback
from genre_agent.sanitize import clean_message
from genre_agent.schemas import CatalogInfo, Recommendation, Recommendations, RecommendRequest
from genre_agent.settings import Settings, load_settings

# told a turn's finished session and its count of feedback rows: whether to store them (raises: keep nothing)
Commit = Callable[[SessionState, int], bool]
LIVE = "The model's reasons, as it writes them:"  # each line "N. Title — reason", N its place in the list above
ANSWERED = ("recommend", "refine", "feedback", "more", "other")  # the intents a list answers (with taste)
CLARIFY = ("Tell me a little about your taste first: name a {noun} you loved, a genre, or a mood "
           "(for example \u201cI loved {example}, no horror please\u201d).")


class Agent:
    """Thread-safe: each session has its own (re-entrant) lock; the LLM backend serialises its own calls."""

    def __init__(self, recommender: Recommender, store: Store) -> None:
        self.recommender = recommender
        self.store = store
        catalog = recommender.catalog
        self.titles = TitleIndex(catalog.items, catalog.interactions.groupby("item_id").size())
        self.reader = Reader(recommender, self.titles)
        self.genres = self.reader.genres
        self.sessions = Sessions(self.set_user)
        self._shown = ShownReader(self.titles, catalog.items)  # what an earlier answer showed, from its text
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
        return self.sessions.entry(session_id, user)[0]

    def held(self, session_id: str) -> AbstractContextManager[SessionState]:
        """The session with its lock held: its other turns in this process wait until the block ends (what
        reads a session from a shared store, runs a turn and writes it back does)."""
        return self.sessions.held(session_id)

    def session_ids(self) -> list[str]:
        """The sessions this process holds in memory."""
        return self.sessions.ids()

    def forget(self, session_id: str) -> None:
        """Drop a session and everything it remembers (the server's expiry and its one-request sessions)."""
        self.sessions.forget(session_id)

    def restore(self, session_id: str, history: list[tuple[str, str]], user: str | None = None) -> None:
        """Rebuild a session from an earlier conversation of (role, text) pairs, as a stateless HTTP request
        carries it: user turns are read by the rules alone (no model call, no feedback stored again) and what
        an assistant turn showed is what its ids line names (`transcript.with_shown`), else its numbered list."""
        state, lock = self.sessions.entry(session_id, user)
        with lock:
            for role, text in history:
                if role == "assistant":
                    ids = self._shown(text)
                    if ids:
                        state.last = ids
                        state.shown += [i for i in ids if i not in state.shown]
                elif role == "user":
                    update = self.reader.rules(state, clean_message(text))
                    if update.intent == "reset":
                        state.reset()
                        continue
                    self._apply(state, update, [])

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
        update = self.reader.read(state, clean_message(plain.query))
        if update.intent not in ANSWERED:
            return plain, None
        self._apply(state, update, [])
        state.filters = state.filters.merge(given)
        if not has_taste(state):
            return plain, None
        notes = self.reader.notes(state, update)
        read = self.reader.request(state)
        request = read.model_copy(update={"k": k or read.k, "prompts": prompts})
        said = [n for n in (self.reader.conflict(state, request), notes) if n]
        return request, " ".join(said) or None

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
        """One turn of a conversation: update the session from the message, then answer (`turn.run_turn`:
        what `cancel`, `on_first` and `on_reason` do). With `commit`, it is told the finished session and how
        many feedback rows the turn would store, before anything is kept: it returns whether they go to the
        store (the session uses them either way), or raises to keep nothing of the turn (the server's session
        write, its budgets)."""
        state, lock = self.sessions.entry(session_id, user)
        message = clean_message(message)

        def keep(working: SessionState, writes: Writes) -> None:
            if commit is None or commit(working, len(writes)):
                self._store(working, writes, message)

        with lock:
            return run_turn(state, lambda working, writes, listen: self._turn(working, message, writes, listen),
                            keep, cancel=cancel, on_first=on_first, on_reason=on_reason)

    def explain(self, session_id: str, item_id: str) -> Reply:
        """Why an item fits this session's user, from its metadata and the user's history."""
        state, lock = self.sessions.entry(session_id)
        with lock:
            return self._why(state, item_id)

    def feedback(self, session_id: str, item_id: str, kind: str, cancel: threading.Event | None = None,
                 commit: Commit | None = None) -> Reply:
        """Record like / dislike / seen on an item (what `/like N` does); nothing if `cancel` is set first.
        `commit` decides whether it goes to the store, as in `chat` (the session takes it either way)."""
        state, lock = self.sessions.entry(session_id)
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
        state, lock = self.sessions.entry(session_id)
        with lock:
            working = state.model_copy(deep=True)
            update = self.reader.read(working, clean_message(message))
            if update.intent not in ANSWERED:
                return None
            self._apply(working, update, [])
            self.reader.ease(working, update)
            return self.reader.request(working) if has_taste(working) else None

    def _turn(self, state: SessionState, message: str, writes: list[tuple[str, str]],
              listen: Listeners | None = None) -> Reply:
        update = self.reader.read(state, message)
        if update.intent == "reset":
            state.reset()
            return Reply(session_id=state.session_id, intent="reset", text="Starting over: preferences cleared.")
        if update.intent == "why" and update.why:
            return self._why(state, update.why)
        self._apply(state, update, writes)
        if not has_taste(state):
            return self._clarify(state, listen)  # e.g. only a disliked title: nothing to recommend from yet
        if update.intent in ANSWERED:
            eased = self.reader.ease(state, update)
            said = " ".join(n for n in (eased, self.reader.notes(state, update)) if n) or None
            return self._recommend(state, update.intent, listen, note=said)
        return Reply(session_id=state.session_id, intent=update.intent, text="Noted.",
                     filters=state.describe())

    def _apply(self, state: SessionState, update: StateUpdate, writes: list[tuple[str, str]]) -> None:
        """Let the session take in the update (what the catalog cannot check is dropped and said: `settle`); its
        feedback rows (item, kind) go to `writes`, stored by the caller once the turn is not cancelled."""
        writes.extend((item, kind) for kind, item in update.feedback())
        state.apply(update)
        self.reader.settle(state, update)

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
        request = self.reader.request(state, popular)
        clash = self.reader.conflict(state, request)
        if clash is not None:  # the constraints cannot fill an answer: say which to relax, show what fits
            intent, note = "conflict", " ".join(n for n in (clash, note) if n)
        if listen is None:
            return self._listing(state, intent, self.recommender.run(request), note)
        run = self.recommender.run(request, lambda quick: listen.first(self._listing(state, intent, quick, note)),
                                   listen.reason)
        return self._listing(state, intent, run, note)

    def _listing(self, state: SessionState, intent: str, run: Run, note: str | None) -> Reply:
        debug = debug_of(run, self.recommender.routes().describe()) if self.debug else None
        return listing(state, intent, run, note, debug)

    def _why(self, state: SessionState, item_id: str) -> Reply:
        return why(state, self.recommender.evidence_for(item_id, state.request()))

    def reload_templates(self) -> Prompts:
        """Re-read the prompt folder (the REPL's /template reload)."""
        return self.recommender.reload_templates()
