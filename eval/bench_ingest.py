"""Benchmark: pipelined ingestion against encoding alone, and peak memory on a 1M-passage stream.

    python eval/bench_ingest.py --data-dir ../shared/data/lareqa/xquad-r --model models/me5-small --n 2000
    python eval/bench_ingest.py --rss-only --sizes 100000,1000000

Part 1 (real model, no embedding cache): the same passages, block size and batch size are
  (a) only encoded (length-sorted blocks, as the pipeline does), (b) ingested with encoding and upserts
  overlapped (the default), (c) ingested sequentially (encode a block, then upsert it). Prints the ratios
  (b)/(a) and (c)/(a): the goal is (b)/(a) <= 1.10.
Part 2 (fast stand-in encoder, so the store and the pipeline are what is measured): a synthetic corpus
  streamed from a generator through ``ingest``, in a fresh process per size, into a null store (the
  pipeline's own memory: it must stay flat) and into the embedded store (whose memory-mapped vector
  storage, 1.5 KB per 384-d point, is resident in RSS once written); prints peak RSS per size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


class StandIn:
    """Deterministic pseudo-random unit vectors from a text hash: encoding at memory speed."""

    dim = 384
    fingerprint = '{"model": "stand-in"}'

    def encode_passages(self, texts):
        seeds = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, s in enumerate(seeds):
            out[i] = np.random.default_rng(s).standard_normal(self.dim, dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    encode_queries = encode_passages


class NullStore:
    """Takes upserts and keeps nothing but a count: the pipeline without a store (isolates its own memory
    from the store's)."""

    collection = "null"

    def __init__(self) -> None:
        self.n = 0

    def exists(self) -> bool:
        return self.n > 0

    def ensure_collection(self, spec, recreate=False) -> bool:
        return True

    def existing(self, doc_ids) -> dict:
        return {}

    def upsert(self, doc_ids, vectors, payloads) -> None:
        self.n += len(doc_ids)

    def count(self, lang=None) -> int:
        return self.n


def synthetic(n: int, langs=("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")):
    from hybrid_qdrant.types import Passage

    for i in range(n):
        lang = langs[i % len(langs)]
        yield Passage(
            f"{lang}/{i}",
            f"synthetic passage number {i} in {lang} " + "lorem ipsum " * (i % 7),
            lang,
            f"g{i // len(langs)}",
        )


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: Linux carries that over from the
    parent through fork and exec, so a child started by a process that loaded a model reports its peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def rss_child(n: int, store_kind: str) -> None:
    from contextlib import nullcontext

    from hybrid_qdrant.evaluation.ingest import ingest
    from hybrid_qdrant.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        opened = (
            nullcontext(NullStore()) if store_kind == "null" else open_store(location=tmp, collection="rss")
        )
        with opened as store:
            start = time.perf_counter()
            # as for streamed corpora (MIRACL): no in-memory duplicate-id check, so memory stays flat
            stats = ingest(synthetic(n), StandIn(), store, block_size=2048, check_duplicates=False)
            seconds = time.perf_counter() - start
            count = store.count()
    peak_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "n": n,
                "store": store_kind,
                "count": count,
                "encoded": stats.encoded,
                "seconds": seconds,
                "peak_rss_mb": peak_mb,
            }
        )
    )


def part1(args) -> dict:
    from hybrid_qdrant.benchmarks import load_benchmark
    from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder
    from hybrid_qdrant.evaluation.ingest import _blocks, ingest
    from hybrid_qdrant.store import open_store

    bench = load_benchmark(args.benchmark, args.data_dir)
    passages = bench.passages[: args.n]
    encoder = SentenceTransformerEncoder(EncoderSettings(model=args.model, batch_size=args.batch_size))
    encoder.encode_passages([p.text for p in passages[:64]])  # warm-up, excluded from every timing
    t0 = time.perf_counter()
    for block in _blocks(passages, args.block_size):
        encoder.encode_passages([p.text for p in sorted(block, key=lambda p: len(p.text))])
    encode_only = time.perf_counter() - t0
    out = {"n": len(passages), "encode_only_s": encode_only}
    for overlap in (True, False):
        with tempfile.TemporaryDirectory() as tmp, open_store(location=tmp, collection="bench") as store:
            t0 = time.perf_counter()
            stats = ingest(passages, encoder, store, block_size=args.block_size, overlap=overlap)
            key = "ingest_overlap" if overlap else "ingest_sequential"
            out[f"{key}_s"] = time.perf_counter() - t0
            out[f"{key}_upsert_busy_s"] = stats.upsert_seconds
            assert store.count() == len(passages)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default="xquad-r")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--model", default="intfloat/multilingual-e5-small")
    ap.add_argument("--n", type=int, default=2000, help="passages for part 1")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--block-size", type=int, default=512)
    ap.add_argument("--sizes", default="100000,1000000", help="corpus sizes for the RSS part")
    ap.add_argument("--rss-only", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument(
        "--stores", default="null,edge", help="null (pipeline only) and/or edge (embedded Qdrant)"
    )
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-store", default="edge", help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.child is not None:
        rss_child(args.child, args.child_store)
        return
    results: dict = {}
    if not args.rss_only:
        r = part1(args)
        results["pipeline"] = r
        print(f"{r['n']} passages, model {args.model}, batch {args.batch_size}, block {args.block_size}")
        print(f"encode only:            {r['encode_only_s']:7.1f} s")
        for key in ("ingest_overlap", "ingest_sequential"):
            print(
                f"{key:<23} {r[f'{key}_s']:7.1f} s  ratio {r[f'{key}_s'] / r['encode_only_s']:.3f}  "
                f"(upsert busy {r[f'{key}_upsert_busy_s']:.1f} s)"
            )
    if not args.skip_rss:
        rows = []
        for store_kind in args.stores.split(","):
            for n in map(int, args.sizes.split(",")):
                command = [sys.executable, __file__, "--child", str(n), "--child-store", store_kind]
                proc = subprocess.run(command, capture_output=True, text=True, check=True)
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                row = rows[-1]
                print(
                    f"stream {row['n']:>9,} passages into {store_kind:<4} (stand-in encoder): "
                    f"{row['seconds']:7.1f} s, {row['count']:,} points, peak RSS {row['peak_rss_mb']:.0f} MB"
                )
        results["rss"] = rows
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
