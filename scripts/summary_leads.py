"""A lead clause for a movie's summary, made only from the film's own facts: its genre and its users' topical tags
("A comedy about time travel."), meant to say what the film is about where the plot sentence does not (issue 40).

    python scripts/summary_leads.py            # coverage over the described films, and the 80 dev films' texts
    python scripts/summary_leads.py held-out   # the 40 held-out films' texts (read once, after freezing the rule)

The rule (`lead`): the film's topical tags are its tags given to at least MIN_ITEMS films of the catalog (the
vocabulary `retrieval.needs.NeedLexicon` learns, which leaves out one user's private notes: "stupid is as stupid
does", "i see dead people") that are not a genre or a form of one ("dark comedy", "space opera"), not a person
credited in the catalog ("brad pitt") and not in NOT_TOPICAL (opinions, moods and styles, sources, authors,
studios, franchises and characters, places and decades, bookkeeping such as "in netflix queue"). The clause is
"A <genre> about <tag>." with the film's least common genre (the most telling one) and its most tagged topical
tag (ties: the rarer in the catalog first), written as the catalog's plot openings write it ("World War II",
"NASA", "wizards"), with "a", "the" or no article; a tag named as giving the film's twist away (TWIST_TAGS) is
never used; at most LEAD_CHARS characters, a whole tag only (a second tag, tried on the dev films, mostly added
noise: "a heist and religion" for Reservoir Dogs); no topical tag, no clause (nothing is invented).

`with_lead` puts it before a summary and keeps the whole within SUMMARY_CHARS, shortening the summary at a
sentence end; when even its first sentence does not fit, the summary is left as it is, without a clause.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from genre_agent.data.descriptions import whole_sentences

ROOT = Path(__file__).resolve().parent.parent
MOVIES = ROOT / "catalogs" / "movielens"
LABELS = ROOT / "tests" / "data" / "summaries" / "labels.jsonl"
SUMMARY_CHARS = 300
LEAD_CHARS = 60
MIN_ITEMS = 2  # as retrieval.needs: a tag is part of the vocabulary once it describes this many films
GENRE_NOUNS = {"Action": "an action film", "Adventure": "an adventure film", "Animation": "an animated film",
               "Children": "a children's film", "Comedy": "a comedy", "Crime": "a crime film",
               "Documentary": "a documentary", "Drama": "a drama", "Fantasy": "a fantasy film",
               "Film-Noir": "a film noir", "Horror": "a horror film", "Musical": "a musical",
               "Mystery": "a mystery", "Romance": "a romance", "Sci-Fi": "a science fiction film",
               "Thriller": "a thriller", "War": "a war film", "Western": "a western"}
# Tags of two films or more that say nothing of what a film is about, read one by one from the catalog's whole
# vocabulary (542 tags), by kind:
NOT_TOPICAL = frozenset("""
awesome|bad|bad acting|bad plot|bad script|bad writing|beautiful|beautiful scenery|big budget|boring|cinematography
|classic|clever|complicated|cult|cult classic|cult film|dialogue|good dialogue|good soundtrack|great acting
|great dialogue|great ending|great performances|great soundtrack|highly quotable|quotable|imdb top 250|intelligent
|interesting|masterpiece|notable soundtrack|original|original plot|overrated|plot holes|predictable|smart
|soundtrack|stupid ending|too long|unique|visually appealing|visually stunning|audience intelligence underestimated
|long shots|controversial|offensive|made me cry|seen more than once|not seen|in netflix queue
|not available from netflix|06 oscar nominated best movie - animation|oscar (best actress)|nudity (full frontal)
|heroine in tight suit|sexy female scientist|reciprocal spectator|alternate endings|characters|ensemble cast
|multiple storylines|narrated|nonlinear|black and white|remake|remade|sequel|mindfuck|twist|twist ending
|twists & turns|plot twist|powerful ending|character study|movies
|artistic|artsy|atmospheric|bittersweet|bleak|brutal|brutality|cerebral|claustrophobic|confrontational|creepy
|cynical|dark|depressing|disturbing|downbeat|dreamlike|eerie|emotional|enigmatic|epic|feel-good|fun|funny|goofy
|gothic|gritty|hallucinatory|harsh|heartbreaking|heartwarming|hilarious|humor|humorous|humour|inspirational
|inspiring|intellectual|intense|ironic|irreverent|lyrical|meditative|melancholy|moody|moving|paranoid
|philosophical|philosophy|poetic|poignant|psychedelic|psychological|psychology|quirky|reflective|retro|ridiculous
|sad|sarcasm|satirical|scary|sentimental|silly|slick|stylish|stylized|surreal|surrealism|suspense|suspenseful
|sweet|symbolism|tear jerker|tense|thought-provoking|touching|tragic|trippy|understated|unconventional|very funny
|violent|violence|weird|whimsical|witty|crude humor|dark humor|dark hero|bloody|existentialism|morality
|action|adventure|comedy|crime|documentary|drama|fantasy|horror|mystery|romance|romantic|sci-fi|thriller|war
|western|black comedy|british comedy|dark comedy|off-beat comedy|courtroom drama|psychological thriller|neo-noir
|chick flick|screwball|spoof|parody|satire|mockumentary|biopic|anime|claymation|spaghetti western|love story
|slasher|swashbuckler|space opera|heroic bloodshed|animal movie|teen|children|generation x|cyberpunk
|aardman|agatha christie|astaire and rogers|c.s. lewis|capote|clousseau|coen brothers|dc comics|dickens|disney
|e.m. forster|edith wharton|george bernard shaw|hemingway|henry james|hepburn and tracy|jane austen|john grisham
|marvel|nick and nora charles|nick hornby|pixar|ray bradbury|rogers and hammerstein|shakespeare
|shakespeare sort of|studio ghibli|tarantino|tennessee williams|tolkein|tolkien|tom clancy|star trek|star wars
|darth vader|luke skywalker|hannibal lecter|jason|batman|based on a book|based on a tv show
|based on a true story|true story|comic book|marx brothers|alfred hitchcock|stephen king
|1920s|1950s|1970s|1980s|africa|australia|england|france|italy|japan|china|india|ireland|europe|l.a.|new york
|new york city|rome|south america|cambodia|vietnam|island|hollywood|wall street
""".replace("\n", "").split("|")) - {""}
# singular nouns that read without "a": "about time travel", not "about a time travel"
MASS = frozenset("""time travel|space|space travel|magic|music|jazz|food|crime|prison|politics|religion|art|dance
|death|love|marriage|survival|revenge|racism|rasicm|adultery|adolescence|sexuality|alcoholism|journalism|terrorism
|judaism|anti-semitism|paranoia|depression|corruption|espionage|mathematics|football|baseball|basketball|golf
|boxing|chess|ballet|photography|slavery|television|tv|radio|theater|business|show business|movie business
|music business|class|race|family|friendship|fatherhood|motherhood|organized crime|world war ii|civil war
|cold war|apocalypse|memory|amnesia|insanity|loneliness|disability|blindness|pregnancy|divorce|adoption
|christmas|halloween|martial arts|artificial intelligence|mental illness|drug abuse|child abuse|death penalty
|terminal illness|virginity|immigration|aids|cancer|heroin|rape|military|police|college|school|high school
|white guilt|girl power|bromance|brainwashing|figure skating|surfing|gambling|sports|cross dressing|holocaust
|dystopia|future|imagination|the force|prostitution|court|fbi|nasa|moon|myth|mythology|archaeology|history
|medieval|genetics|schizophrenia|mafia|post apocalyptic|post-apocalyptic
|men in drag""".replace("\n", "").split("|"))
# ... and those that read with "the": "about the future"
THE = frozenset("future|moon|mafia|holocaust|apocalypse|cold war|civil war|military|force|bible".split("|"))
# A tag that gives a film's twist away, named film by film as they were found reading (as TWISTS for sentences):
# Fight Club's narrator and Tyler Durden are one man.
TWIST_TAGS = {2959: frozenset({"schizophrenia", "mental illness"})}
_MASS_END = re.compile(r"(s|ing|ism|ity|ion|ness|ence|ance|ery|ics|ogy|phy|ship|hood|dom|ment|y)$")


def _spellings(keys: set[str], movies: Path) -> dict[str, str]:
    """How the plot openings of the catalog write each tag, when they do, past a sentence's first word: "World War
    II", "NASA", "Christmas", but "wizards"; tags are typed in any case."""
    with gzip.open(movies / "descriptions.jsonl.gz", "rt") as f:
        text = " ".join(json.loads(line)["plot_start"] for line in f)
    found: dict[str, Counter[str]] = {}
    pattern = re.compile(r"(?<=[a-z,;] )(" + "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
                         + r")\b", re.IGNORECASE)
    for m in pattern.finditer(text):
        found.setdefault(m.group(1).lower(), Counter())[m.group(1)] += 1
    return {k: c.most_common(1)[0][0] for k, c in found.items()}


def _people() -> set[str]:
    """Every person credited in the catalog (directors and cast), lower case, names of two words or more."""
    with gzip.open(MOVIES / "people.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    return {n.lower() for r in rows for n in (*r.get("directors", ()), *r.get("cast", ())) if " " in n.strip()}


class Leads:
    """The catalog's topical tags, per film, and their clause."""

    def __init__(self, movies: Path = MOVIES) -> None:
        tags = pd.read_csv(movies / "tags.csv")
        tags["key"] = tags["tag"].astype(str).str.strip().str.lower()
        items = pd.read_csv(movies / "movies.csv").set_index("movieId")
        self.genres = {int(i): [g for g in str(gs).split("|") if g in GENRE_NOUNS]
                       for i, gs in items.genres.items()}
        genre_count = Counter(g for gs in self.genres.values() for g in gs)
        self.genre_count = genre_count
        films = tags.groupby("key").movieId.nunique()
        people = _people()
        genre_words = {g.lower() for g in GENRE_NOUNS} | {"sci-fi", "science fiction", "noir", "film noir"}
        self.topical = {t for t, n in films.items() if n >= MIN_ITEMS and t not in NOT_TOPICAL
                        and t not in people and t not in genre_words}
        self.catalog_films = films.to_dict()
        self.spelling = _spellings(self.topical, movies)
        kept = tags[tags.key.isin(self.topical)]
        counted = kept.groupby(["movieId", "key"]).size().reset_index(name="n")
        self.tags: dict[int, list[str]] = {}
        for film, group in counted.groupby("movieId"):
            ordered = sorted(zip(group.key, group.n, strict=True),
                             key=lambda x: (-x[1], self.catalog_films[x[0]], x[0]))
            twists = TWIST_TAGS.get(int(film), frozenset())
            self.tags[int(film)] = [k for k, _ in ordered if k not in twists]

    def _word(self, key: str) -> str:
        shown = self.spelling.get(key, key)
        if key in THE:
            return f"the {shown}"
        if key in MASS or _MASS_END.search(key):
            return shown
        return f"{'an' if key[0] in 'aeiou' else 'a'} {shown}"

    def lead(self, film: int) -> str:
        """The film's lead clause, or "" when it has no topical tag: "A comedy about time travel."."""
        tags = self.tags.get(film, [])
        if not tags:
            return ""
        genres = self.genres.get(film, [])
        noun = GENRE_NOUNS[min(genres, key=lambda g: (self.genre_count[g], g))] if genres else "a film"
        clause = f"{noun} about {self._word(tags[0])}."
        clause = clause[:1].upper() + clause[1:]
        return clause if len(clause) <= LEAD_CHARS else ""

    def with_lead(self, film: int, summary: str, max_chars: int = SUMMARY_CHARS) -> str:
        """The summary after the film's lead clause, within `max_chars`: cut at a sentence end if need be; the
        summary alone when no clause or when not even its first sentence fits beside it."""
        clause = self.lead(film)
        if not clause:
            return summary
        kept = whole_sentences(summary, max_chars - len(clause) - 1)
        return f"{clause} {kept}" if kept else summary


def lead_of(summary: str, leads: Leads, film: int) -> str:
    """The lead clause a shown summary starts with, or ""."""
    clause = leads.lead(film)
    return clause if clause and summary.startswith(clause + " ") else ""


def main(split: str = "dev") -> None:
    leads = Leads()
    with gzip.open(MOVIES / "descriptions.jsonl.gz", "rt") as f:
        described = {r["movieId"]: r["summary"] for r in map(json.loads, f)}
    every = set(pd.read_csv(MOVIES / "tags.csv").movieId.unique())
    clause = [film for film in described if leads.lead(film)]
    made = {film: leads.with_lead(film, described[film]) for film in clause}
    shown = [film for film in clause if made[film] != described[film]]
    cut = [film for film in shown if not made[film].endswith(described[film])]
    print(f"topical tags: {len(leads.topical)} of the {sum(n >= MIN_ITEMS for n in leads.catalog_films.values())} "
          f"tags of {MIN_ITEMS} films or more")
    print(f"described films: {len(described)}; with any tag: {len(set(described) & every)}; with a lead clause "
          f"(a topical tag): {len(clause)}, shown in {len(shown)} (the others' first sentence leaves no room), "
          f"the summary shortened at a sentence end in {len(cut)}")
    labels = [json.loads(line) for line in LABELS.read_text().splitlines()]
    for r in labels:
        if r["split"] == split:
            text = leads.with_lead(r["movieId"], r["after"]) if leads.lead(r["movieId"]) else "(no clause)"
            print(f"\n{r['movieId']} {r['title']} [after {r['after_says_premise']}]\n  {text}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
