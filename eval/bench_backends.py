"""Benchmark: encoder backends against torch fp32, throughput and agreement, in one process.

    python eval/bench_backends.py --data-dir ../shared/data/lareqa/xquad-r --model models/me5-small \\
        --calibration ../shared/data/lareqa/mlqa-r --output eval/results/backends/bench_backends.json

Samples passages and questions of XQuAD-R (all languages, seeded), loads torch fp32 and every option
(exports made, or read from the export cache, before any timing), then encodes the texts in chunks,
every option on every chunk in a rotating order, so that load from other processes falls on all of them
alike. Reports per option: passages/s and questions/s and their ratios to torch fp32; cosine of each
vector with torch's (mean, min); top-1 agreement (the question's nearest sampled passage is torch's).
Quality on the benchmark itself is the full evaluation (``hq evaluate --backend ...``), not this.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from hybrid_qdrant.atomic_write import atomic_write_bytes
from hybrid_qdrant.benchmarks import load_benchmark
from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder

DEFAULT_OPTIONS = "onnx/none,onnx/int8,openvino/none,openvino/bf16,openvino/int8"


def cpu_info() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def set_threads(encoder: SentenceTransformerEncoder, threads: int) -> None:
    """Run the encoder's runtime on ``threads`` threads (torch: process-wide)."""
    import torch

    exported = encoder.model[0].model
    if not hasattr(exported, "folder"):
        torch.set_num_threads(threads)
    elif encoder.backend.startswith("onnx"):
        from hybrid_qdrant.backends.onnx_backend import onnx_runner

        exported._run = onnx_runner(exported.folder, threads)
    else:
        from hybrid_qdrant.backends.openvino_backend import openvino_runner

        precision = None if "int8" in encoder.backend else encoder.backend.split("/")[1]
        exported._run = openvino_runner(exported.folder, {"none": "f32"}.get(precision, precision), threads)[
            0
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model", default="intfloat/multilingual-e5-small")
    parser.add_argument("--calibration", help="texts for openvino int8 (e.g. the MLQA-R folder)")
    parser.add_argument("--options", default=DEFAULT_OPTIONS, help="comma-separated backend/quantize")
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=512, help="texts per timed chunk")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        help="threads of every runtime (default: each one's own, all cores); 1 compares work per core, "
        "which other processes' load distorts least",
    )
    parser.add_argument("--output", help="write the results as JSON")
    args = parser.parse_args()

    bench = load_benchmark("xquad-r", args.data_dir)
    rng = np.random.default_rng(args.seed)
    passages = [bench.passages[i].text for i in rng.choice(len(bench.passages), args.passages, replace=False)]
    queries = [bench.queries[i].text for i in rng.choice(len(bench.queries), args.queries, replace=False)]
    load_start = os.getloadavg()

    specs = ["torch/none", *[o for o in args.options.split(",") if o and o != "torch/none"]]
    encoders, setup = {}, {}
    for spec in specs:
        backend, quantize = spec.split("/")
        start = time.perf_counter()
        settings = EncoderSettings(
            model=args.model,
            batch_size=args.batch_size,
            device="cpu",
            backend=backend,
            quantize=quantize,
            calibration=args.calibration if quantize == "int8" and backend == "openvino" else None,
        )
        encoders[spec] = SentenceTransformerEncoder(settings)
        if args.threads:
            set_threads(encoders[spec], args.threads)
        encoders[spec].encode_passages(passages[: args.batch_size])  # warm-up: first shapes compiled
        setup[spec] = time.perf_counter() - start
        print(f"{spec}: ready in {setup[spec]:.1f} s (runs {encoders[spec].backend})", flush=True)

    seconds = {spec: {"passage": 0.0, "query": 0.0} for spec in specs}
    vectors = {spec: {"passage": [], "query": []} for spec in specs}
    for role, texts in (("passage", passages), ("query", queries)):
        for number, start in enumerate(range(0, len(texts), args.chunk)):
            chunk = texts[start : start + args.chunk]
            order = specs[number % len(specs) :] + specs[: number % len(specs)]  # rotate who goes first
            for spec in order:
                encode = (
                    encoders[spec].encode_passages if role == "passage" else encoders[spec].encode_queries
                )
                tick = time.perf_counter()
                vectors[spec][role].append(encode(chunk))  # (chunk, dim)
                seconds[spec][role] += time.perf_counter() - tick
    load_end = os.getloadavg()

    ref_p = np.concatenate(vectors["torch/none"]["passage"])  # (P, dim)
    ref_q = np.concatenate(vectors["torch/none"]["query"])  # (Q, dim)
    ref_top1 = (ref_q @ ref_p.T).argmax(1)  # (Q,)
    rows = []
    for spec in specs:
        got_p = np.concatenate(vectors[spec]["passage"])
        got_q = np.concatenate(vectors[spec]["query"])
        cos_p, cos_q = (got_p * ref_p).sum(1), (got_q * ref_q).sum(1)
        top1 = float(((got_q @ got_p.T).argmax(1) == ref_top1).mean())
        base = seconds["torch/none"]
        rows.append(
            {
                "option": spec,
                "runs": encoders[spec].backend,
                "passages_per_s": len(passages) / seconds[spec]["passage"],
                "queries_per_s": len(queries) / seconds[spec]["query"],
                "passage_ratio": base["passage"] / seconds[spec]["passage"],
                "query_ratio": base["query"] / seconds[spec]["query"],
                "cosine_passages_mean": float(cos_p.mean()),
                "cosine_passages_min": float(cos_p.min()),
                "cosine_queries_mean": float(cos_q.mean()),
                "cosine_queries_min": float(cos_q.min()),
                "top1_agreement": top1,
                "setup_s": setup[spec],
            }
        )

    machine = {
        "cpu": cpu_info(),
        "cores": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in load_end],
    }
    threads = f"{args.threads} thread(s) per runtime" if args.threads else "default threads"
    print(
        f"\n{args.passages} passages, {args.queries} questions, batch {args.batch_size}, {threads}; {machine}"
    )
    print(
        "| option | runs | passages/s | x torch | questions/s | x torch | cos p mean/min | cos q mean/min "
        "| top-1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['option']} | {r['runs']} | {r['passages_per_s']:.1f} | {r['passage_ratio']:.2f} | "
            f"{r['queries_per_s']:.1f} | {r['query_ratio']:.2f} | "
            f"{r['cosine_passages_mean']:.4f}/{r['cosine_passages_min']:.4f} | "
            f"{r['cosine_queries_mean']:.4f}/{r['cosine_queries_min']:.4f} | "
            f"{100 * r['top1_agreement']:.1f} % |"
        )
    if args.output:
        from importlib.metadata import PackageNotFoundError, version

        versions = {}
        for name in ("torch", "transformers", "sentence-transformers", "onnxruntime", "openvino", "nncf"):
            try:
                versions[name] = version(name)
            except PackageNotFoundError:
                versions[name] = None
        payload = {
            "passages": args.passages,
            "queries": args.queries,
            "batch_size": args.batch_size,
            "chunk": args.chunk,
            "threads": args.threads,
            "seed": args.seed,
            "model": args.model,
            "calibration": args.calibration,
            "machine": machine,
            "versions": versions,
            "rows": rows,
        }
        atomic_write_bytes(args.output, (json.dumps(payload, indent=1) + "\n").encode())
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
