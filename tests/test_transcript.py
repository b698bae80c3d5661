"""The line that carries an answer's shown ids through a client that keeps only the text."""

from __future__ import annotations

from genre_agent.chat.transcript import shown_in, with_shown


def test_ids_go_round_trip_whatever_they_hold() -> None:
    ids = ["10", "a b", "(x)", "tt%41", "Amélie"]
    text = with_shown("1. Aliens (1986) \u2014 a reason", ids)
    assert text == ("1. Aliens (1986) \u2014 a reason\n\n"
                    "[//]: # (genre-agent shown: 10 a%20b %28x%29 tt%2541 Am%C3%A9lie)")
    assert shown_in(text) == ids


def test_no_ids_no_line_and_the_last_line_wins() -> None:
    assert with_shown("Tell me more.", []) == "Tell me more."
    assert shown_in("1. Aliens (1986) \u2014 a reason") is None
    assert shown_in(with_shown("", [])) is None
    both = with_shown(with_shown("first", ["1"]), ["2", "3"])
    assert shown_in(both) == ["2", "3"]
    assert shown_in("said: [//]: # (genre-agent shown: 9)") is None  # only a line of its own
    assert shown_in(with_shown("", ["1"]) + "  \n") == ["1"]  # trailing spaces kept by a client
