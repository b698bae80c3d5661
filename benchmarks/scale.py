"""Scale: synthetic catalogs of 10k, 100k and 1M items through the real catalog loader, Chroma index, CF model
and retriever. One child process per size (so each peak memory is its own). Per size: catalog load, index
build, CF training, disk, retrieval p50/p95 per request (vector + CF + filters + evidence, what a turn pays
before any LLM) against Chroma's own nearest-neighbour query time measured in the same run, and peak RSS.

Items are deterministic (seeded by the size): titles from a word list, 1-3 of 18 genres, a year, 8 to 12 tags
from a vocabulary of 400; interactions are Zipf-popular, 20 per user, users = items / 10 (at least 1,000).

Embeddings: the bundled MiniLM embeds about 60 item texts per second on 2 cores (a 1M catalog would take
about 4.6 hours), so the index is built from deterministic hash vectors (384 dims, unit length, the same for the
same text) and the MiniLM time per item is measured on a sample of this catalog's texts and reported next to
it: the build time with the real model is that rate times the size. Everything else is the shipped code path.

    python benchmarks/scale.py [--sizes 10000,100000,1000000] [--requests 40] [--cf itemknn]
                               [--workdir DIR] [--out benchmarks/results/scale.md]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

GENRES = ["Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
          "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
WORDS = ("night city river ghost iron summer last silent golden broken paper winter empire red lost secret "
         "wild blue dark glass heart storm shadow garden king queen star machine ocean fire road").split()
QUERIES = ["a dark thriller with a twist", "funny space adventure", "romantic drama in winter",
           "animated film for children", "a war story about a river", "ghost story in the city",
           "documentary about the ocean", "crime film noir", "western with a lost king", "musical about stars"]
SAMPLE_EMBED = 600  # texts embedded with the real MiniLM to measure its per-item time


def _write_catalog(root: Path, n: int) -> None:
    """items.csv, ratings.csv, tags.csv and catalog.toml of a deterministic synthetic catalog of n items."""
    import pandas as pd

    rng = np.random.default_rng(n)
    root.mkdir(parents=True, exist_ok=True)
    w = np.array(WORDS)
    a, b = rng.integers(0, len(w), n), rng.integers(0, len(w), n)
    years = rng.integers(1930, 2024, n)
    titles = [f"The {w[i].title()} {w[j].title()} {k} ({y})"
              for k, (i, j, y) in enumerate(zip(a, b, years, strict=True))]
    g = np.array(GENRES)
    genres = ["|".join(sorted(set(g[rng.integers(0, len(g), rng.integers(1, 4))]))) for _ in range(n)]
    pd.DataFrame({"id": np.arange(n), "title": titles, "genres": genres}).to_csv(root / "items.csv", index=False)
    n_tags = rng.integers(8, 13, n)
    vocab = np.array([f"{w[i % len(w)]}-{i}" for i in range(400)])
    tags = vocab[rng.zipf(1.5, int(n_tags.sum())) % len(vocab)]
    pd.DataFrame({"item": np.repeat(np.arange(n), n_tags), "tag": tags}).to_csv(root / "tags.csv", index=False)
    users = max(1000, n // 10)
    per_user = 20
    items = (rng.zipf(1.3, users * per_user) - 1) % n  # Zipf popularity: a few items are liked by many
    pd.DataFrame({"user": np.repeat(np.arange(users), per_user), "item": items,
                  "rating": rng.choice([3.0, 4.0, 5.0], users * per_user, p=[0.2, 0.4, 0.4]),
                  "ts": 1_500_000_000 + rng.integers(0, 10 * 365 * 86400, users * per_user)}
                 ).drop_duplicates(["user", "item"]).to_csv(root / "ratings.csv", index=False)
    (root / "catalog.toml").write_text(
        f'name = "synthetic-{n}"\nitem_noun = "movie"\nitem_noun_plural = "movies"\n\n'
        '[items]\npath = "items.csv"\nid = "id"\ntitle = "title"\ngenres = "genres"\nyear_from_title = true\n\n'
        '[interactions]\npath = "ratings.csv"\nuser = "user"\nitem = "item"\nrating = "rating"\n'
        'timestamp = "ts"\n\n'
        '[tags]\npath = "tags.csv"\nitem = "item"\ntag = "tag"\n\n'
        '[text]\ntemplate = "{name}. Genres: {genres}. Tags: {tags}."\n')


def _hash_embedding() -> Any:
    """MiniLM's interface with deterministic hash vectors in place of the model (see the module docstring)."""
    from genre_agent.retrieval.embedding import MiniLMEmbeddingFunction

    class HashEmbedding(MiniLMEmbeddingFunction):
        def __call__(self, input: list[str]) -> list[np.ndarray]:  # noqa: A002 - Chroma's parameter name
            out = []
            for text in input:
                seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
                v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
                out.append(v / np.linalg.norm(v))
            return out

        @staticmethod
        def name() -> str:
            return "genre-agent-benchmark-hash"

    return HashEmbedding()


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) * 1000


def measure(n: int, workdir: Path, requests: int, cf_name: str) -> dict[str, Any]:
    """One size, in this process: build everything and time the retrieval of `requests` requests."""
    from genre_agent.data.catalog import load_catalog
    from genre_agent.data.interactions import InteractionMatrix
    from genre_agent.filters import Filters
    from genre_agent.llm.prompts import Prompts, resolve_prompts_dir
    from genre_agent.retrieval.candidates import Retriever
    from genre_agent.retrieval.cf import make_cf
    from genre_agent.retrieval.embedding import MiniLMEmbeddingFunction
    from genre_agent.retrieval.index import VectorIndex, make_client
    from genre_agent.settings import RetrievalSettings

    root = workdir / f"catalog-{n}"
    t0 = time.perf_counter()
    _write_catalog(root, n)
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    catalog = load_catalog(str(root))
    t_load = time.perf_counter() - t0

    texts = catalog.items["text"].head(SAMPLE_EMBED).tolist()
    minilm = MiniLMEmbeddingFunction()
    minilm(texts[:8])  # load the model outside the timing
    t0 = time.perf_counter()
    minilm(texts)
    minilm_per_item = (time.perf_counter() - t0) / len(texts)

    index = VectorIndex(make_client(workdir / f"chroma-{n}"), catalog.name, embedding=_hash_embedding())
    t0 = time.perf_counter()
    index.sync(catalog.items, catalog.items_fingerprint())
    t_index = time.perf_counter() - t0

    matrix = InteractionMatrix.build(catalog.interactions, catalog.items.index, catalog.positive_min)
    cf = make_cf(cf_name)
    t0 = time.perf_counter()
    cf.fit(matrix.matrix)
    t_cf = time.perf_counter() - t0
    cf_dir = workdir / f"cf-{n}"
    cf_dir.mkdir(exist_ok=True)
    cf.save(cf_dir)

    settings = RetrievalSettings(cf_model=cf_name)  # type: ignore[arg-type]
    retriever = Retriever(catalog, index, cf, matrix, settings)
    reason = Prompts(resolve_prompts_dir("default")).reason_writer(140, "movie", "movies")
    rng = np.random.default_rng(0)
    ids = [str(i) for i in catalog.items.index]
    retriever.needs  # noqa: B018 - the genre/tag lexicon is built once per process, not per request
    total, chroma = [], []
    for r in range(requests + 3):
        liked = [ids[i] for i in rng.integers(0, min(n, 2000), 2)]  # two titles the user named (popular ones)
        query = QUERIES[r % len(QUERIES)]
        user = retriever.user_view(None, extra_liked=liked)
        filters = Filters(exclude_genres=["Horror"]) if r % 2 else Filters()
        t0 = time.perf_counter()
        found = retriever.candidates(user, query, filters, settings.candidates, reason, anchors=liked[:1])
        elapsed = time.perf_counter() - t0
        vec = index.embed([query])[0]
        t0 = time.perf_counter()
        index.nearest(vec, settings.vector_pool)
        chroma_s = time.perf_counter() - t0
        if r >= 3 and found:  # the first requests warm caches
            total.append(elapsed)
            chroma.append(chroma_s)
    return {
        "items": n, "users": int(matrix.matrix.shape[0]), "interactions": int(len(catalog.interactions)),
        "write_s": round(t_write, 1), "load_s": round(t_load, 1), "index_s": round(t_index, 1),
        "minilm_ms_per_item": round(minilm_per_item * 1000, 2),
        "minilm_index_h": round(minilm_per_item * n / 3600, 2), f"{cf_name}_s": round(t_cf, 1),
        "chroma_mb": round(_dir_mb(workdir / f"chroma-{n}"), 1), "cf_mb": round(_dir_mb(cf_dir), 1),
        "retrieval_p50_ms": round(_pct(total, 50), 1), "retrieval_p95_ms": round(_pct(total, 95), 1),
        "chroma_query_p50_ms": round(_pct(chroma, 50), 1), "chroma_query_p95_ms": round(_pct(chroma, 95), 1),
        "ratio_p50": round(statistics.median(total) / statistics.median(chroma), 1),
        "requests": len(total), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def _table(rows: list[dict[str, Any]], cf_name: str) -> str:
    head = ("| items | users | interactions | load s | index build s (hash vectors) | MiniLM would add | "
            f"{cf_name} fit s | disk MB (Chroma + CF) | retrieval p50 / p95 ms | Chroma query p50 / p95 ms | "
            "retrieval / Chroma (p50) | peak RSS MB |")
    lines = [head, "|" + "---:|" * 12]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['items']:,} | {r['error']} |" + " |" * 10)
            continue
        lines.append(
            f"| {r['items']:,} | {r['users']:,} | {r['interactions']:,} | {r['load_s']} | {r['index_s']} | "
            f"{r['minilm_index_h']} h ({r['minilm_ms_per_item']} ms/item) | {r[f'{cf_name}_s']} | "
            f"{r['chroma_mb']} + {r['cf_mb']} | {r['retrieval_p50_ms']} / {r['retrieval_p95_ms']} | "
            f"{r['chroma_query_p50_ms']} / {r['chroma_query_p95_ms']} | {r['ratio_p50']}× | {r['peak_rss_mb']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--cf", default="itemknn", choices=["itemknn", "als", "ease"])
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given; a temporary folder otherwise")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child's size
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.workdir, args.requests, args.cf)), flush=True)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="genre-agent-scale-"))
    rows = []
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            started = time.perf_counter()
            child = subprocess.run(
                [sys.executable, __file__, "--one", str(n), "--workdir", str(workdir), "--requests",
                 str(args.requests), "--cf", args.cf], capture_output=True, text=True, env=os.environ)
            if child.returncode != 0:
                tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
                rows.append({"items": n, "error": f"failed: {tail}"})
            else:
                rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
            rows[-1]["wall_s"] = round(time.perf_counter() - started, 1)
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    text = _table(rows, args.cf)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
