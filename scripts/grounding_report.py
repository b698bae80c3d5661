"""False accepts and false rejects of the reason checks on hand-labelled model reasons.

Each line of tests/data/reasons_smollm2.jsonl is a reason SmolLM2-135M wrote during `genre-agent calibrate`,
the candidate it was written for (with its evidence), the user's history titles, and a hand label:
`grounded` is true when every claim is a listed fact of that item or a title of the user's history.
`--before COMMIT` also scores the check as it was at that commit (`reason_problem` in genre_agent/schemas.py).

`--labelled FILE` reads another labelled sample (tests/data/reasons_items.jsonl: reasons written item by item,
`benchmarks/reasons.py --out`), whose rows also carry the hand labels `informative` (it says a fact its
evidence sentence does not) and `spoiler`; the informative check is then scored on the grounded rows too.

    python scripts/grounding_report.py [--before b14f972] [--labelled FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genre_agent.llm.grounding import reason_problem, uninformative
from genre_agent.schemas import Candidate

LABELLED = Path(__file__).resolve().parent.parent / "tests" / "data" / "reasons_smollm2.jsonl"


def old_check(commit: str) -> Callable[[str, Candidate, int], str | None]:
    """`reason_problem` of genre_agent/schemas.py at `commit`, run against today's Candidate model."""
    source = subprocess.run(["git", "show", f"{commit}:genre_agent/schemas.py"], capture_output=True, text=True,
                            check=True, cwd=LABELLED.parent).stdout
    module = types.ModuleType("schemas_before")
    exec(compile(source, f"{commit}:genre_agent/schemas.py", "exec"), module.__dict__)
    check: Callable[[str, Candidate, int], str | None] = module.reason_problem
    return check


def score(rows: list[dict[str, Any]], accepts: Callable[[dict[str, Any]], bool]) -> tuple[int, int]:
    """(false accepts, false rejects)."""
    verdicts = [(row["grounded"], accepts(row)) for row in rows]
    return sum(ok and not g for g, ok in verdicts), sum(g and not ok for g, ok in verdicts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", help="a commit whose check to compare with")
    ap.add_argument("--labelled", type=Path, default=LABELLED, help="the labelled sample (JSONL)")
    args = ap.parse_args()
    rows = [json.loads(line) for line in args.labelled.read_text(encoding="utf-8").splitlines()]
    bad = sum(not r["grounded"] for r in rows)
    print(f"{len(rows)} labelled reasons: {len(rows) - bad} grounded, {bad} not")
    checks: list[tuple[str, Callable[[dict[str, Any]], bool]]] = []
    if args.before:
        before = old_check(args.before)
        checks.append((f"check at {args.before}", lambda r: before(r["reason"], Candidate.model_validate(
            r["candidate"]), 400) is None))
    checks.append(("grounding check (now)", lambda r: reason_problem(
        r["reason"], Candidate.model_validate(r["candidate"]), 400, r["history_titles"]) is None))
    for name, accepts in checks:
        false_accepts, false_rejects = score(rows, accepts)
        print(f"{name:<24} false accepts {false_accepts}/{bad}   false rejects {false_rejects}/{len(rows) - bad}")
    if all("informative" in r for r in rows):
        grounded = [r for r in rows if r["grounded"]]
        plain = sum(not r["informative"] for r in grounded)
        false_accepts, false_rejects = score(
            [{**r, "grounded": r["informative"]} for r in grounded],
            lambda r: uninformative(r["reason"], Candidate.model_validate(r["candidate"])) is None)
        print(f"of the {len(grounded)} grounded: {len(grounded) - plain} informative, {plain} not")
        print(f"{'informative check':<24} false accepts {false_accepts}/{plain}   false rejects "
              f"{false_rejects}/{len(grounded) - plain}")
        print(f"spoilers (labelled): {sum(r['spoiler'] for r in rows)}/{len(rows)}")


if __name__ == "__main__":
    main()
