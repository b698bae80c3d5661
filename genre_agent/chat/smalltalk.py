"""What a message says to the other person rather than about the film wanted: greetings and thanks, questions
about the recommender ("what kind of movies do you like?", "how are you?"), talk about one's day ("I had a long
day at work") and the names the two use for each other ("I'm Erica", "Hi Bob"). None of it is a request, so
`small_talk` finds its spans and the reading blanks them before it looks for genres and query words.

A sentence that also asks for something ("how are you? I want a comedy", "can you recommend any horror?") keeps
its request: only questions without a request cue and day talk without a wish are dropped whole.
"""

from __future__ import annotations

import re
from collections.abc import Collection

# "I'm Erica", "my name is Bob", "Hi Erica": a capitalised word where a name is introduced or greeted
_NAMED = re.compile(r"\b(?:[Mm]y name(?:'s| is)|[Cc]all me|I'?m|I am|[Tt]his is|[Hh]i|[Hh]ello|[Hh]ey|[Tt]hanks|"
                    r"[Tt]hank you|[Bb]ye|[Gg]oodbye),?\s+([A-Z][a-z]+)\b(?!\s+[A-Z])")
# words after "I'm" that are not names ("I'm Not sure", "I'm Good")
_NOT_NAMES = {"not", "good", "fine", "well", "great", "doing", "looking", "just", "so", "very", "really", "also",
              "into", "a", "an", "the", "in", "okay", "ok", "sure", "glad", "happy", "sorry", "there", "all",
              "thinking", "trying", "open", "up", "down", "new", "here", "back", "pretty", "kind", "more"}
_SENTENCE = re.compile(r"[^.!?\n]+[.!?\n]*")
# a question about the recommender: "what kind of movies do you like?", "have you seen it?", "how about you?"
_ABOUT_YOU = re.compile(r"^\W*(?:(?:and|so|ok|okay|well|oh|hmm|what about|how about)\W+)?"
                        r"(?:do|did|have|are|were|is|would|what|whats|what's|which|how|hows|how's|who|where|when)\b"
                        r"[^?]*\byou(?:rs?|rself)?\b[^?]*\?")
_HOW_ARE_YOU = re.compile(r"^\W*(?:(?:and|so)\W+)?(?:how about you|what about you|and you|you)\W*\??\W*$")
# greetings and thanks, dropped wherever they are
_GREETING = re.compile(r"\b(?:(?:hi|hello|hey|howdy|greetings)(?: there)?|"
                       r"good (?:morning|afternoon|evening|night)|nice to meet you|pleased to meet you|"
                       r"thanks?(?: you)?(?: so much| very much| a lot)?"
                       r"(?: for (?:the|your) (?:help|suggestions?|recommendations?|chat|time))?|"
                       r"have a (?:\w+ )?(?:day|night|evening|weekend)|you too|same to you|bye|goodbye)\b")
# day talk: how one is, one's day, work; a sentence of it that asks for nothing is dropped whole
_DAY = re.compile(r"\b(?:how are you|how're you|how r u|how is it going|how's it going|hows it going|"
                  r"how (?:is|was) your (?:day|night|evening|weekend|week)|how have you been|"
                  r"(?:i'?m|i am|doing|been) (?:doing )?(?:good|well|fine|great|ok|okay|alright|pretty good|"
                  r"very well|not bad|tired|exhausted|bored)|"
                  r"my (?:day|night|evening|weekend|week|morning) (?:is|was|has been|went)|"
                  r"(?:had|having) a (?:\w+ )?(?:day|week|night|weekend)|"
                  r"(?:just )?(?:got|get|came|come) (?:home|back|off) (?:from )?(?:work|school)?)\b")
# a sentence that asks for something is kept whatever else it says
_WISH = re.compile(r"\b(?:recommend|suggest|suggestion|want|wanna|looking|look for|need|in the mood|feel like|"
                   r"prefer|any good|know any|know of|got any|have any|find me|help me find|something|anything|"
                   r"movies?|films?|watch|seen|like|love|enjoy|into|fan of|favou?rite)\b")


def small_talk(joined: str, text: str, genres: Collection[str] = (), common: Collection[str] = ()
               ) -> list[tuple[int, int]]:
    """The spans of `text` (the message in lower case, offsets of `joined`, the message as written) that are
    small talk, in order. `genres` (the catalog's genre words) and `common` words are never a name, and a
    question holding a genre word is kept ("Hello Action movies", "Do you like comedies? I love them")."""
    spans = [(m.start(1), m.end(1)) for m in _NAMED.finditer(joined)
             if m.group(1).lower() not in {*_NOT_NAMES, *genres, *common}]
    for m in _SENTENCE.finditer(text):
        sentence = m.group(0)
        question = _ABOUT_YOU.match(sentence) and not _asks_you(sentence) and not _holds(sentence, genres)
        if _HOW_ARE_YOU.match(sentence) or question or (_DAY.search(sentence) and not _WISH.search(sentence)):
            spans.append((m.start(), m.end()))
        else:
            spans += [(m.start() + g.start(), m.start() + g.end()) for g in _GREETING.finditer(sentence)]
    return sorted(spans)


def _holds(sentence: str, words: Collection[str]) -> bool:
    return any(w in words for w in re.findall(r"[a-z][a-z-]*", sentence))


def _asks_you(question: str) -> bool:
    """A question to the recommender that is a request ("do you have any good horror movies?", "could you
    suggest something?", "what would you recommend?")."""
    return bool(re.search(r"\b(?:recommend|suggest|any(?:thing)? (?:good|else|other|\w+ (?:movies?|films?))|"
                          r"know any|know of|got any|have any|help me|find me|give me|show me)\b", question))
