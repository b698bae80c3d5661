"""When a person's constraints leave too little: which of them to relax, in words.

Explicit genres, years and exclusions are constraints, never preferences, so a request can ask for what the
catalog does not hold ("animated horror for toddlers"). Then the reply names the conflict and, for each
constraint, how many items would fit without it — never a silent empty (or short) answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from genre_agent.filters import Filters
from genre_agent.retrieval.rules import ItemMasks


@dataclass(frozen=True)
class Conflict:
    """The constraints (in words) and how many items fit them all; per constraint, how many fit without it."""

    constraints: list[str]
    fitting: int
    without: list[tuple[str, int]]  # most items first

    def describe(self, noun: str, noun_plural: str) -> str:
        """The reply's words: what cannot be had at once, and what to drop to get more."""
        asked = ", ".join(self.constraints)
        head = (f"No {noun} in the catalog fits all of: {asked}." if self.fitting == 0 else
                f"Only {self.fitting} {noun if self.fitting == 1 else noun_plural} in the catalog "
                f"{'fits' if self.fitting == 1 else 'fit'} all of: {asked}.")
        options = "; ".join(f"without {label}: {n} {noun if n == 1 else noun_plural}" for label, n in self.without)
        return f"{head} To see more, drop one of them ({options})."


def conflict(filters: Filters, masks: ItemMasks, needed: int) -> Conflict | None:
    """The conflict if the person's constraints (not what they have seen or been shown) let fewer than `needed`
    items through and dropping one of them would let more; None otherwise."""
    stated = filters.model_copy(update={"exclude_items": [], "exclude_seen": False})
    fitting = int(masks.allowed(stated, set()).sum())
    if fitting >= needed:
        return None
    without = [(label, int(masks.allowed(looser, set()).sum()))
               for label, looser in stated.without_each()]
    without = sorted([(label, n) for label, n in without if n > fitting], key=lambda ln: -ln[1])
    if not without:
        return None
    return Conflict([label for label, _ in stated.without_each()], fitting, without)
