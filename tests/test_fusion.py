"""Known answers for the popularity signals: recent likes weigh more for users the catalog does not know."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from genre_agent.filters import Filters
from genre_agent.pipeline import Recommender
from genre_agent.retrieval.candidates import Retriever
from genre_agent.retrieval.fusion import fuse, new_user_popularity_weight, recent_popularity
from genre_agent.settings import RetrievalSettings

DAY = 86400


def test_a_like_one_half_life_older_counts_half() -> None:
    items = pd.Index(["old", "new", "never"])
    liked = pd.Series(["old", "old", "new"])
    at = pd.Series([0, 0, 400 * DAY])  # "old" was liked twice 400 days before the newest like
    got = recent_popularity(items, liked, at, half_life_days=400)
    assert np.allclose(got, [math.log1p(0.5 + 0.5), math.log1p(1.0), 0.0])
    longer = recent_popularity(items, liked, at, half_life_days=4000)
    assert longer[0] > longer[1]  # with a long half-life the twice-liked item leads again


def test_new_users_weigh_popularity_with_their_own_weight_fading_with_each_title_they_name() -> None:
    weights = RetrievalSettings(weight_popularity=0.05, weight_popularity_new_user=2.0)
    assert [new_user_popularity_weight(weights, n) for n in (0, 1, 3)] == [2.0, 1.0, 0.5]
    mask = np.ones(3, dtype=bool)
    popular, query = np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.5, 0.0])
    known = fuse(weights, mask, popular, query=query)
    new = fuse(weights, mask, popular, query=query, popularity_weight=new_user_popularity_weight(weights, 0))
    assert np.allclose(known, [1.0, 0.525, 0.05])  # the query leads for a catalog user
    assert np.allclose(new, [1.0, 1.5, 2.0])  # the popular item leads for a new one


def test_the_new_user_weight_moves_only_users_the_catalog_does_not_know(tiny_recommender: Recommender) -> None:
    """Star Quest (id 1) is the tiny catalog's most liked film. With a huge new-user popularity weight it leads
    a new user's "comedy" list (with no gate: by default only comedies are ranked for "comedy"); alice's list (a
    catalog user) is the same whatever that weight is."""
    built = tiny_recommender.retriever
    reason = tiny_recommender.reason_writer(None)

    def ranked(user: str | None, weight: float) -> list[str]:
        settings = built.settings.model_copy(update={"weight_popularity_new_user": weight, "match_pool": None})
        retriever = Retriever(built.catalog, built.index, built.cf, built.matrix, settings)
        return [c.item_id for c in retriever.candidates(retriever.user_view(user), "comedy", Filters(), 6, reason)]

    assert ranked(None, 100.0)[0] == "1"
    assert ranked(None, 0.0)[0] != "1"
    assert ranked("alice", 100.0) == ranked("alice", 0.0)
    # the tiny catalog's timestamps are seconds apart: every like is recent, so recent popularity = popularity
    assert np.allclose(built.new_user_popularity, built.popularity)


def test_a_few_likes_long_after_the_catalog_ends_do_not_become_all_that_is_popular() -> None:
    """Two likes of an obscure item stored years after the catalog's last rating (a chat's feedback on a
    bundled catalog) count as two recent likes, not as the only ones: the item liked by many stays first,
    and one more like lifts the obscure item above an item equal to it without it."""
    items = pd.Index(["hit", "obscure", "twin"])
    liked = pd.Series(["hit"] * 300 + ["obscure", "twin"] + ["obscure"] * 2)
    at = pd.Series([DAY * n for n in range(300)] + [300 * DAY, 300 * DAY] + [3000 * DAY] * 2)
    got = recent_popularity(items, liked, at, half_life_days=1461)
    assert got.argmax() == 0
    assert got[1] == pytest.approx(math.log1p(3.0)) and got[2] == pytest.approx(math.log1p(1.0))
