"""Turn a chat message into a structured state update.

Two readers, one result. Rules read what is unambiguous (titles the catalog knows, "the second one", "no
horror", "after 2000", "loved it", "why", "reset"). The LLM reads the same message through the
`understand.j2` template, constrained by the JSON schema of `ModelUpdate`; what it proposes is kept only if
it is grounded in the message: its titles must resolve to catalog items named in the message, its genres and
years must appear in the message. So a title or filter the model made up never reaches the state.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ValidationError

from genre_agent.chat.facets import blank, drop_contrast, read_denied, read_length, read_order, read_places
from genre_agent.chat.genres import GenreWords
from genre_agent.chat.people import PeopleIndex, PersonMention
from genre_agent.chat.session import Intent, SessionState, StateUpdate
from genre_agent.chat.smalltalk import small_talk
from genre_agent.chat.titles import Mention, TitleIndex, normalise, unmatched_titles
from genre_agent.chat.years import read_years
from genre_agent.data.credits import name_key
from genre_agent.errors import BackendUnavailableError, ContextLengthError
from genre_agent.filters import Filters
from genre_agent.llm.backends import Backend
from genre_agent.llm.calibration import READING_FIELDS
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
# Moods that plainly mean one of a few genres (the misses of the request set's dev part): "cheer me up" is one
# of these, never all of them at once. The words are looked up among the catalog's genre words ("comedy" is
# Comedy for films, humor for books).
MOOD_GENRES = {"feel good": ("comedy",), "cheer me up": ("comedy",), "light hearted": ("comedy",),
               "lighthearted": ("comedy",), "uplifting": ("comedy",), "relaxing": ("comedy", "romance"),
               "easy watch": ("comedy", "romance"), "mind bending": ("sci-fi", "mystery", "thriller"),
               "mindbending": ("sci-fi", "mystery", "thriller"), "twisty": ("mystery", "thriller"),
               "chill": ("comedy", "romance"), "laid back": ("comedy", "romance"), "silly": ("comedy",),
               "goofy": ("comedy",)}
VIOLENT = ("horror", "war", "crime")  # any case: "Horror" (movies), "horror" (books)
_VIOLENT_WORDS = ("violent", "violence", "gory", "gore", "brutal")
_NEGATION = r"(?:no|not|without|avoid|except|skip|hate|less|nothing|none of|dont|never|isnt|arent)"
# words that may stand between a negation and the genre it denies ("don't want anything animated")
_BETWEEN = (r"(?:want|need|any|anything|more|too|so|a|an|the|of|that|is|it|really|very|made|movies|films|all|into|"
            r"big|huge|fan|fond|much|keen|on|for|crazy)")
# "I like", "I generally love", "I'm into", "I'm a fan of", "I usually watch": what follows is a taste
_TASTE = re.compile(r"\b(?:i|we|im|were|ive)(?: m| am| re| are| ve| have)?(?: \w+)?(?: \w+)? "
                    r"(?:like|likes|love|enjoy|prefer|dig|watch|into|fan of|fans of)(?: \w+)?(?: \w+)? $")
_ALSO_LIKED = re.compile(r"^(?=.*\b(?:also|too|as well)\b).*\b(?:like|love|enjoy|great|good|fan|into)\b")
_OR = re.compile(r"^\s*(?:or|and/or|either)\s*$")  # "comedies or dramas": one of them, not both
_RESTATE = re.compile(r"\b(?:actually|instead|rather|what about|how about|switch to|change to|change it to)\b")
_SIMILAR = re.compile(r"\b(?:like (?:it|that|this|them)|similar|in (?:that|the same) vein|along those lines)\b")
_LIKE = re.compile(r"\b(lov(?:e|ed)|lik(?:e|ed) it|enjoy(?:ed)?|adored?|great|favou?rite|amazing)\b")
_DISLIKE = re.compile(r"\b(hated?|dislik(?:e|ed)|didn'?t like|did not like|boring|awful|terrible|not for me)\b")
_SEEN = re.compile(r"\b(seen|watched|already saw|saw it)\b")
_MORE_LIKE = re.compile(r"\b(more like|something like|similar to|like the|in the vein of)\b")
# Stance of one title mention, read from the words between it and the previous mention (or clause start).
_CLAUSE_BREAK = re.compile(r"[.!?;]+|\b(?:but|however|though|although|whereas)\b")
_JOINED = re.compile(r"^\W*(?:and|or|plus|as well as|and also|also|nor)?\W*$")
_ANCHOR_BEFORE = re.compile(
    r"(?:\b(?:something|anything|somethin|movies?|films?|ones?|stuff|things?|kind of|kinda|sort of|more|similar|"
    r"comedy|comedies|drama|dramas|thriller|thrillers|horror|shows?|along)(?:\s+\w+){0,2}\s+(?:like|as)"
    r"|\bsimilar to|\blines of|\bvein of|\bstyle of|\bsuch as|\breminds? me of|\blike the)\W*$")
_LIKE_BEFORE = re.compile(r"\b(?:like|liked|likes|love|loved|loves|enjoy|enjoyed|enjoys|adore|adored|dig|"
                          r"fan of|favou?rites?(?: \w+)? (?:is|was|are|were|include)|into|recommend)\b"
                          r"(?:\W+\w+){0,2}\W*$")
_VERB_AFTER = r"^\W*(?:\(?\d{4}\)?\W*)?(?:(?:it|that|this|which)\W+)?(?:is|was|were|are|s)?\W*"
_LIKE_AFTER = re.compile(_VERB_AFTER + r"(?:really |so |very |pretty |just |also |a )?(?:great|good|amazing|"
                         r"awesome|fantastic|excellent|hilarious|funny|the best|one of my|my favou?rite|"
                         r"a favou?rite|favou?rite|brilliant|fun|loved|classic)\b")
_DISLIKE_AFTER = re.compile(_VERB_AFTER + r"(?:really |so |very |pretty |too |just )?(?:terrible|awful|boring|"
                            r"bad|horrible|overrated|stupid|dumb|lame|not (?:good|great|for me|my)|meh|too)\b")
_NEGATED = re.compile(r"\b(?:not|never|no|didn'?t|did not|don'?t|do not|doesn'?t|wasn'?t|isn'?t|haven'?t|hasn'?t|"
                      r"hate|hated|hates|"
                      r"dislike|disliked|dislikes|can'?t stand|couldn'?t stand|nothing like|other than|except|"
                      r"instead of|rather than|tired of|sick of)\b")
_SEEN_BEFORE = re.compile(r"\b(?:seen|watched|saw|watch)\b(?:\W+\w+){0,2}\W*$")
_FILLER = set("""i i'm im me my mine we you your it its it's this that these those a an the and or but of to in
on for with at by from as is are was were be been am do does did have has had please some something anything any
movie movies film films show shows give want wanna would like love loved liked likes enjoy enjoyed recommend
recommendation recommendations suggest suggestion suggestions can could should one ones more less no not without
also just really very so what which who how about maybe kind sort good great only after before since until
than there here hello hi hey thanks thank ok okay yes now then again hmm hm um uh sure whatever dunno idk surprise
anyway well looking look find watch watching watched see seen saw mood think thinking know knew heard hear
tell lot lots thing things stuff type types been being get got go going gonna let lets im ive id ill youre
dont didnt doesnt isnt wasnt havent hasnt cant couldnt wouldnt shouldnt thats whats theres heres those
them they their he she his her him us our ours lately today tonight night day something somethin someone
alright great nice cool awesome fun sounds sound seems seem bit little pretty quite much many most
some other another same any every all both either neither enough too very right yeah yep nope im
times year years old new favorite favourite fan fans big ones one two first last next like hate hated
hates dislike disliked dislikes even best worst why because actually probably definitely though although into mind
absolutely totally truly honestly already still ever never lol haha wow oh ah yes guess mean say said hiya howdy
book books read reading reads reader else few better made released nothing similar vein set instead rather
usually normally typically generally often
help helping helped helps hope hoping wondering wonder idea ideas option options trailer trailers preview
previews current currently recently youve youd youll weve theyve theyre hes shes doing done part showed shown
detail details name chat chatting talk talking sorry glad today yesterday tomorrow weekend morning evening
afternoon work busy""".split())


def genre_words(genres: Sequence[str], aliases: Mapping[str, Sequence[str]] | None = None) -> GenreWords:
    """The words for a catalog's genres (its names and the `aliases` it declares) that a message is read with;
    words that carry no wish on their own ("love", "read") never mean a genre."""
    return GenreWords(genres, aliases, _FILLER)


def common_words(genres: GenreWords) -> set[str]:
    """Words that are never a person's name on their own: fillers and the catalog's genre words."""
    return {*_FILLER, *genres.words_of(genres.genres)}


def _genre_word(text: str, mention: Mention, genres: GenreWords) -> bool:
    """A title that is a genre word as written here: one word ("Adventure", "Western"), or the end of a genre
    phrase ("for the family", where The Family is also a film)."""
    word = normalise(mention.text)
    phrase = normalise(" ".join([*text[: mention.begin].split()[-1:], mention.text]))
    return (" " not in word and bool(genres.mentions(word))) or genres.ends_phrase(phrase)


_YEAR_WRITTEN = re.compile(r"\s*\(\s*(?:19|20)\d\d\s*\)")
_YEAR_SAID = re.compile(r"\bthe (?:one|version|original|film|movie) (?:from|of) (?:the year )?((?:19|20)\d\d)\b|"
                        r"\bthe ((?:19|20)\d\d) (?:one|version|film|movie|remake)\b", re.I)


def _year_said(text: str, found: list[Mention], titles: TitleIndex) -> list[Mention]:
    """"King Kong, the one from 1933": the year said after a title picks among the items of its name."""
    said = _YEAR_SAID.search(text)
    if not said:
        return found
    year = int(said.group(1) or said.group(2))
    out = []
    for m in found:
        picked = titles.pick(normalise(m.text), year) if m.end <= said.start() else None
        out.append(dataclasses.replace(m, item_id=picked) if picked else m)
    return out


_APPOSITION = re.compile(r",\s*the\s+(?:(?:[a-z]+\s+){0,2}(one|version|film|movie|novel|book|original)\s+)?$",
                         re.I)  # the kind of item, when said before the person, is group 1
# between a title and the people in it: "(2016) with Gosling and ", ", starring Al Pacino, "
_WITH_AFTER = re.compile(r"\s*(?:\(\d{4}\))?\s*,?\s*(?:with|starring|featuring)\s+"
                         r"(?:[A-Z][\w.'-]*\s*(?:,|and|&)?\s*){0,4}")
_KIND_AFTER = re.compile(r"\s*(?:['\u2019]s\s+)?(?:one|version|film|movie|novel|book)\b", re.I)


def _disambiguated(text: str, found: list[Mention], persons: list[PersonMention], titles: TitleIndex,
                   people: PeopleIndex | None, notes: list[str]) -> tuple[list[Mention], list[PersonMention]]:
    """"Ocean's Eleven, the one with George Clooney", "Leviathan, the Paul Auster novel": the person says which
    item of that name is meant (one they are credited in), and is no wish of their own; when no item of that
    name credits them, `notes` says the one meant is missing."""
    if people is None:
        return found, persons
    kept = []
    for person in persons:
        if _credited_in_title(text, found, person, titles, people):
            continue  # "kinda like La La Land (2016) with Gosling and Stone": who is in that title, no wish
        said = _APPOSITION.search(text[: person.begin])
        if not said or person.name is None or not (said.group(1) or _KIND_AFTER.match(text[person.end:])):
            kept.append(person)
            continue
        before = [m for m in found if m.end <= said.start()]
        if before:
            title = before[-1]
            works = people.works.get(name_key(person.name), set())
            ids = [i for i in titles.named(normalise(title.text)) or [] if i in works]
            if ids:
                found = [dataclasses.replace(m, item_id=ids[0]) if m is title else m for m in found]
            else:
                notes.append(f"I don't have the {title.text} with {person.name} in the catalog, so I went by the "
                             f"{titles.title_of(title.item_id)} I have.")
    return found, kept


def _credited_in_title(text: str, found: list[Mention], person: PersonMention, titles: TitleIndex,
                       people: PeopleIndex) -> bool:
    """Whether the person is written right after a title, as who is in it ("La La Land (2016) with Gosling
    and Stone", "Heat, starring Pacino"), and that title credits them."""
    before = [m for m in found if m.end <= person.begin]
    if not before or person.name is None:
        return False
    title = before[-1]
    if not _WITH_AFTER.fullmatch(text[title.end:person.end - len(person.text)]):  # its span opens with "with"
        return False
    works = people.works.get(name_key(person.name), set())
    return any(i in works for i in [title.item_id, *(titles.named(normalise(title.text)) or [])])


def _refs(text: str, state: SessionState) -> list[str]:
    """Items of the latest list the text points at ("the second one", "#3", "the last one")."""
    out = []
    for word, n in ORDINALS.items():
        if (m := re.search(rf"\b{word}\b", text)) and n <= len(state.last):
            out.append((m.start(), state.last[n - 1]))
    for m in re.finditer(r"(?:#|number |no\. ?)(\d{1,2})\b", text):
        n = int(m.group(1))
        if 1 <= n <= len(state.last):
            out.append((m.start(), state.last[n - 1]))
    if (m := re.search(r"\b(last one|the last)\b", text)) and state.last:
        out.append((m.start(), state.last[-1]))
    return [item for _, item in sorted(out)]


def _blank(text: str, mentions: list[Mention]) -> str:
    """The text with every title mention replaced by spaces (offsets stay valid)."""
    for m in mentions:
        text = text[: m.begin] + " " * (m.end - m.begin) + text[m.end :]
    return text


Stance = Literal["like", "dislike", "seen", "anchor"]


def stances(message: str, mentions: list[Mention]) -> list[tuple[str, Stance]]:
    """Each mentioned item with the stance its own words give it. A mention's words are those between it and
    the previous mention of the same clause (clauses end at sentence ends and at "but"/"though"), and the words
    after it up to the next mention. "kind of like X" is an anchor, "I like X and Y" likes both, "not X" and
    "didn't like X" dislike X, "seen X" is seen; a title named with no stance is an anchor (what the person
    talks about is what they want more of)."""
    text = message.lower()
    out: list[tuple[str, Stance]] = []
    previous: Stance | None = None
    for n, m in enumerate(mentions):
        left = mentions[n - 1].end if n else 0
        before = text[left : m.begin]
        breaks = list(_CLAUSE_BREAK.finditer(before))
        same_clause = n > 0 and not breaks
        if breaks:
            before = before[breaks[-1].end() :]
        right = mentions[n + 1].begin if n + 1 < len(mentions) else len(text)
        after = text[m.end : right]
        if cut := _CLAUSE_BREAK.search(after):
            after = after[: cut.start()]
        near = " ".join(before.split()[-6:])
        negated = bool(_NEGATED.search(near))
        stance: Stance
        if same_clause and previous is not None and _JOINED.match(before):
            stance = previous
        elif _ANCHOR_BEFORE.search(near):
            stance = "dislike" if negated else "anchor"
        elif _LIKE_BEFORE.search(near):
            stance = "dislike" if negated else "like"
        elif negated:
            stance = "anchor" if _SEEN_BEFORE.search(near) else "dislike"
        elif _DISLIKE_AFTER.search(after):
            stance = "dislike"
        elif _LIKE_AFTER.search(after):
            stance = "like"
        elif _SEEN_BEFORE.search(near):
            stance = "seen"
        else:
            stance = "anchor"
        out += [(item, stance) for item in m.items]  # a series: each of its books
        previous = stance
    return out


def asks_why(text: str) -> bool:
    """A sentence that opens with "why" ("why Fargo?", "but why that one", "why did you pick it"): a question
    about an item. "Don't know why I'm afraid of heights!" is not one."""
    return any(re.match(r"\W*(?:(?:but|and|so|ok|okay|hmm)\W+)?why\b", s) for s in re.split(r"[.!?;\n]+", text))


def descriptive_words(text: str) -> list[str]:
    """The words of a message that describe what the person wants: no filler, no contraction pieces, no numbers."""
    words = re.findall(r"[a-z][a-z'-]*[a-z]|[a-z]", text.lower().replace("\u2019", "'"))
    out = []
    for w in words:
        w = w.replace("'", "")
        if len(w) > 2 and w not in _FILLER and w not in ORDINALS:
            out.append(w)
    return out


def tastes(listed: str, genres: GenreWords) -> bool:
    """Whether the genres of `listed` (normalised, each comma read as "and") are tastes rather than what this
    item must be: a list of three or more ("comedy, drama and documentaries"), or genres after "I like" / "I'm
    into" ("I like some action", "I generally like comedy and drama"); never genres written together as one kind
    ("I love romantic comedies", "animated horror for toddlers")."""
    spans = genres.spans(listed)
    if not spans or any(not listed[end:begin].strip() for (_, _, end), (_, begin, _) in itertools.pairwise(spans)):
        return False
    return len({genre for genre, _, _ in spans}) >= 3 or bool(_TASTE.search(listed[: spans[0][1]]))


def _read_genres(flat: str, genres: GenreWords, filters: Filters, as_tastes: bool = False) -> bool:
    """Put the genres `flat` names on `filters`: denied ones are excluded, "only X" is one of them, any other
    is required ("romantic comedy": Comedy and Romance; "comedies or dramas": one of them) unless they are
    tastes (`as_tastes`): then one of them. Whether it named any genre it wants."""
    mentions = sorted(genres.mentions(flat).items(), key=lambda gp: gp[1])
    wanted = []
    for n, (genre, pos) in enumerate(mentions):
        before = flat[max(0, pos - 40) : pos]
        denial = re.search(rf"\b{_NEGATION}\b(?:\s+{_BETWEEN})*(?:\s+\w+)?\s*$", before)
        if denial and not re.match(r"(?:dont|not|never) (?:mind|hate)\b", denial.group(0)):  # "don't mind horror"
            filters.exclude_genres.append(genre)
        elif re.search(r"\b(only|just)\s*$", before):
            filters.include_genres.append(genre)
        else:
            wanted.append(genre)
            previous, at = mentions[n - 1] if n else ("", 0)
            if previous in wanted and _OR.match(flat[at:pos].split(" ", 1)[-1]):
                filters.include_genres += [g for g in (previous, genre) if g not in filters.include_genres]
    into = filters.include_genres if as_tastes else filters.require_genres
    into += [g for g in wanted if g not in filters.include_genres and g not in into]
    moods = [g for mood, targets in MOOD_GENRES.items() if re.search(rf"\b{mood}\b", flat)
             for g in map(genres.genre_of, targets) if g is not None]
    if moods and not filters.include_genres:
        filters.include_genres = list(dict.fromkeys(moods))
    return bool(wanted)


def parse_rules(message: str, state: SessionState, genres: GenreWords, titles: TitleIndex,
                years: list[int] | None = None, newest: int | None = None,
                people: PeopleIndex | None = None) -> StateUpdate:
    """The unambiguous part of a message, read without the LLM. `years` are those of the last list, `newest`
    the catalog's newest year (what "recent" and "classic" count from), `people` who the catalog credits."""
    joined = " ".join(message.split())
    text = "".join(c.lower()[:1] for c in joined)  # lower case with the offsets of `joined`
    if re.fullmatch(r"\W*(reset|start over|forget (it|everything))\W*", text):
        return StateUpdate(intent="reset")
    found = [m for m in titles.mentions(joined) if not _genre_word(joined, m, genres)]
    if people:  # "anything by Hitchcock": a person, though Hitchcock (2012) is a film
        cued = [p for p in people.find(joined) if p.name is not None]
        found = [m for m in found if not any(p.begin < m.begin and m.end <= p.end for p in cued)]
    found = _year_said(joined, found, titles)
    # "Hi, I'm Erica! How are you?": said to the other person, not a wish
    chatter = small_talk(joined, text, genres.words_of(genres.genres), _FILLER)
    persons = [p for p in (people.find(_blank(joined, found)) if people else [])
               if not any(b <= p.begin and p.end <= e for b, e in chatter)]
    missing = unmatched_titles(joined, found, [(p.begin, p.end) for p in persons])
    # a title written with its year is whole ("Slap Shot (1977) and Semi-Tough (1977)": the catalog lacks only the
    # second, and the first must not come back)
    found = [m for m in found if _YEAR_WRITTEN.match(joined, m.end) or re.search(r"\(\d{4}\)\s*$", m.text)
             or not any(b <= m.begin and m.end <= e for b, e in missing)]
    for b, e in list(missing):  # "I liked Harry Potter": the first of the titles that go on from it
        if (item := titles.starting(normalise(joined[b:e]))) is not None:
            missing.remove((b, e))
            found = sorted([*found, Mention(item, b, e, joined[b:e])], key=lambda m: m.begin)
    mentioned = list(dict.fromkeys(i for m in found for i in m.items))
    rest = _blank(text, found)  # titles (and the years written with them) say nothing about filters
    for begin, end in chatter:
        rest = blank(rest, begin, end)
    update = StateUpdate(named=mentioned)
    filters = update.filters
    update.notes += [f"I don't have {joined[b:e]} in the catalog, so I went by its words." for b, e in missing]
    for person in persons:
        rest = blank(rest, person.begin, person.end)  # a name is never a word of what the item is about
    found, persons = _disambiguated(joined, found, persons, titles, people, update.notes)
    mentioned = list(dict.fromkeys(i for m in found for i in m.items))
    update.named = mentioned
    for person in persons:
        if person.name is None:
            update.notes.append(f"I don't know anyone called {person.text} in this catalog.")
        elif person.negated:
            filters.exclude_people += [person.name]
        else:
            filters.people += [person.name]
    rest = drop_contrast(rest)  # "I usually like action, but tonight ...": only tonight's wish counts
    rest = re.sub(r"\b(?:instead of|rather than)\b", lambda m: "not".ljust(len(m.group(0))), rest)
    rest = read_order(read_places(read_length(rest, filters), filters), filters)
    flat = normalise(rest)
    refs = _refs(rest, state)
    if not refs and not mentioned and re.search(r"\b(it|that one|this one|that)\b", rest):
        pointed = state.focus or (state.last[0] if state.last else None)
        refs = [pointed] if pointed else []
    if asks_why(rest) and (mentioned or refs or state.last):
        update.intent = "why"
        update.why = (mentioned or refs or state.last)[0]
        return update
    for item, stance in stances(text, found):
        bucket = {"like": update.like, "dislike": update.dislike, "seen": update.seen,
                  "anchor": update.anchors}[stance]
        if item not in bucket:
            bucket.append(item)
    if refs:
        if _MORE_LIKE.search(rest):
            update.anchors += [i for i in refs if i not in update.anchors]
        elif _DISLIKE.search(rest):
            update.dislike += refs
        elif _SEEN.search(rest):
            update.seen += refs
        elif _LIKE.search(rest):
            update.like += refs
    restated = bool(_RESTATE.search(rest))
    update.restate = restated
    # "I generally like comedy", later "I like some action too" / "also dramas are great": more tastes, not a
    # film that must be both
    earlier = bool(state.filters.include_genres or state.filters.require_genres)
    named_genres = genres.mentions(flat)
    update.tastes = bool(named_genres) and (
        tastes(normalise(re.sub(r"[,/&;]", " and ", rest)), genres) and (len(named_genres) > 1 or earlier)
        or earlier and bool(_ALSO_LIKED.search(flat)))
    if _read_genres(flat, genres, filters, update.tastes) and restated:
        update.replace_genres = True  # "actually, a comedy instead": the genres asked for before no longer hold
    if violent := re.search(rf"\b{_NEGATION}\s+(?:(so|too|that|very|overly|super|extremely)\s+)?"
                            r"(violent|violence|gory|gore|brutal)\b", rest):
        # "nothing violent" leaves out the violent genres; "just not too violent" is a degree, not a denial of
        # crime and war films: only the genre made of it goes
        denied = VIOLENT[:1] if violent.group(1) else VIOLENT
        filters.exclude_genres += [g for v in denied for g in genres.genres
                                   if g.lower() == v and g not in filters.exclude_genres]
    rest = read_denied(rest, filters, {*genres.words_of(genres.genres), *_VIOLENT_WORDS}, _FILLER)
    read_years(rest, filters, newest, years)
    said = [i for i in mentioned if i in update.seen or i in update.like]
    if said and not update.anchors and _SIMILAR.search(rest):
        update.anchors.append(said[-1])  # "I've seen Toy Story, something like it": more like the title just named
    # words of excluded and "only" genres leave the query; those of required genres stay in it, they also say
    # what the item is like (themes set, dev moods: 0.43 without them, 0.47 with them)
    filtered = genres.words_of([*filters.exclude_genres, *filters.include_genres])
    content = [w for w in descriptive_words(rest) if w not in filtered and not re.fullmatch(
        r"\d0s|violent|violence|gory|gore|brutal|older|newer|recent|modern|classics?|latest|newest", w)]
    if content and not refs:
        update.query = " ".join(content)
    if re.fullmatch(r"\W*(/?more|more please|show me more|next|others?)\W*", text):
        update.intent = "more"
    elif (update.anchors and not mentioned) or filters.states_wish():
        update.intent = "refine"
    elif (update.like or update.dislike or update.seen) and refs and not update.query:
        update.intent = "feedback"
    elif mentioned or update.like or update.query:
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
    try:
        completion = backend.complete(messages, ModelUpdate.model_json_schema(), max_tokens)
        return ModelUpdate.model_validate_json(completion.text)
    except (ValidationError, ContextLengthError, BackendUnavailableError):  # the rules' reading stands alone
        return None


def merge(rules: StateUpdate, model: ModelUpdate | None, message: str, titles: TitleIndex,
          genres: GenreWords, fields: frozenset[str] = frozenset(READING_FIELDS)) -> StateUpdate:
    """Rules win; the model may only add what the message itself contains, and only in the field groups of
    `fields` (READING_FIELDS: the ones its calibration measured to help)."""
    if model is None:
        return rules
    flat = normalise(message)
    mentioned = set(titles.find_in_text(message))
    merged = rules.model_copy(deep=True)

    def grounded(names: list[str]) -> list[str]:
        ids = [titles.resolve(n) for n in names]
        return [i for i in ids if i is not None and i in mentioned]

    if "intent" in fields and merged.intent == "other" and model.intent in ("recommend", "refine"):
        merged.intent = model.intent  # never a reset or a why
    if "titles" in fields and not any((merged.like, merged.dislike, merged.seen, merged.anchors)):
        for field, names in (("like", model.liked_titles), ("dislike", model.disliked_titles),
                             ("seen", model.seen_titles), ("anchors", model.more_like_titles)):
            current = getattr(merged, field)
            current += [i for i in grounded(names) if i not in current]
    if "genres" in fields:
        in_message = genres.mentions(flat)
        for field, proposed in (("exclude_genres", model.exclude_genres),
                                ("include_genres", model.include_genres)):
            if not getattr(merged.filters, field):
                setattr(merged.filters, field, [g for g in genres.genres if g in in_message and
                                                g.lower() in {p.lower() for p in proposed}])
    if "years" in fields:
        joined = " ".join(message.split())
        rest = _blank(joined, titles.mentions(joined))  # "Deadpool (2016)" is a title, not a year filter
        for field in ("year_min", "year_max"):
            value = getattr(model, field)
            if getattr(merged.filters, field) is None and value is not None and re.search(rf"\b{value}\b", rest):
                setattr(merged.filters, field, value)
    return merged
