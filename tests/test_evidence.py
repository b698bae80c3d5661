"""Evidence that ties a candidate to a user, on hand-made numbers: what is claimed, what is not, and the
fallback sentence built from it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp

from genre_agent.llm.prompts import Prompts, resolve_prompts_dir
from genre_agent.retrieval import evidence as ev
from genre_agent.schemas import Evidence

LIKED = ["Star Quest (1990)", "Star Quest II (1992)", "Night Terror (1985)"]


@pytest.fixture
def evidence() -> Evidence:
    return ev.gather(("Sci-Fi", "Comedy"), ("space", "funny", "spoof", "cult"),
                     Counter({"Sci-Fi": 3, "Adventure": 2}), LIKED, np.array([0.9, 0.5, 0.2]),
                     np.array([0.1, 0.3, 0.0]), 0.12345, 3, year=2001, liked_years=[1990, 1992, 1985],
                     noun_plural="movies")


def test_favourite_genres_count_every_liked_item() -> None:
    assert ev.favourite_genres([("Sci-Fi", "Adventure"), ("Sci-Fi",)]) == Counter({"Sci-Fi": 2, "Adventure": 1})


def test_gather_claims_only_what_clears_the_floors(evidence: Evidence) -> None:
    assert evidence == Evidence(
        shared_genres=["Sci-Fi"],
        similar_liked=["Star Quest (1990)", "Star Quest II (1992)"],  # 0.9 and 0.5 >= 0.45; 0.2 is not
        fans_also_liked=["Star Quest II (1992)"],  # 0.3 >= 0.15; 0.1 is not
        tags=["space", "funny", "spoof"],
        query_similarity=0.123,
        liked_by=3,
        drawbacks=["Comedy: rare among the movies you liked", "few ratings to go on: 3 users rated it highly"],
    )


def test_drawbacks_of_era_and_fans() -> None:
    old = ev.drawbacks(("Sci-Fi",), Counter({"Sci-Fi": 1}), 1960, [1990, 1992, 1985], 1, "movies")
    assert old == ["older (1960) than most movies you liked (around 1990)",
                   "few ratings to go on: 1 user rated it highly"]
    new = ev.drawbacks(("Sci-Fi",), Counter({"Sci-Fi": 1}), 2010, [1990], 50, "movies")
    assert new == ["newer (2010) than most movies you liked (around 1990)"]
    assert ev.drawbacks(("Drama",), Counter(), None, [], 50, "books") == []


def test_facts_in_prompt_order(evidence: Evidence) -> None:
    assert ev.facts(evidence, 2001, "movies") == [
        "like Star Quest (1990) (user liked)", "fans of Star Quest II (1992) liked it",
        "shares Sci-Fi with the user's favourite movies", "tags: space, funny, spoof", "request match 0.12",
        "from 2001"]


def _reason(max_chars: int, prompts: str = "default") -> ev.ReasonWriter:
    """The evidence sentence as the shipped template set words it (`reason.j2`)."""
    return Prompts(resolve_prompts_dir(prompts)).reason_writer(max_chars, "movie", "movies")


def test_the_evidence_sentence_adds_parts_while_they_fit(evidence: Evidence) -> None:
    shared = evidence.model_copy(update={"similar_shares": ["space", "Sci-Fi"]})
    assert _reason(70)(shared, 2001, "space comedy", frozenset()) == \
        "Space and Sci-Fi, like Star Quest (1990), which you rated highly."
    assert _reason(160)(shared, 2001, "space comedy", frozenset()) == (
        "Space and Sci-Fi, like Star Quest (1990), which you rated highly; people who liked Star Quest II "
        "(1992) liked it too; Sci-Fi like your favourites.")
    said = _reason(70)(shared, 2001, None, frozenset({"Star Quest (1990)"}))
    assert said == "Space and Sci-Fi, like Star Quest (1990), which you liked."


def test_a_title_the_item_shares_people_with_is_named_once(evidence: Evidence) -> None:
    same = evidence.model_copy(update={"similar_shares": ["Sci-Fi"], "fans_also_liked": ["Star Quest (1990)"],
                                       "shared_people": ["directed by Ann Lee, like Star Quest (1990)"]})
    assert _reason(120)(same, 2001, None, frozenset()) == (
        "Directed by Ann Lee, like Star Quest (1990); Sci-Fi too, and its fans liked it; Sci-Fi like your "
        "favourites.")
    assert _reason(120, "fr")(same, 2001, None, frozenset()).startswith(
        "Réalisé par Ann Lee, comme Star Quest (1990); Sci-Fi aussi, et ses fans l'ont aimé")


def test_a_similarity_is_claimed_only_with_what_the_two_share(evidence: Evidence) -> None:
    assert "Star Quest (1990)" not in _reason(160)(evidence, 2001, None, frozenset())  # no shares: not said


def test_the_evidence_sentence_is_cut_to_the_limit(evidence: Evidence) -> None:
    assert _reason(40)(evidence, 2001, None, frozenset()) == "People who liked Star Quest II (1992) l\u2026"


def test_the_evidence_sentence_without_evidence() -> None:
    assert _reason(140)(Evidence(), None, None, frozenset()) == "In the catalog."
    assert _reason(140)(Evidence(), 1999, None, frozenset()) == "From 1999."
    assert _reason(140)(Evidence(liked_by=1), 1999, None, frozenset()) == "Rated highly by 1 user."


def test_the_french_set_words_the_same_evidence_in_french(evidence: Evidence) -> None:
    shared = evidence.model_copy(update={"similar_shares": ["space"]})
    assert _reason(160, "fr")(shared, 2001, None, frozenset()) == (
        "Space, comme Star Quest (1990), que vous avez bien noté; ceux qui ont aimé Star Quest II (1992) l'ont "
        "aimé aussi; Sci-Fi, comme vos favoris.")


def test_pack_keeps_leading_phrases_that_fit() -> None:
    assert ev.pack(["a b", "c d", "e f"], 9) == "A b; c d."
    assert ev.pack(["a b", "c d", "e f"], 100) == "A b; c d; e f."


def test_colike_cosine() -> None:
    # users x items: item 0 liked by all three users, item 1 by the first two, item 2 by the third, item 3 by none
    positives = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0]], dtype=np.float32))
    sims = ev.colike_cosine(positives, np.array([1]), np.array([0, 2, 3]))
    assert sims.shape == (3, 1)
    assert sims[:, 0] == pytest.approx([2 / np.sqrt(6), 0.0, 0.0])


def test_about_quotes_a_summary_up_to_a_sentence_clause_or_word_that_reads_whole() -> None:
    assert ev.about("A ghost haunts a house. It grows bolder every night and the family must leave before the "
                    "winter.") == "A ghost haunts a house"
    cut = ev.about("Following release from prison, Danny Ocean violates his parole by traveling to California to "
                   "meet his partner-in-crime and friend Rusty Ryan to propose a heist.")
    assert cut == "Following release from prison, Danny Ocean violates his parole by traveling to California\u2026"
    cut = ev.about("In the flashback, set six weeks earlier in New York, Verbal and the other criminals are "
                   "arrested on a trumped-up hijacking charge.")
    assert cut == "In the flashback, set six weeks earlier in New York, Verbal and the other criminals\u2026"
    assert len(cut) <= ev.ABOUT_CHARS and ev.pack(["about: " + cut], 200).endswith("criminals\u2026")
