"""The request-set judge: every constraint a request states, on the tiny catalog where the answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from genre_agent.data.catalog import load_catalog
from genre_agent.errors import ConfigError
from genre_agent.eval.requests import Judge, Request, load_requests, person_key

from conftest import TINY


@pytest.fixture(scope="module")
def judge() -> Judge:
    return Judge(load_catalog(str(TINY)).items)


def _request(**judge: object) -> Request:
    return Request(id="r", category="c", split="dev", turns=["x"], **judge)  # type: ignore[arg-type]


def _film(title: str, genres: tuple[str, ...], summary: str, people: dict[str, tuple[str, ...]],
          countries: tuple[str, ...], language: str, minutes: int | None) -> dict[str, object]:
    return {"title": title, "name": title[:-7], "year": int(title[-5:-1]), "genres": genres, "tags": (),
            "summary": summary, "description": "", "people": people, "countries": countries,
            "language": language, "minutes": minutes}


@pytest.fixture(scope="module")
def credited() -> Judge:
    """Five films whose people, places, runtimes and ratings are known; film 5 has none of those facts."""
    films = [
        _film("Seoul Revenge (2003)", ("Thriller",), "A man seeks revenge after fifteen years.",
              {"director": ("Park Chan-wook",), "cast": ("Choi Min-sik",)}, ("South Korea",), "Korean", 120),
        _film("Big Heart (1994)", ("Comedy", "Romance"), "A sad, sweet love story.",
              {"director": ("Penny Hall",), "cast": ("Tom Hanks", "Meg Ryan")}, ("United States",), "English", 95),
        _film("Dream Heist (2010)", ("Action", "Sci-Fi"), "A thief steals ideas through dreams.",
              {"director": ("Christopher Nolan",), "cast": ("Leonardo DiCaprio",)}, ("United States",
                                                                                     "United Kingdom"),
              "English", 148),
        _film("Spirited River (2001)", ("Animation", "Fantasy"), "A girl works in a bathhouse of spirits.",
              {"director": ("Hayao Miyazaki",)}, ("Japan",), "Japanese", 125),
        _film("Plain Film (2015)", ("Drama",), "", float("nan"), float("nan"), float("nan"), None),  # type: ignore[arg-type]
    ]
    items = pd.DataFrame(films, index=[str(i) for i in range(1, 6)])
    items["minutes"] = items["minutes"].astype("Int64")
    ratings = [("1", 4.5), ("1", 4.0), ("2", 3.0), ("2", 4.0), ("3", 5.0), ("3", 4.5), ("3", 4.0), ("4", 4.0)]
    interactions = pd.DataFrame([{"user_id": str(u), "item_id": i, "rating": r, "timestamp": 0}
                                 for u, (i, r) in enumerate(ratings)])
    return Judge(items, interactions)


def _fit(judge: Judge, **rule: object) -> list[str]:
    return [i for i in "12345" if judge.satisfies(_request(**rule), i)]


def test_names_match_by_tokens_whatever_the_case_accents_and_order() -> None:
    assert person_key("Park Chan-wook") == person_key("Chan Wook Park") == person_key("chan-wook PARK")
    assert person_key("Hayao Miyazaki") == person_key("Miyazaki, Hayao")
    assert person_key("Pedro Almodóvar") == person_key("pedro almodovar")
    assert person_key("Tom Hanks") != person_key("Tom Hank")


def test_people_are_credited_in_any_role_or_the_one_asked(credited: Judge) -> None:
    assert _fit(credited, people=["Chan Wook Park"]) == ["1"]
    assert _fit(credited, people=["tom hanks", "Hayao Miyazaki"]) == ["2", "4"]
    assert _fit(credited, people=["Christopher Nolan"], role="cast") == []
    assert _fit(credited, people=["Christopher Nolan"], role="director") == ["3"]
    assert _fit(credited, people=["Tom Hanks"], all_genres=["comedy"]) == ["2"]
    assert _fit(credited, exclude_people=["Leonardo DiCaprio", "Meg Ryan"]) == ["1", "4", "5"]


def test_countries_languages_and_runtime_need_the_fact(credited: Judge) -> None:
    assert _fit(credited, countries=["south korea", "japan"]) == ["1", "4"]
    assert _fit(credited, exclude_countries=["united states"]) == ["1", "4"]  # film 5's countries are unknown
    assert _fit(credited, countries=["united kingdom"], genres=["action"]) == ["3"]
    assert _fit(credited, languages=["japanese"]) == ["4"]
    assert _fit(credited, minutes_max=120) == ["1", "2"]  # film 5's runtime is unknown: it fits no bound
    assert _fit(credited, minutes_min=121) == ["3", "4"]


def test_excluded_words_and_ratings(credited: Judge) -> None:
    assert _fit(credited, exclude_words=["sad", "reveng"]) == ["3", "4", "5"]
    assert _fit(credited, min_mean_rating=4.2) == ["1", "3"]
    assert _fit(credited, min_mean_rating=4.2, min_ratings=3) == ["3"]
    assert _fit(credited, max_ratings=1) == ["4", "5"]


def test_a_missing_title_counts_only_when_the_reply_names_it(credited: Judge) -> None:
    parasite = _request(countries=["south korea"], missing_titles=["Parasite (2019)"])
    assert credited.share(parasite, ["1"], conflict_named=False, reply_text="Here is a thriller.") == 0.0
    said = "Parasite is not in this catalog; here is a Korean thriller."
    assert credited.share(parasite, ["1", "2"], conflict_named=False, reply_text=said) == 0.1


def test_a_fact_the_catalog_does_not_hold_satisfies_nothing(judge: Judge) -> None:
    assert [i for i in "123456" if judge.satisfies(_request(people=["Tom Hanks"]), i)] == []
    assert [i for i in "123456" if judge.satisfies(_request(minutes_max=500), i)] == []
    assert len([i for i in "123456" if judge.satisfies(_request(exclude_people=["Tom Hanks"]), i)]) == 6


def test_what_would_pass_or_fail_for_nothing_is_refused(credited: Judge) -> None:
    for rule, message in [({"people": ["Tom Hank"]}, "'Tom Hank' is credited for no item"),
                          ({"countries": ["korea"]}, "'korea' is the country of no item"),
                          ({"role": "actor", "people": ["Tom Hanks"]}, "role 'actor' is not one of"),
                          ({"minutes_min": 120, "minutes_max": 90}, "minutes_min is above minutes_max"),
                          ({"missing_titles": ["Big Heart"]}, "'Big Heart' is in this catalog"),
                          ({"missing_titles": ["Big Heart (1994)"]}, "'Big Heart \\(1994\\)' is in this")]:
        with pytest.raises(ConfigError, match=message):
            credited.check(_request(**rule))
    credited.check(_request(missing_titles=["Big Heart (2020)"], people=["chan-wook park"]))


def test_every_stated_constraint_must_hold(judge: Judge) -> None:
    pair = _request(all_genres=["sci-fi", "comedy"])
    assert [i for i in "123456" if judge.satisfies(pair, i)] == ["6"]  # Deep Space Comedy only
    years = _request(genres=["comedy"], year_min=1996)
    assert [i for i in "123456" if judge.satisfies(years, i)] == ["4", "6"]
    no_horror = _request(exclude_genres=["horror"], year_max=1990)
    assert [i for i in "123456" if judge.satisfies(no_horror, i)] == ["1"]
    not_back = _request(genres=["sci-fi"], exclude_titles=["Star Quest (1990)"])
    assert [i for i in "123456" if judge.satisfies(not_back, i)] == ["2", "6"]


def test_share_counts_the_top_ten_and_a_conflict_only_by_the_reply(judge: Judge) -> None:
    assert judge.share(_request(all_genres=["comedy"]), ["3", "4", "5"], conflict_named=False) == 0.2
    impossible = _request(conflict=True)
    assert judge.share(impossible, ["3", "4"], conflict_named=False) == 0.0
    assert judge.share(impossible, [], conflict_named=True) == 1.0


def test_a_title_the_catalog_lacks_or_a_request_without_checks_is_refused(judge: Judge, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'Star Quest' is not a title of this catalog"):
        judge.check(_request(exclude_titles=["Star Quest"]))
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": "x", "turns": ["hi"], "judge": {}}) + "\n")
    with pytest.raises(ConfigError, match="line 1: a request needs turns and something to judge by"):
        load_requests(path)


def test_the_shipped_intent_set_loads_and_holds_a_third_out() -> None:
    requests = load_requests(Path(__file__).parent / "data" / "requests" / "intents.jsonl")
    assert len(requests) >= 150
    categories = {r.category for r in requests}
    assert categories == {"genre", "genre pair", "era", "mood", "like X", "negation", "seen", "refinement",
                          "conflict"}
    for category in categories:
        inside = [r for r in requests if r.category == category]
        assert sum(r.split == "test" for r in inside) == len(inside) // 3


@pytest.mark.parametrize(("name", "total", "least"), [
    ("open.jsonl", 100, {"people": 20, "places": 14, "negation/contrast": 16, "quality": 14, "length": 12,
                    "title resolution": 10, "replacement": 12}),
    ("open-books.jsonl", 12, {"people": 5, "negation/contrast": 4, "quality": 4, "title resolution": 3,
                          "replacement": 3})])
def test_the_shipped_open_sets_load_and_hold_a_third_out(name: str, total: int, least: dict[str, int]) -> None:
    requests = load_requests(Path(__file__).parent / "data" / "requests" / name)
    assert len(requests) >= total
    assert {r.category for r in requests} == set(least)
    for category, fewest in least.items():
        inside = [r for r in requests if r.category == category]
        assert len(inside) >= fewest
        assert [r.split for r in inside] == ["test" if n % 3 == 0 else "dev" for n in range(1, len(inside) + 1)]
    assert all(len(r.turns) >= 2 for r in requests if r.category == "replacement")
    assert len({r.id for r in requests}) == len(requests)
