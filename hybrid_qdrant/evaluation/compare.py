"""``hq compare``: is system A better than system B on the same queries, given parallel queries and seeds?

Per setting and metric, a query's value is the weighted mean of its values over the setting's slices
(a cross-lingual query has one value per target language), with weights chosen so that the weighted
mean over all queries is exactly the report's macro average (each slice weighs 1 / number of slices,
shared equally by its queries). The resampling unit is the *cluster* of parallel queries (the question
asked in every language: ``group_id``; a query without a group is its own cluster), never the single
query: see ``hybrid_qdrant.evaluation.significance``. A side may be several runs (one per training seed); the
interval is then a two-level bootstrap over clusters and runs, and the table adds each pair of runs'
difference (the per-seed spread). The randomisation test is given for one run per side only: with a
few seeds it cannot separate seed noise from a difference.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path

import numpy as np

from hybrid_qdrant.errors import DataError
from hybrid_qdrant.evaluation.metrics import display_scale
from hybrid_qdrant.evaluation.significance import (
    align_runs,
    cluster_codes,
    cluster_randomization_test,
    hierarchical_bootstrap,
)
from hybrid_qdrant.evaluation.slices import SETTINGS, Slice

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    """One row of ``hq compare``: a setting and metric, both systems' means and the tests of A - B.

    Attributes:
        a / b: each side's macro average (mean over its runs).
        difference, ci_low, ci_high: A - B with its bootstrap interval over clusters (and runs).
        p_bootstrap: two-sided bootstrap p-value.
        p_randomization: cluster sign-flip test; None when a side has several runs.
        n_queries / n_clusters: the paired queries and the parallel groups they form.
        runs_a / runs_b: runs per side; spread_low / spread_high: the smallest and largest difference
            between one run of A and one run of B (None with one run per side).
    """

    setting: str
    metric: str
    a: float
    b: float
    difference: float
    ci_low: float
    ci_high: float
    p_bootstrap: float
    p_randomization: float | None
    n_queries: int
    n_clusters: int
    runs_a: int = 1
    runs_b: int = 1
    spread_low: float | None = None
    spread_high: float | None = None

    def as_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)


def setting_values(
    slices: dict[str, dict[str, dict[str, float]]], setting: str, metric: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-query values of one setting and their macro weights.

    Returns:
        ``({qid: value}, {qid: weight})``: a query's value is the weighted mean of its slice values;
        ``sum(weight * value)`` over the queries is the macro average of the slice means (NaN values,
        e.g. an undefined rank distance, are left out, as the report's means leave them out).
    """
    defined: dict[str, dict[str, float]] = {}
    for key, queries in slices.items():
        if Slice.parse(key).setting != setting:
            continue
        values = {q: v[metric] for q, v in queries.items() if metric in v and not math.isnan(v[metric])}
        if values:
            defined[key] = values
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for values in defined.values():
        share = 1.0 / (len(defined) * len(values))
        for qid, value in values.items():
            sums[qid] = sums.get(qid, 0.0) + share * value
            weights[qid] = weights.get(qid, 0.0) + share
    return {q: sums[q] / weights[q] for q in sums}, weights


def load_values(path: str | Path):
    """The per-query values beside a report (DataError when missing or unreadable)."""
    from hybrid_qdrant.evaluation.report import load_per_query

    try:
        return load_per_query(path)
    except FileNotFoundError as exc:
        raise DataError(f"no per-query values beside {path} (expected {exc.filename})") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read per-query values of {path}: {exc}") from exc


def load_groups(files: dict[Path, object]) -> dict[str, str]:
    """The union of the files' query groups; DataError when two files disagree on a query."""
    groups: dict[str, str] = {}
    for path, values in files.items():
        for qid, group in values.groups.items():
            if groups.setdefault(qid, group) != group:
                raise DataError(
                    f"{path}: query {qid} is in group {group!r} here and {groups[qid]!r} in another "
                    "report: are they the same benchmark?"
                )
        if not values.groups:
            logger.warning(
                "%s has no parallel groups (a per-query file of version %d): its queries count as "
                "independent, so intervals are too narrow if they are translations of each other",
                path,
                values.version,
            )
    return groups


def _as_list(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise DataError("no report given")
    return out


def compare_reports(
    a: str | Path | Sequence[str | Path],
    b: str | Path | Sequence[str | Path],
    metrics: tuple[str, ...] = ("map",),
    settings: tuple[str, ...] = SETTINGS,
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[Comparison]:
    """Compare system A with system B (difference = A - B) per setting and metric.

    Args:
        a, b: a report path, or several (one per training seed) for a side.
        metrics, settings: what to compare.
        n_resamples, seed, confidence: of the bootstrap and randomisation tests.

    Raises:
        DataError: a report or its per-query file is missing, the reports disagree on the queries'
            groups, or they share too few queries.
    """
    paths_a, paths_b = _as_list(a), _as_list(b)
    files = {p: load_values(p) for p in (*paths_a, *paths_b)}
    groups = load_groups(files)
    rows: list[Comparison] = []
    for setting, metric in product(settings, metrics):
        sides = [
            [setting_values(files[p].slices, setting, metric) for p in side] for side in (paths_a, paths_b)
        ]
        if not any(values for side in sides for values, _ in side):
            continue
        try:
            qids, va, vb = align_runs([v for v, _ in sides[0]], [v for v, _ in sides[1]])
        except ValueError as exc:
            raise DataError(f"{setting}/{metric}: {exc}") from exc
        weights = np.array([sides[0][0][1][q] for q in qids])
        clusters = cluster_codes(qids, groups)
        try:
            boot = hierarchical_bootstrap(
                va, vb, clusters, weights, n_resamples=n_resamples, seed=seed, confidence=confidence
            )
            single = len(paths_a) == len(paths_b) == 1
            p_rand = (
                cluster_randomization_test(va[0] - vb[0], clusters, weights, n_resamples, seed)
                if single
                else None
            )
        except ValueError as exc:
            raise DataError(f"{setting}/{metric}: {exc}") from exc
        w = weights / weights.sum()
        run_means_a, run_means_b = va @ w, vb @ w  # (runs,) each run's macro value on the paired queries
        pairwise = [x - y for x, y in product(run_means_a, run_means_b)]
        rows.append(
            Comparison(
                setting,
                metric,
                a=float(run_means_a.mean()),
                b=float(run_means_b.mean()),
                difference=boot.mean_difference,
                ci_low=boot.ci_low,
                ci_high=boot.ci_high,
                p_bootstrap=boot.p_value,
                p_randomization=p_rand,
                n_queries=boot.n_queries,
                n_clusters=boot.n_clusters,
                runs_a=len(paths_a),
                runs_b=len(paths_b),
                spread_low=None if single else float(min(pairwise)),
                spread_high=None if single else float(max(pairwise)),
            )
        )
    if not rows:
        raise DataError("the reports share no setting and metric to compare")
    return rows


#: Below this many clusters a bootstrap interval is too narrow to trust (it under-counts the variance by
#: (C - 1) / C and sees only the clusters at hand); the tables say so, and the randomisation test, which
#: stays valid, should be read instead.
FEW_CLUSTERS = 30


def caution(rows) -> str:
    """A line for tables whose comparisons rest on few clusters (empty when none do)."""
    few = sorted({r["n_clusters"] if isinstance(r, dict) else r.n_clusters for r in rows})
    few = [n for n in few if n < FEW_CLUSTERS]
    if not few:
        return ""
    return (
        f"Caution: {few[0]} cluster(s) only; with fewer than {FEW_CLUSTERS} the bootstrap intervals and "
        "p-values are too optimistic: read the randomisation test."
    )


def markdown_table(rows: list[Comparison], name_a: str = "A", name_b: str = "B") -> str:
    """The comparison as a Markdown table (values x 100 except rank distance)."""
    runs = any(r.runs_a > 1 or r.runs_b > 1 for r in rows)
    head = (
        f"| setting | metric | {name_a} | {name_b} | {name_a} - {name_b} | 95% CI | p (bootstrap) | "
        "p (randomisation) | queries | clusters |"
    )
    lines = [head + (" runs | run-pair differences |" if runs else ""), "|---" * (10 + 2 * runs) + "|"]
    for r in rows:
        s = display_scale(r.metric)
        p_rand = "-" if r.p_randomization is None else f"{r.p_randomization:.4f}"
        line = (
            f"| {r.setting} | {r.metric} | {r.a * s:.2f} | {r.b * s:.2f} | {r.difference * s:+.2f} | "
            f"[{r.ci_low * s:+.2f}, {r.ci_high * s:+.2f}] | {r.p_bootstrap:.4f} | {p_rand} | "
            f"{r.n_queries} | {r.n_clusters} |"
        )
        if runs:
            spread = "-" if r.spread_low is None else f"{r.spread_low * s:+.2f} to {r.spread_high * s:+.2f}"
            line += f" {r.runs_a} vs {r.runs_b} | {spread} |"
        lines.append(line)
    note = (
        "Intervals: bootstrap over clusters of parallel queries"
        + (" and over each side's runs (seeds)" if runs else "")
        + "; a query's value is weighted so that the means are the reports' macro averages."
    )
    warning = caution(rows)
    return "\n".join(lines) + "\n\n" + note + "\n" + (warning + "\n" if warning else "")
