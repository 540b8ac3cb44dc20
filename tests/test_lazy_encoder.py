"""A run that encodes nothing does not load its model: the fingerprint and dimension come from the record
made the first time the model was loaded with the same settings and files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from tiny_model import build_tiny_st_model
from typer.testing import CliRunner

from hybrid_qdrant.benchmarks import load_benchmark
from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder
from hybrid_qdrant.encoding.lazy import RECORDS, LazyEncoder, recorded_encoder
from hybrid_qdrant.errors import ModelError

XQUAD = Path(__file__).parent / "fixtures" / "lareqa" / "xquad-r"
LANGS = ["en", "de", "es"]


@pytest.fixture
def tiny(tmp_path) -> str:
    bench = load_benchmark("xquad-r", XQUAD, LANGS)
    texts = [p.text for p in bench.passages] + [q.text for q in bench.queries]
    return build_tiny_st_model(tmp_path / "tiny", texts)


def no_loading(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("hybrid_qdrant.encoding.encoder.load_sentence_transformer", refuse)


def test_the_second_time_the_model_loads_only_to_encode(tiny, tmp_path, monkeypatch):
    settings = EncoderSettings(model=tiny)
    first = recorded_encoder(settings, tmp_path / "cache")
    assert isinstance(first, SentenceTransformerEncoder)  # loaded, and recorded
    with monkeypatch.context() as patch:
        no_loading(patch)
        second = recorded_encoder(settings, tmp_path / "cache")
        assert isinstance(second, LazyEncoder) and not second.loaded
        assert (second.fingerprint, second.dim, second.max_seq_length) == (
            first.fingerprint,
            first.dim,
            first.max_seq_length,
        )
        assert second.encode_queries([]).shape == (0, first.dim)  # nothing to encode: still not loaded
    vectors = second.encode_queries(["where is the cat?"])  # now it loads
    assert second.loaded
    np.testing.assert_allclose(vectors, first.encode_queries(["where is the cat?"]), atol=1e-6)


def test_other_settings_or_changed_files_are_loaded_again(tiny, tmp_path, monkeypatch):
    recorded_encoder(EncoderSettings(model=tiny), tmp_path / "cache")
    other = recorded_encoder(EncoderSettings(model=tiny, query_prefix="q: "), tmp_path / "cache")
    assert isinstance(other, SentenceTransformerEncoder)
    weights = next(Path(tiny).glob("*.safetensors"))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # the weights changed
    assert isinstance(
        recorded_encoder(EncoderSettings(model=tiny), tmp_path / "cache"), SentenceTransformerEncoder
    )


def test_a_record_the_model_contradicts_is_dropped_with_a_clear_error(tiny, tmp_path):
    settings = EncoderSettings(model=tiny)
    recorded_encoder(settings, tmp_path / "cache")
    (record,) = (tmp_path / "cache" / RECORDS).iterdir()
    data = json.loads(record.read_text(encoding="utf-8"))
    record.write_text(json.dumps({**data, "fingerprint": data["fingerprint"] + "x"}), encoding="utf-8")
    lazy = recorded_encoder(settings, tmp_path / "cache")
    with pytest.raises(ModelError, match="changed since it was last loaded"):
        lazy.encode_passages(["a"])
    assert not record.exists()


def test_other_backends_are_not_recorded(tmp_path):
    from hybrid_qdrant.encoding.lazy import record_key

    assert record_key(EncoderSettings(model="x", backend="onnx")) is None
    assert record_key(EncoderSettings(model="x")) != record_key(EncoderSettings(model="x", max_seq_length=8))
    assert record_key(EncoderSettings(model="x")) == record_key(EncoderSettings(model="x", batch_size=3))


def test_a_cached_evaluation_never_loads_the_model(tiny, tmp_path, monkeypatch):
    from hybrid_qdrant.cli import app

    args = ["evaluate", "--data-dir", str(XQUAD), "--languages", ",".join(LANGS), "--model", tiny]
    args += ["--location", str(tmp_path / "q"), "--cache-dir", str(tmp_path / "c")]
    first = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "a.json")])
    assert first.exit_code == 0, first.output
    no_loading(monkeypatch)
    again = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "b.json")])
    assert again.exit_code == 0, again.output
    a, b = (json.loads((tmp_path / f"{n}.json").read_text(encoding="utf-8")) for n in "ab")
    assert a["metrics"] == b["metrics"] and a["model_fingerprint"] == b["model_fingerprint"]
