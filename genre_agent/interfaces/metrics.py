"""The server's `/metrics`: turn counts by outcome, turn latency, turns running and live sessions, in the
Prometheus text format (scraped with the same API key as every other path)."""

from __future__ import annotations

import threading
from collections import Counter

BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OUTCOMES = ("ok", "error", "client_closed", "deadline", "shutdown", "rejected")


class Metrics:
    """Counters updated by the turn runner; read by `/metrics`. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.turns: Counter[str] = Counter()
        self.buckets = [0] * len(BUCKETS_S)
        self.seconds_sum = 0.0
        self.llm_seconds_sum = 0.0

    def turn(self, outcome: str, seconds: float, llm_seconds: float = 0.0) -> None:
        with self._lock:
            self.turns[outcome] += 1
            if outcome == "rejected":
                return
            self.seconds_sum += seconds
            self.llm_seconds_sum += llm_seconds
            for n, bound in enumerate(BUCKETS_S):
                if seconds <= bound:
                    self.buckets[n] += 1

    def render(self, running: int, sessions: int) -> str:
        with self._lock:
            timed = sum(self.turns[o] for o in OUTCOMES if o != "rejected")
            lines = _family("turns_total", "counter", "Chat turns by outcome.")
            lines += [f'genre_agent_turns_total{{outcome="{o}"}} {self.turns[o]}' for o in OUTCOMES]
            lines += _family("turn_seconds", "histogram", "Wall time of a turn (rejected turns excluded).")
            lines += [f'genre_agent_turn_seconds_bucket{{le="{b:g}"}} {c}'
                      for b, c in zip(BUCKETS_S, self.buckets, strict=True)]
            lines += [f'genre_agent_turn_seconds_bucket{{le="+Inf"}} {timed}',
                      f"genre_agent_turn_seconds_sum {self.seconds_sum:.6f}",
                      f"genre_agent_turn_seconds_count {timed}"]
            lines += _family("llm_seconds_total", "counter", "Seconds spent in LLM calls by answered turns.")
            lines.append(f"genre_agent_llm_seconds_total {self.llm_seconds_sum:.6f}")
            lines += _family("turns_running", "gauge", "Turns running now.")
            lines.append(f"genre_agent_turns_running {running}")
            lines += _family("sessions", "gauge", "Server-issued sessions alive.")
            lines.append(f"genre_agent_sessions {sessions}")
        return "\n".join(lines) + "\n"


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP genre_agent_{name} {help_text}", f"# TYPE genre_agent_{name} {kind}"]
