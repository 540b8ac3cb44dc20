"""``hq audit`` reports: JSON (every number), Markdown tables, and a plot of quality lost against memory
and latency. Files are written to temporary names and renamed (the JSON last)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from hybrid_qdrant.atomic_write import atomic_savefig, atomic_write_bytes
from hybrid_qdrant.evaluation import metrics as M
from hybrid_qdrant.evaluation.audit import METRICS, AuditResult, VariantResult
from hybrid_qdrant.evaluation.report import report_paths
from hybrid_qdrant.evaluation.slices import SETTINGS, Slice

AUDIT_VERSION = 1
MIB = 2**20


def flagged_pairs(losses: dict[str, float], factor: float, min_loss: float) -> list[dict[str, Any]]:
    """The slices (language pairs) of one setting that lose much more than the setting's average.

    Args:
        losses: slice name -> metric lost (exact - variant; positive is worse), one setting's slices.
        factor / min_loss: flagged when the loss is at least ``min_loss`` and at least ``factor`` times
            the setting's mean loss.

    Returns:
        ``[{"slice", "loss", "mean_loss"}]``, the largest loss first.
    """
    defined = {k: v for k, v in losses.items() if not math.isnan(v)}
    if not defined:
        return []
    mean = math.fsum(defined.values()) / len(defined)
    out = [
        {"slice": name, "loss": loss, "mean_loss": mean}
        for name, loss in defined.items()
        if loss >= min_loss and loss >= factor * mean
    ]
    return sorted(out, key=lambda f: (-f["loss"], f["slice"]))


def _macro(values: dict[str, float], slices: list[Slice], setting: str) -> float | None:
    chosen = {s.name: values[s.name] for s in slices if s.setting == setting and s.name in values}
    if not chosen:
        return None
    value = M.macro_average(chosen)
    return None if math.isnan(value) else value


def variant_dict(result: AuditResult, v: VariantResult) -> dict[str, Any]:
    """One variant's part of the JSON report."""
    k = f"index_recall@{result.k}"
    deltas = {name: {m: v.slices[name][m] - result.exact[name][m] for m in METRICS} for name in v.slices}
    settings = [s for s in SETTINGS if any(sl.setting == s for sl in result.slices)]
    metrics: dict[str, dict[str, float | None]] = {}
    delta: dict[str, dict[str, float | None]] = {}
    flagged: list[dict[str, Any]] = []
    for setting in settings:
        metrics[setting] = {
            m: _macro({n: x[m] for n, x in v.slices.items()}, result.slices, setting) for m in METRICS
        }
        metrics[setting][k] = _macro(
            {n: x["index_recall"] for n, x in v.slices.items()}, result.slices, setting
        )
        delta[setting] = {
            m: _macro({n: d[m] for n, d in deltas.items()}, result.slices, setting) for m in METRICS
        }
        losses = {s.name: -deltas[s.name]["map"] for s in result.slices if s.setting == setting}
        flagged += [
            {"setting": setting, **f}
            for f in flagged_pairs(losses, result.audit.flag_factor, result.audit.flag_min_loss)
        ]
    index = v.index
    return {
        "name": v.variant.name,
        "index_from": "copy" if v.variant.copy else "collection",
        "build": dict(v.variant.build or {}),
        "search": v.variant.search(),
        "options": v.options.set_options(),
        "index": None
        if index is None
        else {
            "points": index.points,
            "indexed_vectors": index.indexed_vectors,
            "segments": index.segments,
            **({"status": index.status} if index.status else {}),
        },
        "build_seconds": None if v.build_seconds is None else round(v.build_seconds, 3),
        "score_seconds": round(v.score_seconds, 3),
        "memory_bytes": v.memory,
        "latency_ms": _rounded(v.latency),
        "metrics": metrics,
        "delta": delta,
        "slices": {name: {**deltas[name], k: v.slices[name]["index_recall"]} for name in sorted(v.slices)},
        "flagged": flagged,
    }


def audit_dict(result: AuditResult) -> dict[str, Any]:
    """The JSON report of an audit."""
    a = result.audit
    settings = [s for s in SETTINGS if any(sl.setting == s for sl in result.slices)]
    exact = {
        setting: {
            m: _macro({n: x[m] for n, x in result.exact.items()}, result.slices, setting) for m in METRICS
        }
        for setting in settings
    }
    return {
        "version": AUDIT_VERSION,
        "kind": "hq audit",
        "benchmark": result.benchmark,
        "model": result.model,
        "collection": result.collection,
        "engine": result.engine,
        "where": result.where,
        "languages": list(result.languages),
        "settings": settings,
        "k": result.k,
        "hits_per_query": result.depth,
        "counts": result.counts,
        "options": {
            "latency_queries": a.latency_queries,
            "warmup": a.warmup,
            "seed": a.seed,
            "flag_factor": a.flag_factor,
            "flag_min_loss": a.flag_min_loss,
        },
        "machine": {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in _load()]},
        "exact": {
            "metrics": exact,
            "slices": {name: result.exact[name] for name in sorted(result.exact)},
            "latency_ms": _rounded(result.exact_latency),
            "memory_bytes": result.exact_memory,
        },
        "variants": [variant_dict(result, v) for v in result.variants],
        "seconds": round(result.seconds, 3),
    }


def _load() -> tuple[float, ...]:
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover - not on every platform
        return ()


def _rounded(latency: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {s: {k: (round(v, 4) if k != "n" else v) for k, v in row.items()} for s, row in latency.items()}


def _pts(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f}"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"


def markdown(report: dict[str, Any]) -> str:
    """Markdown: what was audited, quality lost per setting, cost, flagged language pairs."""
    k = report["k"]
    settings = report["settings"]
    counts = report["counts"]
    lines = [f"# Index audit: {report['benchmark']}, {report['model']}", ""]
    lines.append(
        f"Collection `{report['collection']}` ({report['engine']}, {report['where']}): "
        f"{counts['passages']:,} passages, {counts['queries']:,} queries, {counts['slices']} language pairs "
        "and pools "
        f"({counts['query_slices']:,} query-slices). Every variant is compared with exact search over the "
        f"vectors stored in the collection; the index returns its top {report['hits_per_query']} per query, "
        f"ranked as the index ranks them, then every other passage in exact order."
    )
    exact = report["exact"]["metrics"]
    lines += [
        "",
        "Exact search (x 100): "
        + "; ".join(
            f"{s} mAP {100 * exact[s]['map']:.2f}, R@10 {100 * exact[s]['recall@10']:.2f}, "
            f"nDCG@10 {100 * exact[s]['ndcg@10']:.2f}"
            for s in settings
            if exact[s]["map"] is not None
        )
        + ".",
        "",
        "## Quality lost",
        "",
        f"Variant minus exact, x 100 (negative: worse), macro averages over each setting's language pairs; "
        f"recall@{k}: share of the index's top {k} that belong to the exact top {k} (ties with the exact "
        f"{k}th count).",
        "",
    ]
    head = ["variant"]
    for metric in ("mAP", "R@10", "nDCG@10", f"recall@{k}"):
        head += [f"{metric} {s}" for s in settings]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    key = f"index_recall@{k}"
    for v in report["variants"]:
        cells = [v["name"]]
        for metric in ("map", "recall@10", "ndcg@10"):
            cells += [_pts(v["delta"][s][metric]) for s in settings]
        cells += ["-" if v["metrics"][s][key] is None else f"{v['metrics'][s][key]:.4f}" for s in settings]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Cost",
        "",
        "Latency: one query per request through hq's store (Python included), ms, over the same sample of "
        f"query-slices for every variant ({report['options']['latency_queries']} per setting after "
        f"{report['options']['warmup']} warm-up queries). RAM: what must stay in memory to serve at full "
        "speed: the HNSW graph plus the quantized vectors (the originals can then live on disk, read only "
        "to rescore), or plus the float vectors.",
        "",
        "| variant | index | HNSW vectors / segments | build s | p50 | p95 | p99 | "
        + " | ".join(f"p50 {s}" for s in settings)
        + " | RAM MiB | vectors | quantized | graph | disk MiB |",
        "|---" * (12 + len(settings)) + "|",
    ]
    rows = [
        ("exact (Qdrant exact search)", None, report["exact"]["latency_ms"], report["exact"]["memory_bytes"])
    ]
    rows += [(v["name"], v, v["latency_ms"], v["memory_bytes"]) for v in report["variants"]]
    for name, v, latency, memory in rows:
        every = latency.get("all", {})
        index = "-" if v is None else v["index_from"]
        hnsw = (
            "-"
            if v is None or v["index"] is None
            else f"{v['index']['indexed_vectors']:,} / {v['index']['segments']}"
        )
        build = "-" if v is None or v["build_seconds"] is None else f"{v['build_seconds']:.1f}"
        graph = _mib(memory["graph"]) + (" (est.)" if memory.get("graph_source") == "estimate" else "")
        cells = [name, index, hnsw, build]
        cells += [f"{every[p]:.3f}" if p in every else "-" for p in ("p50", "p95", "p99")]
        cells += [f"{latency[s]['p50']:.3f}" if s in latency else "-" for s in settings]
        cells += [_mib(memory["ram"]), _mib(memory["vectors"]), _mib(memory["quantized"]), graph,
                  _mib(memory.get("disk"))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    options = report["options"]
    lines += [
        "",
        "## Flagged language pairs",
        "",
        f"A pair is flagged when it loses at least {100 * options['flag_min_loss']:.2f} mAP points and at "
        f"least {options['flag_factor']:g} times its setting's mean loss.",
        "",
    ]
    flagged = [(v["name"], f) for v in report["variants"] for f in v["flagged"]]
    if flagged:
        lines += ["| variant | pair | mAP lost | setting's mean loss |", "|---|---|---|---|"]
        for name, f in flagged:
            lines.append(f"| {name} | {f['slice']} | {100 * f['loss']:.2f} | {100 * f['mean_loss']:.2f} |")
    else:
        lines.append("None.")
    machine = report["machine"]
    load = ", ".join(f"{x:g}" for x in machine.get("load_average", []))
    lines += ["", f"Machine: {machine['cpus']} CPUs" + (f", load average {load} when written" if load else "")
              + f"; audit took {report['seconds']:.0f} s."]  # fmt: skip
    return "\n".join(lines) + "\n"


MARKERS = {"mono": "o", "cross": "^", "multi": "s"}


def plot_png(report: dict[str, Any], path: Path) -> None:
    """Quality lost (mAP points, per setting) against RAM and against median latency, one colour per
    variant, one marker shape per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    variants = report["variants"]
    settings = report["settings"]
    cmap = plt.get_cmap("tab20" if len(variants) > 10 else "tab10")
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.2), sharey=True)
    for i, v in enumerate(variants):
        colour = cmap(i % cmap.N)
        for s in settings:
            loss = v["delta"][s]["map"]
            if loss is None:
                continue
            y = -100 * loss
            left.scatter(v["memory_bytes"]["ram"] / MIB, y, color=colour, marker=MARKERS[s], s=46,
                         edgecolors="black", linewidths=0.4, zorder=3)  # fmt: skip
            p50 = v["latency_ms"].get(s, {}).get("p50")
            if p50 is not None:
                right.scatter(p50, y, color=colour, marker=MARKERS[s], s=46, edgecolors="black",
                              linewidths=0.4, zorder=3)  # fmt: skip
    exact = report["exact"]
    left.axvline(exact["memory_bytes"]["ram"] / MIB, color="grey", linestyle=":", linewidth=1)
    left.annotate(
        "exact search:\nfloat vectors",
        (exact["memory_bytes"]["ram"] / MIB, 1),
        xycoords=("data", "axes fraction"),
        xytext=(-4, -4),
        textcoords="offset points",
        ha="right",
        va="top",
        color="grey",
        fontsize=7,
    )
    for s in settings:
        p50 = exact["latency_ms"].get(s, {}).get("p50")
        if p50 is not None:
            right.scatter(p50, 0, color="white", marker=MARKERS[s], s=46, edgecolors="grey", zorder=2)
    for ax in (left, right):
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.grid(True, linewidth=0.3, alpha=0.6)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    # linear within +-0.1 points, logarithmic beyond: small losses stay apart from large ones
    left.set_yscale("symlog", linthresh=0.1, linscale=1.0)
    losses = [
        -100 * v["delta"][s]["map"] for v in variants for s in settings if v["delta"][s]["map"] is not None
    ]
    if losses:
        left.set_ylim(min(-0.1, 2 * min(losses)), max(0.1, 2 * max(losses)))
    left.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    left.set_xlabel("RAM to serve (MiB, log): graph + quantized or float vectors")
    right.set_xlabel("median latency of one query (ms, log; hollow: exact search)")
    left.set_ylabel("mAP lost against exact search (points; symlog)")
    handles = [plt.Line2D([], [], color=cmap(i % cmap.N), marker="o", linestyle="", markersize=7,
                          markeredgecolor="black", markeredgewidth=0.4, label=v["name"])
               for i, v in enumerate(variants)]  # fmt: skip
    shapes = [plt.Line2D([], [], color="white", marker=MARKERS[s], linestyle="", markersize=7,
                         markeredgecolor="black", label=s) for s in settings]  # fmt: skip
    fig.legend(
        handles=handles + shapes, loc="center left", bbox_to_anchor=(0.83, 0.5), fontsize=7, frameon=False
    )
    model = str(report["model"])
    model = model if len(model) <= 52 else "..." + model[-49:]
    fig.suptitle(
        f"{report['benchmark']}, {model}: quality lost by each index configuration "
        f"({report['engine']}, {report['counts']['passages']:,} passages)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 0.83, 0.95))
    try:
        atomic_savefig(fig, path, dpi=120)
    finally:
        plt.close(fig)


def write_audit(result: AuditResult, output: str | Path) -> dict[str, Path]:
    """Write ``output`` (JSON) with ``.md`` and ``.png`` beside it; returns the paths by kind."""
    paths = report_paths(output)
    paths.pop("per_query")
    paths["plot"] = paths.pop("heatmap")
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    report = audit_dict(result)
    atomic_write_bytes(paths["markdown"], markdown(report).encode("utf-8"))
    plot_png(report, paths["plot"])
    atomic_write_bytes(
        paths["json"], (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    )
    return paths
