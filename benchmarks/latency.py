"""Warm latency of `recommend` and of chat turns, per stage, against retrieval alone in the same run.

For each sampled user: one `recommend` (k = 10, 20 candidates) and a scripted four-turn chat as that user.
Each answer's retrieval ms (Chroma + CF + evidence), LLM ms (every call the routing made) and total ms
are printed, with the roles the calibration in force gave the model; the ratio total / retrieval is what
the rest of the pipeline costs on top of retrieval. The model is loaded before timing starts (warm).
For `recommend`, also when the list was there (retrieval, shown at once), when the first model reason came
after it and when the model's last reason did (only when reasons are routed to the model).

    python benchmarks/latency.py [--users 20] [--catalog movielens] [--model smollm2-135m] [--prompts default]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from genre_agent.chat.agent import Agent
from genre_agent.data.feedback import SQLiteStore
from genre_agent.llm.backends.llamacpp import LlamaCppOptions
from genre_agent.pipeline import Recommender
from genre_agent.schemas import RecommendRequest
from genre_agent.settings import load_settings

TURNS = ("I loved The Matrix and Alien, no horror please", "more like the second one", "why that one?",
         "only comedies from the 90s")


@dataclass
class Row:
    kind: str
    user: str
    retrieve_ms: float
    llm_ms: float
    total_ms: float
    roles: str
    list_ms: float | None = None  # recommend: when the list was there
    first_reason_ms: float | None = None  # after the list: the first reason the model wrote that is shown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--catalog", default="movielens")
    ap.add_argument("--model", default=None, help="named model or GGUF path (default: the configured one)")
    ap.add_argument("--prompts", default=None, help="template set (default: the configured one)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    overrides = {"backend.model": args.model, "prompts": args.prompts}
    settings = load_settings(catalog=args.catalog, k=args.k, **overrides)
    # the scripted chats' likes go to a throw-away store: a benchmark must not change what the data directory's
    # users are recommended (its stored feedback is read as it is)
    scratch = tempfile.TemporaryDirectory()
    agent = Agent(Recommender.open(settings), SQLiteStore(Path(scratch.name) / "feedback.sqlite3"))
    rec = agent.recommender
    users = rec.catalog.interactions.user_id.drop_duplicates().sort_values()
    users = [str(u) for u in users.sample(args.users, random_state=args.seed).tolist()]
    routes = rec.routes()
    if routes.ranking or routes.reasons or routes.reading:
        rec.backend.complete([{"role": "user", "content": "hi"}], None, 1)  # load the model before timing
    rec.recommend(users[0])  # warm up: first Chroma query, embedding model, templates
    agent.chat("warm-up", TURNS[0])

    rows: list[Row] = []
    for user in users:
        started = time.perf_counter()
        at: dict[str, float] = {}

        def mark(what: str, at: dict[str, float] = at) -> Callable[[object], None]:
            def seen(_: object) -> None:
                at.setdefault(what, time.perf_counter())
            return seen

        result = rec.run(RecommendRequest(user_id=user), on_first=mark("list"), on_reason=mark("reason")).result
        done = time.perf_counter()
        t = result.timings_ms
        listed = at.get("list", done)
        rows.append(Row("recommend", user, t.retrieve, t.llm, (done - started) * 1000,
                        ",".join(result.llm_roles) or "-", (listed - started) * 1000,
                        (at["reason"] - listed) * 1000 if "reason" in at else None))
        for n, message in enumerate(TURNS):
            started = time.perf_counter()
            reply = agent.chat(f"bench-{user}", message, user=user if n == 0 else None)
            total = (time.perf_counter() - started) * 1000
            got = reply.recommendations
            rows.append(Row(f"chat {n + 1}", user, got.timings_ms.retrieve if got else 0.0,
                            got.timings_ms.llm if got else 0.0, total,
                            (",".join(got.llm_roles) or "-") if got else f"({reply.intent})"))

    print(f"model {settings.backend.model} via {settings.backend.name}, catalog {rec.catalog.name}, "
          f"prompts {settings.prompts}, k={args.k}, {settings.retrieval.candidates} candidates, "
          f"threads={settings.backend.options(LlamaCppOptions).threads}")
    print(f"routing: {routes.describe()}\ncalibration: {routes.calibration}")
    head = (f"{'answer':<10} {'user':>6} {'retrieve ms':>11} {'LLM ms':>8} {'total ms':>9} {'total/retr':>10}"
            "  roles")
    print(head)
    print("-" * len(head))
    for r in rows:
        shown = f"{r.total_ms / r.retrieve_ms:10.2f}" if r.retrieve_ms else f"{'-':>10}"
        print(f"{r.kind:<10} {r.user:>6} {r.retrieve_ms:>11.0f} {r.llm_ms:>8.0f} {r.total_ms:>9.0f} {shown}"
              f"  {r.roles}")
    print("-" * len(head))
    for kind, chosen in (("recommend", [r for r in rows if r.kind == "recommend"]),
                         ("chat turn", [r for r in rows if r.kind.startswith("chat")])):
        totals = sorted(r.total_ms for r in chosen)
        p95 = totals[min(len(totals) - 1, round(0.95 * (len(totals) - 1)))]
        retrieved = [r for r in chosen if r.retrieve_ms]
        ratio = statistics.median(r.total_ms / r.retrieve_ms for r in retrieved) if retrieved else float("nan")
        retrieval = statistics.median(r.retrieve_ms for r in retrieved) / 1000
        llm = statistics.median(r.llm_ms for r in chosen) / 1000
        print(f"{kind:<10} n={len(chosen):<3} p50 {statistics.median(totals) / 1000:.2f} s   "
              f"p95 {p95 / 1000:.2f} s   retrieval p50 {retrieval:.2f} s   total/retrieval p50 {ratio:.2f}   "
              f"LLM p50 {llm:.2f} s")
    answers = [r for r in rows if r.kind == "recommend"]
    firsts = [r.first_reason_ms for r in answers if r.first_reason_ms is not None]
    first = (f"{statistics.median(firsts) / 1000:.2f} s ({len(firsts)} of {len(answers)} answers had one)"
             if firsts else f"none (0 of {len(answers)} answers had a model reason)")
    listed = statistics.median(r.list_ms or 0.0 for r in answers) / 1000
    after = statistics.median(r.total_ms - (r.list_ms or 0.0) for r in answers) / 1000
    print(f"recommend  list p50 {listed:.2f} s   first model reason after the list p50 {first}   "
          f"all {args.k} reasons after the list p50 {after:.2f} s")


if __name__ == "__main__":
    main()
