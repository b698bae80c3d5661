"""Hand-made candidates for tests that need no catalog, a conversation read by the rules, and waiting for a
condition."""

from __future__ import annotations

import time
from collections.abc import Callable

from genre_agent.chat.genres import GenreWords
from genre_agent.chat.people import PeopleIndex
from genre_agent.chat.session import SessionState
from genre_agent.chat.titles import TitleIndex
from genre_agent.chat.understanding import parse_rules
from genre_agent.schemas import Candidate, Evidence, Scores

NEWEST = 2018  # the shipped MovieLens catalog's newest year: what "recent" and "classic" count from


def candidate(item_id: str, title: str, genres: list[str], *, similar: str = "Alien (1979)",
              tags: list[str] | None = None, year: int | None = 1986) -> Candidate:
    evidence = Evidence(shared_genres=genres[:1], similar_liked=[similar], fans_also_liked=[],
                        tags=tags or [], liked_by=10)
    return Candidate(item_id=item_id, title=title, genres=genres, year=year, tags=tags or [],
                     scores=Scores(vector=0.5, cf=0.1, fused=1.0), evidence=evidence,
                     facts=[f"like {similar} (user liked)"],
                     why=f"Close to {similar}, which you rated highly; {genres[0]} like your favourites.")


CANDIDATES = [
    candidate("10", "Aliens (1986)", ["Sci-Fi", "Action"]),
    candidate("20", "Predator (1987)", ["Action", "Sci-Fi"], similar="Terminator, The (1984)", year=1987),
    candidate("30", "Big (1988)", ["Comedy"], similar="Splash (1984)", tags=["tom hanks"], year=1988),
]


def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    """Return once `condition()` holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def talk(movielens: tuple[TitleIndex, GenreWords], *turns: str, people: PeopleIndex | None = None) -> SessionState:
    """A session after the turns, each read by the rules (with `people`, who the catalog credits) and applied."""
    titles, genres = movielens
    state = SessionState(session_id="s")
    for turn in turns:
        state.apply(parse_rules(turn, state, genres, titles, newest=NEWEST, people=people))
    return state
