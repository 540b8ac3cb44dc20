"""Benchmark: a cached ``hq evaluate`` as a whole process against a numpy reference process.

    python eval/bench_cached.py --data-dir ../shared/data/lareqa --model models/me5-small

"Cached" means everything is already encoded: the collection holds every passage and the embedding
cache every question. First one untimed ``hq evaluate`` fills both (in a temporary store), then, in one
run, two processes are timed from start to exit on the same machine:

- hq:        ``hq evaluate --benchmark B --model M --output R.json`` on that store and cache (the whole
             command as a user runs it: imports, model handling, the check of every passage in the
             collection, scoring of all settings, the JSON / Markdown / PNG / per-query report);
- reference: this script with ``--reference``: imports numpy and the benchmark loader, reads the
             embeddings from the cache, scores the same settings by brute force (matrix products,
             ranks of the relevant passages, the same metric functions) and prints the macro metrics.

It prints both times, their ratio and whether the macro metrics agree (to 1e-4: float32 near-ties).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEYS = ("mono/map", "cross/map", "multi/map", "multi/rank_distance", "mono/recall@1", "multi/recall@10")


def reference(args) -> None:
    """The numpy reference: cached embeddings in, macro metrics out (no model, no Qdrant)."""
    import numpy as np

    from hybrid_qdrant.benchmarks import load_benchmark
    from hybrid_qdrant.encoding.cache import EmbeddingCache
    from hybrid_qdrant.evaluation.evaluate import EvalOptions, evaluate
    from hybrid_qdrant.store.array import ArrayStore
    from hybrid_qdrant.store.base import CollectionSpec

    bench = load_benchmark(args.benchmark, args.data_dir)
    cache = EmbeddingCache(args.fingerprint, args.cache_dir)
    passages, missing_p = cache.get("passage", [p.text for p in bench.passages])
    queries, missing_q = cache.get("query", [q.text for q in bench.queries])
    if missing_p or missing_q:
        sys.exit(f"reference: {len(missing_p)} passages and {len(missing_q)} queries are not cached")
    store = ArrayStore()
    store.ensure_collection(CollectionSpec(dim=passages.shape[1], encoder=args.fingerprint))
    store.upsert(
        [p.doc_id for p in bench.passages],
        np.ascontiguousarray(passages, dtype=np.float32),
        [{"lang": p.lang, "doc_id": p.doc_id} for p in bench.passages],
    )
    result = evaluate(bench, queries, store, EvalOptions(engine="exact"), pool_is_collection=True)
    metrics = result.metrics()
    print(json.dumps({k: metrics[k] for k in KEYS}))


def timed_process(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default="xquad-r")
    ap.add_argument("--data-dir", default=None, help="folder with xquad-r/ (default: download)")
    ap.add_argument("--model", default="intfloat/multilingual-e5-small")
    ap.add_argument("--cache-dir", default=None, help="embedding cache (default: the user's)")
    ap.add_argument("--json", default=None, help="write the measurements to this JSON file")
    ap.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fingerprint", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.data_dir and args.reference:
        args.data_dir = str(Path(args.data_dir) / args.benchmark)
    if args.reference:
        reference(args)
        return

    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="hq-bench-cached-") as tmp:
        hq = [sys.executable, "-m", "hybrid_qdrant.cli", "evaluate", "--benchmark", args.benchmark]
        hq += ["--model", args.model, "--location", str(Path(tmp) / "qdrant")]
        if args.data_dir:
            hq += ["--data-dir", args.data_dir]
        if args.cache_dir:
            hq += ["--cache-dir", args.cache_dir]
        warm, _ = timed_process([*hq, "--output", str(Path(tmp) / "warm.json")], env)
        report = json.loads((Path(tmp) / "warm.json").read_text(encoding="utf-8"))
        fingerprint = report["model_fingerprint"]
        hq_s, _ = timed_process([*hq, "--output", str(Path(tmp) / "cached.json")], env)
        cached = json.loads((Path(tmp) / "cached.json").read_text(encoding="utf-8"))
        ref = [sys.executable, __file__, "--reference", "--benchmark", args.benchmark]
        ref += ["--fingerprint", fingerprint]
        if args.data_dir:
            ref += ["--data-dir", args.data_dir]
        if args.cache_dir:
            ref += ["--cache-dir", args.cache_dir]
        ref_s, out = timed_process(ref, env)
    ref_metrics = json.loads(out.strip().splitlines()[-1])
    agree = all(
        abs(cached["metrics"][k] - ref_metrics[k]) <= 1e-4 * max(1.0, abs(ref_metrics[k])) for k in KEYS
    )
    counts = cached["counts"]
    print(f"{args.benchmark}, {args.model}: {counts['queries']} queries, {counts['slices']} slices")
    print(f"first run (fills the store and the cache, untimed): {warm:.1f} s")
    print(f"hq evaluate, cached, whole process: {hq_s:.2f} s")
    print(f"numpy reference process:           {ref_s:.2f} s")
    print(f"ratio: {hq_s / ref_s:.2f}x; macro metrics agree: {agree}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": platform.platform(),
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "benchmark": args.benchmark,
                    "model": args.model,
                    "hq_seconds": hq_s,
                    "reference_seconds": ref_s,
                    "ratio": hq_s / ref_s,
                    "metrics_agree": agree,
                    "hq_timings": cached.get("timings"),
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
