"""Report files: one naming rule, checked before the run, stale siblings removed, readable heatmaps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mock_encoder import KeywordEncoder

from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.evaluation.evaluate import EvalOptions, evaluate
from hybrid_qdrant.evaluation.ingest import ingest
from hybrid_qdrant.evaluation.report import (
    check_output,
    heatmap_png,
    load_per_query,
    report_dict,
    report_paths,
    write_report,
)
from hybrid_qdrant.store.array import ArrayStore


@pytest.fixture
def result(toy):
    store = ArrayStore()
    enc = KeywordEncoder()
    ingest(toy.passages, enc, store)
    return evaluate(toy, enc.encode_queries([q.text for q in toy.queries]), store, EvalOptions())


def test_every_file_derives_from_the_full_name(tmp_path, result):
    one = write_report(result, tmp_path / "me5.run1.json", "m")
    two = write_report(result, tmp_path / "me5.run2.json", "m")
    assert {p.name for p in one.values()} == {
        "me5.run1.json",
        "me5.run1.md",
        "me5.run1.png",
        "me5.run1.queries.json.gz",
    }
    assert not set(one.values()) & set(two.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in [*one.values(), *two.values()]
    )
    assert (
        load_per_query(tmp_path / "me5.run1.json").slices.keys()
        == load_per_query(one["per_query"]).slices.keys()
    )


@pytest.mark.parametrize("name", ["report.txt", "report", "report.JSON.bak", ".json"])
def test_a_report_name_must_end_in_json(tmp_path, name):
    with pytest.raises(ConfigError, match="ending in .json"):
        report_paths(tmp_path / name)


def test_output_is_checked_before_the_run(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        check_output(tmp_path)
    assert (
        check_output(tmp_path / "new" / "deeper" / "r.json")["json"] == tmp_path / "new" / "deeper" / "r.json"
    )
    with pytest.raises(ConfigError, match="cannot write into /proc"):
        check_output("/proc/nope/r.json")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="cannot write into"):
            check_output(locked / "r.json")


def test_a_report_without_cross_removes_the_old_heatmap(tmp_path, toy, result):
    paths = write_report(result, tmp_path / "r.json", "m")
    assert paths["heatmap"].is_file()
    store = ArrayStore()
    enc = KeywordEncoder()
    ingest(toy.passages, enc, store)
    mono = evaluate(
        toy, enc.encode_queries([q.text for q in toy.queries]), store, EvalOptions(settings=("mono",))
    )
    again = write_report(mono, tmp_path / "r.json", "m")
    assert "heatmap" not in again and not (tmp_path / "r.png").exists()


def test_heatmap_scales(tmp_path, result):
    report = report_dict(result, "some/model")
    assert heatmap_png(report, tmp_path / "fixed.png")
    assert heatmap_png(report, tmp_path / "auto.png", scale="auto")
    assert (tmp_path / "fixed.png").read_bytes() != (tmp_path / "auto.png").read_bytes()
    with pytest.raises(ValueError, match="scale"):
        heatmap_png(report, tmp_path / "x.png", scale="log")
    assert not Path(tmp_path / "x.png").exists()
