"""A chat message read in its session: the rules' reading (a live turn and a restored one alike), the
model's where its reading is routed, and the request the session asks for then."""

from __future__ import annotations

from genre_agent.chat.constraints import conflict
from genre_agent.chat.people import PeopleIndex
from genre_agent.chat.session import SessionState, StateUpdate
from genre_agent.chat.titles import TitleIndex
from genre_agent.chat.understanding import ask_model, common_words, genre_words, merge, parse_rules
from genre_agent.pipeline import Recommender
from genre_agent.schemas import RecommendRequest


def has_taste(state: SessionState) -> bool:
    """Whether the session says anything to recommend from (a user, likes, words, anchors, genres, years,
    people, places, a length or an order: "Tom Hanks movies", "best movies of 2015")."""
    return bool(state.user_id or state.liked or state.query or state.anchors) or state.filters.wants()


class Reader:
    """Reads messages against one catalog: its titles, its genres (and what a message calls each), who it
    credits, and its newest year (what "recent" and "classic" count from)."""

    def __init__(self, recommender: Recommender, titles: TitleIndex) -> None:
        catalog = recommender.catalog
        self.recommender = recommender
        self.titles = titles
        self.genres = recommender.genres()
        self.genre_words = genre_words(self.genres, catalog.genre_aliases)
        self.people = PeopleIndex(catalog.items, common_words(self.genre_words))
        years = catalog.items["year"].dropna()
        self.newest = int(years.max()) if len(years) else None

    def rules(self, state: SessionState, message: str) -> StateUpdate:
        """What the rules read in a message, in this session."""
        return parse_rules(message, state, self.genre_words, self.titles, self.recommender.years(state.last),
                           self.newest, self.people)

    def read(self, state: SessionState, message: str) -> StateUpdate:
        """What a message changes: the rules' reading, and the model's where its reading is routed."""
        update = self.rules(state, message)
        reading = self.recommender.routes().reading  # the field groups the model's reading may add
        if reading and update.intent not in ("reset", "more"):
            model_update = ask_model(self.recommender.backend, self.recommender.prompts, message,
                                     state.describe(), [self.titles.title_of(i) for i in state.last],
                                     self.genres)
            update = merge(update, model_update, message, self.titles, self.genre_words, reading)
        return update

    def request(self, state: SessionState, popular: bool = False) -> RecommendRequest:
        """What the session asks for now (popular items allowed when asked, or when only filters were given:
        "only comedies")."""
        only_filters = not (state.user_id or state.liked or state.query or state.anchors)  # "Tom Hanks movies"
        return state.request(self.recommender.settings.k, allow_popular=popular or only_filters)

    def conflict(self, state: SessionState, request: RecommendRequest) -> str | None:
        """In words, the constraints to relax when the session's filters let too few items through."""
        retriever = self.recommender.retriever
        clash = conflict(state.filters, retriever.masks, request.k or self.recommender.settings.k)
        if clash is None:
            return None
        info = self.recommender.catalog_info()
        return clash.describe(info.item_noun, info.item_noun_plural)

    def ease(self, state: SessionState, update: StateUpdate) -> str | None:
        """A conversation's wishes add up over its messages ("I loved Tom Hanks in that", later "any good
        horror?"). When no item fits them all, but some fit the latest message's wishes with every exclusion
        said so far, the session keeps those and lets the earlier wishes go: in words, what was let go. None
        (the session unchanged) when the latest message alone asks for the impossible, or nothing was earlier."""
        masks = self.recommender.retriever.masks
        kept = state.filters.latest(update.filters)
        stated = {"exclude_items": [], "exclude_seen": False}  # what was asked, not what was seen or shown
        current, latest = state.filters.model_copy(update=stated), kept.model_copy(update=stated)
        if latest == current or masks.allowed(current, set()).any() or not masks.allowed(latest, set()).any():
            return None
        if not has_taste(state.model_copy(update={"filters": kept})):
            return None
        state.filters = kept
        noun = self.recommender.catalog_info().item_noun
        return (f"No {noun} in the catalog fits everything asked for in this conversation "
                f"({', '.join(current.describe())}), so I went by your latest message.")

    def settle(self, state: SessionState, update: StateUpdate) -> None:
        """Drop from the session what the catalog cannot check, and say so in the update's notes: a length
        asked of a catalog that knows none."""
        f = state.filters
        if (f.minutes_min is not None or f.minutes_max is not None) and \
                not self.recommender.retriever.masks.known_minutes():
            state.filters = f.model_copy(update={"minutes_min": None, "minutes_max": None})
            noun = self.recommender.catalog_info().item_noun_plural
            update.notes.append(f"This catalog does not say how long its {noun} are, so the length was not "
                                "checked.")

    def notes(self, state: SessionState, update: StateUpdate) -> str | None:
        """What the reply says of the reading: titles and people the catalog lacks, lengths it cannot check."""
        notes = list(update.notes)
        f = state.filters
        if f.minutes_min is not None or f.minutes_max is not None:
            masks = self.recommender.retriever.masks
            known, every = masks.known_minutes(), len(masks.items)
            if known < every:
                noun = self.recommender.catalog_info().item_noun_plural
                notes.append(f"I know the length of {known:,} of the {every:,} {noun}; only those are shown.")
        return " ".join(notes) or None
