"""The model's reasons, item by item, on real requests: how many it writes that are shown, and how fast.

For each request (sampled catalog users, then the themed requests of tests/data/requests/themes.jsonl, dev
part, as new users) one answer of k items with the reasons role pinned to the model, as served: the list
comes first (retrieval), then one model call per item. Per request: list ms, first model answer ms after the
list, all k answers ms after the list. Per model: the share of reasons that pass the grounding check, the
share that are informative too (shown), p50 of the times, peak RSS and the GGUF's size. Every reason is
written to `--out` (JSONL: the request, the item's facts, the reason, the checks' verdicts) for labelling.

    python benchmarks/reasons.py --model qwen2.5-coder-0.5b [--users 10] [--themes 10] [--query TEXT] [-k 10]
        [--out FILE]

The deadline of the served path holds (`ranking.reasons_deadline_s`); raise it
(GENRE_AGENT_RANKING__REASONS_DEADLINE_S=600) to measure what a slow model writes rather than what it reaches.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from genre_agent.llm.grounding import reason_problem, uninformative
from genre_agent.llm.models import MODELS
from genre_agent.llm.routing import Routes
from genre_agent.pipeline import Recommender
from genre_agent.schemas import Recommendation, RecommendRequest
from genre_agent.settings import load_settings

REASONS = Routes(ranking_weight=0.0, ranking_method="json", permutations=1, reasons=True,
                 calibration="pinned: the model writes the reasons of the retrieval order")
THEMES = Path(__file__).parent.parent / "tests" / "data" / "requests" / "themes.jsonl"


def requests(rec: Recommender, users: int, themes: int, k: int, seed: int) -> list[RecommendRequest]:
    ids = rec.catalog.interactions.user_id.drop_duplicates().sort_values()
    out = [RecommendRequest(user_id=str(u), k=k) for u in ids.sample(users, random_state=seed).tolist()]
    rows = [json.loads(line) for line in THEMES.read_text().splitlines() if line.strip()]
    out += [RecommendRequest(query=r["turns"][0], k=k) for r in rows if r["split"] == "dev"][:themes]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="named model or GGUF path (default: the configured one)")
    ap.add_argument("--catalog", default="movielens")
    ap.add_argument("--prompts", default=None)
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--themes", type=int, default=10)
    ap.add_argument("--query", action="append", default=[], help="a request of its own (repeatable)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="JSONL of every reason and its verdicts")
    args = ap.parse_args()

    settings = load_settings(catalog=args.catalog, k=args.k, **{"backend.model": args.model,
                                                                "prompts": args.prompts})
    served = Recommender.open(settings)
    rec = served.with_backend(served.backend, REASONS)
    max_chars = rec.prompt_set(args.prompts).reason_max_chars(settings.ranking.reason_max_chars)
    reqs = requests(rec, args.users, args.themes, args.k, args.seed)
    reqs += [RecommendRequest(query=q, k=args.k) for q in args.query]
    rec.run(reqs[0])  # warm: the model loaded, the first Chroma query, the templates
    lists: list[float] = []
    firsts: list[float] = []
    alls: list[float] = []
    calls: list[float] = []
    rows: list[dict[str, Any]] = []
    for request in reqs:
        started = time.perf_counter()
        at: dict[str, float] = {}

        def listed(_: object, at: dict[str, float] = at) -> None:
            at["list"] = time.perf_counter()

        def shown(_: Recommendation, at: dict[str, float] = at) -> None:
            at.setdefault("reason", time.perf_counter())

        run = rec.run(request, on_first=listed, on_reason=shown)
        done = time.perf_counter()
        lists.append((at["list"] - started) * 1000)
        alls.append((done - at["list"]) * 1000)
        if "reason" in at:
            firsts.append((at["reason"] - at["list"]) * 1000)
        calls.append(run.result.timings_ms.llm / max(len(run.verdicts), 1))
        by_id = {c.item_id: c for c in run.candidates}
        history = [h.title for h in run.history]
        for n, (item_id, reason, problem) in enumerate(run.verdicts):
            c = by_id[item_id]  # grounded and informative apart, for the table (problem: the first failed)
            grounded = reason_problem(reason, c, max_chars, history) is None
            informative = grounded and uninformative(reason, c) is None
            rows.append({"catalog": args.catalog, "model": rec.backend.model,
                         "request": request.user_id or request.query, "title": c.title, "reason": reason,
                         "problem": problem, "check_grounded": grounded, "check_informative": informative,
                         "position": n + 1, "candidate": c.model_dump(), "history_titles": history})
    n_grounded = sum(r["check_grounded"] for r in rows)
    n_shown = sum(r["problem"] is None for r in rows)
    asked = len(reqs) * args.k
    spec = MODELS.get(rec.backend.model)
    p50 = statistics.median
    print(f"model {rec.backend.model}: {len(reqs)} requests ({args.users} users, {args.themes} themes), "
          f"k={args.k}")
    first = f"{p50(firsts) / 1000:.1f} s ({len(firsts)} of {len(reqs)})" if firsts else "none shown"
    print("| model | grounded | grounded and informative (shown) | list p50 | first shown reason p50 after the "
          "list | one call p50 | all k p50 after the list | peak RSS | GGUF |")
    print(f"| {rec.backend.model} | {n_grounded}/{asked} ({100 * n_grounded / asked:.0f}%) | {n_shown}/{asked} "
          f"({100 * n_shown / asked:.0f}%) | {p50(lists):.0f} ms | {first} | {p50(calls) / 1000:.2f} s | "
          f"{p50(alls) / 1000:.1f} s | {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB | "
          f"{spec.size / 1e6:.0f} MB |" if spec else "? |")
    if args.out:
        args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
