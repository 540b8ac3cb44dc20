"""Evaluation reports: JSON (flat metrics), Markdown tables like the paper's, a cross-lingual mAP heatmap.

Files are written to temporary names and renamed, so a failed run leaves no half-written report.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid_qdrant.atomic_write import atomic_savefig, atomic_write_bytes
from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.evaluation.evaluate import EvaluationResult
from hybrid_qdrant.evaluation.slices import SETTINGS, Slice, grid_slice, setting_metric

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
            r.slice.name: {
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
        "slices": {r.slice.name: r.per_query for r in result.slices},
        "groups": result.groups,
    }


def has_cross(report: dict[str, Any]) -> bool:
    """Whether a report has the cross-lingual setting (its language grid and heatmap)."""
    return setting_metric("cross", "map") in report["metrics"]


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
    for setting in SETTINGS:
        if setting_metric(setting, "map") not in m:
            continue
        cells = [
            _fmt(m.get(setting_metric(setting, k)))
            for k in ("map", "recall@1", "recall@10", "ndcg@10", "recall@100", "mrr@10")
        ]
        rd = m.get(setting_metric(setting, "rank_distance"))
        lines.append(f"| {setting} | " + " | ".join(cells) + f" | {'-' if rd is None else f'{rd:.1f}'} |")
    lines += ["", "Per query language (mAP x 100; cross = mean over the other languages as targets):", ""]
    lines += [
        "| lang | mono mAP | cross mAP | multi mAP | multi R@10 | rank distance |",
        "|---|---|---|---|---|---|",
    ]
    for q in langs:
        cross_keys = [Slice("cross", q, p).metric("map") for p in langs if p != q]
        cross = [m[key] for key in cross_keys if key in m]
        multi = Slice("multi", q, None)
        rd = m.get(multi.metric("rank_distance"))
        lines.append(
            f"| {q} | {_fmt(m.get(Slice('mono', q, q).metric('map')))} | "
            f"{_fmt(sum(cross) / len(cross) if cross else None)} | "
            f"{_fmt(m.get(multi.metric('map')))} | {_fmt(m.get(multi.metric('recall@10')))} | "
            f"{'-' if rd is None else f'{rd:.1f}'} |"
        )
    if has_cross(report):
        lines += [
            "",
            "Cross-lingual mAP x 100 (rows: query language, columns: passage language; diagonal: mono):",
            "",
        ]
        lines += ["| q \\ p | " + " | ".join(langs) + " |", "|---" * (len(langs) + 1) + "|"]
        for q in langs:
            cells = [_fmt(m.get(grid_slice(q, p).metric("map"))) for p in langs]
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


#: Heatmap colour scales: ``fixed`` (0-100, the default: pictures of two models compare by eye) or
#: ``auto`` (the data's range: small gaps look large).
HEATMAP_SCALES = ("fixed", "auto")


def heatmap_png(report: dict[str, Any], path: Path, scale: str = "fixed") -> bool:
    """Write the mAP matrix (rows: query language, columns: passage language; diagonal: mono) as a PNG.

    Returns:
        False (and nothing written) when the report has no cross setting.
    """
    if scale not in HEATMAP_SCALES:
        raise ValueError(f"scale must be one of {HEATMAP_SCALES}, got {scale!r}")
    m = report["metrics"]
    langs = report["languages"]
    if not has_cross(report):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    n = len(langs)
    grid = np.full((n, n), np.nan)
    for i, q in enumerate(langs):
        for j, p in enumerate(langs):
            key = grid_slice(q, p).metric("map")
            if key in m:
                grid[i, j] = 100 * m[key]
    low, high = (0.0, 100.0) if scale == "fixed" else (float(np.nanmin(grid)), float(np.nanmax(grid)))
    side = max(3.2, 0.55 * n)  # the matrix's size in inches; a floor keeps 2-language plots readable
    fig, ax = plt.subplots(figsize=(side + 2.2, side + 1.6))
    im = ax.imshow(grid, cmap="viridis", vmin=low, vmax=high)
    ax.set_xticks(range(n), langs)
    ax.set_yticks(range(n), langs)
    ax.set_xlabel("passage language")
    ax.set_ylabel("query language")
    for i in range(n):
        ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=1.5))
        for j in range(n):
            if not np.isnan(grid[i, j]):
                light = im.norm(grid[i, j]) < 0.5
                ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=7 if n > 8 else 9,
                        color="white" if light else "black")  # fmt: skip
    model = str(report.get("model", ""))
    model = model if len(model) <= 52 else "..." + model[-49:]  # a path's end names the run
    title = f"{report['benchmark']}: mAP x 100\n{model}"
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("mAP x 100" + (" (scale: data range)" if scale == "auto" else ""))
    fig.text(
        0.5,
        0.01,
        "outlined diagonal: mono (same language); off-diagonal: cross-lingual",
        ha="center",
        va="bottom",
        fontsize=7,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    try:
        atomic_savefig(fig, path, dpi=120)
    finally:
        plt.close(fig)
    return True


def report_paths(output: str | Path) -> dict[str, Path]:
    """The files of a report at ``output`` (which must end in ``.json``): the name with ``.json`` taken
    off, plus ``.json``, ``.md``, ``.png`` and ``.queries.json.gz``.

    ``me5.run1.json`` gives ``me5.run1.md``, ``me5.run1.png`` and ``me5.run1.queries.json.gz``: every
    file derives from the full name given.

    Raises:
        ConfigError: ``output`` does not end in ``.json``.
    """
    output = Path(output)
    if not output.name.endswith(".json") or output.name == ".json":
        raise ConfigError(f"--output {output}: a report is JSON; give a file name ending in .json")
    base = output.name[: -len(".json")]
    return {
        "json": output,
        "markdown": output.with_name(base + ".md"),
        "per_query": output.with_name(base + ".queries.json.gz"),
        "heatmap": output.with_name(base + ".png"),
    }


def check_output(output: str | Path) -> dict[str, Path]:
    """``report_paths`` of ``output``, checked before any work: a file name ending in ``.json`` whose
    folder exists or can be created, and is writable.

    Raises:
        ConfigError: a bad name, a directory, or a folder that cannot be written.
    """
    if Path(output).is_dir():
        raise ConfigError(f"--output {output} is a directory; give a file name such as report.json")
    paths = report_paths(output)
    folder = paths["json"].parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:  # a real probe: permissions, read-only mounts and pseudo file systems all answer it
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"--output {output}: cannot write into {folder} ({exc.strerror or exc})") from None
    return paths


def write_report(
    result: EvaluationResult,
    output: str | Path,
    model: str,
    extra: dict[str, Any] | None = None,
    heatmap_scale: str = "fixed",
) -> dict[str, Path]:
    """Write ``output`` (JSON) with its siblings ``.md``, ``.png`` (cross heatmap) and ``.queries.json.gz``
    (``report_paths``); the JSON last, so a report that exists is complete.

    A report without a cross setting has no heatmap: a PNG left there by an earlier report of the same
    name is removed, so nothing beside the JSON describes another run.

    Returns:
        The paths written, by kind.
    """
    paths = report_paths(output)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    report = report_dict(result, model, extra)
    per_query = gzip.compress(json.dumps(per_query_dict(result)).encode("utf-8"), mtime=0)
    atomic_write_bytes(paths["per_query"], per_query)
    atomic_write_bytes(paths["markdown"], markdown(report).encode("utf-8"))
    if not heatmap_png(report, paths["heatmap"], heatmap_scale):
        paths.pop("heatmap").unlink(missing_ok=True)
    atomic_write_bytes(
        paths["json"], (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    )
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
        path = report_paths(path)["per_query"]
    data = json.loads(gzip.decompress(path.read_bytes()))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a per-query file")
    if "version" not in data:  # version 1: the slices at top level
        return PerQueryValues(slices=data, groups={}, version=1)
    if data["version"] != PER_QUERY_VERSION or not isinstance(data.get("slices"), dict):
        raise ValueError(f"{path}: unknown per-query file version {data.get('version')!r}")
    return PerQueryValues(slices=data["slices"], groups=dict(data.get("groups") or {}), version=2)
