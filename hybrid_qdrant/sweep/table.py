"""The sweep's table: per model and alpha, the macro metrics with intervals over seeds and question
clusters, each alpha against the reference (``hq compare``), as Markdown, CSV, JSON and two plots.

Per setting, the table gives the macro average (as the reports), its mean over the seeds, and a 95 %
interval from a two-level bootstrap over clusters of parallel queries (a question in every language)
and over the seeds (``significance.bootstrap_mean``), plus the standard deviation of the per-seed values
when there are two seeds or more. Each alpha is compared with ``reference_alpha`` per model by ``hq
compare`` with all seeds of both sides, and with the untuned model when ``[[models]] base_report``
names its report (a "base" row, and a line in the alpha plot).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_qdrant.atomic_write import atomic_savefig, atomic_write_bytes
from hybrid_qdrant.config import read_toml
from hybrid_qdrant.errors import ConfigError, DataError
from hybrid_qdrant.evaluation.metrics import display_scale
from hybrid_qdrant.sweep.config import SweepConfig, SweepModel
from hybrid_qdrant.sweep.state import load_state

logger = logging.getLogger(__name__)

#: (setting, metric) pairs in the table; mAP x 100, rank distance as is (lower is better).
METRICS = (("mono", "map"), ("cross", "map"), ("multi", "map"), ("multi", "rank_distance"))
LABELS = {
    "mono/map": "mono mAP",
    "cross/map": "cross mAP",
    "multi/map": "multi mAP",
    "multi/rank_distance": "multi rank distance",
}


def _interval(reports: list[Path], setting: str, metric: str, config: SweepConfig) -> dict[str, Any] | None:
    """A cell group's macro mean over its seeds with the interval over seeds and question clusters."""
    from hybrid_qdrant.evaluation.compare import load_groups, load_values, setting_values
    from hybrid_qdrant.evaluation.significance import bootstrap_mean

    files = {r: load_values(r) for r in reports}
    per_seed = [setting_values(files[r].slices, setting, metric) for r in reports]
    if not all(values for values, _ in per_seed):
        return None
    boot = bootstrap_mean(
        [values for values, _ in per_seed],
        n_resamples=config.sweep.resamples,
        confidence=config.sweep.confidence,
        groups=load_groups(files),
        weights=per_seed[0][1],
    )
    seed_values = [sum(w[q] * v[q] for q in v) for v, w in per_seed]  # each seed's macro value
    return {
        "mean": boot.mean_difference,
        "ci_low": boot.ci_low,
        "ci_high": boot.ci_high,
        "queries": boot.n_queries,
        "clusters": boot.n_clusters,
        "per_seed": seed_values,
        "seed_sd": float(np.std(seed_values, ddof=1)) if len(seed_values) > 1 else None,
    }


def _realised_mono_share(config: SweepConfig, cell_id: str) -> float | None:
    """The share of monolingual batches a cell trained on (its log history), None when unknown."""
    from hybrid_qdrant.training.trainer import LOG_HISTORY

    try:
        history = json.loads(
            (config.results_dir / "cells" / cell_id / LOG_HISTORY).read_text(encoding="utf-8")
        )
        return float(history["realised_share"]["mono_share"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_same_evaluation(base: Path, cell: Path) -> None:
    """The base report must be the cells' evaluation of another model: same benchmark, languages,
    protocol, queries and passages (DataError otherwise)."""
    try:
        a, b = (json.loads(Path(p).read_text(encoding="utf-8")) for p in (base, cell))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the report {exc}") from exc
    for key in ("benchmark", "languages", "protocol"):
        if a.get(key) != b.get(key):
            raise DataError(
                f"base_report {base}: {key} {a.get(key)!r} differs from the cells' {b.get(key)!r}; evaluate "
                "the untuned model with the sweep's evaluation config"
            )
    for key in ("queries", "passages", "query_slices"):
        if a.get("counts", {}).get(key) != b.get("counts", {}).get(key):
            raise DataError(
                f"base_report {base}: counts.{key} {a['counts'].get(key)} differs from the cells' "
                f"{b['counts'].get(key)}; evaluate the untuned model with the sweep's evaluation config"
            )


def _parameters(model: SweepModel, base: dict[str, Any]) -> float:
    from hybrid_qdrant.training.memory import parameter_count, resolve_shape

    if model.params:
        return model.params
    name = model.name or base.get("model", {}).get("name", "")
    path = Path(name).expanduser()
    try:
        return float(parameter_count(path) if path.is_dir() else resolve_shape(name).params)
    except ConfigError as exc:
        raise ConfigError(f"[[models]] {model.label}: set params = N ({exc})") from exc


def collect(config: SweepConfig, state: dict[str, Any] | None = None) -> dict[str, Path]:
    """The table (Markdown, CSV, JSON) and the plots (PNG) from the finished cells' reports.

    Raises:
        DataError: no cell has finished.
    """

    state = state or load_state(config.root)
    base = read_toml(config.sweep.train_config)
    done = {k: v for k, v in state["cells"].items() if v.get("status") == "done"}
    if not done:
        raise DataError(f"no finished cell in {config.root}: run the sweep first")
    rows: list[dict[str, Any]] = []
    by_alpha: dict[tuple[str, float], list[Path]] = {}
    for model in config.models:
        params = _parameters(model, base)
        for alpha in config.sweep.alphas:
            cells = [c for c in config.cells() if c.model == model and c.alpha == alpha and c.id in done]
            entries = [done[c.id] for c in cells]
            if not entries:
                continue
            reports = [Path(e["report"]) for e in entries]
            row: dict[str, Any] = {
                "model": model.label,
                "params": params,
                "alpha": alpha,
                "seeds": len(reports),
                "seed_ids": [c.seed for c in cells],
                "mono_share": [_realised_mono_share(config, c.id) for c in cells],
            }
            for setting, metric in METRICS:
                value = _interval(reports, setting, metric, config)
                if value is not None:
                    row[f"{setting}/{metric}"] = value
            by_alpha[(model.label, alpha)] = reports
            rows.append(row)
        if model.base_report and any((model.label, a) in by_alpha for a in config.sweep.alphas):
            base_report = Path(model.base_report).expanduser()
            cell_report = next(
                by_alpha[(model.label, a)][0] for a in config.sweep.alphas if (model.label, a) in by_alpha
            )
            _check_same_evaluation(base_report, cell_report)
            row = {"model": model.label, "params": params, "alpha": None, "seeds": 0}
            for setting, metric in METRICS:
                value = _interval([base_report], setting, metric, config)
                if value is not None:
                    row[f"{setting}/{metric}"] = value
            by_alpha[(model.label, None)] = [base_report]
            rows.append(row)
    comparisons = _significance(config, by_alpha)
    out = config.results_dir
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out / "sweep.md",
        "csv": out / "sweep.csv",
        "json": out / "sweep.json",
        "params_plot": out / "metric_vs_params.png",
        "alpha_plot": out / "metric_vs_alpha.png",
    }
    payload = {
        "confidence": config.sweep.confidence,
        "resamples": config.sweep.resamples,
        "interval": "percentile bootstrap over clusters of parallel queries and over the seeds (two-level)",
        "reference_alpha": config.sweep.reference_alpha,
        "rows": rows,
        "significance": comparisons,
    }
    atomic_write_bytes(paths["json"], (json.dumps(payload, indent=1) + "\n").encode())
    atomic_write_bytes(paths["csv"], _csv(rows).encode())
    atomic_write_bytes(paths["markdown"], markdown(config, rows, comparisons).encode())
    _plot(rows, "params", paths["params_plot"], config.sweep.confidence)
    _plot(rows, "alpha", paths["alpha_plot"], config.sweep.confidence)
    return paths


def _significance(
    config: SweepConfig, by_alpha: Mapping[tuple[str, float], list[Path]]
) -> list[dict[str, Any]]:
    """Per model, each alpha against ``reference_alpha`` and against the untuned model (when its report is
    given) with ``hq compare`` (all seeds of each side)."""

    out = []
    for model in config.models:
        for ref in (config.sweep.reference_alpha, None):  # None: the untuned base
            reference = by_alpha.get((model.label, ref))
            if not reference:
                continue
            for alpha in config.sweep.alphas:
                reports = by_alpha.get((model.label, alpha))
                if alpha == ref or not reports:
                    continue
                out += _compare(config, model.label, alpha, ref, reports, reference)
    return out


def _compare(
    config: SweepConfig,
    label: str,
    alpha: float,
    ref: float | None,
    reports: list[Path],
    reference: list[Path],
) -> list[dict[str, Any]]:
    from hybrid_qdrant.evaluation.compare import compare_reports

    out = []
    for setting, metric in METRICS:
        try:
            (row,) = compare_reports(
                reports,
                reference,
                (metric,),
                (setting,),
                n_resamples=config.sweep.resamples,
                confidence=config.sweep.confidence,
            )
        except DataError as exc:
            against = "base" if ref is None else f"{ref:g}"
            logger.warning("%s alpha %g vs %s, %s/%s: %s", label, alpha, against, setting, metric, exc)
            continue
        out.append(
            {
                "model": label,
                "alpha": alpha,
                "reference_alpha": ref,
                "metric": f"{setting}/{metric}",
                **{k: v for k, v in row.as_dict().items() if k not in ("setting", "metric")},
            }
        )
    return out


def against(comparison: dict[str, Any]) -> str:
    ref = comparison["reference_alpha"]
    return "untuned" if ref is None else f"alpha {ref:g}"


def _cell(value: dict[str, Any] | None, key: str) -> str:
    if not value:
        return "-"
    s = display_scale(key)
    text = f"{value['mean'] * s:.1f} [{value['ci_low'] * s:.1f}, {value['ci_high'] * s:.1f}]"
    if value.get("seed_sd") is not None:
        text += f" ±{value['seed_sd'] * s:.1f}"
    return text


def markdown(config: SweepConfig, rows: list[dict[str, Any]], comparisons: list[dict[str, Any]]) -> str:
    """The sweep table and the significance table as Markdown."""
    keys = [f"{s}/{m}" for s, m in METRICS]
    pct = f"{config.sweep.confidence:.0%}"
    seeds = config.sweep.seeds
    finished = sum(len(row.get("seed_ids", [])) for row in rows)
    total = len(config.cells())
    lines = [
        f"# Sweep: model size x alpha ({len(seeds)} seed(s): {', '.join(map(str, seeds))})",
        "",
        f"Cells finished: {finished} of {total}"
        + ("." if finished == total else "; each row gives the seeds it rests on (partial results)."),
        "",
        f"Macro average (as the reports) with its {pct} bootstrap interval over clusters of parallel "
        "queries and over the seeds (mAP x 100; rank distance: lower is better)"
        + ("; ±: standard deviation of the per-seed values." if len(config.sweep.seeds) > 1 else "."),
        "",
        "| model | parameters | alpha | seeds | mono batches (realised) | "
        + " | ".join(LABELS[k] for k in keys)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(keys),
    ]
    for row in rows:
        cells = [_cell(row.get(k), k) for k in keys]
        alpha = "untuned" if row["alpha"] is None else f"{row['alpha']:g}"
        shares = ", ".join("?" if v is None else f"{v:.0%}" for v in row.get("mono_share", [])) or "-"
        seed_ids = ", ".join(map(str, row.get("seed_ids", []))) or "-"
        lines.append(
            f"| {row['model']} | {_params(row['params'])} | {alpha} | {seed_ids} | {shares} | "
            + " | ".join(cells)
            + " |"
        )
    if comparisons:
        lines += [
            "",
            f"Each alpha against alpha = {config.sweep.reference_alpha:g} and against the untuned model "
            "where its report is given (`hq compare` with every seed of each side: bootstrap over question "
            "clusters and seeds; difference = alpha - reference):",
            "",
            "| model | alpha | against | metric | difference | "
            + pct
            + " CI | p (bootstrap) | p (randomisation) | run-pair differences | queries | clusters |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in comparisons:
            s = display_scale(c["metric"])
            p_rand = "-" if c["p_randomization"] is None else f"{c['p_randomization']:.4f}"
            spread = (
                "-"
                if c["spread_low"] is None
                else f"{c['spread_low'] * s:+.2f} to {c['spread_high'] * s:+.2f}"
            )
            lines.append(
                f"| {c['model']} | {c['alpha']:g} | {against(c)} | {LABELS[c['metric']]} | "
                f"{c['difference'] * s:+.2f} | "
                f"[{c['ci_low'] * s:+.2f}, {c['ci_high'] * s:+.2f}] | {c['p_bootstrap']:.4f} | "
                f"{p_rand} | {spread} | {c['n_queries']} | {c['n_clusters']} |"
            )
        from hybrid_qdrant.evaluation.compare import caution

        if warning := caution(comparisons):
            lines += ["", warning]
    return "\n".join(lines) + "\n"


def markdown_file(paths: Mapping[str, Path]) -> str:
    """The Markdown table a sweep wrote."""
    return Path(paths["markdown"]).read_text(encoding="utf-8")


def _params(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f}"


def _csv(rows: list[dict[str, Any]]) -> str:
    keys = [f"{s}/{m}" for s, m in METRICS]
    fields = ("mean", "ci_low", "ci_high", "seed_sd", "queries", "clusters")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "params", "alpha", "seeds"] + [f"{k}:{f}" for k in keys for f in fields])
    for row in rows:
        alpha = "untuned" if row["alpha"] is None else row["alpha"]
        values = [row["model"], int(row["params"]), alpha, row["seeds"]]
        for k in keys:
            values += ["" if row.get(k) is None or row[k].get(f) is None else row[k][f] for f in fields]
        writer.writerow(values)
    return buffer.getvalue()


def _plot(rows: list[dict[str, Any]], x: str, path: Path, confidence: float) -> None:
    """One panel per metric; x = parameters (log) with a line per alpha, or x = alpha with one per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    keys = [f"{s}/{m}" for s, m in METRICS]
    groups: dict[Any, list[dict[str, Any]]] = {}
    bases = [r for r in rows if r["alpha"] is None]  # untuned models: a line (alpha plot), nothing else
    for row in rows:
        if row["alpha"] is not None:
            groups.setdefault(row["alpha"] if x == "params" else row["model"], []).append(row)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6))
    for ax, key in zip(axes, keys, strict=True):
        s = display_scale(key)
        width = len(groups) - 1 or 1
        for number, (group, members) in enumerate(groups.items()):
            members = sorted((r for r in members if r.get(key)), key=lambda r: r[x])
            if not members:
                continue
            dodge = (number - width / 2) / width  # in [-0.5, 0.5]: keep the error bars apart
            xs = np.array([r[x] for r in members], dtype=float)
            xs = xs * (1 + 0.08 * dodge) if x == "params" else xs + 0.03 * dodge
            ys = np.array([r[key]["mean"] * s for r in members])  # (points,)
            lows = np.array([r[key]["ci_low"] * s for r in members])
            highs = np.array([r[key]["ci_high"] * s for r in members])
            label = f"alpha {group:g}" if x == "params" else str(group)
            line = ax.errorbar(
                xs, ys, yerr=np.stack([ys - lows, highs - ys]), marker="o", capsize=3, label=label
            )
            base = next((b for b in bases if b["model"] == group and b.get(key)), None)
            if x == "alpha" and base is not None:
                value = base[key]
                colour = line.lines[0].get_color()
                ax.axhline(
                    value["mean"] * s, color=colour, linestyle="--", linewidth=1, label=f"{group} untuned"
                )
                ax.axhspan(value["ci_low"] * s, value["ci_high"] * s, color=colour, alpha=0.12, linewidth=0)
        if x == "params":
            ticks = sorted({r["params"] for r in rows})
            ax.set_xscale("log")
            ax.set_xticks(ticks, [_params(t) for t in ticks])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("parameters" if x == "params" else "alpha (share of monolingual batches)")
        ax.set_title(LABELS[key] + (" (lower is better)" if key.endswith("rank_distance") else " x 100"))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"error bars: {confidence:.0%} bootstrap intervals over question clusters and seeds", fontsize=9
    )
    fig.tight_layout()
    try:
        atomic_savefig(fig, path, dpi=110)
    finally:
        plt.close(fig)


__all__ = ["LABELS", "METRICS", "collect", "markdown", "markdown_file"]
