"""What retrieval knows about a user (their ratings, what they have seen and liked, and this session's likes),
and what a CF model scores for them from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genre_agent.data.interactions import InteractionMatrix
from genre_agent.retrieval.cf import CFModel
from genre_agent.schemas import HistoryItem

ANCHOR_WEIGHT = 2.0  # how much an item the user wants "more like" counts in the CF history


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


def cf_scores(model: CFModel | None, matrix: InteractionMatrix, user: UserView, anchors: list[str] | None = None
              ) -> np.ndarray | None:
    """CF scores from the user's positives plus session likes; anchors ("more like X") count double,
    so the people who liked X steer the list. ALS scores a training user from its learnt factors."""
    if model is None or (user.row < 0 and not user.liked and not anchors):
        return None
    history = matrix.history(user.liked) if user.row < 0 else (
        matrix.matrix[[user.row]] + matrix.history(user.session_liked)).sign()
    if anchors:
        history = history + matrix.history(anchors, weight=ANCHOR_WEIGHT)
    row = user.row if not anchors else -1
    return np.asarray(model.score(np.array([row]), history)[0], dtype=np.float64)


def rated_scores(model: CFModel, rated: InteractionMatrix | None, user: UserView) -> np.ndarray | None:
    """A model of every rating's scores from every item the user rated, liked or not, or said they had
    seen (`rated`: the matrix of every rating)."""
    if rated is None or not user.seen:
        return None
    history = rated.history(sorted(user.seen))
    return np.asarray(model.score(np.array([-1]), history)[0], dtype=np.float64)
