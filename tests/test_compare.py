"""hq compare: paired tests on synthetic reports with a known difference and with none."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hybrid_qdrant.cli import app
from hybrid_qdrant.compare import compare_reports, per_query_by_setting
from hybrid_qdrant.errors import DataError


def write_fake_report(path, ap_by_query: dict[str, float], langs=("en", "de")):
    per_query = {}
    for q in langs:
        per_query[f"mono/{q}-{q}"] = {qid: {"map": v} for qid, v in ap_by_query.items() if qid.startswith(q)}
        for p in langs:
            if p != q:
                per_query[f"cross/{q}-{p}"] = {
                    qid: {"map": v / 2} for qid, v in ap_by_query.items() if qid.startswith(q)
                }
    path.write_text(json.dumps({"benchmark": "fake", "metrics": {}}))
    path.with_suffix("").with_name(path.stem + ".queries.json.gz").write_bytes(
        gzip.compress(json.dumps(per_query).encode())
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


def test_per_query_values_average_over_slices():
    per_query = {
        "cross/en-de": {"en/q1": {"map": 0.2}},
        "cross/en-fr": {"en/q1": {"map": 0.6}},
        "mono/en-en": {"en/q1": {"map": 1.0}},
    }
    assert per_query_by_setting(per_query, "cross", "map") == {"en/q1": pytest.approx(0.4)}


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
    missing = CliRunner().invoke(app, ["compare", str(tmp_path / "nope.json"), str(b)])
    assert missing.exit_code == 2 and "error: no per-query values" in missing.output
