"""Load on the real `genre-agent serve` (127.0.0.1, fake LLM backend by default): N concurrent sessions, each
in its own server-issued session, chatting for a fixed time. Prints one row per N: requests, errors,
throughput, latency p50/p95/p99, cross-session leaks and the server's memory before and after.

A leak is a reply that says "which you liked" about a title this session never named: the sign that one
session's likes reached another (what issue 13 saw with the shared "default" session).

    python benchmarks/load.py [--sessions 1,10,50] [--seconds 30] [--catalog PATH] [--data-dir DIR]
                              [--backend fake] [--out benchmarks/results/load.md]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

TINY = Path(__file__).resolve().parent.parent / "tests" / "data" / "tiny"
LIKED = re.compile(r"Close to (.+?), which you liked")


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    leaks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _titles(catalog: Path) -> list[str]:
    import pandas as pd

    from genre_agent.data.catalog import load_catalog

    items = load_catalog(str(catalog)).items
    return [str(t) for t in pd.Series(items["title"]).head(200)]


def _session_loop(base: str, key: str, titles: list[str], seed: int, until: float, tally: Tally) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        made = client.post("/v1/sessions")
        if made.status_code != 201:
            with tally.lock:
                tally.errors += 1
            return
        client.headers["X-Session-Id"] = made.json()["id"]
        mine = titles[seed % len(titles)]
        script = [f"I loved {mine}", "more", "why the first one?", "no horror please", "more"]
        turn = 0
        while time.time() < until:
            started = time.perf_counter()
            try:
                reply = client.post("/v1/chat/completions", json={
                    "model": "genre-agent", "messages": [{"role": "user", "content": script[turn % len(script)]}]})
                ok = reply.status_code == 200
                text = reply.json()["choices"][0]["message"]["content"] if ok else ""
            except httpx.HTTPError:
                ok, text = False, ""
            elapsed = time.perf_counter() - started
            leaked = any(t != mine and t in titles for t in LIKED.findall(text))
            with tally.lock:
                tally.latencies.append(elapsed)
                tally.errors += 0 if ok else 1
                tally.leaks += int(leaked)
            turn += 1


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1] if len(values) >= 2 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,10,50")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--catalog", type=Path, default=TINY)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/genre-agent-load"))
    parser.add_argument("--backend", default="fake")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    key = secrets.token_urlsafe(24)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "genre_agent.interfaces.cli", "serve", "--port", str(port), "--catalog",
         str(args.catalog), "--data-dir", str(args.data_dir), "--backend", args.backend, "--api-key", key],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "GENRE_AGENT_SERVER__MAX_CONCURRENT": "256"},
    )
    try:
        deadline = time.time() + 300
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise SystemExit(server.stderr.read().decode() if server.stderr else "server did not start")
            time.sleep(0.5)
        titles = _titles(args.catalog)
        rows = []
        for n in (int(x) for x in args.sessions.split(",")):
            tally = Tally()
            before = _rss_mb(server.pid)
            until = time.time() + args.seconds
            workers = [threading.Thread(target=_session_loop, args=(base, key, titles, i, until, tally))
                       for i in range(n)]
            started = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            wall = time.perf_counter() - started
            lat = sorted(tally.latencies)
            rows.append(f"| {n} | {len(lat)} | {tally.errors} | {len(lat) / wall:.1f} | "
                        f"{_quantile(lat, 0.5):.2f} | {_quantile(lat, 0.95):.2f} | {_quantile(lat, 0.99):.2f} | "
                        f"{tally.leaks} | {before:.0f} → {_rss_mb(server.pid):.0f} |")
            print(rows[-1], flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
    table = ["| sessions | requests | errors | req/s | p50 s | p95 s | p99 s | leaks | server RSS MB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|", *rows]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    report = (f"`python benchmarks/load.py --sessions {args.sessions} --seconds {args.seconds:g} --catalog "
              f"{args.catalog.name} --backend {args.backend}` ({os.cpu_count()} CPUs, load average after the "
              f"run {load})\n\n" + "\n".join(table) + "\n")
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
