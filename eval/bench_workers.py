"""Benchmark: encoding rates per worker (``--workers``), and what the ingestion protocols cost beside them.

    python eval/bench_workers.py --data-dir ../shared/data/lareqa/xquad-r --model models/me5-small --n 1000

Part 1 (real model, no embedding cache, the same passages every time, each variant timed ``--repeat``
times in turn so that a slow spell on a shared machine hits every variant): encoding with the batches
fixed by ``PoolEncoder``, as the jobs encode:

- baseline: one process, torch's default threads (what ``hq ingest`` does without ``--workers``);
- 1 thread: one process with one torch thread (what one worker with one core can do);
- pool of W: W worker processes (``--workers W``; on CPUs each gets threads / W torch threads); its
  rate per worker against the 1-thread rate is what the pool (queues, pickled texts and vectors) and
  the shared machine cost.

It prints passages/s, tokens/s, the ratio of each to the baseline, the rate per worker, the pool's start
(spawn and model load, excluded from the rates), and whether the pool's vectors are bit-identical to
one process's at the same thread count. With ``--device cuda`` the workers are the GPUs.

Part 2 (a stand-in encoder at memory speed, so that only the protocol is measured): the ceiling of one
ingestion process, and of a 2-process launch sharing the blocks (forked processes, gloo) into the
embedded store through process 0 (the relay) and into null stores (each process writing its own, as
into a server): passages/s with nothing to encode.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from bench_ingest import NullStore, StandIn  # the stand-in encoder and store of the ingestion benchmark


def synthetic(n: int, langs=("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")):
    from hybrid_qdrant.types import Passage

    for i in range(n):
        lang = langs[i % len(langs)]
        yield Passage(f"{lang}/{i}", f"synthetic passage {i} in {lang} " + "lorem ipsum " * (i % 7), lang)


# ------------------------------------------------------------------------------------------ part 1


def sample(data_dir: str | None, n: int):
    """``n`` XQuAD-R passages spread over its 11 languages (every k-th candidate)."""
    from hybrid_qdrant.benchmarks import load_benchmark

    passages = load_benchmark("xquad-r", data_dir).passages
    step = max(1, len(passages) // n)
    return [p.text for p in passages[::step][:n]]


def part1(args) -> dict:
    import torch

    from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder
    from hybrid_qdrant.encoding.pool import PoolEncoder, worker_devices

    texts = sample(args.data_dir, args.n)
    settings = EncoderSettings(model=args.model, batch_size=args.batch_size, device=args.device)
    threads = torch.get_num_threads()
    loaded = SentenceTransformerEncoder(settings)
    here = PoolEncoder(loaded)
    tokenizer = loaded.model.tokenizer
    lengths = [len(ids) for ids in tokenizer([settings.passage_prefix + t for t in texts])["input_ids"]]
    tokens = int(np.sum(np.minimum(lengths, loaded.model.max_seq_length)))

    def pool(workers: int) -> tuple[PoolEncoder, float]:
        cpu = replace_device(settings, "cpu")
        devices = worker_devices(args.device, workers)
        encoder = PoolEncoder(SentenceTransformerEncoder(cpu), workers, devices=devices)
        start = time.perf_counter()
        encoder.encode_passages(texts[:8])  # starts the workers: spawn + model load
        return encoder, time.perf_counter() - start

    pools = {args.workers: pool(args.workers)}
    variants = {
        "baseline": lambda: here.encode_passages(texts),
        "1 thread": lambda: one_thread(here, texts),
        f"pool of {args.workers}": lambda: pools[args.workers][0].encode_passages(texts),
    }
    here.encode_passages(texts[:64])  # warm-up, excluded
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.repeat):
        for name, run in variants.items():
            start = time.perf_counter()
            vectors[name] = run()
            seconds[name].append(time.perf_counter() - start)
    for encoder, _ in pools.values():
        encoder.close()
    base = statistics.median(seconds["baseline"])
    rows = {}
    for name, times in seconds.items():
        median = statistics.median(times)
        workers = {"baseline": 1, "1 thread": 1}.get(name, args.workers)
        rows[name] = {
            "seconds": times,
            "median_s": median,
            "passages_per_s": len(texts) / median,
            "tokens_per_s": tokens / median,
            "ratio_to_baseline": base / median,
            "passages_per_s_per_worker": len(texts) / median / workers,
        }
    many = vectors[f"pool of {args.workers}"]
    same_threads = "1 thread" if args.device in (None, "cpu") and args.workers == threads else "baseline"
    return {
        "n": len(texts),
        "tokens": tokens,
        "mean_tokens": tokens / len(texts),
        "batch_size": args.batch_size,
        "threads": threads,
        "workers": args.workers,
        "device": args.device or "auto",
        "pool_start_s": round(pools[args.workers][1], 2),
        "variants": rows,
        "identical": {
            f"pool of {args.workers} vs {same_threads}": bool(np.array_equal(many, vectors[same_threads])),
            f"pool of {args.workers} vs baseline": bool(np.array_equal(many, vectors["baseline"])),
            "max_abs_diff_vs_baseline": float(np.abs(many - vectors["baseline"]).max()),
        },
    }


def replace_device(settings, device):
    from dataclasses import replace

    return replace(settings, device=device)


def one_thread(encoder, texts):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return encoder.encode_passages(texts)
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------ part 2


def _launched(rank: int, world: int, rendezvous: str, kind: str, n: int, location: str, out: str) -> None:
    from hybrid_qdrant.evaluation.ingest import ingest
    from hybrid_qdrant.evaluation.launch import Launch
    from hybrid_qdrant.store import open_store

    launch = Launch(rank=rank, world=world, init_method=f"file://{rendezvous}")
    with launch.opened():
        if kind == "relay":
            opened = open_store(location=location, collection="c") if rank == 0 else nullcontext(None)
        else:
            opened = nullcontext(NullStore())
        with opened as store:
            start = time.perf_counter()
            ingest(
                synthetic(n), StandIn(), store, check_duplicates=False, launch=launch, relay=kind == "relay"
            )
            launch.gather(None)  # every process done
            seconds = time.perf_counter() - start
    if rank == 0:
        Path(out).write_text(json.dumps({"seconds": seconds}))


def part2(args) -> dict:
    import torch.multiprocessing as mp

    from hybrid_qdrant.evaluation.ingest import ingest
    from hybrid_qdrant.store import open_store

    n = args.protocol_n
    out: dict[str, dict] = {}
    for kind in ("null", "edge"):
        with tempfile.TemporaryDirectory() as tmp:
            opened = nullcontext(NullStore()) if kind == "null" else open_store(location=tmp, collection="c")
            with opened as store:
                start = time.perf_counter()
                ingest(synthetic(n), StandIn(), store, check_duplicates=False)
                out[f"1 process, {kind} store"] = {"seconds": time.perf_counter() - start}
    for kind, label in (
        ("direct", "2 processes, each its own null store"),
        ("relay", "2 processes, relay to edge"),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            result = os.path.join(tmp, "out.json")
            args_ = (2, os.path.join(tmp, "rendezvous"), kind, n, os.path.join(tmp, "q"), result)
            mp.start_processes(_launched, args=args_, nprocs=2, join=True, start_method="fork")
            out[label] = json.loads(Path(result).read_text())
    for row in out.values():
        row["passages_per_s"] = n / row["seconds"]
    return {"n": n, "rows": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="XQuAD-R folder (default: the cache)")
    ap.add_argument("--model", default="intfloat/multilingual-e5-small")
    ap.add_argument("--n", type=int, default=1000, help="passages encoded per variant")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default=None, help="cpu (default when no GPU) or cuda: workers on cuda:0..")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--protocol-n", type=int, default=200_000, help="stand-in passages for part 2")
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f} at start",
        "python": platform.python_version(),
    }
    if not args.skip_model:
        r = part1(args)
        results["encoding"] = r
        print(
            f"{r['n']} XQuAD-R passages ({r['mean_tokens']:.1f} tokens each), {args.model}, batch "
            f"{r['batch_size']}, device {r['device']}, {r['threads']} torch threads in this process"
        )
        print(f"pool start (spawn + model load): {r['pool_start_s']} s")
        for name, row in r["variants"].items():
            print(
                f"{name:<12} {row['median_s']:7.1f} s  {row['passages_per_s']:7.1f} passages/s  "
                f"{row['tokens_per_s']:8.0f} tokens/s  ratio {row['ratio_to_baseline']:.2f}  "
                f"per worker {row['passages_per_s_per_worker']:.1f} passages/s  (runs {row['seconds']})"
            )
        print("identical vectors:", r["identical"])
    r = part2(args)
    results["protocol"] = r
    for label, row in r["rows"].items():
        print(
            f"{r['n']:,} stand-in passages, {label:<38} {row['seconds']:6.1f} s  "
            f"{row['passages_per_s']:8.0f}/s"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
