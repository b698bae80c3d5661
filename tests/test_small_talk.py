"""Small talk is not a request (issue 38): greetings, thanks, questions to the recommender, talk about one's day
and the names the two use for each other stay out of the query; genres listed as tastes across messages are
one of them, not all at once. Read by the rules against the shipped MovieLens catalog, over several turns."""

from __future__ import annotations

from genre_agent.chat.genres import GenreWords
from genre_agent.chat.smalltalk import small_talk
from genre_agent.chat.titles import TitleIndex

from helpers import talk


def said(message: str) -> list[str]:
    return [message.lower()[b:e].strip() for b, e in small_talk(message, message.lower())]


def test_greetings_names_and_questions_to_the_recommender_are_small_talk() -> None:
    assert said("Hi, I'm Erica!") == ["hi", "erica"]
    assert said("Hello Bob. How are you?") == ["hello", "bob", "how are you?"]
    assert said("I'm doing great, thanks. What kind of movies do you like?") == [
        "i'm doing great, thanks.", "what kind of movies do you like?"]
    assert said("I had a long day at work.") == ["i had a long day at work."]
    # what asks for something stays
    assert said("Do you have any good horror movies?") == []
    assert said("I'm looking for a comedy") == []
    assert said("I had a long day, I want something funny") == []


def test_the_day_and_the_names_stay_out_of_the_query(movielens: tuple[TitleIndex, GenreWords]) -> None:
    state = talk(movielens, "Hi! I'm Erica, how are you today?", "I'm good, had a busy day at work.",
                 "Can you help me? I saw a trailer for something suspenseful and mysterious.")
    assert state.query is not None
    assert set(state.query.split()) == {"suspenseful", "mysterious"}


def test_genres_listed_as_tastes_are_one_of_them(movielens: tuple[TitleIndex, GenreWords]) -> None:
    state = talk(movielens, "I generally like comedy, drama and documentaries.",
                 "I like some action, just not too violent.")
    assert sorted(state.filters.include_genres) == ["Action", "Comedy", "Documentary", "Drama"]
    assert state.filters.require_genres == []
    assert "Action" not in state.filters.exclude_genres


def test_a_taste_stated_after_a_genre_asked_joins_it(movielens: tuple[TitleIndex, GenreWords]) -> None:
    state = talk(movielens, "I like comedy", "I also like drama and documentaries")
    assert sorted(state.filters.include_genres) == ["Comedy", "Documentary", "Drama"]
    assert state.filters.require_genres == []


def test_genres_written_together_are_still_one_kind(movielens: tuple[TitleIndex, GenreWords]) -> None:
    assert sorted(talk(movielens, "I love romantic comedies").filters.require_genres) == ["Comedy", "Romance"]
    assert sorted(talk(movielens, "a comedy, then make it animated", ).filters.require_genres) == [
        "Animation", "Comedy"]


def test_not_too_violent_is_a_degree(movielens: tuple[TitleIndex, GenreWords]) -> None:
    assert talk(movielens, "I like action, just not too violent").filters.exclude_genres == ["Horror"]
    assert sorted(talk(movielens, "an action movie with no violence").filters.exclude_genres) == [
        "Crime", "Horror", "War"]


def test_genres_are_never_names_and_a_question_about_genres_stays(
        movielens: tuple[TitleIndex, GenreWords]) -> None:
    assert talk(movielens, "Hello Action movies can you give me two suggestions ?").filters.require_genres == [
        "Action"]
    assert talk(movielens, "Do you like comedies? I love them.").filters.require_genres == ["Comedy"]


def test_a_title_written_with_its_year_is_named_even_beside_one_the_catalog_lacks(
        movielens: tuple[TitleIndex, GenreWords]) -> None:
    titles, _ = movielens
    state = talk(movielens, "I like sports comedies like Slap Shot (1977) and Semi-Tough (1977)")
    assert "Slap Shot (1977)" in [titles.title_of(i) for i in state.named]
    state = talk(movielens, "any movies that are about college? I liked Animal House (1978) and Van Wilder (2002)")
    assert "Animal House (1978)" in [titles.title_of(i) for i in state.named]
