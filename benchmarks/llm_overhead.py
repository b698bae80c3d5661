"""The cost of our LLM ranking call for ~20 users, against raw llama-cpp-python in the same run.

The ranking call is made whatever the calibration routes (`benchmarks/latency.py` times what is served):
the served prompt and candidates of `recommend`, then `rank` as the pipeline calls it when ranking is routed
to the model. For each user: retrieval ms, prompt tokens, the LLM seconds (all calls, re-asks included), and the
physical reference: the same first prompt sent to a plain `Llama` (no schema, no grammar) and forced to emit
exactly as many tokens as the pipeline's first answer had. The ratio first-call / raw is the overhead of
constrained decoding and our wrapping; total / raw adds the re-asks.

    python benchmarks/llm_overhead.py [--users 20] [--catalog movielens] [--model smollm2-135m] [-k 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from genre_agent.llm.backends import Backend, Completion, Message, Wrapper, make_backend
from genre_agent.llm.backends.llamacpp import LlamaCppOptions
from genre_agent.llm.models import resolve_model
from genre_agent.llm.ranking import rank
from genre_agent.pipeline import Recommender
from genre_agent.schemas import RecommendRequest
from genre_agent.settings import load_settings


@dataclass
class Call:
    seconds: float
    prompt_tokens: int
    completion_tokens: int


class Timed(Wrapper):
    """Wraps the configured backend and records every call."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self.calls: list[Call] = []

    def complete(self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        started = time.perf_counter()
        out = self.inner.complete(messages, schema, max_tokens)
        self.calls.append(Call(time.perf_counter() - started, out.prompt_tokens, out.completion_tokens))
        return out


def raw_seconds(llm: Any, messages: list[Message], n_tokens: int, stop_ids: list[int]) -> tuple[float, int]:
    """Plain llama-cpp-python: the same messages, exactly n_tokens generated (end tokens suppressed)."""
    started = time.perf_counter()
    out = llm.create_chat_completion(messages=messages, max_tokens=n_tokens, temperature=0.0,
                                     logit_bias={t: -1e9 for t in stop_ids})
    return time.perf_counter() - started, out["usage"]["completion_tokens"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--catalog", default="movielens")
    ap.add_argument("--model", default=None, help="named model or GGUF path (default: the configured one)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from llama_cpp import Llama

    overrides = {"backend.model": args.model} if args.model else {}
    settings = load_settings(catalog=args.catalog, **overrides)
    timed = Timed(make_backend(settings))
    rec = Recommender.open(settings, backend=timed)
    b = settings.backend.options(LlamaCppOptions)
    _, path = resolve_model(settings.backend.model, settings.data_dir / "models")
    raw = Llama(model_path=str(path), n_ctx=b.n_ctx, n_threads=b.threads,
                n_threads_batch=b.threads, seed=0, verbose=False)
    stop_ids = sorted({raw.token_eos(), *raw.tokenize(b"<|im_end|>", add_bos=False, special=True)})
    users = rec.catalog.interactions.user_id.drop_duplicates().sort_values()
    users = users.sample(args.users, random_state=args.seed).tolist()
    rec.recommend(str(users[0]), k=args.k)  # warm up: first Chroma query
    timed.complete([{"role": "user", "content": "hi"}], None, 1)  # load the model before timing

    rows = []
    for user in users:
        timed.calls.clear()
        run = rec.run(RecommendRequest(user_id=str(user), k=args.k))
        timed.calls.clear()
        policy = settings.ranking
        outcome = rank(timed, run.messages, run.candidates, args.k, retries=policy.retries,
                       reason_max_chars=rec.prompts.reason_max_chars(policy.reason_max_chars),
                       max_tokens=policy.max_tokens)
        first = timed.calls[0]
        raw_s, raw_tokens = raw_seconds(raw, run.messages, first.completion_tokens, stop_ids)
        total = sum(c.seconds for c in timed.calls)
        rows.append({"user": user, "retrieve_ms": run.result.timings_ms.retrieve,
                     "prompt_tokens": first.prompt_tokens, "out_tokens": first.completion_tokens,
                     "calls": len(timed.calls), "first_s": first.seconds, "llm_s": total, "raw_s": raw_s,
                     "raw_tokens": raw_tokens, "fallback": outcome.fallback, "reasks": outcome.reasks})

    head = (f"{'user':>6} {'retr ms':>8} {'prompt tok':>10} {'out tok':>7} {'calls':>5} {'1st call s':>10} "
            f"{'LLM s':>7} {'raw s':>7} {'1st/raw':>7} {'LLM/raw':>7} {'fallback':>8}")
    print(f"model {timed.model} via {timed.name}, catalog {rec.catalog.name}, k={args.k}, "
          f"{settings.retrieval.candidates} candidates, retries={settings.ranking.retries}, threads={b.threads}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['user']:>6} {r['retrieve_ms']:>8.0f} {r['prompt_tokens']:>10} {r['out_tokens']:>7} "
              f"{r['calls']:>5} {r['first_s']:>10.2f} {r['llm_s']:>7.2f} {r['raw_s']:>7.2f} "
              f"{r['first_s'] / r['raw_s']:>7.2f} {r['llm_s'] / r['raw_s']:>7.2f} {str(r['fallback']):>8}")
    med = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
    ratio1 = np.median([r["first_s"] / r["raw_s"] for r in rows])
    ratio = np.median([r["llm_s"] / r["raw_s"] for r in rows])
    print("-" * len(head))
    print(f"{'median':>6} {med('retrieve_ms'):>8.0f} {med('prompt_tokens'):>10.0f} {med('out_tokens'):>7.0f} "
          f"{med('calls'):>5.0f} {med('first_s'):>10.2f} {med('llm_s'):>7.2f} {med('raw_s'):>7.2f} "
          f"{ratio1:>7.2f} {ratio:>7.2f}")
    n = len(rows)
    reasked, fell_back = sum(r["reasks"] > 0 for r in rows), sum(r["fallback"] for r in rows)
    print(f"re-asked: {reasked}/{n}   fallback: {fell_back}/{n}   "
          f"raw runs that reached the target length: {sum(r['raw_tokens'] == r['out_tokens'] for r in rows)}/{n}")


if __name__ == "__main__":
    main()
