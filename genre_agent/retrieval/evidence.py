"""Evidence that ties a candidate to a user, as facts for the prompt and as a plain fallback reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from genre_agent.data.credits import credited, name_key
from genre_agent.data.descriptions import sentences
from genre_agent.filters import Filters
from genre_agent.schemas import Evidence

SIMILAR_MIN = 0.45  # cosine of item texts below which "similar to" is not claimed
COLIKED_MIN = 0.15  # co-rating cosine below which "fans of X also liked it" is not claimed
# Cosine of the request's words and a described item's text from which it "fits" the request: among the 60
# nearest described items of each themed dev request (tests/data/requests), 81% of those at >= 0.40 satisfy the
# request's rule (40% of the satisfying ones reach it); at 0.35, 73%.
FITS_MIN = 0.40


def favourite_genres(liked_genres: list[tuple[str, ...]]) -> Counter[str]:
    return Counter(g for genres in liked_genres for g in genres)


def gather(
    genres: tuple[str, ...],
    tags: tuple[str, ...],
    favourites: Counter[str],
    liked_titles: list[str],
    text_sims: np.ndarray,
    colike_sims: np.ndarray,
    query_similarity: float | None,
    liked_by: int,
    year: int | None = None,
    liked_years: list[int] | None = None,
    noun_plural: str = "items",
    matched: list[str] | None = None,
    fits: bool = False,
    summary: str = "",
    talked_with: list[str] | None = None,
) -> Evidence:
    """Evidence for one candidate. `text_sims` and `colike_sims` align with `liked_titles`; `matched` are the
    request's needs the item carries, `fits` whether it fits the request, `summary` what it is about,
    `talked_with` the request's titles that conversations often mention beside it."""
    shared = sorted((g for g in genres if g in favourites), key=lambda g: (-favourites[g], g))
    return Evidence(
        drawbacks=drawbacks(genres, favourites, year, liked_years or [], liked_by, noun_plural),
        shared_genres=shared[:3],
        similar_liked=_top_titles(liked_titles, text_sims, SIMILAR_MIN),
        fans_also_liked=_top_titles(liked_titles, colike_sims, COLIKED_MIN),
        talked_with=(talked_with or [])[:2],
        tags=list(tags[:3]),
        query_similarity=None if query_similarity is None else round(float(query_similarity), 3),
        matched=matched or [], fits=fits, about=about(summary) if summary else None,
        liked_by=liked_by,
    )


ABOUT_CHARS = 90  # the opening of a summary that evidence quotes: one clause, room left for other facts


# words a quote does not end on before its "…" ("traveling to…", "the other criminals are…")
_DANGLING = frozenset("""a an the and or but nor so if because whether of to in on at by for with from into onto as
than that which who whom whose when while where after before about through over under during against between
without within upon across behind towards toward his her its their our your my is are was were be been being has
have had do does did not he she they it we you i this these those""".split())


def about(summary: str) -> str:
    """The opening of a summary, at most ABOUT_CHARS, without a closing full stop: its first sentence when that
    fits; else cut after a clause (",", ";", a dash) that keeps three quarters of it, or else at a word that is not
    left dangling ("to", "the", "are"), with "…"."""
    if len(summary) <= ABOUT_CHARS:
        return summary.rstrip(".")
    first = sentences(summary)[0]
    if len(first) <= ABOUT_CHARS:
        return first.rstrip(".")
    head = summary[: ABOUT_CHARS]
    clause = max(head.rfind(mark) for mark in (", ", "; ", " \u2013 ", " \u2014 "))
    if clause >= ABOUT_CHARS * 3 // 4:
        return head[:clause].rstrip(" ,;:.") + "\u2026"
    words = summary[: ABOUT_CHARS - 1].split(" ")
    if summary[ABOUT_CHARS - 1] != " " and len(words) > 1:
        words.pop()  # a word cut in two
    while len(words) > 1 and words[-1].strip(",;:.\"'").lower() in _DANGLING:
        words.pop()
    return " ".join(words).rstrip(" ,;:.") + "\u2026"


FEW_FANS = 5  # fewer users than this rating an item highly is worth a caveat
RARE_GENRE = 0.03  # a genre below this share of the genre mentions of the liked items is "rare" for them
YEARS_APART = 20  # a candidate this much older or newer than the user's median liked year gets a caveat


def drawbacks(genres: tuple[str, ...], favourites: Counter[str], year: int | None, liked_years: list[int],
              liked_by: int, noun_plural: str) -> list[str]:
    """Honest caveats from the same data as the evidence: unfamiliar genres, an unusual era, few fans."""
    out = []
    liked = sum(favourites.values())
    rare = [g for g in genres if favourites[g] < RARE_GENRE * liked]
    if favourites and rare:
        out.append(f"{', '.join(rare[:2])}: rare among the {noun_plural} you liked")
    if year and liked_years:
        median = int(np.median(liked_years))
        if year <= median - YEARS_APART:
            out.append(f"older ({year}) than most {noun_plural} you liked (around {median})")
        elif year >= median + YEARS_APART:
            out.append(f"newer ({year}) than most {noun_plural} you liked (around {median})")
    if liked_by < FEW_FANS:
        out.append(f"few ratings to go on: {liked_by} user{'s' if liked_by != 1 else ''} rated it highly")
    return out


def _top_titles(titles: list[str], sims: np.ndarray, floor: float, n: int = 2) -> list[str]:
    if len(titles) == 0:
        return []
    order = np.argsort(-sims, kind="stable")[:n]
    return [titles[i] for i in order if sims[i] >= floor]


def colike_cosine(positives: sp.csr_matrix, liked_cols: np.ndarray, cand_cols: np.ndarray) -> np.ndarray:
    """Cosine of item columns over users' positives: shape (candidates, liked)."""
    X = positives.tocsc()
    A = X[:, cand_cols].astype(np.float64)
    B = X[:, liked_cols].astype(np.float64)
    dots = (A.T @ B).toarray()
    na = np.sqrt(np.asarray(A.multiply(A).sum(0)).ravel())
    nb = np.sqrt(np.asarray(B.multiply(B).sum(0)).ravel())
    denom = np.outer(na, nb)
    return np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)


def facts(evidence: Evidence, year: int | None, noun_plural: str) -> list[str]:
    """The evidence as short sentences, in the order the prompt shows them."""
    out = [*evidence.credited, *evidence.shared_people]
    if evidence.place:
        out.append(f"from {evidence.place}")
    if evidence.minutes:
        out.append(f"{evidence.minutes} minutes long")
    if evidence.rating:
        out.append(f"rated {evidence.rating}/5 by {evidence.raters}")
    if evidence.similar_liked:
        out.append(f"like {evidence.similar_liked[0]} (user liked)")
    if evidence.fans_also_liked:
        out.append(f"fans of {evidence.fans_also_liked[0]} liked it")
    if evidence.talked_with:
        out.append(f"often comes up in conversations that mention {evidence.talked_with[0]}")
    if evidence.shared_genres:
        out.append(f"shares {', '.join(evidence.shared_genres)} with the user's favourite {noun_plural}")
    if evidence.matched:
        out.append(f"matches the request: {', '.join(evidence.matched)}")
    if evidence.about:
        out.append(f"about: {evidence.about}")
    if evidence.tags:
        out.append(f"tags: {', '.join(evidence.tags)}")
    if evidence.query_similarity is not None:
        out.append(f"request match {evidence.query_similarity:.2f}")
    if year:
        out.append(f"from {year}")
    return out


# Words an evidence sentence: (evidence, year, query, titles the user said they liked) -> one sentence.
# The pipeline passes the template set's `reason.j2` (see `Prompts.reason_writer`).
ReasonWriter = Callable[[Evidence, int | None, str | None, frozenset[str]], str]


def pack(phrases: list[str], max_chars: int) -> str:
    """One sentence from phrases in order of strength: as many leading phrases as fit in `max_chars`,
    joined with "; ", the first letter capitalised, a full stop at the end (none after a closing "…")."""
    sentence = phrases[0]
    for part in phrases[1:]:
        if len(sentence) + len(part) + 3 > max_chars:
            break
        sentence += "; " + part
    sentence = sentence[0].upper() + sentence[1:] + ("" if sentence.endswith("\u2026") else ".")
    return sentence if len(sentence) <= max_chars else sentence[: max_chars - 1].rstrip(" ;,.") + "\u2026"


ROLES = {"director": "directed by", "cast": "starring", "author": "by"}


def shares(genres: tuple[str, ...], tags: tuple[str, ...], other_genres: tuple[str, ...],
           other_tags: tuple[str, ...], n: int = 2) -> list[str]:
    """What two items have in common, the most telling first: shared tags, then shared genres."""
    theirs = {t.lower() for t in (*other_tags, *other_genres)}
    said: dict[str, str] = {}
    for x in (*tags, *genres):
        if x.lower() in theirs:
            said.setdefault(x.lower(), x)  # "comedy" the tag and Comedy the genre are said once
    return list(said.values())[:n]


def _with_role(role: str, name: str) -> str:
    return f"{ROLES.get(role, role + ':')} {name}"


def asked(people: dict[str, tuple[str, ...]], countries: tuple[str, ...], minutes: int | None, filters: Filters,
          rating: float | None, raters: int, liked_people: list[tuple[str, dict[str, tuple[str, ...]]]]
          ) -> dict[str, object]:
    """The Evidence fields of what the request asked beyond genres: the people it credits, its countries, its
    length, its rating (when the best were asked for), and who it shares with a title the user liked
    (`liked_people`: each liked title and its people; directors and authors first, one title at most)."""
    out: dict[str, object] = {}
    if filters.people:
        wanted = [name_key(p) for p in filters.people]
        out["credited"] = [_with_role(role, name) for role, name in credited(people, wanted)][:2]
    elif people.get("author"):  # a book's author says what kind of book it is
        out["credited"] = [_with_role("author", people["author"][0])]
    if (filters.countries or filters.languages or filters.exclude_countries) and countries:
        out["place"] = ", ".join(countries[:2])
    if (filters.minutes_min is not None or filters.minutes_max is not None) and minutes is not None:
        out["minutes"] = minutes
    if filters.order in ("best", "hidden") and rating is not None and raters:
        out["rating"], out["raters"] = round(rating, 1), raters
    mine = {role: {name_key(n): n for n in names} for role, names in people.items()}
    for role in ("director", "author", "cast"):
        for title, theirs in liked_people:
            keys = [name_key(n) for n in theirs.get(role, ())]
            shared = [mine[role][k] for k in keys if k in mine.get(role, {})]
            if shared and not filters.people:
                out["shared_people"] = [f"{_with_role(role, shared[0])}, like {title}"]
                return out
    return out
