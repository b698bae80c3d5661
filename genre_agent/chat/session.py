"""What a conversation remembers (who the user is, what they liked, their filters, what was shown) and how
one message's update changes it."""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import BaseModel, Field

from genre_agent.filters import Filters
from genre_agent.schemas import RecommendRequest

QUERY_WORDS = 12  # the soft preferences a conversation keeps: its latest descriptive words
Intent = Literal["recommend", "refine", "why", "feedback", "more", "reset", "other"]


class StateUpdate(BaseModel):
    """What one chat message changes in the session."""

    intent: Intent = "other"
    like: list[str] = Field([], description="item ids")
    dislike: list[str] = []
    seen: list[str] = []
    anchors: list[str] = Field([], description="item ids the user wants more like")
    why: str | None = Field(None, description="item id to explain")
    filters: Filters = Field(default_factory=Filters)
    query: str | None = None
    named: list[str] = Field([], description="item ids of every title written in the message")
    replace_genres: bool = Field(False, description="the message's genres replace those asked for before "
                                 "(\"actually, a comedy instead\")")
    tastes: bool = Field(False, description="the message's genres are tastes (\"I like comedy, drama and "
                         "documentaries\"): they and the genres asked for before are one of them, not all at once")
    restate: bool = Field(False, description="the message says what is wanted now (\"... instead\", "
                          "\"actually ...\"): its words replace the earlier ones")
    notes: list[str] = Field([], description="what the reading could not place, to say in the reply (a title "
                             "or a person the catalog lacks)")

    def feedback(self) -> list[tuple[Literal["like", "dislike", "seen"], str]]:
        """(kind, item id) of every like, dislike and seen in the message."""
        return [*(("like", i) for i in self.like), *(("dislike", i) for i in self.dislike),
                *(("seen", i) for i in self.seen)]


class SessionState(BaseModel):
    session_id: str
    # 128 random bits: a new session loads the feedback stored under its pseudonym, so it must be nobody else's
    pseudonym: str = Field(default_factory=lambda: f"anon-{secrets.token_hex(16)}",
                           description="stands in for the user id in prompts and feedback of new users")
    user_id: str | None = None
    liked: list[str] = []
    disliked: list[str] = []
    seen: list[str] = []
    filters: Filters = Field(default_factory=Filters)
    query: str | None = Field(None, description="soft preferences in the user's words")
    anchors: list[str] = Field([], description="items the user wants more like")
    named: list[str] = Field([], description="items the user named; never recommended back")
    shown: list[str] = []
    last: list[str] = Field([], description="the latest list shown, for 'the second one'")
    focus: str | None = Field(None, description="the item last talked about, for 'it' and 'that one'")
    asked_clarification: bool = False
    turns: int = Field(0, description="turns taken, so each turn's feedback events have their own source")

    @property
    def feedback_key(self) -> str:
        return self.user_id or self.pseudonym

    def apply(self, update: StateUpdate) -> None:
        """Take in a message's update: feedback moves an item to its list (the item is now in focus), anchors
        and named titles accumulate, a newer filter statement revises the filters (its genres add to those
        asked for before, unless it restates them; tastes are one of them), and the descriptive words
        accumulate (the latest QUERY_WORDS of them)."""
        buckets = {"like": self.liked, "dislike": self.disliked, "seen": self.seen}
        for kind, item in update.feedback():
            for other in buckets.values():
                if item in other and other is not buckets[kind]:
                    other.remove(item)
            if item not in buckets[kind]:
                buckets[kind].append(item)
            self.focus = item
        if update.anchors:
            self.anchors = [*[a for a in self.anchors if a not in update.anchors], *update.anchors]
            self.focus = update.anchors[-1]
        self.named += [i for i in update.named if i not in self.named]
        if update.replace_genres:
            self.filters = self.filters.model_copy(update={"require_genres": [], "include_genres": []})
        if update.tastes:
            tasted = [*self.filters.include_genres, *self.filters.require_genres]
            self.filters = self.filters.model_copy(update={"include_genres": tasted, "require_genres": []})
        self.filters = self.filters.revised(update.filters)
        if update.restate and (update.query or update.filters.states_wish()):
            self.query = None  # "Nolan instead": the words asked for before no longer hold
        asked = update.filters.include_genres or update.filters.require_genres
        if update.restate and update.query and not asked:
            # "a western", then "something set in space instead": the genres asked for before go too
            self.filters = self.filters.model_copy(update={"require_genres": [], "include_genres": []})
        if update.query:
            words = [w for w in (self.query or "").split() if w not in update.query.split()]
            self.query = " ".join([*words, *update.query.split()][-QUERY_WORDS:])

    def request(self, k: int | None = None, allow_popular: bool = False) -> RecommendRequest:
        """What the conversation asks for now; items disliked, seen, already shown or named by the user (liked,
        anchors, any title they wrote) never come back."""
        never = [*self.filters.exclude_items, *self.disliked, *self.seen, *self.shown, *self.liked, *self.anchors,
                 *self.named]
        return RecommendRequest(
            user_id=self.user_id, liked=list(self.liked), anchors=list(self.anchors), query=self.query,
            filters=self.filters.model_copy(deep=True, update={"exclude_items": list(dict.fromkeys(never))}),
            k=k, allow_popular=allow_popular,
        )

    def reset(self) -> None:
        """Forget the conversation, keep who the user is."""
        self.take(SessionState(session_id=self.session_id, pseudonym=self.pseudonym, user_id=self.user_id,
                               turns=self.turns))

    def take(self, other: SessionState) -> None:
        """Become `other`, in place: every reference to this session sees the change."""
        for name in type(self).model_fields:
            setattr(self, name, getattr(other, name))

    def describe(self) -> list[str]:
        """The session's filters and wishes in words (the chat's `filters`)."""
        return self.filters.describe() + ([f'wants: "{self.query}"'] if self.query else [])
