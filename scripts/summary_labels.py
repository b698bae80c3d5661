"""Share of the shown movie summaries that say what the film is about, on the hand labels in
tests/data/summaries/labels.jsonl (read its README for the rule), before and after the premise chooser.

    python scripts/summary_labels.py

Prints, per split (dev: looked at while choosing the scoring; held-out: every third film, not), the share with
a 95 % bootstrap interval, of the `before` summaries by each of the two labellers, of the `after` ones (second
labeller) and of `after` with the lead clause of `summary_leads.py` (an experiment, not shipped: the third
labeller on the texts with a clause, the second's `after` label on the others, the same text), and how often the
two labellers agree; checks that each labelled lead text is what `summary_leads.py` makes, and that each labelled
`after` is the shipped summary, has no citation mark and, when the source plots are here
(../shared/datasets/movie-plots), comes from the plot's first part only.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path

import numpy as np

from genre_agent.eval.metrics import bootstrap_ci

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from make_movie_descriptions import OUT, PLOTS, first_part  # noqa: E402
from summary_leads import Leads  # noqa: E402

LABELS = ROOT / "tests" / "data" / "summaries" / "labels.jsonl"
CITATION = re.compile(r"\[(?:\d{1,3}|[a-z]|(?:n|nb|note)\s?\d{1,3}|[a-z ]{1,30} needed)\]", re.IGNORECASE)


def share(values: list[bool]) -> str:
    x = np.array(values, dtype=float)
    low, high = bootstrap_ci(x)
    return f"{x.mean():.2f} [{low:.2f}, {high:.2f}] ({int(x.sum())}/{len(x)})"


def main() -> None:
    labels = [json.loads(line) for line in LABELS.read_text().splitlines()]
    print("| split | films | before (first labeller) | before (second labeller) | after (second labeller) "
          "| lead clause + after (third labeller where a clause) |\n|---|---|---|---|---|---|")
    for split in ("dev", "held-out", "all"):
        rows = [r for r in labels if split in ("all", r["split"])]
        print(f"| {split} | {len(rows)} | {share([r['before_says_premise'] for r in rows])} "
              f"| {share([r['before_says_premise_round2'] for r in rows])} "
              f"| {share([r['after_says_premise'] for r in rows])} "
              f"| {share([r['lead_says_premise'] for r in rows])} |")
    both = [(r["before_says_premise"], r["before_says_premise_round2"]) for r in labels]
    print(f"the two labellers agree on {sum(a == b for a, b in both)} of {len(both)} `before` texts; "
          f"only the first said yes on {sum(a and not b for a, b in both)}, only the second on "
          f"{sum(b and not a for a, b in both)}")
    leads = Leads()
    clauses = {r["movieId"]: leads.lead(r["movieId"]) for r in labels}
    for split in ("dev", "held-out"):
        rows = [r for r in labels if r["split"] == split and clauses[r["movieId"]]]
        said = sum(r["lead_says_premise"] for r in rows)
        print(f"{split}: {len(rows)} films with a lead clause, said the premise with it {said}, "
              f"without it {sum(r['after_says_premise'] for r in rows)}")
    remade = [r["movieId"] for r in labels if leads.with_lead(r["movieId"], r["after"]) != r["lead_summary"]]
    print(f"labelled lead texts that summary_leads.py no longer makes: {remade or 'none'}")
    shipped = {r["movieId"]: r["summary"] for r in map(json.loads, gzip.open(OUT, "rt"))}
    stale = [r["movieId"] for r in labels if shipped.get(r["movieId"]) != r["after"]]
    cited = [r["movieId"] for r in labels if CITATION.search(r["after"])]
    print(f"labelled `after` that is not the shipped summary: {stale or 'none'}")
    print(f"citation marks: before {sum(bool(CITATION.search(r['before'])) for r in labels)}, after {len(cited)}")
    print(f"labelled spoilers (after): {sum(r['after_spoiler'] for r in labels)}")
    if PLOTS.exists():
        plots = {r["movieId"]: r["plot"] for r in map(json.loads, gzip.open(PLOTS, "rt"))}
        later = [r["movieId"] for r in labels if r["after"] not in " ".join(first_part(plots[r["movieId"]]))]
        print(f"after summaries not inside the plot's first part: {later or 'none'}")


if __name__ == "__main__":
    main()
