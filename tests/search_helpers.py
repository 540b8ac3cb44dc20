"""Shared by the search tests: the LAReQA fixture, a tiny model trained on its words, collections built
by ``hq ingest``, and a brute-force reference search. Not a test module (no ``test_`` prefix)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tiny_model import build_tiny_st_model
from typer.testing import CliRunner

from hybrid_qdrant.benchmarks import load_benchmark
from hybrid_qdrant.cli import app
from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder

XQUAD = Path(__file__).parent / "fixtures" / "lareqa" / "xquad-r"
LANGS = ["en", "de", "es"]
COLLECTION = "xq"
runner = CliRunner()


def hq(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def fixture_benchmark():
    return load_benchmark("xquad-r", XQUAD, LANGS)


def tiny_model(folder: Path, seed: int = 0) -> str:
    bench = fixture_benchmark()
    texts = [p.text for p in bench.passages] + [q.text for q in bench.queries]
    return build_tiny_st_model(folder, texts, seed=seed)


def ingest_args(model: str, tmp: Path, *store: str, collection: str = COLLECTION) -> list[str]:
    """``hq ingest`` of the fixture's three languages with ``model`` into ``collection``."""
    return [
        "ingest",
        "--benchmark",
        "xquad-r",
        "--data-dir",
        XQUAD,
        "--languages",
        ",".join(LANGS),
        "--model",
        model,
        "--cache-dir",
        tmp / "cache",
        "--collection",
        collection,
        *store,
    ]


def build_collection(model: str, tmp: Path, *store: str, collection: str = COLLECTION) -> None:
    result = hq(*ingest_args(model, tmp, *store, collection=collection))
    assert result.exit_code == 0, result.output


def brute_force(model: str, texts: list[str], k: int, langs: set[str] | None = None):
    """Per text, the top ``k`` (doc_id, score) over the fixture's passages: numpy over freshly encoded
    vectors, ties by doc id."""
    bench = fixture_benchmark()
    encoder = SentenceTransformerEncoder(EncoderSettings(model=model, device="cpu"))
    passages = [p for p in bench.passages if langs is None or p.lang in langs]
    matrix = encoder.encode_passages([p.text for p in passages])  # (n, dim)
    scores = encoder.encode_queries(texts) @ matrix.T  # (queries, n)
    out = []
    for row in scores:
        order = sorted(range(len(passages)), key=lambda i: (-float(row[i]), passages[i].doc_id))
        out.append([(passages[i].doc_id, float(row[i])) for i in order[:k]])
    return out


def ids_and_scores(hits) -> tuple[list[str], np.ndarray]:
    return [h.doc_id for h in hits], np.array([h.score for h in hits])
