"""Load on the real `genre-agent serve` (127.0.0.1, fake LLM backend by default): N concurrent sessions, each
in its own server-issued session under its own API key (the per-key limits on: a 429 is waited out as its
Retry-After says and counted as throttled, not as an error), chatting for a fixed time. Prints one row per N:
requests, errors, throttled, throughput, latency p50/p95/p99, cross-session leaks, the server's memory before
and after, and with `--llm-server` the CPU seconds the model servers spent (the sign that the model was
asked: after a failed call the agent skips the model for `backend.openai.cooldown_s`, and answers come fast
from retrieval).

A leak is a reply that says "which you liked" about a title this session never named: the sign that one
session's likes reached another (what issue 13 saw with the shared "default" session).

With a real model (`--backend llamacpp --model smollm2-135m`), `--llm-reads` makes the model read every
message (one model call per turn; the shipped calibration would route no role to the bundled model, so
without it the model is never called). `--llm-server N` puts the model behind N `llama_cpp.server`
processes (each with `--threads / N` threads) and the agent reaches them through the openai backend, round
robin, so the same load can be compared with the model in the serving process.

    python benchmarks/load.py [--sessions 1,10,50] [--seconds 30] [--catalog PATH] [--data-dir DIR]
                              [--backend fake|llamacpp] [--model NAME] [--llm-reads] [--llm-server N]
                              [--out benchmarks/results/load.md]
"""

from __future__ import annotations

import argparse
import json
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
    throttled: int = 0  # 429s from the per-key limits, waited out as Retry-After says (not errors)
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


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _titles(catalog: Path) -> list[str]:
    import pandas as pd

    from genre_agent.data.catalog import load_catalog

    items = load_catalog(str(catalog)).items
    return [str(t) for t in pd.Series(items["title"]).head(200)]


def _session_loop(base: str, key: str, titles: list[str], seed: int, until: float, tally: Tally) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
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
                if reply.status_code == 429 and "retry-after" in reply.headers:  # a client that honours it
                    with tally.lock:
                        tally.throttled += 1
                    time.sleep(max(0.0, min(float(reply.headers["retry-after"]), until - time.time())))
                    continue
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


def _ready(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether `url` answers 200 before `process` exits or `timeout_s` passes."""
    deadline = time.time() + timeout_s
    while process.poll() is None and time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _llm_servers(model: str, count: int, threads: int, catalog: Path,
                 data_dir: Path) -> tuple[list[subprocess.Popen[bytes]], str]:
    """`count` llama_cpp.server processes serving `model`, and the URL of a round-robin proxy in front of them
    (the openai backend takes one base URL). The model's llamacpp calibration is applied to the openai backend
    too (it is the same model), so both set-ups give the model the same roles."""
    from genre_agent.data.catalog import load_catalog
    from genre_agent.llm.calibration import find, key_for, save
    from genre_agent.llm.models import resolve_model
    from genre_agent.llm.prompts import Prompts, resolve_prompts_dir
    from genre_agent.settings import load_settings

    _, gguf = resolve_model(model, data_dir / "models")
    loaded = load_catalog(str(catalog))
    prompts = Prompts(resolve_prompts_dir("default"))
    where: dict[str, object] = {"catalog": str(catalog), "data_dir": data_dir, "backend.model": model}
    local = load_settings(None, **where)
    remote = load_settings(None, **where, **{"backend.name": "openai"})
    calibration = find(data_dir, key_for(local, loaded, prompts)).calibration
    if calibration is not None:
        save(calibration.model_copy(update={"key": key_for(remote, loaded, prompts)}), data_dir)
    ports = [_free_port() for _ in range(count)]
    servers = [subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port), "--n_ctx", "4096",
         "--n_threads", str(max(1, threads // count)), "--model_alias", model,
         "--interrupt_requests", "False"],  # queue concurrent requests (its default cuts a running stream)
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in ports]
    for port, server in zip(ports, servers, strict=True):
        if not _ready(f"http://127.0.0.1:{port}/v1/models", server, 120):
            raise SystemExit(f"llama_cpp.server on port {port} did not start")
    proxy_port = _free_port()
    threading.Thread(target=_round_robin, args=(proxy_port, ports), daemon=True).start()
    return servers, f"http://127.0.0.1:{proxy_port}/v1"


def _round_robin(port: int, upstream: list[int]) -> None:
    """A minimal HTTP proxy: each request goes to the next upstream server in turn."""
    import itertools
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    turn = itertools.cycle(upstream)
    lock = threading.Lock()

    class Forward(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            with lock:
                target = next(turn)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            reply = httpx.request(self.command, f"http://127.0.0.1:{target}{self.path}", content=body,
                                  headers=headers, timeout=600)
            self.send_response(reply.status_code)
            for k, v in reply.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)

        do_GET = do_POST = _forward

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Forward).serve_forever()


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1] if len(values) >= 2 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,10,50")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--catalog", type=Path, default=TINY)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/genre-agent-load"))
    parser.add_argument("--backend", default="fake")
    parser.add_argument("--model", default=None, help="the model (llamacpp backend or --llm-server)")
    parser.add_argument("--llm-reads", action="store_true", help="the model reads every message")
    parser.add_argument("--llm-server", type=int, default=0, help="serve the model from N llama_cpp.server "
                        "processes behind a round-robin proxy, reached through the openai backend")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    keys = [secrets.token_urlsafe(24) for _ in range(max(int(x) for x in args.sessions.split(",")))]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GENRE_AGENT_SERVER__MAX_CONCURRENT": "256", "GENRE_AGENT_SERVER__DEADLINE_S": "600",
           "GENRE_AGENT_SERVER__API_KEYS": json.dumps(dict.fromkeys(keys, ""))}  # a key per client: new users
    backend = args.backend
    llm_servers: list[subprocess.Popen[bytes]] = []
    if args.llm_server:
        llm_servers, url = _llm_servers(args.model or "smollm2-135m", args.llm_server, args.threads, args.catalog,
                                        args.data_dir)
        backend = "openai"
        env.update({"GENRE_AGENT_BACKEND__OPENAI__BASE_URL": url,
                    "GENRE_AGENT_BACKEND__OPENAI__OUTPUT_MODE": "json_object_schema"})
    if args.llm_reads:
        env["GENRE_AGENT_CONVERSATION__UNDERSTAND_WITH_LLM"] = "true"
    command = [sys.executable, "-m", "genre_agent.interfaces.cli", "serve", "--port", str(port), "--catalog",
               str(args.catalog), "--data-dir", str(args.data_dir), "--backend", backend]
    if args.model:
        command += ["--model", args.model]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        if not _ready(f"{base}/readyz", server, 300):
            raise SystemExit(server.stderr.read().decode() if server.stderr else "server did not start")
        titles = _titles(args.catalog)
        rows = []
        for n in (int(x) for x in args.sessions.split(",")):
            tally = Tally()
            before = _rss_mb(server.pid)
            llm_cpu = sum(_cpu_s(llm.pid) for llm in llm_servers)
            until = time.time() + args.seconds
            workers = [threading.Thread(target=_session_loop, args=(base, keys[i], titles, i, until, tally))
                       for i in range(n)]
            started = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            wall = time.perf_counter() - started
            lat = sorted(tally.latencies)
            served = f"{sum(_cpu_s(llm.pid) for llm in llm_servers) - llm_cpu:.0f}" if llm_servers else "-"
            rows.append(f"| {n} | {len(lat)} | {tally.errors} | {tally.throttled} | {len(lat) / wall:.1f} | "
                        f"{_quantile(lat, 0.5):.2f} | {_quantile(lat, 0.95):.2f} | {_quantile(lat, 0.99):.2f} | "
                        f"{tally.leaks} | {before:.0f} → {_rss_mb(server.pid):.0f} | {served} |")
            print(rows[-1], flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
        for llm in llm_servers:
            llm.terminate()
            llm.wait(timeout=60)
    table = ["| sessions | requests | errors | throttled (429) | req/s | p50 s | p95 s | p99 s | leaks | "
             "server RSS MB | LLM servers CPU s |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
             *rows]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    flags = "".join([f" --model {args.model}" if args.model else "", " --llm-reads" if args.llm_reads else "",
                     f" --llm-server {args.llm_server}" if args.llm_server else ""])
    report = (f"`python benchmarks/load.py --sessions {args.sessions} --seconds {args.seconds:g} --catalog "
              f"{args.catalog.name} --backend {args.backend}{flags}` ({os.cpu_count()} CPUs, load average after "
              f"the run {load})\n\n" + "\n".join(table) + "\n")
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
