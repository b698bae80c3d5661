"""What a ranker learns from, gathered request by request (`genre-agent fit`'s histories and conversations)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Examples:
    """What a ranker learns from: feature rows of every feature (`NAMES`), grouped by request."""

    X: np.ndarray  # features, one row per (request, item)
    y: np.ndarray  # relevance: 1 for an answer of the request
    groups: np.ndarray  # rows per request, in order
    sources: int  # users (histories) or conversations they come from


class Collector:
    """The requests' candidates, their features and labels, kept only when an answer is among them: a pool
    without one teaches nothing."""

    def __init__(self) -> None:
        self._X: list[np.ndarray] = []
        self._y: list[np.ndarray] = []

    def add(self, features: np.ndarray, labels: np.ndarray) -> bool:
        """Keep one request's rows (features, and labels: 1 for an answer) if any is an answer; whether kept."""
        if not labels.any():
            return False
        self._X.append(features)
        self._y.append(labels)
        return True

    def __len__(self) -> int:
        """Requests kept."""
        return len(self._y)

    def build(self, sources: int) -> Examples:
        """The kept requests as examples, from `sources` users or conversations."""
        return Examples(np.vstack(self._X), np.concatenate(self._y), np.array([len(y) for y in self._y]),
                        sources)
