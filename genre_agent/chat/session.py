"""What a conversation remembers: who the user is, what they liked, their filters, what was shown."""

from __future__ import annotations

import secrets

from pydantic import BaseModel, Field

from genre_agent.retrieval.candidates import Rules


class SessionState(BaseModel):
    session_id: str
    pseudonym: str = Field(default_factory=lambda: f"anon-{secrets.token_hex(4)}",
                           description="stands in for the user id in prompts and feedback of new users")
    user_id: str | None = None
    liked: list[str] = []
    disliked: list[str] = []
    seen: list[str] = []
    include_genres: list[str] = []
    exclude_genres: list[str] = []
    year_min: int | None = None
    year_max: int | None = None
    query: str | None = Field(None, description="soft preferences in the user's words")
    anchors: list[str] = Field([], description="items the user wants more like")
    named: list[str] = Field([], description="items the user named; never recommended back")
    shown: list[str] = []
    last: list[str] = Field([], description="the latest list shown, for 'the second one'")
    focus: str | None = Field(None, description="the item last talked about, for 'it' and 'that one'")
    asked_clarification: bool = False

    @property
    def feedback_key(self) -> str:
        return self.user_id or self.pseudonym

    def rules(self) -> Rules:
        return Rules(include_genres=list(self.include_genres), exclude_genres=list(self.exclude_genres),
                     year_min=self.year_min, year_max=self.year_max,
                     exclude_items=set(self.disliked) | set(self.seen) | set(self.shown) | set(self.liked)
                     | set(self.anchors) | set(self.named))

    def reset(self) -> None:
        """Forget the conversation, keep who the user is."""
        fresh = SessionState(session_id=self.session_id, pseudonym=self.pseudonym, user_id=self.user_id)
        for name in type(self).model_fields:
            setattr(self, name, getattr(fresh, name))

    def describe_filters(self) -> list[str]:
        out = []
        if self.include_genres:
            out.append(f"only {', '.join(self.include_genres)}")
        if self.exclude_genres:
            out.append(f"no {', '.join(self.exclude_genres)}")
        if self.year_min is not None:
            out.append(f"from {self.year_min}")
        if self.year_max is not None:
            out.append(f"up to {self.year_max}")
        if self.query:
            out.append(f'wants: "{self.query}"')
        return out
