"""Re-indexing and --recreate: the new collection is built beside the old one and swapped in only when
complete; the state of a re-index is recorded on the collection, so a rollback by hand sticks."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from hybrid_qdrant.benchmarks import load_benchmark
from hybrid_qdrant.errors import DataError, StoreError
from hybrid_qdrant.evaluation.ingest import ingest
from hybrid_qdrant.evaluation.jobs import REINDEX_LABEL, reindex_with_alias
from hybrid_qdrant.store import open_store
from hybrid_qdrant.store.base import CollectionSpec

XQUAD = Path(__file__).parent / "fixtures" / "lareqa" / "xquad-r"


class HashEncoder:
    dim = 8
    fingerprint = '{"model": "hash"}'

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        rows = [
            np.random.default_rng(int(hashlib.sha1(t.encode()).hexdigest()[:8], 16)).normal(size=8)
            for t in texts
        ]
        out = np.asarray(rows, dtype=np.float32).reshape(len(texts), 8)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    encode_queries = encode_passages


SPEC = CollectionSpec(dim=8, encoder=HashEncoder.fingerprint)


def passages(n: int | None = None):
    return load_benchmark("xquad-r", XQUAD, ["en", "de", "es"]).passages[:n]


def write_all(store):
    return ingest(passages(), HashEncoder(), store)


def test_an_interrupted_reindex_is_resumed_and_a_rollback_sticks(tmp_path):
    with open_store(location=str(tmp_path), collection="admin") as store:
        first = reindex_with_alias(store, "prod", write_all, SPEC)
        assert (first.collection, store.aliases()["prod"]) == ("prod_v1", "prod_v1")
        assert store.labels("prod_v1")[REINDEX_LABEL] == "complete"

        def interrupted(target):
            ingest(passages(5), HashEncoder(), target)
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            reindex_with_alias(store, "prod", interrupted, SPEC)
        assert store.aliases()["prod"] == "prod_v1"  # queries still see the old one
        assert store.labels("prod_v2")[REINDEX_LABEL] == "filling"
        resumed = reindex_with_alias(store, "prod", write_all, SPEC)
        assert resumed.collection == "prod_v2" and resumed.stats.already_stored == 5  # filled up, not redone
        assert store.aliases()["prod"] == "prod_v2"

        store.set_alias("prod", "prod_v1")  # a rollback by hand
        again = reindex_with_alias(store, "prod", write_all, SPEC)
        assert again.collection == "prod_v3"  # a new re-index: v2 is complete, never switched back to
        assert store.aliases()["prod"] == "prod_v3"
        with pytest.raises(StoreError, match="'prod_v1' is a collection, not an alias"):
            reindex_with_alias(store, "prod_v1", write_all, SPEC)


def test_recreate_keeps_the_old_collection_until_its_replacement_is_complete(tmp_path):
    with open_store(location=str(tmp_path), collection="c") as store:
        ingest(passages(7), HashEncoder(), store)
    with open_store(location=str(tmp_path), collection="admin") as store:

        def bad(target):
            ingest(passages(3), HashEncoder(), target)
            raise DataError("a bad record half way")

        with pytest.raises(DataError):
            reindex_with_alias(store, "c", bad, SPEC, replace_collection=True)
        assert "c" in store.collections() and "c" not in store.aliases()
        with store.for_collection("c") as old:
            assert old.count() == 7  # untouched

        done = reindex_with_alias(store, "c", write_all, SPEC, replace_collection=True)
        assert (done.collection, done.dropped) == ("c_v1", "c")  # resumed the interrupted rebuild
        assert store.aliases() == {"c": "c_v1"} and "c" not in store.collections()
        with store.for_collection("c") as new:
            assert new.count() == len(passages())

        again = reindex_with_alias(store, "c", write_all, SPEC, replace_collection=True)
        assert (again.collection, again.dropped) == ("c_v2", "c_v1")  # an alias: switched, the old dropped
        assert store.aliases() == {"c": "c_v2"} and sorted(store.collections()) == ["c_v2"]


def test_hq_ingest_recreate_on_the_cli(tmp_path):
    from tiny_model import build_tiny_st_model
    from typer.testing import CliRunner

    from hybrid_qdrant.cli import app

    bench = load_benchmark("xquad-r", XQUAD, ["en", "de", "es"])
    model = build_tiny_st_model(
        tmp_path / "m", [p.text for p in bench.passages] + [q.text for q in bench.queries]
    )
    args = ["--benchmark", "xquad-r", "--data-dir", str(XQUAD), "--languages", "en,de,es", "--model", model]
    args += ["--location", str(tmp_path / "q"), "--cache-dir", str(tmp_path / "c"), "--collection", "mine"]
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", *args])
    assert first.exit_code == 0, first.output
    rebuilt = runner.invoke(app, ["ingest", *args, "--recreate"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "collection mine_v1" in rebuilt.output
    listing = runner.invoke(app, ["collections", "list", "--location", str(tmp_path / "q")])
    assert "mine_v1" in listing.output and "aliases: mine" in listing.output
    evaluated = runner.invoke(app, ["evaluate", *args, "--recreate", "--settings", "mono"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "rebuilt mine as mine_v2; dropped mine_v1" in evaluated.output
