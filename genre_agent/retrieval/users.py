"""What retrieval knows about a user: their ratings, what they have seen and liked, and this session's likes."""

from __future__ import annotations

from dataclasses import dataclass, field

from genre_agent.schemas import HistoryItem


@dataclass
class UserView:
    """What retrieval knows about a user: their ratings, seen items and liked items (best, most recent first)."""

    user_id: str | None
    row: int
    seen: set[str]
    liked: list[str]
    history: list[HistoryItem]
    session_liked: list[str] = field(default_factory=list)
    recent_liked: list[str] = field(default_factory=list)  # liked items, most recent first (the session's first)
    last_time: float | None = None  # the timestamp of the user's latest rating in the catalog
