"""hq end to end through typer's CliRunner on a tiny model and the LAReQA fixture files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_model import build_tiny_st_model
from typer.testing import CliRunner

from hybrid_qdrant.benchmarks import load_benchmark
from hybrid_qdrant.cli import app
from hybrid_qdrant.evaluation.report import load_per_query

XQUAD = Path(__file__).parent / "fixtures" / "lareqa" / "xquad-r"
LANGS = ["en", "de", "es"]  # the fixture's languages
runner = CliRunner()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    bench = load_benchmark("xquad-r", XQUAD, LANGS)
    texts = [p.text for p in bench.passages] + [q.text for q in bench.queries]
    return build_tiny_st_model(tmp_path_factory.mktemp("models") / "tiny", texts)


def hq(*args: str):
    return runner.invoke(app, list(args))


def common(tmp_path, model) -> list[str]:
    return [
        "--benchmark",
        "xquad-r",
        "--data-dir",
        str(XQUAD),
        "--languages",
        ",".join(LANGS),
        "--model",
        model,
        "--location",
        str(tmp_path / "qdrant"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]


def test_help_lists_the_commands_without_heavy_imports():
    proc = subprocess.run(
        [sys.executable, "-m", "hybrid_qdrant.cli", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    for command in ("ingest", "evaluate", "compare"):
        assert command in proc.stdout
    # heavy libraries are imported inside the commands only
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, hybrid_qdrant.cli; "
            "print(sorted(m for m in ('torch', 'qdrant_edge', 'qdrant_client', 'transformers') "
            "if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "[]"


def test_evaluate_end_to_end_writes_the_report(tmp_path, tiny_model):
    out = tmp_path / "report.json"
    result = hq("evaluate", *common(tmp_path, tiny_model), "--output", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["benchmark"] == "xquad-r" and report["model"] == tiny_model
    m = report["metrics"]
    for key in (
        "mono/map",
        "cross/map",
        "multi/map",
        "multi/rank_distance",
        "mono/recall@1",
        "multi/recall@10",
        "mono/ndcg@10",
        "mono/recall@100",
        "cross/en-de/map",
        "mono/de-de/map",
        "multi/de-all/map",
    ):
        assert key in m and 0 <= m[key] <= (1 if key != "multi/rank_distance" else 1e6), key
    langs = report["languages"]
    assert len([k for k in m if k.startswith("cross/") and k.endswith("/map") and k.count("/") == 2]) == len(
        langs
    ) * (len(langs) - 1)
    assert report["counts"]["slices"] == len(langs) ** 2 + len(langs)
    assert out.with_suffix(".md").read_text().startswith("# xquad-r")
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    per_query = load_per_query(tmp_path / "report.queries.json.gz")
    assert per_query.version == 2 and set(per_query.slices) == set(report["slices"])
    bench = load_benchmark("xquad-r", XQUAD, LANGS)
    assert per_query.groups == {q.query_id: q.group_id for q in bench.queries}  # the compare clusters
    assert report["protocol"] == {"answer_rule": "lareqa"}

    # a second run finds the collection complete, ingests nothing and gives the same numbers;
    # the Qdrant query path agrees with the default (exact: numpy over the stored vectors)
    assert report["options"]["engine"] == "exact"
    again = hq(
        "evaluate", *common(tmp_path, tiny_model), "--engine", "qdrant", "--output", str(tmp_path / "b.json")
    )
    assert again.exit_code == 0, again.output
    # the passages were in the collection already (nothing encoded); the queries came from the
    # embedding cache, said once
    n_queries = report["counts"]["queries"]
    reused = [line for line in again.output.splitlines() if "reused from the embedding cache" in line]
    assert reused == [f"{n_queries} of {n_queries} queries reused from the embedding cache (0 encoded)"]
    second = json.loads((tmp_path / "b.json").read_text())
    assert second["collection"] == report["collection"]
    assert second["metrics"] == pytest.approx(report["metrics"], abs=1e-9)


def test_ingest_is_idempotent(tmp_path, tiny_model):
    first = hq("ingest", *common(tmp_path, tiny_model))
    assert first.exit_code == 0, first.output
    second = hq("ingest", *common(tmp_path, tiny_model))
    assert second.exit_code == 0, second.output
    n = len(load_benchmark("xquad-r", XQUAD, LANGS).passages)
    assert f"{n} points ({n} written" in first.output
    assert f"{n} points (0 written, {n} already stored" in second.output


def test_a_collection_of_another_model_is_refused_not_overwritten(tmp_path, tiny_model):
    other = build_tiny_st_model(tmp_path / "other", ["a b c"], hidden=16, heads=2)
    assert hq("ingest", *common(tmp_path, tiny_model), "--collection", "mine").exit_code == 0
    result = hq("evaluate", *common(tmp_path, other), "--collection", "mine")
    assert result.exit_code == 4
    assert result.output.count("\n") == 1 and "error:" in result.output
    assert hq("ingest", *common(tmp_path, tiny_model), "--collection", "mine").exit_code == 0  # still there


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--benchmark", "squad"], 2, "[benchmark] name = 'squad' is not one of"),
        (["--languages", "en,xx"], 2, "xx"),
        (["--languages", "en,ar"], 2, "ar.json"),
        (["--data-dir", "/nonexistent/xquad"], 2, "/nonexistent/xquad"),
        (["--model", "/nonexistent/model"], 3, "model path does not exist"),
        (["--settings", "mono,bilingual"], 2, "unknown setting"),
        (["--batch-size", "0"], 2, "batch_size must be a positive integer"),
        (["--depth", "-3"], 2, "depth must be a positive integer"),
        (["--output", "/proc/nope/r.json"], 2, "cannot write into /proc"),
        (["--output", "report.txt"], 2, "ending in .json"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, tiny_model, args, code, message):
    out = tmp_path / "r.json"
    result = hq("evaluate", *common(tmp_path, tiny_model), "--output", str(out), *args)
    assert result.exit_code == code, result.output
    assert result.output.startswith("error:") and result.output.count("\n") == 1
    assert message in result.output
    assert not out.exists()
    assert not (tmp_path / "qdrant").exists() or not any((tmp_path / "qdrant").iterdir())  # nothing made


def test_malformed_benchmark_file(tmp_path, tiny_model):
    data = tmp_path / "data"
    shutil.copytree(XQUAD, data)
    (data / "de.json").write_text('{"data": [', encoding="utf-8")
    result = hq("evaluate", *common(tmp_path, tiny_model), "--data-dir", str(data))
    assert result.exit_code == 2 and "de.json" in result.output and result.output.count("\n") == 1


def test_config_file_with_an_unknown_key(tmp_path, tiny_model):
    config = tmp_path / "suite.toml"
    config.write_text('[benchmark]\nname = "xquad-r"\n[evaluate]\ndepht = 10\n')
    result = hq("evaluate", str(config))
    assert result.exit_code == 2 and "did you mean 'depth'" in result.output
    config.write_text('[evaluate]\nmodel = "x"\n')  # a key of another section: where it belongs
    result = hq("evaluate", str(config))
    assert result.exit_code == 2 and "unknown key 'model' in [evaluate]" in result.output
    assert "it belongs in [encoder] model" in result.output


FIXTURES = Path(__file__).parent / "fixtures"


def test_miracl_streams_its_corpus_and_reports_truncated_metrics(tmp_path, tiny_model):
    out = tmp_path / "miracl.json"
    args = [
        "--benchmark",
        "miracl",
        "--data-dir",
        str(FIXTURES / "miracl"),
        "--languages",
        "de,sw",
        "--settings",
        "mono",
        "--model",
        tiny_model,
        "--location",
        str(tmp_path / "q"),
        "--cache-dir",
        str(tmp_path / "c"),
        "--output",
        str(out),
    ]
    result = hq("evaluate", *args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["options"]["metrics_truncated_at"] == 100
    assert {"mono/ndcg@10", "mono/recall@100", "mono/de-de/ndcg@10", "mono/sw-sw/ndcg@10"} <= set(
        report["metrics"]
    )
    assert "cross/map" not in report["metrics"]


def test_beir_folder_with_languages(tmp_path, tiny_model):
    out = tmp_path / "beir.json"
    args = [
        "--benchmark",
        "beir",
        "--data-dir",
        str(FIXTURES / "beir" / "parallel"),
        "--model",
        tiny_model,
        "--location",
        str(tmp_path / "q"),
        "--cache-dir",
        str(tmp_path / "c"),
        "--output",
        str(out),
    ]
    result = hq("evaluate", *args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())["metrics"]
    assert {"mono/map", "cross/map", "multi/map"} <= set(metrics)


def test_alias_reindex_switches_atomically_and_keeps_the_old_collection(tmp_path, tiny_model):
    location = ["--location", str(tmp_path / "qdrant")]
    first = hq("ingest", *common(tmp_path, tiny_model), "--alias", "prod")
    assert first.exit_code == 0, first.output
    assert "alias prod -> prod_v1" in first.output
    second = hq("ingest", *common(tmp_path, tiny_model), "--alias", "prod")
    assert second.exit_code == 0, second.output
    assert "alias prod -> prod_v2; prod_v1 kept" in second.output
    listing = hq("collections", "list", *location)
    assert listing.exit_code == 0, listing.output
    assert "prod_v1" in listing.output and "prod_v2" in listing.output and "aliases: prod" in listing.output
    # evaluation through the alias reads the new collection
    result = hq("evaluate", *common(tmp_path, tiny_model), "--collection", "prod", "--settings", "mono")
    assert result.exit_code == 0, result.output
    refused = hq("collections", "delete", "prod_v1", *location)
    assert refused.exit_code == 1 and "without --yes" in refused.output
    in_use = hq("collections", "delete", "prod_v2", "--yes", *location)
    assert in_use.exit_code != 0 and "alias" in in_use.output
    assert hq("collections", "delete", "prod_v1", "--yes", *location).exit_code == 0
    assert "prod_v1" not in hq("collections", "list", *location).output


KEY = "hq-test-key-6f0c2b"


def test_cli_never_prints_the_api_key(tmp_path, tiny_model, monkeypatch):
    from test_store_server import _Answer401, _serve

    monkeypatch.setenv("QDRANT_API_KEY", KEY)
    base = ["evaluate", *common(tmp_path, tiny_model), "--timeout", "2"]
    unreachable = hq(*base, "--url", "http://127.0.0.1:1")
    assert unreachable.exit_code == 4 and "cannot reach Qdrant" in unreachable.output
    assert KEY not in unreachable.output and unreachable.output.count("\n") == 1
    for server in _serve(_Answer401):
        rejected = hq(*base, "--url", server)
        assert rejected.exit_code == 4 and "rejected the API key (401)" in rejected.output
        assert KEY not in rejected.output
        key_file = tmp_path / "key"
        key_file.write_text(KEY + "\n")
        monkeypatch.delenv("QDRANT_API_KEY")
        from_file = hq(*base, "--url", server, "--api-key-file", str(key_file), "--verbose")
        assert from_file.exit_code == 4 and KEY not in from_file.output


def test_bad_records_stop_by_default_and_are_skipped_and_named_on_request(tmp_path, tiny_model):
    from test_beir import _broken_folder

    folder, _ = _broken_folder(tmp_path)
    args = [
        "--benchmark",
        "beir",
        "--data-dir",
        str(folder),
        "--model",
        tiny_model,
        "--location",
        str(tmp_path / "q"),
        "--cache-dir",
        str(tmp_path / "c"),
        "--collection",
        "b",
    ]
    stopped = hq("ingest", *args)
    assert stopped.exit_code == 2 and "corpus.jsonl line 2: malformed JSON" in stopped.output
    assert stopped.output.count("\n") == 1
    assert "b\t" not in hq("collections", "list", "--location", str(tmp_path / "q")).output  # nothing written
    skipped = hq("ingest", *args, "--on-error", "skip")
    assert skipped.exit_code == 0, skipped.output
    assert "loader skipped 1: malformed line" in skipped.output
    assert "loader skipped 2: bad passage" in skipped.output
    assert "'German' is not a language code" in skipped.output


def test_a_server_that_never_answers_fails_within_the_timeout_before_the_model_loads(tmp_path):
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(8)], daemon=True).start()
    start = time.perf_counter()
    result = hq(
        "evaluate",
        "--benchmark",
        "xquad-r",
        "--data-dir",
        str(XQUAD),
        "--languages",
        "en,de",
        "--model",
        str(tmp_path / "not-loaded-yet"),
        "--timeout",
        "2",
        "--url",
        f"http://127.0.0.1:{server.getsockname()[1]}",
    )
    elapsed = time.perf_counter() - start
    server.close()
    assert result.exit_code == 4, result.output
    assert "did not answer in time" in result.output and result.output.count("\n") == 1
    assert elapsed < 20  # bounded by the 2 s timeout (a missing timeout would hang), not a speed test


def test_server_collection_options_reach_the_store(tmp_path, tiny_model, monkeypatch):
    import hybrid_qdrant.store as store_module

    seen = []
    real = store_module.open_store

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module, "open_store", spy)
    result = hq(
        "ingest",
        *common(tmp_path, tiny_model),
        "--quantization",
        "scalar",
        "--hnsw-m",
        "32",
        "--shards",
        "2",
        "--replicas",
        "3",
        "--on-disk",
    )
    assert result.exit_code == 0, result.output
    expected = {
        "quantization": "scalar",
        "hnsw_m": 32,
        "shard_number": 2,
        "replication_factor": 3,
        "on_disk": True,
    }
    assert seen and all(expected.items() <= kwargs.items() for kwargs in seen)
