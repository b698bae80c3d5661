"""A chat message read in its session: the rules' reading (a live turn and a restored one alike), the
model's where its reading is routed, and the request the session asks for then."""

from __future__ import annotations

from genre_agent.chat.constraints import conflict
from genre_agent.chat.session import SessionState, StateUpdate
from genre_agent.chat.titles import TitleIndex
from genre_agent.chat.understanding import ask_model, genre_words, merge, parse_rules
from genre_agent.pipeline import Recommender
from genre_agent.schemas import RecommendRequest


def has_taste(state: SessionState) -> bool:
    """Whether the session says anything to recommend from (a user, likes, words, anchors, genres, years)."""
    f = state.filters
    return bool(state.user_id or state.liked or state.query or state.anchors or f.include_genres or
                f.require_genres or f.year_min is not None or f.year_max is not None)


class Reader:
    """Reads messages against one catalog: its titles, its genres (and what a message calls each), and its
    newest year (what "recent" and "classic" count from)."""

    def __init__(self, recommender: Recommender, titles: TitleIndex) -> None:
        catalog = recommender.catalog
        self.recommender = recommender
        self.titles = titles
        self.genres = recommender.genres()
        self.genre_words = genre_words(self.genres, catalog.genre_aliases)
        years = catalog.items["year"].dropna()
        self.newest = int(years.max()) if len(years) else None

    def rules(self, state: SessionState, message: str) -> StateUpdate:
        """What the rules read in a message, in this session."""
        return parse_rules(message, state, self.genre_words, self.titles, self.recommender.years(state.last),
                           self.newest)

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
        only_filters = not (state.user_id or state.liked or state.query or state.anchors)
        return state.request(self.recommender.settings.k, allow_popular=popular or only_filters)

    def conflict(self, state: SessionState, request: RecommendRequest) -> str | None:
        """In words, the constraints to relax when the session's filters let too few items through."""
        retriever = self.recommender.retriever
        clash = conflict(state.filters, retriever.items, retriever.genre_masks,
                         request.k or self.recommender.settings.k)
        if clash is None:
            return None
        info = self.recommender.catalog_info()
        return clash.describe(info.item_noun, info.item_noun_plural)
