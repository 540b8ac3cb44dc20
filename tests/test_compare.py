"""hq compare: paired tests on synthetic reports with a known difference and with none."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hybrid_qdrant.cli import app
from hybrid_qdrant.errors import DataError
from hybrid_qdrant.evaluation.compare import compare_reports, markdown_table, setting_values


def write_fake_report(path, ap_by_query: dict[str, float], langs=("en", "de"), groups=None):
    """A report with per-query values (version 1 without ``groups``, version 2 with them)."""
    per_query = {}
    for q in langs:
        per_query[f"mono/{q}-{q}"] = {qid: {"map": v} for qid, v in ap_by_query.items() if qid.startswith(q)}
        for p in langs:
            if p != q:
                per_query[f"cross/{q}-{p}"] = {
                    qid: {"map": v / 2} for qid, v in ap_by_query.items() if qid.startswith(q)
                }
    path.write_text(json.dumps({"benchmark": "fake", "metrics": {}}))
    content = per_query if groups is None else {"version": 2, "slices": per_query, "groups": groups}
    path.with_suffix("").with_name(path.stem + ".queries.json.gz").write_bytes(
        gzip.compress(json.dumps(content).encode())
    )
    return path


def _systems(shift: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = {f"{lang}/q{i}": float(rng.uniform(0.2, 0.8)) for lang in ("en", "de") for i in range(200)}
    noise = {q: float(rng.normal(0, 0.05)) for q in base}
    return base, {q: min(1.0, max(0.0, v + shift + noise[q])) for q, v in base.items()}


def test_known_difference_is_significant(tmp_path):
    base, better = _systems(shift=0.05)
    rows = compare_reports(
        write_fake_report(tmp_path / "b.json", better),
        write_fake_report(tmp_path / "a.json", base),
        settings=("mono", "cross"),
        n_resamples=2000,
    )
    mono = rows[0]
    assert mono.setting == "mono" and mono.n_queries == 400
    assert mono.difference == pytest.approx(0.05, abs=0.01)
    assert mono.ci_low > 0 and mono.p_bootstrap < 0.01 and mono.p_randomization < 0.01
    assert rows[1].difference == pytest.approx(mono.difference / 2, abs=1e-9)


def test_no_difference_is_not_significant(tmp_path):
    base, _ = _systems(shift=0.0)
    rows = compare_reports(
        write_fake_report(tmp_path / "a.json", base),
        write_fake_report(tmp_path / "b.json", dict(base)),
        n_resamples=2000,
    )
    for row in rows:
        assert row.difference == 0.0
        assert row.ci_low <= 0 <= row.ci_high
        assert row.p_randomization == 1.0


def test_setting_values_average_over_slices_with_macro_weights():
    per_query = {
        "cross/en-de": {"en/q1": {"map": 0.2}},
        "cross/en-fr": {"en/q1": {"map": 0.6}},
        "mono/en-en": {"en/q1": {"map": 1.0}},
    }
    values, weights = setting_values(per_query, "cross", "map")
    assert values == {"en/q1": pytest.approx(0.4)} and weights == {"en/q1": pytest.approx(1.0)}
    # unequal slices: the weighted mean over queries is the macro average of the slice means
    per_query = {
        "mono/en-en": {"en/q1": {"map": 1.0}, "en/q2": {"map": 0.0}, "en/q3": {"map": 0.5}},
        "mono/de-de": {"de/q1": {"map": 0.2}},
        "mono/fr-fr": {"fr/q1": {"map": float("nan")}},  # undefined everywhere: left out, as in reports
    }
    values, weights = setting_values(per_query, "mono", "map")
    macro = (0.5 + 0.2) / 2
    assert sum(weights[q] * values[q] for q in values) == pytest.approx(macro)
    assert weights["de/q1"] == pytest.approx(0.5) and weights["en/q1"] == pytest.approx(1 / 6)


def test_parallel_groups_are_the_clusters(tmp_path):
    base, better = _systems(shift=0.05)
    groups = {q: q.split("/")[1] for q in base}  # en/q7 and de/q7 are one question
    rows = compare_reports(
        write_fake_report(tmp_path / "b.json", better, groups=groups),
        write_fake_report(tmp_path / "a.json", base, groups=groups),
        settings=("mono",),
        n_resamples=500,
    )
    assert (rows[0].n_queries, rows[0].n_clusters) == (400, 200)
    naive = compare_reports(
        write_fake_report(tmp_path / "b1.json", better),
        write_fake_report(tmp_path / "a1.json", base),
        settings=("mono",),
        n_resamples=500,
    )
    assert (naive[0].n_queries, naive[0].n_clusters) == (400, 400)
    assert naive[0].difference == pytest.approx(rows[0].difference)
    clash = {**groups, "en/q0": "elsewhere"}
    write_fake_report(tmp_path / "c.json", base, groups=clash)
    with pytest.raises(DataError, match="same benchmark"):
        compare_reports(tmp_path / "b.json", tmp_path / "c.json")


def test_several_runs_per_side(tmp_path):
    runs_a, runs_b = [], []
    for k, offset in enumerate((-0.02, 0.0, 0.02)):
        base, better = _systems(shift=0.05 + offset, seed=k)
        base0, _ = _systems(shift=0.0, seed=0)
        runs_a.append(write_fake_report(tmp_path / f"a{k}.json", {q: better[q] for q in base0}))
        runs_b.append(write_fake_report(tmp_path / f"b{k}.json", base0))
    rows = compare_reports(runs_a, runs_b, settings=("mono",), n_resamples=500)
    row = rows[0]
    assert (row.runs_a, row.runs_b, row.p_randomization) == (3, 3, None)
    assert row.spread_low < row.difference < row.spread_high
    assert row.ci_low <= row.spread_low and row.spread_high <= row.ci_high + 0.02
    table = markdown_table(rows, "a", "b")
    assert "3 vs 3" in table and "over each side's runs" in table


def test_missing_per_query_file_is_a_clear_error(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(DataError, match="no per-query values"):
        compare_reports(tmp_path / "a.json", tmp_path / "a.json")


def test_cli_compare(tmp_path):
    base, better = _systems(shift=0.05)
    a = write_fake_report(tmp_path / "better.json", better)
    b = write_fake_report(tmp_path / "base.json", base)
    result = CliRunner().invoke(
        app,
        [
            "compare",
            str(a),
            str(b),
            "--settings",
            "mono",
            "--resamples",
            "500",
            "--output",
            str(tmp_path / "cmp.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| mono | map |" in result.output
    assert json.loads((tmp_path / "cmp.json").read_text())["rows"][0]["p_bootstrap"] < 0.01
    several = CliRunner().invoke(
        app, ["compare", f"{a},{a}", f"{b},{b}", "--settings", "mono", "--resamples", "200"]
    )
    assert several.exit_code == 0, several.output
    assert "better (+1)" in several.output and "2 vs 2" in several.output
    missing = CliRunner().invoke(app, ["compare", str(tmp_path / "nope.json"), str(b)])
    assert missing.exit_code == 2 and "error: no per-query values" in missing.output


def test_few_clusters_are_flagged(tmp_path):
    base, better = _systems(shift=0.05)
    groups = {q: str(int(q.split("q")[1]) % 5) for q in base}  # 400 queries in 5 clusters
    rows = compare_reports(
        write_fake_report(tmp_path / "b.json", better, groups=groups),
        write_fake_report(tmp_path / "a.json", base, groups=groups),
        settings=("mono",),
        n_resamples=300,
    )
    assert rows[0].n_clusters == 5
    assert "Caution: 5 cluster(s) only" in markdown_table(rows)
    many = compare_reports(
        write_fake_report(tmp_path / "b2.json", better),
        write_fake_report(tmp_path / "a2.json", base),
        settings=("mono",),
        n_resamples=300,
    )
    assert "Caution" not in markdown_table(many)
