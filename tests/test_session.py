"""The conversation's memory on its own: how an update changes it and what it asks for (no catalog, no model)."""

from __future__ import annotations

from genre_agent.chat.session import SessionState, StateUpdate
from genre_agent.filters import Filters


def test_feedback_moves_an_item_to_one_list_and_focuses_it() -> None:
    state = SessionState(session_id="s", liked=["1", "2"])
    state.apply(StateUpdate(dislike=["1"]))
    assert (state.liked, state.disliked, state.focus) == (["2"], ["1"], "1")
    state.apply(StateUpdate(like=["2"], seen=["1", "3"]))
    assert (state.liked, state.disliked, state.seen) == (["2"], [], ["1", "3"])
    assert state.focus == "3"


def test_anchors_accumulate_and_take_the_focus() -> None:
    state = SessionState(session_id="s", anchors=["1", "2"])
    state.apply(StateUpdate(like=["4"], anchors=["2", "3"]))
    assert state.anchors == ["1", "2", "3"] and state.focus == "3" and state.liked == ["4"]
    state.apply(StateUpdate())
    assert state.anchors == ["1", "2", "3"]


def test_filters_are_revised_and_the_descriptive_words_accumulate() -> None:
    state = SessionState(session_id="s")
    state.apply(StateUpdate(filters=Filters(exclude_genres=["Horror"], year_min=2000), query="heist"))
    state.apply(StateUpdate(filters=Filters(include_genres=["Horror"], year_min=1980)))
    assert state.filters == Filters(include_genres=["Horror"], year_min=1980)
    assert state.query == "heist"
    state.apply(StateUpdate(query="space opera"))
    assert state.query == "heist space opera" and state.filters.include_genres == ["Horror"]
    state.apply(StateUpdate(query=" ".join(f"w{n}" for n in range(20))))
    assert state.query == " ".join(f"w{n}" for n in range(8, 20))  # the latest twelve words


def test_describe_lists_filters_then_the_wish() -> None:
    state = SessionState(session_id="s", query="heist",
                         filters=Filters(include_genres=["Comedy"], exclude_genres=["Horror", "War"],
                                         year_min=1990, year_max=1999))
    assert state.describe() == ["only Comedy", "no Horror, War", "from 1990", "up to 1999", 'wants: "heist"']
    assert SessionState(session_id="s").describe() == []


def test_the_request_never_brings_back_disliked_seen_shown_or_named_items() -> None:
    state = SessionState(session_id="s", user_id="alice", liked=["1"], disliked=["2"], seen=["3", "2"],
                         shown=["4", "1"], anchors=["5"], query="space",
                         filters=Filters(exclude_genres=["Comedy"], year_max=2000))
    request = state.request(k=3, allow_popular=True)
    assert request.filters == Filters(exclude_genres=["Comedy"], year_max=2000,
                                      exclude_items=["2", "3", "4", "1", "5"])
    assert (request.user_id, request.liked, request.anchors, request.query, request.k, request.allow_popular) == \
        ("alice", ["1"], ["5"], "space", 3, True)
    request.filters.exclude_genres.append("Horror")
    request.liked.append("9")
    assert state.filters.exclude_genres == ["Comedy"] and state.liked == ["1"]  # the request is a copy
    assert state.filters.exclude_items == []


def test_reset_forgets_the_conversation_but_not_the_user() -> None:
    state = SessionState(session_id="s", user_id="alice", liked=["1"], query="heist",
                         filters=Filters(exclude_genres=["Horror"]), asked_clarification=True)
    pseudonym = state.pseudonym
    state.reset()
    assert state == SessionState(session_id="s", user_id="alice", pseudonym=pseudonym)
