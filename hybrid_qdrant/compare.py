"""``hq compare``: paired significance of two evaluation reports on the same queries.

Each query is one observation per setting: its metric values over the setting's slices are averaged
first (a cross-lingual query has one value per target language), so the unit of resampling is the
query, never a (query, slice) pair that shares the query's text with its siblings. The paired bootstrap
interval and the randomisation test are those of ``hybrid_qdrant.significance``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from hybrid_qdrant.errors import DataError
from hybrid_qdrant.evaluation import SETTINGS
from hybrid_qdrant.significance import paired_bootstrap, randomization_test


@dataclass(frozen=True)
class Comparison:
    """One row of ``hq compare``: a setting and metric, both systems' means and the paired tests."""

    setting: str
    metric: str
    a: float
    b: float
    difference: float
    ci_low: float
    ci_high: float
    p_bootstrap: float
    p_randomization: float
    n_queries: int

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def per_query_by_setting(
    per_query: dict[str, dict[str, dict[str, float]]], setting: str, metric: str
) -> dict[str, float]:
    """``{qid: mean over the setting's slices of the metric}``, NaN values left out."""
    sums: dict[str, list[float]] = {}
    for key, queries in per_query.items():
        if key.split("/", 1)[0] != setting:
            continue
        for qid, values in queries.items():
            value = values.get(metric)
            if value is not None and not math.isnan(value):
                sums.setdefault(qid, []).append(value)
    return {qid: sum(v) / len(v) for qid, v in sums.items()}


def _load(path: str | Path) -> dict[str, dict[str, dict[str, float]]]:
    from hybrid_qdrant.report import load_per_query

    try:
        return load_per_query(path)
    except FileNotFoundError as exc:
        raise DataError(f"no per-query values beside {path} (expected {exc.filename})") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read per-query values of {path}: {exc}") from exc


def compare_reports(
    a: str | Path,
    b: str | Path,
    metrics: tuple[str, ...] = ("map",),
    settings: tuple[str, ...] = SETTINGS,
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[Comparison]:
    """Compare report ``a`` with report ``b`` (difference = a - b) per setting and metric.

    Raises:
        DataError: a report or its per-query file is missing, or the two share too few queries.
    """
    pa, pb = _load(a), _load(b)
    rows: list[Comparison] = []
    for setting in settings:
        for metric in metrics:
            va = per_query_by_setting(pa, setting, metric)
            vb = per_query_by_setting(pb, setting, metric)
            if not va and not vb:
                continue
            try:
                boot = paired_bootstrap(va, vb, n_resamples=n_resamples, seed=seed, confidence=confidence)
                p_rand = randomization_test(va, vb, n_resamples=n_resamples, seed=seed)
            except ValueError as exc:
                raise DataError(f"{setting}/{metric}: {exc}") from exc
            shared = [q for q in va if q in vb and not math.isnan(va[q]) and not math.isnan(vb[q])]
            rows.append(
                Comparison(
                    setting,
                    metric,
                    a=sum(va[q] for q in shared) / len(shared),
                    b=sum(vb[q] for q in shared) / len(shared),
                    difference=boot.mean_difference,
                    ci_low=boot.ci_low,
                    ci_high=boot.ci_high,
                    p_bootstrap=boot.p_value,
                    p_randomization=p_rand,
                    n_queries=boot.n_queries,
                )
            )
    if not rows:
        raise DataError("the reports share no setting and metric to compare")
    return rows


def markdown_table(rows: list[Comparison], name_a: str = "A", name_b: str = "B") -> str:
    """The comparison as a Markdown table (values x 100 except rank distance)."""
    lines = [
        f"| setting | metric | {name_a} | {name_b} | {name_a} - {name_b} | 95% CI | p (bootstrap) | "
        "p (randomisation) | queries |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = 1.0 if r.metric == "rank_distance" else 100.0
        lines.append(
            f"| {r.setting} | {r.metric} | {r.a * s:.2f} | {r.b * s:.2f} | {r.difference * s:+.2f} | "
            f"[{r.ci_low * s:+.2f}, {r.ci_high * s:+.2f}] | {r.p_bootstrap:.4f} | {r.p_randomization:.4f} | "
            f"{r.n_queries} |"
        )
    return "\n".join(lines) + "\n"
