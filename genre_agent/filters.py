"""The filters a person (or the config's standing rules) can set: one model for settings, session, CLI, HTTP
and LangChain. A leaf module: it imports nothing from the package but the error family."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from genre_agent.errors import ConfigError


def _union(first: list[str], second: list[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def _stricter(a: int | None, b: int | None, pick: Callable[[int, int], int]) -> int | None:
    return b if a is None else a if b is None else pick(a, b)


def _shortlist(a: list[str] | None, b: list[str] | None) -> list[str] | None:
    """Items on both shortlists (in the first one's order); a missing shortlist allows everything."""
    return b if a is None else a if b is None else [i for i in a if i in set(b)]


# what a person asks for (not what they leave out): the fields `latest` takes from one statement
_WISHES = ("include_genres", "require_genres", "year_min", "year_max", "people", "countries", "languages",
           "exclude_countries", "minutes_min", "minutes_max")


class Filters(BaseModel):
    """Which items may be recommended. Genre matching is case-insensitive; `where` is metadata equality."""

    model_config = ConfigDict(extra="forbid")

    exclude_seen: bool = Field(True, description="never recommend items the user already rated")
    include_genres: list[str] = Field([], description="only items with one of these genres")
    require_genres: list[str] = Field([], description="only items with every one of these genres (\"romantic "
                                      "comedy\": Comedy and Romance)")
    exclude_genres: list[str] = Field([], description="never items with one of these genres")
    year_min: int | None = Field(None, description="only items from this year on")
    year_max: int | None = Field(None, description="only items up to this year")
    where: dict[str, str] = Field({}, description="metadata equality, column -> value")
    exclude_items: list[str] = Field([], description="item ids never to recommend")
    only_items: list[str] | None = Field(None, description="a shortlist: only these item ids (what is in "
                                         "stock, the candidates an evaluation ranks)")
    years_order: Literal["older", "newer"] | None = Field(
        None, description="an order, not a filter: the best fitting items are shown oldest (or newest) first")
    people: list[str] = Field([], description="only items crediting one of these people, in any role (names "
                              "match by their words, in any order, without accents)")
    exclude_people: list[str] = Field([], description="never items crediting one of these people")
    countries: list[str] = Field([], description="only items from one of these countries or in one of "
                                 "`languages`")
    languages: list[str] = Field([], description="only items in one of these languages or from one of "
                                 "`countries`")
    exclude_countries: list[str] = Field([], description="only items whose countries are known and none of "
                                         "these (\"foreign\")")
    minutes_min: int | None = Field(None, ge=1, description="only items whose known length is at least this")
    minutes_max: int | None = Field(None, ge=1, description="only items whose known length is at most this")
    exclude_words: list[str] = Field([], description="never items whose tags or description have one of these "
                                     "words or phrases, in any of its forms (\"not dystopian\": not dystopia)")
    order: Literal["best", "hidden", "popular"] | None = Field(
        None, description="an order, not a filter: the best rated, the best rated of the little known (hidden "
        "gems) or the most popular of the items that fit come first")

    def merge(self, other: Filters) -> Filters:
        """Both at once (standing rules and a request's own): genre lists, metadata conditions and excluded
        items add up (`other` wins a `where` column both set), year bounds take the stricter value, and seen
        items are excluded unless either allows them."""
        return Filters(
            exclude_seen=self.exclude_seen and other.exclude_seen,
            include_genres=_union(self.include_genres, other.include_genres),
            require_genres=_union(self.require_genres, other.require_genres),
            exclude_genres=_union(self.exclude_genres, other.exclude_genres),
            year_min=_stricter(self.year_min, other.year_min, max),
            year_max=_stricter(self.year_max, other.year_max, min),
            where={**self.where, **other.where},
            exclude_items=_union(self.exclude_items, other.exclude_items),
            only_items=_shortlist(self.only_items, other.only_items),
            years_order=other.years_order or self.years_order,
            people=_union(self.people, other.people),
            exclude_people=_union(self.exclude_people, other.exclude_people),
            countries=_union(self.countries, other.countries),
            languages=_union(self.languages, other.languages),
            exclude_countries=_union(self.exclude_countries, other.exclude_countries),
            minutes_min=_stricter(self.minutes_min, other.minutes_min, max),
            minutes_max=_stricter(self.minutes_max, other.minutes_max, min),
            exclude_words=_union(self.exclude_words, other.exclude_words),
            order=other.order or self.order,
        )

    def revised(self, newer: Filters) -> Filters:
        """These filters after a person's newer statement: what it contradicts is dropped first (a genre
        it names moves between "only" or "required" and "no", a year bound it sets replaces the old one), then
        both apply (`merge`): required genres add up ("something funny", then "make it animated"). A genre the
        statement both includes and excludes ends up included."""
        wanted = [*newer.include_genres, *newer.require_genres]
        kept = self.model_copy(update={
            "include_genres": [g for g in self.include_genres if g not in newer.exclude_genres],
            "require_genres": [g for g in self.require_genres if g not in newer.exclude_genres],
            "exclude_genres": [g for g in self.exclude_genres if g not in wanted],
            "year_min": self.year_min if newer.year_min is None else None,
            "year_max": self.year_max if newer.year_max is None else None,
            # who and where: a newer statement says who or where now ("only the ones with Meg Ryan")
            "people": [] if newer.people else [p for p in self.people if p not in newer.exclude_people],
            "exclude_people": [p for p in self.exclude_people if p not in newer.people],
            "countries": [] if newer.countries or newer.languages or newer.exclude_countries else self.countries,
            "languages": [] if newer.countries or newer.languages or newer.exclude_countries else self.languages,
            "exclude_countries": [] if newer.countries or newer.languages else self.exclude_countries,
            "minutes_min": self.minutes_min if newer.minutes_min is None and newer.minutes_max is None else None,
            "minutes_max": self.minutes_max if newer.minutes_min is None and newer.minutes_max is None else None,
        })
        newer = newer.model_copy(update={"exclude_genres": [g for g in newer.exclude_genres if g not in wanted]})
        return kept.merge(newer)

    def latest(self, stated: Filters) -> Filters:
        """These filters with only the wishes of one statement (`stated`: genres, years, people, places, a
        length) and every exclusion kept: what a conversation asks when its earlier wishes are let go."""
        return self.model_copy(update={name: getattr(stated, name) for name in _WISHES})

    def without_each(self) -> list[tuple[str, Filters]]:
        """Each constraint a person can relax, in words, with these filters without it: every required or
        excluded genre, the "only" genres together, each year bound and each metadata condition."""
        out = [(g, self.model_copy(update={"require_genres": [r for r in self.require_genres if r != g]}))
               for g in self.require_genres]
        if self.include_genres:
            out.append((f"only {', '.join(self.include_genres)}", self.model_copy(update={"include_genres": []})))
        out += [(f"no {g}", self.model_copy(update={"exclude_genres": [e for e in self.exclude_genres if e != g]}))
                for g in self.exclude_genres]
        if self.year_min is not None:
            out.append((f"from {self.year_min}", self.model_copy(update={"year_min": None})))
        if self.year_max is not None:
            out.append((f"up to {self.year_max}", self.model_copy(update={"year_max": None})))
        out += [(f"{k} = {v}", self.model_copy(update={"where": {c: w for c, w in self.where.items() if c != k}}))
                for k, v in self.where.items()]
        if self.people:
            out.append((f"with {' or '.join(self.people)}", self.model_copy(update={"people": []})))
        if self.countries or self.languages:
            out.append((self._places(), self.model_copy(update={"countries": [], "languages": []})))
        if self.exclude_countries:
            out.append((f"not from {', '.join(self.exclude_countries)}",
                        self.model_copy(update={"exclude_countries": []})))
        if self.minutes_min is not None or self.minutes_max is not None:
            out.append((self._length(), self.model_copy(update={"minutes_min": None, "minutes_max": None})))
        out += [(f"not {w}", self.model_copy(update={"exclude_words": [x for x in self.exclude_words if x != w]}))
                for w in self.exclude_words]
        return out

    def _places(self) -> str:
        return "from " + " or ".join([*self.countries, *(f"in {lang}" for lang in self.languages)])

    def _length(self) -> str:
        low, high = self.minutes_min, self.minutes_max
        if low is not None and high is not None:
            return f"{low} to {high} minutes"
        return f"at most {high} minutes" if high is not None else f"at least {low} minutes"

    def describe(self, for_prompt: bool = False) -> list[str]:
        """The active filters in words: short for the chat, fuller for the ranking prompt (which is also
        told that already-rated items are excluded)."""
        only = "only genres: " if for_prompt else "only "
        said = [
            (for_prompt and self.exclude_seen, "already-rated items are excluded"),
            (bool(self.include_genres), f"{only}{', '.join(self.include_genres)}"),
            (bool(self.require_genres), f"{'all of: ' if for_prompt else ''}{' and '.join(self.require_genres)}"),
            (bool(self.exclude_genres), f"no {', '.join(self.exclude_genres)}"),
            (self.year_min is not None and self.year_min == self.year_max, f"from {self.year_min} only"),
            (self.year_min is not None and self.year_min != self.year_max,
             f"from {self.year_min}{' on' if for_prompt else ''}"),
            (self.year_max is not None and self.year_min != self.year_max, f"up to {self.year_max}"),
            (self.only_items is not None and not for_prompt, f"only {len(self.only_items or [])} listed items"),
            (self.years_order is not None, f"{self.years_order} first"),
            (bool(self.people), f"with {' or '.join(self.people)}"),
            (bool(self.exclude_people), f"no {', '.join(self.exclude_people)}"),
            (bool(self.countries or self.languages), self._places()),
            (bool(self.exclude_countries), f"not from {', '.join(self.exclude_countries)}"),
            (self.minutes_min is not None or self.minutes_max is not None, self._length()),
            (bool(self.exclude_words), "not " + ", ".join(self.exclude_words)),
            (self.order is not None, {"best": "best rated first", "hidden": "hidden gems first",
                                      "popular": "most popular first"}.get(self.order or "", "")),
        ]
        return [text for active, text in said if active] + [f"{k} = {v}" for k, v in self.where.items()]

    def wants(self) -> bool:
        """Whether these filters name something to recommend from (genres, years, people, places, a length or
        an order: "Tom Hanks movies", "best movies of 2015"), not only what to leave out."""
        return bool(self.include_genres or self.require_genres or self.year_min is not None or
                    self.year_max is not None or self.people or self.countries or self.languages or
                    self.exclude_countries or self.minutes_min is not None or self.minutes_max is not None or
                    self.order)

    def states_wish(self) -> bool:
        """Whether these filters say what is wanted (`wants`) or what is not (genres, people or words denied,
        an order by year), not only what was seen."""
        return self.wants() or bool(self.exclude_genres or self.years_order or self.exclude_people or
                                    self.exclude_words)

    def check_columns(self, columns: Iterable[str]) -> None:
        """Raise ConfigError if `where` names a column the items do not have."""
        known = list(columns)
        missing = [c for c in self.where if c not in known]
        if missing:
            raise ConfigError(f"where: no item column {missing[0]!r}; use one of the catalog's columns: "
                              f"{', '.join(known)}.")
