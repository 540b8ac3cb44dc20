"""Encoder backends: a tiny model through ONNX Runtime and OpenVINO, parity with torch, the export cache,
fingerprints and errors. A backend whose package is not installed is skipped with the extra to install."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_model import build_tiny_st_model
from typer.testing import CliRunner

from hybrid_qdrant.backends import check_backend
from hybrid_qdrant.backends.calibration import load_calibration
from hybrid_qdrant.benchmarks import load_benchmark
from hybrid_qdrant.encoding.cache import CachedEncoder
from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder
from hybrid_qdrant.errors import ConfigError

LAREQA = Path(__file__).parent / "fixtures" / "lareqa"
XQUAD, MLQA = LAREQA / "xquad-r", LAREQA / "mlqa-r"
LANGS = ["en", "de", "es"]


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


needs_onnx = pytest.mark.skipif(
    not _installed("onnxruntime", "onnx"), reason="pip install 'hybrid-qdrant[onnx]' to test this backend"
)
needs_openvino = pytest.mark.skipif(
    not _installed("openvino", "nncf"), reason="pip install 'hybrid-qdrant[openvino]' to test this backend"
)


def _cpu_has_bf16() -> bool:
    try:
        return (
            "avx512_bf16" in Path("/proc/cpuinfo").read_text()
            or "amx_bf16" in Path("/proc/cpuinfo").read_text()
        )
    except OSError:
        return False


@pytest.fixture(scope="module")
def texts() -> tuple[list[str], list[str]]:
    bench = load_benchmark("xquad-r", XQUAD, LANGS)
    return [p.text for p in bench.passages], [q.text for q in bench.queries]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, texts) -> str:
    passages, queries = texts
    return build_tiny_st_model(tmp_path_factory.mktemp("models") / "tiny", passages + queries)


@pytest.fixture(scope="module")
def export_root(tmp_path_factory):
    """One export cache for the module (HQ_CACHE_DIR), so each option is exported once."""
    root = tmp_path_factory.mktemp("hq-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HQ_CACHE_DIR", str(root))
        yield root / "backends"


@pytest.fixture(scope="module")
def torch_vectors(tiny, texts):
    encoder = SentenceTransformerEncoder(EncoderSettings(model=tiny, batch_size=4))
    return encoder.encode_passages(texts[0]), encoder.encode_queries(texts[1]), encoder.fingerprint


OPTIONS = [
    pytest.param("onnx", "none", 1e-4, marks=needs_onnx),
    pytest.param("onnx", "int8", 0.05, marks=needs_onnx),
    pytest.param("openvino", "none", 1e-4, marks=needs_openvino),
    pytest.param(
        "openvino",
        "bf16",
        0.02,
        marks=[needs_openvino, pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no bf16")],
    ),
    pytest.param("openvino", "int8", 0.05, marks=needs_openvino),
]


@pytest.mark.parametrize(("backend", "quantize", "tolerance"), OPTIONS)
def test_backend_matches_torch_and_has_its_own_fingerprint(
    tiny, texts, torch_vectors, export_root, backend, quantize, tolerance
):
    passages, queries = texts
    ref_p, ref_q, torch_fingerprint = torch_vectors
    model_files = sorted(p.name for p in Path(tiny).rglob("*"))
    settings = EncoderSettings(
        model=tiny,
        batch_size=8,
        backend=backend,
        quantize=quantize,
        calibration=str(MLQA) if quantize == "int8" else None,
    )
    encoder = SentenceTransformerEncoder(settings)
    got_p, got_q = encoder.encode_passages(passages), encoder.encode_queries(queries)
    assert got_p.shape == ref_p.shape and got_p.dtype == np.float32
    np.testing.assert_allclose(
        np.linalg.norm(got_p, axis=1), 1.0, atol=1e-5
    )  # sentence-transformers' Normalize
    cosine = np.concatenate([(got_p * ref_p).sum(1), (got_q * ref_q).sum(1)])  # (n,)
    assert 1 - cosine.min() <= tolerance, (backend, quantize, cosine.min())
    if quantize == "none":
        np.testing.assert_allclose(got_p, ref_p, atol=1e-4)
    # its own fingerprint, embedding cache folder and collection: vectors of backends never mix
    fingerprint = json.loads(encoder.fingerprint)
    assert fingerprint["backend"].startswith(f"{backend}/{quantize}")
    assert "backend" not in json.loads(torch_fingerprint)  # torch keeps the fingerprint it always had
    assert (
        CachedEncoder(encoder, root="c").cache.dir
        != CachedEncoder(_Fake(torch_fingerprint), root="c").cache.dir
    )
    # exported into the cache, never into the model's folder
    assert sorted(p.name for p in Path(tiny).rglob("*")) == model_files
    assert any((folder / "meta.json").is_file() for folder in export_root.iterdir())


class _Fake:
    dim = 32

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint


@needs_onnx
def test_an_export_is_made_once_and_reused(tiny, export_root, monkeypatch):
    settings = EncoderSettings(model=tiny, backend="onnx", quantize="none")
    first = SentenceTransformerEncoder(settings)
    folders = sorted(export_root.iterdir())

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("hybrid_qdrant.backends.onnx_backend.export_onnx", no_export)
    second = SentenceTransformerEncoder(settings)
    assert sorted(export_root.iterdir()) == folders
    assert first.fingerprint == second.fingerprint
    np.testing.assert_array_equal(second.encode_passages(["ein Satz"]), first.encode_passages(["ein Satz"]))


@needs_openvino
def test_calibration_enters_the_fingerprint(tiny, export_root, tmp_path):
    other = tmp_path / "calibration.txt"
    other.write_text("passage: one text\nquery: another text\n", encoding="utf-8")
    a = SentenceTransformerEncoder(model=tiny, backend="openvino", quantize="int8", calibration=str(MLQA))
    b = SentenceTransformerEncoder(model=tiny, backend="openvino", quantize="int8", calibration=str(other))
    assert json.loads(a.fingerprint)["calibration"] != json.loads(b.fingerprint)["calibration"]


@pytest.mark.parametrize(
    ("backend", "quantize", "device", "calibration", "message"),
    [
        ("tensorrt", "none", None, None, "choose torch, onnx, openvino"),
        ("onnx", "int4", None, None, "choose none, bf16, int8"),
        ("torch", "int8", None, None, "torch runs quantize none"),
        ("onnx", "bf16", None, None, "onnx runs quantize none or int8"),
        ("openvino", "none", "cuda", None, "CPU only"),
        ("openvino", "int8", None, None, "--calibration PATH"),
    ],
)
def test_combinations_that_cannot_run_are_config_errors(backend, quantize, device, calibration, message):
    with pytest.raises(ConfigError, match=message):
        check_backend(backend, quantize, device, calibration)
    with pytest.raises(ConfigError, match=message):
        EncoderSettings(backend=backend, quantize=quantize, device=device, calibration=calibration)


def test_a_missing_package_names_the_extra(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'hybrid-qdrant\[openvino\]'"):
        SentenceTransformerEncoder(model=tiny, backend="openvino")


def test_calibration_texts_are_a_fixed_sample_with_prefixes(tmp_path):
    a = load_calibration(MLQA, "query: ", "passage: ", size=4)
    b = load_calibration(MLQA, "query: ", "passage: ", size=4)
    assert a == b and a.digest == b.digest and len(a.texts) == 4
    assert sum(t.startswith("query: ") for t in a.texts) == 2  # half questions, half sentences
    assert load_calibration(MLQA, "q: ", "p: ", size=4).digest != a.digest
    with pytest.raises(ConfigError, match="does not exist"):
        load_calibration(tmp_path / "missing", "", "")
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="not SQuAD-format"):
        load_calibration(tmp_path, "", "")


@needs_onnx
def test_cli_evaluate_on_onnx_gets_its_own_collection(tiny, tmp_path, export_root):
    from hybrid_qdrant.cli import app

    def evaluate(*extra: str) -> dict:
        out = tmp_path / f"report{len(extra)}.json"
        args = ["evaluate", "--data-dir", str(XQUAD), "--languages", ",".join(LANGS), "--model", tiny]
        args += ["--location", str(tmp_path / "q"), "--cache-dir", str(tmp_path / "c"), "--output", str(out)]
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text(encoding="utf-8"))

    base, onnx = evaluate(), evaluate("--backend", "onnx")
    assert onnx["collection"] != base["collection"]
    assert json.loads(onnx["model_fingerprint"])["backend"] == "onnx/none"
    assert abs(onnx["metrics"]["multi/map"] - base["metrics"]["multi/map"]) < 1e-3
    # the collection records how its encoder ran: searched with no --model, it loads the onnx export
    # again (the recorded fingerprint is checked on load)
    args = [
        "search",
        "Where is the cat?",
        "--location",
        str(tmp_path / "q"),
        "--collection",
        onnx["collection"],
    ]
    found = CliRunner().invoke(app, [*args, "--json", "-k", "3"])
    assert found.exit_code == 0, found.output
    hits = [json.loads(line) for line in found.output.splitlines() if line.startswith("{")]
    assert len(hits) == 3 and all(h["doc_id"] for h in hits)


@needs_onnx
def test_onnx_int8_is_dynamic_so_calibration_is_ignored(tiny, export_root):
    plain = SentenceTransformerEncoder(model=tiny, backend="onnx", quantize="int8")
    given = SentenceTransformerEncoder(model=tiny, backend="onnx", quantize="int8", calibration=str(MLQA))
    assert plain.fingerprint == given.fingerprint and "calibration" not in json.loads(plain.fingerprint)
