"""Evaluation reports: JSON (flat metrics), Markdown tables like the paper's, a cross-lingual mAP heatmap.

Files are written to temporary names and renamed, so a failed run leaves no half-written report.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid_qdrant.atomic_write import atomic_savefig, atomic_write_bytes
from hybrid_qdrant.evaluation import EvaluationResult

REPORT_VERSION = 1
#: Version of the per-query file: 1 held only the slices; 2 adds each query's parallel group.
PER_QUERY_VERSION = 2


def report_dict(result: EvaluationResult, model: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report: benchmark, model, counts, options, flat metrics, per-slice counts, timing."""
    opts = result.options
    return {
        "version": REPORT_VERSION,
        "benchmark": result.benchmark,
        "model": model,
        "languages": list(result.languages),
        "counts": result.counts,
        "protocol": result.protocol,
        "options": {
            "settings": list(opts.settings),
            "engine": opts.engine,
            "depth": opts.depth,
            "full_ranking": opts.full_ranking,
            "exact_search": opts.exact_search,
            "metrics_truncated_at": None if opts.full_ranking else opts.depth,
        },
        "metrics": result.metrics(),
        "slices": {
            f"{r.slice.setting}/{r.slice.key}": {
                "queries": r.n_queries,
                "dropped_no_relevant": r.n_dropped,
                "exact_fallback": r.n_exact_fallback,
                "seconds": round(r.seconds, 4),
            }
            for r in result.slices
        },
        "seconds": round(result.seconds, 3),
        **(extra or {}),
    }


@dataclass
class PerQueryValues:
    """The per-query file beside a report.

    Attributes:
        slices: ``{"{setting}/{q}-{p}": {query id: {metric: value}}}``.
        groups: ``{query id: parallel group}`` for queries that have one (the clusters of ``hq
            compare``); empty in files written before version 2.
        version: the file's format version.
    """

    slices: dict[str, dict[str, dict[str, float]]]
    groups: dict[str, str] = field(default_factory=dict)
    version: int = PER_QUERY_VERSION


def per_query_dict(result: EvaluationResult) -> dict[str, object]:
    """The per-query file's content: values keyed ``{setting}/{q}-{p}`` then query id, and the groups."""
    return {
        "version": PER_QUERY_VERSION,
        "slices": {f"{r.slice.setting}/{r.slice.key}": r.per_query for r in result.slices},
        "groups": result.groups,
    }


def _fmt(value: float | None, scale: float = 100.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """Markdown tables: macro summary, per-language table, cross-lingual mAP matrix."""
    m = report["metrics"]
    langs = report["languages"]
    lines = [f"# {report['benchmark']}: {report['model']}", ""]
    lines += [
        "| setting | mAP | R@1 | R@10 | nDCG@10 | R@100 | MRR@10 | rank distance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for setting in ("mono", "cross", "multi"):
        if f"{setting}/map" not in m:
            continue
        cells = [
            _fmt(m.get(f"{setting}/{k}"))
            for k in ("map", "recall@1", "recall@10", "ndcg@10", "recall@100", "mrr@10")
        ]
        rd = m.get(f"{setting}/rank_distance")
        lines.append(f"| {setting} | " + " | ".join(cells) + f" | {'-' if rd is None else f'{rd:.1f}'} |")
    lines += ["", "Per query language (mAP x 100; cross = mean over the other languages as targets):", ""]
    lines += [
        "| lang | mono mAP | cross mAP | multi mAP | multi R@10 | rank distance |",
        "|---|---|---|---|---|---|",
    ]
    for q in langs:
        cross = [m[f"cross/{q}-{p}/map"] for p in langs if p != q and f"cross/{q}-{p}/map" in m]
        rd = m.get(f"multi/{q}-all/rank_distance")
        lines.append(
            f"| {q} | {_fmt(m.get(f'mono/{q}-{q}/map'))} | "
            f"{_fmt(sum(cross) / len(cross) if cross else None)} | "
            f"{_fmt(m.get(f'multi/{q}-all/map'))} | {_fmt(m.get(f'multi/{q}-all/recall@10'))} | "
            f"{'-' if rd is None else f'{rd:.1f}'} |"
        )
    if any(k.startswith("cross/") for k in m):
        lines += [
            "",
            "Cross-lingual mAP x 100 (rows: query language, columns: passage language; diagonal: mono):",
            "",
        ]
        lines += ["| q \\ p | " + " | ".join(langs) + " |", "|---" * (len(langs) + 1) + "|"]
        for q in langs:
            cells = [
                _fmt(m.get(f"mono/{q}-{q}/map") if p == q else m.get(f"cross/{q}-{p}/map")) for p in langs
            ]
            lines.append(f"| {q} | " + " | ".join(cells) + " |")
    counts = report.get("counts", {})
    lines += ["", "Counts: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    if report.get("protocol"):
        lines.append("Protocol: " + ", ".join(f"{k} {v}" for k, v in report["protocol"].items()))
    if report["options"].get("metrics_truncated_at"):
        lines.append(f"Metrics truncated at depth {report['options']['metrics_truncated_at']}.")
    else:
        lines.append("mAP and rank distance over the full ranking (exact).")
    return "\n".join(lines) + "\n"


def heatmap_png(report: dict[str, Any], path: Path) -> bool:
    """Write the cross-lingual mAP matrix (diagonal: mono) as a PNG; False when there is no cross setting."""
    m = report["metrics"]
    langs = report["languages"]
    if not any(k.startswith("cross/") for k in m):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.full((len(langs), len(langs)), np.nan)
    for i, q in enumerate(langs):
        for j, p in enumerate(langs):
            key = f"mono/{q}-{q}/map" if p == q else f"cross/{q}-{p}/map"
            if key in m:
                grid[i, j] = 100 * m[key]
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(langs), 0.8 + 0.55 * len(langs)))
    im = ax.imshow(grid, cmap="viridis", vmin=np.nanmin(grid), vmax=np.nanmax(grid))
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(len(langs)), langs)
    ax.set_xlabel("passage language")
    ax.set_ylabel("query language")
    ax.set_title(f"{report['benchmark']} cross-lingual mAP")
    for i in range(len(langs)):
        for j in range(len(langs)):
            if not np.isnan(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if grid[i, j] < np.nanmean(grid) else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    try:
        atomic_savefig(fig, path, dpi=120)
    finally:
        plt.close(fig)
    return True


def write_report(
    result: EvaluationResult, output: str | Path, model: str, extra: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write ``output`` (JSON) with its siblings ``.md``, ``.png`` (cross heatmap) and ``.queries.json.gz``.

    Returns:
        The paths written, by kind.
    """
    output = Path(output)
    report = report_dict(result, model, extra)
    stem = output.with_suffix("") if output.suffix == ".json" else output
    paths = {
        "json": output,
        "markdown": stem.with_suffix(".md"),
        "per_query": Path(f"{stem}.queries.json.gz"),
        "heatmap": stem.with_suffix(".png"),
    }
    per_query = gzip.compress(json.dumps(per_query_dict(result)).encode("utf-8"), mtime=0)
    atomic_write_bytes(paths["per_query"], per_query)
    atomic_write_bytes(paths["markdown"], markdown(report).encode("utf-8"))
    if not heatmap_png(report, paths["heatmap"]):
        del paths["heatmap"]
    atomic_write_bytes(output, (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    return paths


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a JSON report written by ``write_report``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_per_query(path: str | Path) -> PerQueryValues:
    """Read the per-query values written beside a report (path of the report or of its per-query file).

    Files of version 1 (slices only, no groups) are read too.
    """
    path = Path(path)
    if not path.name.endswith(".queries.json.gz"):
        stem = path.with_suffix("") if path.suffix == ".json" else path
        path = Path(f"{stem}.queries.json.gz")
    data = json.loads(gzip.decompress(path.read_bytes()))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a per-query file")
    if "version" not in data:  # version 1: the slices at top level
        return PerQueryValues(slices=data, groups={}, version=1)
    if data["version"] != PER_QUERY_VERSION or not isinstance(data.get("slices"), dict):
        raise ValueError(f"{path}: unknown per-query file version {data.get('version')!r}")
    return PerQueryValues(slices=data["slices"], groups=dict(data.get("groups") or {}), version=2)
