"""TREC run files of an evaluation: the format, and ranx recomputing the report's metrics from them."""

from __future__ import annotations

import json

import pytest
from search_helpers import LANGS, XQUAD, fixture_benchmark, hq, tiny_model

from hybrid_qdrant.errors import DataError
from hybrid_qdrant.evaluation import metrics as M
from hybrid_qdrant.evaluation.runfiles import (
    RUN_MIN_DEPTH,
    RunWriter,
    format_qrels,
    format_run,
    read_qrels,
    read_run,
)

RECOMPUTED = ("ndcg@10", "mrr@10", "recall@100")


def test_run_lines_are_ranked_by_score_then_doc_id_and_read_back():
    run = {"q1": {"b": 0.5, "a": 0.5, "c": 0.9}, "q2": {"x": -1.25}}
    text = format_run(run, tag="t")
    assert text.splitlines() == [
        "q1 Q0 c 1 0.9 t",
        "q1 Q0 a 2 0.5 t",
        "q1 Q0 b 3 0.5 t",
        "q2 Q0 x 1 -1.25 t",
    ]
    assert format_qrels({"q1": {"a": 1, "c": 2}}) == "q1 0 a 1\nq1 0 c 2\n"
    assert format_run({}) == ""


def test_the_writer_names_files_by_slice_writes_whole_files_and_refuses_whitespace(tmp_path):
    writer = RunWriter(tmp_path / "runs")
    assert writer.depth == RUN_MIN_DEPTH
    run = {"de/q1": {"de/1": 0.75, "de/2": 0.5}}
    writer.write("mono", "de-de", run, {"de/q1": {"de/2": 1}})
    assert read_run(tmp_path / "runs" / "mono" / "de-de.run") == run
    assert read_qrels(tmp_path / "runs" / "mono" / "de-de.qrels") == {"de/q1": {"de/2": 1}}
    assert [p.name for p in writer.written] == ["de-de.run", "de-de.qrels"]
    with pytest.raises(DataError, match="whitespace"):
        writer.write("mono", "en-en", {"q 1": {"d": 1.0}}, {"q 1": {"d": 1}})
    with pytest.raises(DataError, match="whitespace"):
        writer.write("mono", "en-en", {"q1": {"d 1": 1.0}}, {"q1": {"d 1": 1}})
    assert not (tmp_path / "runs" / "mono" / "en-en.run").exists()
    with pytest.raises(ValueError):
        RunWriter(tmp_path / "x", depth=0)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """hq evaluate on the fixture with --run-dir, both engines (Qdrant's hits and numpy's)."""
    tmp = tmp_path_factory.mktemp("runfiles")
    model = tiny_model(tmp / "tiny")
    out = {}
    for engine in ("qdrant", "exact"):
        result = hq(
            "evaluate",
            "--benchmark",
            "xquad-r",
            "--data-dir",
            XQUAD,
            "--languages",
            ",".join(LANGS),
            "--model",
            model,
            "--location",
            tmp / "qdrant",
            "--cache-dir",
            tmp / "cache",
            "--engine",
            engine,
            "--output",
            tmp / f"{engine}.json",
            "--run-dir",
            tmp / f"runs-{engine}",
        )
        assert result.exit_code == 0, result.output
        assert f"TREC runs and qrels under {tmp / f'runs-{engine}'}" in result.output
        out[engine] = (json.loads((tmp / f"{engine}.json").read_text()), tmp / f"runs-{engine}")
    return out


def _slices(report: dict) -> list[tuple[str, str]]:
    keys = {k.rsplit("/", 1)[0] for k in report["metrics"] if k.count("/") == 2}
    return sorted(tuple(k.split("/")) for k in keys)


@pytest.mark.parametrize("engine", ["qdrant", "exact"])
def test_one_run_and_qrels_per_slice_at_least_100_deep(evaluated, engine):
    report, folder = evaluated[engine]
    slices = _slices(report)
    per_lang = {lang: sum(p.lang == lang for p in fixture_benchmark().passages) for lang in LANGS}
    assert len(slices) == report["counts"]["slices"] == len(LANGS) ** 2 + len(LANGS)
    assert report["run_depth"] == RUN_MIN_DEPTH and report["run_dir"] == str(folder)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == sorted(f"{s}/{k}.{ext}" for s, k in slices for ext in ("run", "qrels"))
    for setting, key in slices:
        run, qrels = read_run(folder / setting / f"{key}.run"), read_qrels(folder / setting / f"{key}.qrels")
        assert set(run) == set(qrels)  # the slice's scored queries, with the report's query ids
        pool = key.split("-")[1]
        for hits in run.values():  # fewer than 100 passages per pool: the whole pool is ranked
            assert all(pool == "all" or d.startswith(f"{pool}/") for d in hits)
            assert len(hits) == (sum(per_lang.values()) if pool == "all" else per_lang[pool]) < RUN_MIN_DEPTH
        ours = M.evaluate_run(qrels, run, RECOMPUTED)
        for metric in RECOMPUTED:
            assert M.mean(ours, metric) == pytest.approx(
                report["metrics"][f"{setting}/{key}/{metric}"], abs=1e-6
            )


def test_ranx_on_the_exported_files_matches_the_report(evaluated):
    ranx = pytest.importorskip("ranx")
    for engine in ("qdrant", "exact"):
        report, folder = evaluated[engine]
        for setting, key in _slices(report):
            qrels = ranx.Qrels.from_file(str(folder / setting / f"{key}.qrels"), kind="trec")
            run = ranx.Run.from_file(str(folder / setting / f"{key}.run"), kind="trec")
            theirs = ranx.evaluate(qrels, run, list(RECOMPUTED))
            for metric in RECOMPUTED:
                assert float(theirs[metric]) == pytest.approx(
                    report["metrics"][f"{setting}/{key}/{metric}"], abs=1e-6
                ), (engine, setting, key, metric)
