"""What a catalog's `catalog.toml` says: which files hold its items, interactions, tags, descriptions and credits,
which columns mean what, and what is embedded per item; read from the file, or the MovieLens layout without one.
Every problem is a `CatalogError` naming the file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from genre_agent.data import credits as credit_columns
from genre_agent.errors import CatalogError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemsSpec(_Strict):
    path: str
    id: str
    title: str
    genres: str | None = None
    genre_separator: str = "|"
    missing_genre: str | None = None
    year: str | None = None
    year_from_title: bool = False
    metadata: list[str] = []
    show: list[str] = []  # metadata columns the prompts show next to each candidate (e.g. authors)
    # how the file writes titles: "as-is", or "article-last" ("Matrix, The (1999)", a.k.a. forms in brackets),
    # which people read as "The Matrix (1999)"; matching accepts every form either way
    titles: Literal["as-is", "article-last"] = "as-is"


class InteractionsSpec(_Strict):
    path: str
    user: str
    item: str
    rating: str | None = None
    timestamp: str | None = None
    # without a timestamp column: "file" = the file's row order is the order of each user's ratings; "unknown" = it
    # is not (e.g. sorted by item id), so a seeded random order stands in and "the last rating" means a random one
    order: Literal["file", "unknown"] = "file"
    positive_min: float = 4.0

    @model_validator(mode="after")
    def _order_without_time(self) -> InteractionsSpec:
        if self.timestamp and self.order != "file":
            raise ValueError("'order' applies only without a 'timestamp' column: remove one of them")
        return self


class TagNamesSpec(_Strict):
    """A lookup file when the tags file holds tag ids (goodbooks: tags.csv with tag_id, tag_name)."""

    path: str
    id: str
    name: str


class TagsSpec(_Strict):
    path: str
    item: str
    tag: str
    top: int = 6
    item_key: str | None = None  # an items metadata column the tags' item column refers to (default: the id)
    count: str | None = None  # a column with how often the tag was given (default: one per row)
    names: TagNamesSpec | None = None
    exclude: list[str] = []  # tags that say nothing about the item ("to-read", "favorites")
    genres: list[str] = []  # tags that are also genres of the item (used by genre rules and evidence)


class DescriptionsSpec(_Strict):
    """What each item is about (a plot, a product description): columns of the items file, or a file of its own
    joined on the item id. Items without one work as before, item by item."""

    path: str | None = None  # a file of its own; default: columns of the items file
    item: str | None = None  # that file's item id column (default: the items file's id column name)
    summary: str  # shown to people and models (evidence, prompts): the opening, cut to summary_chars
    match: str | None = None  # embedded for matching by meaning, never shown (default: the summary)
    summary_chars: int = Field(300, ge=40, le=2000)
    match_chars: int = Field(1500, ge=40, le=20000)


class TextSpec(_Strict):
    """What is embedded per item: `template` for similarity (between items, to a user's taste, to the words of a
    request), and `about`, when set, for matching a request's words by what an item is about (its description).
    Leave the title out of `about`: a word of the title must never make an item match a request ("Magnolia"
    for "Steel Magnolias")."""

    template: str = "{title}. Genres: {genres}. Tags: {tags}."
    about: str | None = None
    vectors: str | None = None  # precomputed vectors of the template texts (`index --export-vectors`)
    about_vectors: str | None = None  # the same for the `about` texts


class GenresSpec(_Strict):
    """The words people use for each genre in a request besides its name (spellings such as "sci fi" and plurals
    are understood without a list): `aliases` maps a genre to its words, and `path` names a TOML file whose
    [genres] table does the same (the books catalog's shelf mapping: a genre's shelves are its synonyms)."""

    path: str | None = None
    aliases: dict[str, list[str]] = {}


class CatalogSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="letters, digits, '_', '.', "
                      "'-' (it names files in the data directory)")
    item_noun: str = "item"
    item_noun_plural: str = "items"
    items: ItemsSpec
    interactions: InteractionsSpec | None = None
    tags: TagsSpec | None = None
    descriptions: DescriptionsSpec | None = None
    credits: credit_columns.CreditsSpec | None = None
    text: TextSpec = TextSpec()
    genres: GenresSpec = GenresSpec()


MOVIELENS_LAYOUT = {
    "item_noun": "movie",
    "item_noun_plural": "movies",
    "items": {"path": "movies.csv", "id": "movieId", "title": "title", "genres": "genres",
              "year_from_title": True, "missing_genre": "(no genres listed)"},
    "interactions": {"path": "ratings.csv", "user": "userId", "item": "movieId",
                     "rating": "rating", "timestamp": "timestamp"},
}


def _safe_name(folder: str) -> str:
    """A catalog name from a folder name: only the characters a name may have."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", folder).strip("-.")[:64] or "catalog"


def load_spec(root: Path) -> CatalogSpec:
    """The spec of the catalog in folder `root`: its catalog.toml, else the MovieLens layout (a CatalogError when
    it has neither, or its catalog.toml does not validate)."""
    toml_path = root / "catalog.toml"
    if toml_path.is_file():
        try:
            raw = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CatalogError(f"{toml_path}: cannot parse: {exc}") from exc
        raw.setdefault("name", _safe_name(root.name))
    elif (root / "movies.csv").is_file() and (root / "ratings.csv").is_file():
        raw = {"name": _safe_name(root.name), **MOVIELENS_LAYOUT}
        if (root / "tags.csv").is_file():
            raw["tags"] = {"path": "tags.csv", "item": "movieId", "tag": "tag"}
    else:
        raise CatalogError(
            f"{root}: no catalog.toml and no MovieLens layout (movies.csv + ratings.csv). "
            "Add a catalog.toml describing your files (see docs/catalogs.md)."
        )
    try:
        return CatalogSpec.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(f"{toml_path}: {exc}") from exc
