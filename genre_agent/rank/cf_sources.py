"""The CF models whose scores the ranker reads, declared once: each one's name (its feature columns and its
folder in the data directory), the model (`retrieval.cf.CF_MODELS`), what it is trained on and what it is fed
for a request.

Trained on the positives (ratings >= the catalog's `positive_min`), or on every rating, low ones too, of the
items at least RATED_MIN_USERS users rated: which items a user picks up at all, where the positives say which
they like (the items one user rated add nothing to learn from and cubic time to EASE; docs/ranker.md, "EASE of
every rating", has the measurements). A model of every rating is not trained when every rating is positive: it
would be the same model again.

Fed, per request: the user's likes (the catalog's and the session's); the same with the titles the request is
"like" counting double; or every item the user rated or said they had seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Trained = Literal["positives", "ratings"]
Fed = Literal["likes", "likes and anchors", "ratings"]
RATED_MIN_USERS = 2


@dataclass(frozen=True)
class CFSource:
    name: str  # the feature columns `<name>_z` and `<name>_log_rank`, and the model's folder
    model: str  # a key of retrieval.cf.CF_MODELS
    trained_on: Trained
    fed: Fed
    ranker_reads: bool = True


SOURCES: tuple[CFSource, ...] = (
    CFSource("ease", "ease", "positives", "likes and anchors"),
    CFSource("itemknn", "itemknn", "positives", "likes"),
    CFSource("als", "als", "positives", "likes"),
    CFSource("ease_rated", "ease", "ratings", "ratings"),
)
BY_NAME = {source.name: source for source in SOURCES}
READ = tuple(source for source in SOURCES if source.ranker_reads)  # in the order of the feature columns
