"""hq audit: the grid, the variant's ranks, the flags, and whole audits of a tiny collection (embedded,
a fake server; a real server in the ``-m server`` tier). The collection audited is never changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_qdrant import FakeQdrant, serve
from test_cli import LANGS, XQUAD, common, hq, tiny_model  # noqa: F401  (the session fixture)
from test_store_server import qdrant  # noqa: F401  (the server tier's container)

from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.evaluation.audit import SliceRef, footprint, variant_ranks
from hybrid_qdrant.evaluation.audit_grid import COLLECTION_VARIANT, Variant, load_audit, variants
from hybrid_qdrant.evaluation.audit_report import flagged_pairs
from hybrid_qdrant.evaluation.slices import Slice
from hybrid_qdrant.store import open_store
from hybrid_qdrant.store.collection_options import CollectionOptions

# ------------------------------------------------------------------------------------------- the grid


def grid(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "audit.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_grid_tables_expand_to_every_combination_with_names(tmp_path):
    cfg = load_audit(
        grid(
            tmp_path,
            """
[[grid]]
hnsw_m = [16, 32]
hnsw_ef = [64, 128, 256]

[[grid]]
quantization = ["scalar", "binary"]
rescore = [false, true]
oversampling = 4.0

[[grid]]
name = "tight"
full_scan_threshold = 100
hnsw_ef = 64

[[grid]]
hnsw_ef = 32
""",
        ),
    )
    got = variants(cfg)
    assert [v.name for v in got] == [
        "collection",
        "m16-ef64",
        "m16-ef128",
        "m16-ef256",
        "m32-ef64",
        "m32-ef128",
        "m32-ef256",
        "scalar-no-rescore-os4",
        "scalar-rescore-os4",
        "binary-no-rescore-os4",
        "binary-rescore-os4",
        "tight",
        "ef32",
    ]
    by_name = {v.name: v for v in got}
    assert by_name["collection"] == Variant(COLLECTION_VARIANT)
    assert by_name["m32-ef128"] == Variant("m32-ef128", {"hnsw_m": 32}, hnsw_ef=128)
    assert by_name["binary-rescore-os4"] == Variant(
        "binary-rescore-os4", {"quantization": "binary"}, rescore=True, oversampling=4.0
    )
    assert by_name["tight"].build == {"hnsw_full_scan_threshold": 100} and by_name["tight"].copy
    assert not by_name["ef32"].copy  # search parameters only: the collection itself is searched


def test_rescoring_without_quantization_is_one_variant_and_options_merge_with_the_collection(tmp_path):
    cfg = load_audit(
        grid(
            tmp_path,
            """
[audit]
include_collection = false
[[grid]]
quantization = ["none", "product"]
product_compression = [16, 32]
rescore = [false, true]
""",
        )
    )
    names = [v.name for v in variants(cfg)]
    assert names == [
        "float",
        "product-x16-no-rescore",
        "product-x16-rescore",
        "product-x32-no-rescore",
        "product-x32-rescore",
    ]
    float_variant = variants(cfg)[0]
    base = CollectionOptions(quantization="scalar", hnsw_m=32)  # what the collection has
    assert float_variant.options(base) == CollectionOptions(hnsw_m=32)  # "none" removes quantization
    assert variants(cfg)[3].options(base) == CollectionOptions(
        quantization="product", product_compression=32, hnsw_m=32
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[grid]]\nhnsw_mm = 16\n", "did you mean 'hnsw_m'"),
        ("[[grid]]\nquantization = 'pq'\n", "quantization = 'pq' is not one of"),
        ("[[grid]]\nproduct_compression = 8\n", 'needs quantization = "product"'),
        ("[[grid]]\nhnsw_ef = 0\n", "hnsw_ef = 0 must be >= 1"),
        ("[[grid]]\noversampling = 0.5\n", "oversampling = 0.5 must be a number >= 1"),
        ("[[grid]]\nname = 'x'\n", "sets nothing"),
        ("[[grid]]\nname = 'a'\nhnsw_m = 16\n[[grid]]\nname = 'a'\nhnsw_m = 32\n", "two [[grid]] variants"),
        ("[audit]\ninclude_collection = false\n", "nothing to audit"),
        ("[audit]\nk = 0\n", "[audit] k = 0 must be >= 1"),
        ("[audit]\nsettings = ['mono', 'bi']\n", "unknown setting"),
        ("[collection]\nrecreate = true\n", "unknown key 'recreate' in [collection]"),
        ("grid = 3\n", "must be tables"),
    ],
)
def test_bad_grids_are_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=None) as caught:
        load_audit(grid(tmp_path, text))
    assert message in str(caught.value)


# ------------------------------------------------------------------------------------------- ranks


def _ref(scores: list[float], relevant: list[str], exact_rank: dict[str, int]) -> SliceRef:
    """A one-query slice whose pool rows score ``scores`` against the query (doc ids d0, d1, ...)."""
    ids = [f"d{i}" for i in range(len(scores))]
    query = np.array([1.0, 0.0], dtype=np.float32)
    matrix = np.array([[s, 0.0] for s in scores], dtype=np.float32)  # (n, 2): the score is column 0
    ref = SliceRef(
        Slice("mono", "en", "en"),
        "en",
        ["q"],
        query[None, :],
        {"q": dict.fromkeys(relevant, 1)},
        (ids, matrix, {d: i for i, d in enumerate(ids)}),
    )
    ref.ranks = {"q": exact_rank}
    return ref


def test_a_relevant_passage_the_index_missed_ranks_below_everything_it_returned():
    # exact order: d0 (0.9) > d1 (0.8) > d2 (0.7) > d3 (0.6) > d4 (0.5); relevant: d1 and d3
    ref = _ref([0.9, 0.8, 0.7, 0.6, 0.5], ["d1", "d3"], {"d1": 2, "d3": 4})
    # the index returned d0, d3 (its top 2): d3 at 2; d1, missed, comes after both, at 3
    assert variant_ranks(ref, 0, [0, 3], ref.ranks["q"]) == {"d3": 2, "d1": 3}
    # returned d2, d4: the rest follows in exact order, d0 (3), d1 (4), d3 (5)
    assert variant_ranks(ref, 0, [2, 4], ref.ranks["q"]) == {"d1": 4, "d3": 5}
    # returned what exact search ranks first: the ranks are the exact ones
    assert variant_ranks(ref, 0, [0, 1], ref.ranks["q"]) == {"d1": 2, "d3": 4}
    # returned nothing: exact ranks
    assert variant_ranks(ref, 0, [], ref.ranks["q"]) == {"d1": 2, "d3": 4}


def test_missed_passages_keep_distinct_increasing_ranks_at_ties():
    ref = _ref([0.5, 0.5, 0.5], ["d1", "d2"], {"d1": 2, "d2": 3})
    assert variant_ranks(ref, 0, [0], ref.ranks["q"]) == {"d1": 2, "d2": 3}
    assert variant_ranks(ref, 0, [2], ref.ranks["q"]) == {"d2": 1, "d1": 3}  # then d0 (2), d1 (3)


def test_flags_and_memory():
    losses = {"cross/de-en": 0.002, "cross/en-de": 0.003, "cross/zh-en": 0.03, "cross/en-zh": 0.011}
    flagged = flagged_pairs(losses, factor=2.0, min_loss=0.005)
    assert [f["slice"] for f in flagged] == ["cross/zh-en"]  # 0.011 < 2 x mean 0.0115
    assert flagged[0]["mean_loss"] == pytest.approx(0.0115)
    assert flagged_pairs({"mono/en-en": 0.004}, 2.0, 0.005) == []  # below the floor
    assert flagged_pairs({"a": -0.01, "b": 0.006}, 2.0, 0.005)[0]["slice"] == "b"  # mean loss <= 0
    n, dim = 1000, 384
    plain = footprint(n, dim, CollectionOptions(), indexed=0, storage=None)
    assert plain == {
        "vectors": n * dim * 4,
        "quantized": 0,
        "graph": 0,
        "ram": n * dim * 4,
        "disk": None,
        "graph_source": "estimate",
    }
    scalar = footprint(n, dim, CollectionOptions(quantization="scalar", hnsw_m=32), indexed=n, storage=None)
    assert scalar["quantized"] == n * 388 and scalar["graph"] == n * 64 * 4
    assert scalar["ram"] == scalar["quantized"] + scalar["graph"]
    binary = footprint(
        n, dim, CollectionOptions(quantization="binary"), indexed=n, storage={"graph": 7, "x": 3}
    )
    assert binary["quantized"] == n * 48 and binary["graph"] == 7 and binary["disk"] == 10
    assert binary["graph_source"] == "measured"
    pq = footprint(n, dim, CollectionOptions(quantization="product", product_compression=32), 0, None)
    assert pq["quantized"] == n * dim * 4 // 32


# ------------------------------------------------------------------------------------------- whole audits


def snapshot(location: Path, collection: str) -> dict:
    """Everything the audit must leave alone: collections, aliases, points with vectors and payloads."""
    with open_store(location=str(location), collection=collection) as store:
        records = sorted(
            (r.doc_id, r.vector.round(6).tolist(), sorted(r.payload.items())) for r in store.iter_records()
        )
        return {"collections": store.collections(), "aliases": store.aliases(), "records": records}


GRID = """
[audit]
latency_queries = 5
warmup = 2

[[grid]]
hnsw_m = 16
hnsw_ef = [16, 64]
full_scan_threshold = 1
indexing_threshold = 1

[[grid]]
quantization = "scalar"
rescore = [false, true]

[[grid]]
hnsw_ef = 32
"""


def test_audit_end_to_end_reads_the_collection_and_writes_the_report(tmp_path, tiny_model):  # noqa: F811
    assert hq("ingest", *common(tmp_path, tiny_model), "--collection", "docs").exit_code == 0
    before = snapshot(tmp_path / "qdrant", "docs")
    out = tmp_path / "audit" / "a.json"
    scratch = tmp_path / "scratch"
    config = grid(tmp_path, GRID)
    result = hq(
        "audit", str(config), *common(tmp_path, tiny_model), "--collection", "docs",
        "--scratch", str(scratch), "--output", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "# Index audit: xquad-r" in result.output and "wrote " in result.output
    report = json.loads(out.read_text())
    assert out.with_suffix(".md").read_text().startswith("# Index audit: xquad-r")
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    names = [v["name"] for v in report["variants"]]
    assert names == [
        "collection",
        "m16-fst1-it1-ef16",
        "m16-fst1-it1-ef64",
        "scalar-no-rescore",
        "scalar-rescore",
        "ef32",
    ]
    n_langs = len(LANGS)
    assert report["counts"]["slices"] == n_langs * n_langs + n_langs
    by_name = {v["name"]: v for v in report["variants"]}
    for name in ("collection", "ef32"):  # the collection itself: unindexed, so searched exhaustively
        v = by_name[name]
        for setting in ("mono", "cross", "multi"):
            assert v["delta"][setting]["map"] == pytest.approx(0, abs=1e-6), (name, setting)
            assert v["metrics"][setting]["index_recall@10"] == pytest.approx(1.0)
    for v in report["variants"]:
        assert set(v["latency_ms"]) == {"mono", "cross", "multi", "all"}
        assert v["latency_ms"]["all"]["n"] == 15 and v["latency_ms"]["all"]["p50"] > 0
        for setting in ("mono", "cross", "multi"):  # a graph built in parallel may miss a neighbour
            assert v["metrics"][setting]["index_recall@10"] > 0.8, (v["name"], setting)
            assert -1 <= v["delta"][setting]["map"] <= 1
    assert by_name["collection"]["index_from"] == "collection"
    graph = by_name["m16-fst1-it1-ef64"]  # indexing threshold 1 KB: the copy has its HNSW graph
    assert graph["index"]["indexed_vectors"] == report["counts"]["passages"]
    assert graph["memory_bytes"]["graph"] > 0 and graph["options"]["hnsw_m"] == 16
    assert by_name["ef32"]["index_from"] == "collection" and by_name["ef32"]["search"]["hnsw_ef"] == 32
    copy = by_name["scalar-rescore"]
    assert copy["index_from"] == "copy" and copy["options"] == {"quantization": "scalar"}
    assert copy["index"]["points"] == report["counts"]["passages"]
    assert copy["memory_bytes"]["quantized"] == report["counts"]["passages"] * (32 + 4)
    assert copy["memory_bytes"]["graph_source"] == "measured" and copy["build_seconds"] > 0
    assert set(copy["slices"]) == {s for s in report["exact"]["slices"]}
    # the exact reference is hq evaluate's exact engine
    evaluated = tmp_path / "eval.json"
    assert (
        hq(
            "evaluate", *common(tmp_path, tiny_model), "--collection", "docs", "--output", str(evaluated)
        ).exit_code
        == 0
    )
    metrics = json.loads(evaluated.read_text())["metrics"]
    for setting in ("mono", "cross", "multi"):
        for metric in ("map", "recall@10", "ndcg@10"):
            assert report["exact"]["metrics"][setting][metric] == pytest.approx(
                metrics[f"{setting}/{metric}"]
            )
    # the audited collection is as it was, nothing else appeared beside it, the scratch copies are gone
    assert snapshot(tmp_path / "qdrant", "docs") == before
    assert before["collections"] == ["docs"]
    assert not any(scratch.iterdir())


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--k", "0"], 2, "[audit] k = 0 must be >= 1"),
        (["--output", "audit.txt"], 2, "ending in .json"),
        (["--settings", "mono,bi"], 2, "unknown setting"),
        (["--collection", "nope"], 4, "collection 'nope' does not exist"),
        (["--scratch", "/proc/nope"], 2, "cannot write into /proc"),
        (["--languages", "en,xx"], 2, "xx"),
    ],
)
def test_bad_input_is_one_line_before_work(tmp_path, tiny_model, args, code, message):  # noqa: F811
    out = tmp_path / "a.json"
    config = grid(tmp_path, "[[grid]]\nhnsw_m = 16\n")
    result = hq("audit", str(config), *common(tmp_path, tiny_model), "--output", str(out), *args)
    assert result.exit_code == code, result.output
    assert result.output.startswith("error:") and result.output.count("\n") == 1
    assert message in result.output
    assert not out.exists()


def test_a_missing_collection_is_refused_and_left_missing(tmp_path, tiny_model):  # noqa: F811
    result = hq("audit", *common(tmp_path, tiny_model))
    assert result.exit_code == 4 and "build it first with hq ingest" in result.output
    assert not (tmp_path / "qdrant").exists() or not any((tmp_path / "qdrant").iterdir())


def test_audit_on_a_fake_server_builds_and_removes_scratch_collections(tmp_path, tiny_model):  # noqa: F811
    server_args = ["--url", None, "--collection", "docs", "--cache-dir", str(tmp_path / "cache")]
    data = [
        "--benchmark",
        "xquad-r",
        "--data-dir",
        str(XQUAD),
        "--languages",
        ",".join(LANGS),
        "--model",
        tiny_model,
    ]
    config = grid(
        tmp_path,
        """
[audit]
latency_queries = 3
warmup = 0
[[grid]]
quantization = "product"
product_compression = 8
hnsw_m = 32
hnsw_ef = 64
rescore = true
oversampling = 2.0
""",
    )
    with serve(FakeQdrant()) as (url, fake):
        server_args[1] = url
        assert hq("ingest", *data, *server_args).exit_code == 0
        points = dict(fake.collections["docs"]["points"])
        out = tmp_path / "a.json"
        result = hq("audit", str(config), *data, *server_args, "--output", str(out))
        assert result.exit_code == 0, result.output
        assert set(fake.collections) == {"docs"}  # the scratch collection was deleted
        assert fake.collections["docs"]["points"] == points
        created = [(path, body) for path, body in fake.bodies if "-audit-" in path and "vectors" in body]
        assert len(created) == 1
        path, body = created[0]
        assert body["hnsw_config"]["m"] == 32
        assert body["quantization_config"]["product"]["compression"] == "x8"
        searches = [
            search
            for path, body in fake.bodies
            if "-audit-" in path and path.endswith("/points/query/batch")
            for search in body["searches"]
        ]
        assert searches and all(s["params"]["hnsw_ef"] == 64 for s in searches)
        assert all(s["params"]["quantization"] == {"rescore": True, "oversampling": 2.0} for s in searches)
    report = json.loads(out.read_text())
    assert report["engine"] == "server"
    copy = report["variants"][1]
    assert copy["name"] == "product-x8-m32-ef64-rescore-os2"
    assert copy["options"] == {"quantization": "product", "product_compression": 8, "hnsw_m": 32,
                               "hnsw_ef_construct": 100, "hnsw_full_scan_threshold": 10000}  # fmt: skip
    assert copy["index"]["status"] == "green" and copy["index"]["indexed_vectors"] == 0
    assert copy["memory_bytes"]["graph_source"] == "estimate" and copy["memory_bytes"]["disk"] is None
    for setting in ("mono", "cross", "multi"):  # the fake searches exhaustively: no loss
        assert copy["delta"][setting]["map"] == pytest.approx(0, abs=1e-6)


# ------------------------------------------------------------------------------------------- real server


@pytest.mark.server
def test_audit_on_a_real_server_measures_its_index_and_cleans_up(tmp_path, tiny_model, qdrant):  # noqa: F811
    from test_store_server import API_KEY, _empty

    _empty(qdrant["url"])
    env = {"QDRANT_API_KEY": API_KEY}
    server_args = ["--url", qdrant["url"], "--allow-insecure-key", "--collection", "docs"]
    server_args += ["--cache-dir", str(tmp_path / "cache")]
    data = [
        "--benchmark",
        "xquad-r",
        "--data-dir",
        str(XQUAD),
        "--languages",
        ",".join(LANGS),
        "--model",
        tiny_model,
    ]
    config = grid(
        tmp_path, "[audit]\nlatency_queries = 3\n[[grid]]\nquantization = 'binary'\nrescore = false\n"
    )
    from typer.testing import CliRunner

    from hybrid_qdrant.cli import app

    runner = CliRunner(env=env)
    assert runner.invoke(app, ["ingest", *data, *server_args]).exit_code == 0
    out = tmp_path / "a.json"
    result = runner.invoke(app, ["audit", str(config), *data, *server_args, "--output", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    binary = report["variants"][1]
    assert binary["options"]["quantization"] == "binary" and binary["index"]["status"] == "green"
    with open_store(url=qdrant["url"], api_key=API_KEY, collection="docs") as store:
        assert store.collections() == ["docs"]
