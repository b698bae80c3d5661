"""Turn a chat message into a structured state update.

Two readers, one result. Rules read what is unambiguous (titles the catalog knows, "the second one", "no
horror", "after 2000", "loved it", "why", "reset"). The LLM reads the same message through the
`understand.j2` template, constrained by the JSON schema of `ModelUpdate`; what it proposes is kept only if
it is grounded in the message: its titles must resolve to catalog items named in the message, its genres and
years must appear in the message. So a title or filter the model made up never reaches the state.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ValidationError

from genre_agent.chat.session import Intent, SessionState, StateUpdate
from genre_agent.chat.titles import TitleIndex, normalise
from genre_agent.llm.backends import Backend
from genre_agent.llm.contexts import UnderstandingContext, UnderstandingSystemContext
from genre_agent.llm.prompts import Prompts


class ModelUpdate(BaseModel):
    """What the LLM is asked to fill in (titles as written, not ids)."""

    intent: Intent
    liked_titles: list[str] = []
    disliked_titles: list[str] = []
    seen_titles: list[str] = []
    more_like_titles: list[str] = []
    exclude_genres: list[str] = []
    include_genres: list[str] = []
    year_min: int | None = None
    year_max: int | None = None


ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
            "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "seventh": 7, "7th": 7, "eighth": 8, "8th": 8,
            "ninth": 9, "9th": 9, "tenth": 10, "10th": 10}
GENRE_ALIASES = {"scifi": "sci-fi", "sci fi": "sci-fi", "science fiction": "sci-fi", "romantic": "romance",
                 "funny": "comedy", "comedies": "comedy", "animated": "animation", "cartoons": "animation",
                 "documentaries": "documentary", "thrillers": "thriller", "westerns": "western",
                 "musicals": "musical", "scary": "horror", "kids": "children", "war films": "war"}
VIOLENT = ("Horror", "War", "Crime")
_NEGATION = r"(?:no|not|without|avoid|except|skip|hate|less|nothing|none of)"
_LIKE = re.compile(r"\b(lov(?:e|ed)|lik(?:e|ed) it|enjoy(?:ed)?|adored?|great|favou?rite|amazing)\b")
_DISLIKE = re.compile(r"\b(hated?|dislik(?:e|ed)|didn'?t like|did not like|boring|awful|terrible|not for me)\b")
_SEEN = re.compile(r"\b(seen|watched|already saw|saw it)\b")
_MORE_LIKE = re.compile(r"\b(more like|something like|similar to|like the|in the vein of)\b")
_STOP = set("""i i'm im me my we you your it its it's this that these those a an the and or but of to in on for
with at by from as is are was were be been am do does did have has had please some something anything any
movie movies film films book books show give want wanna would like love loved liked enjoy enjoyed recommend
recommendation recommendations suggest can could should one ones more less no not without also just really
very so what which who how about maybe kind sort good great only just after before since until than
there here hello hi hey thanks thank ok okay yes now then again hmm hm um uh sure whatever dunno idk
surprise anyway well""".split())


def _genre_mentions(text: str, genres: list[str]) -> dict[str, int]:
    """Catalog genres mentioned in normalised text -> position of the mention."""
    found: dict[str, int] = {}
    for alias, target in GENRE_ALIASES.items():
        for m in re.finditer(rf"\b{re.escape(alias)}\b", text):
            for g in genres:
                if g.lower() == target:
                    found.setdefault(g, m.start())
    for g in genres:
        hit = re.search(rf"\b{re.escape(normalise(g))}s?\b", text)
        if hit:
            found.setdefault(g, hit.start())
    return found


def _refs(text: str, state: SessionState) -> list[str]:
    out = []
    for word, n in ORDINALS.items():
        if re.search(rf"\b{word}\b", text) and n <= len(state.last):
            out.append((text.index(word), state.last[n - 1]))
    for m in re.finditer(r"(?:#|number |no\. ?)(\d{1,2})\b", text):
        n = int(m.group(1))
        if 1 <= n <= len(state.last):
            out.append((m.start(), state.last[n - 1]))
    if re.search(r"\b(last one|the last)\b", text) and state.last:
        out.append((text.index("last"), state.last[-1]))
    return [item for _, item in sorted(out)]


def parse_rules(message: str, state: SessionState, genres: list[str], titles: TitleIndex,
                years: list[int] | None = None) -> StateUpdate:
    """The unambiguous part of a message, read without the LLM. `years` are those of the last list."""
    text = " ".join(message.lower().split())
    flat = normalise(message)
    update = StateUpdate()
    filters = update.filters
    if re.fullmatch(r"\W*(reset|start over|forget (it|everything))\W*", text):
        return StateUpdate(intent="reset")
    mentioned = titles.find_in_text(message)
    refs = _refs(text, state)
    if not refs and not mentioned and re.search(r"\b(it|that one|this one|that)\b", text):
        pointed = state.focus or (state.last[0] if state.last else None)
        refs = [pointed] if pointed else []
    focus = refs or mentioned
    if re.search(r"\bwhy\b", text):
        update.intent = "why"
        update.why = (focus or state.last or [None])[0]  # type: ignore[list-item]
        return update
    like_more = bool(_MORE_LIKE.search(text))
    if like_more:
        update.anchors = focus
    elif _DISLIKE.search(text):
        update.dislike = focus
    elif _SEEN.search(text):
        update.seen = focus
    elif _LIKE.search(text):
        update.like = focus
    mentions = _genre_mentions(flat, genres)
    for genre, pos in mentions.items():
        before = flat[max(0, pos - 30) : pos]
        if re.search(rf"\b{_NEGATION}\b(?:\s+\w+)?\s*$", before):
            filters.exclude_genres.append(genre)
        elif re.search(r"\b(only|just)\s*$", before):
            filters.include_genres.append(genre)
    if re.search(rf"\b{_NEGATION}\s+(?:so\s+|too\s+)?(violent|violence|gory|gore|brutal)\b", text):
        filters.exclude_genres += [g for g in VIOLENT if g in genres and g not in filters.exclude_genres]
    if m := re.search(r"\b(?:after|since|from|newer than|released after)\s+((?:19|20)\d\d)\b", text):
        filters.year_min = int(m.group(1)) + (1 if "after" in m.group(0) else 0)
    if m := re.search(r"\b(?:before|until|older than|up to|prior to)\s+((?:19|20)\d\d)\b", text):
        filters.year_max = int(m.group(1)) - (1 if "before" in m.group(0) or "older" in m.group(0) else 0)
    if m := re.search(r"\b((?:19|20)?\d0)'?s\b", text):
        decade = int(m.group(1))
        decade += 1900 if decade < 100 and decade >= 20 else (2000 if decade < 100 else 0)
        filters.year_min, filters.year_max = decade, decade + 9
    if years and re.search(r"\b(older|classic|old)\b", text) and filters.year_max is None:
        filters.year_max = sorted(years)[len(years) // 2] - 1
    if years and re.search(r"\b(newer|recent|modern)\b", text) and filters.year_min is None:
        filters.year_min = sorted(years)[len(years) // 2] + 1
    words = [w for w in flat.split() if w not in _STOP and not w.isdigit()]
    title_words = {w for item in mentioned for w in normalise(titles.title_of(item)).split()}
    filtered = set(filters.exclude_genres) | set(filters.include_genres)
    genre_words = {w for g in filtered for w in normalise(g).split()} | {
        w for a, g in GENRE_ALIASES.items() if a in flat and g in {f.lower() for f in filtered} for w in a.split()}
    content = [w for w in words if w not in title_words and w not in genre_words
               and w not in ORDINALS and not re.fullmatch(r"\d0s|violent|violence|gory|older|newer|recent", w)]
    if content and not filters.exclude_genres and not refs:
        update.query = " ".join(content)
    if re.fullmatch(r"\W*(/?more|more please|show me more|next|others?)\W*", text):
        update.intent = "more"
    elif update.anchors or filters.exclude_genres or filters.include_genres or \
            filters.year_min is not None or filters.year_max is not None:
        update.intent = "refine"
    elif (update.like or update.dislike or update.seen) and refs and not update.query:
        update.intent = "feedback"
    elif update.like or update.query or mentioned:
        update.intent = "recommend"
    return update


def ask_model(backend: Backend, prompts: Prompts, message: str, state_lines: list[str],
              last_titles: list[str], genres: list[str], max_tokens: int = 200) -> ModelUpdate | None:
    """The LLM's reading of the message (schema-constrained), or None if its answer is invalid."""
    messages = [
        {"role": "system", "content": prompts.render("understand_system.j2",
                                                     UnderstandingSystemContext(genres=genres))},
        {"role": "user", "content": prompts.render("understand.j2", UnderstandingContext(
            message=message, state=state_lines, last=last_titles, genres=genres))},
    ]
    completion = backend.complete(messages, ModelUpdate.model_json_schema(), max_tokens)
    try:
        return ModelUpdate.model_validate_json(completion.text)
    except ValidationError:
        return None


def merge(rules: StateUpdate, model: ModelUpdate | None, message: str, titles: TitleIndex,
          genres: list[str]) -> StateUpdate:
    """Rules win; the model may only add what the message itself contains."""
    if model is None:
        return rules
    flat = normalise(message)
    mentioned = set(titles.find_in_text(message))
    merged = rules.model_copy(deep=True)

    def grounded(names: list[str]) -> list[str]:
        ids = [titles.resolve(n) for n in names]
        return [i for i in ids if i is not None and i in mentioned]

    if merged.intent == "other" and model.intent != "other":
        merged.intent = model.intent
    for field, names in (("like", model.liked_titles), ("dislike", model.disliked_titles),
                         ("seen", model.seen_titles), ("anchors", model.more_like_titles)):
        current = getattr(merged, field)
        if not any((merged.like, merged.dislike, merged.seen, merged.anchors)):
            current += [i for i in grounded(names) if i not in current]
    in_message = _genre_mentions(flat, genres)
    for field, proposed in (("exclude_genres", model.exclude_genres), ("include_genres", model.include_genres)):
        if not getattr(merged.filters, field):
            setattr(merged.filters, field, [g for g in genres if g in in_message and
                                            g.lower() in {p.lower() for p in proposed}])
    for field in ("year_min", "year_max"):
        value = getattr(model, field)
        if getattr(merged.filters, field) is None and value is not None and str(value) in message:
            setattr(merged.filters, field, value)
    return merged
