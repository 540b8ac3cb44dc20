"""Ingestion: idempotent, resumable (also after SIGKILL), bad records stop or are skipped and reported."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mock_encoder import KeywordEncoder

from hybrid_qdrant.errors import DataError
from hybrid_qdrant.evaluation.ingest import ingest
from hybrid_qdrant.store import open_store
from hybrid_qdrant.store.compat import encoder_tag
from hybrid_qdrant.types import Passage

WORDS = ["cat", "dog", "bird", "runs", "sits", "flies"]


def corpus(n: int, langs=("en", "de")) -> list[Passage]:
    return [
        Passage(f"{lang}/{i}", f"{WORDS[i % 6]} {WORDS[(i // 6) % 6]} number {i}", lang, f"g{i}")
        for lang in langs
        for i in range(n)
    ]


def test_ingest_twice_gives_the_same_points(tmp_path):
    enc = KeywordEncoder()
    with open_store(location=str(tmp_path / "q"), collection="c") as store:
        first = ingest(corpus(50), enc, store, block_size=16)
        assert (first.encoded, store.count()) == (100, 100)
        second = ingest(corpus(50), enc, store, block_size=16)
        assert (second.encoded, second.already_stored, store.count()) == (0, 100, 100)
        assert store.count("de") == 50


def test_resume_encodes_only_what_is_missing(tmp_path):
    enc = KeywordEncoder()
    with open_store(location=str(tmp_path / "q"), collection="c") as store:
        ingest(corpus(30)[:20], enc, store)
        before = enc.encoded
        stats = ingest(corpus(30), enc, store, block_size=7)
        assert (stats.encoded, stats.already_stored) == (40, 20)
        assert enc.encoded - before == 40
        assert store.count() == 60


def test_overlap_and_sequential_write_the_same(tmp_path):
    results = []
    for overlap in (True, False):
        with open_store(location=str(tmp_path / f"q{overlap}"), collection="c") as store:
            ingest(corpus(40), KeywordEncoder(), store, block_size=9, upsert_batch=4, overlap=overlap)
            ids, vectors = store.vectors(None)
            results.append(dict(zip(ids, map(tuple, vectors.round(6)), strict=False)))
    assert results[0] == results[1] and len(results[0]) == 80


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (Passage("en/bad", "   ", "en"), "empty text"),
        (Passage("en/bad", "cat", ""), "missing language"),
        (Passage("en/bad", "cat", "xx"), "unknown language 'xx'"),
        (Passage("en/0", "a different text", "en"), "duplicate doc id with a different text"),
        (Passage("en/bad", "broken \ud800 text", "en"), "invalid Unicode (an unpaired surrogate)"),
    ],
)
def test_bad_record_stops_or_is_skipped(tmp_path, bad, reason):
    records = corpus(10) + [bad] + corpus(10, langs=("fr",))
    encoder = KeywordEncoder()
    with open_store(location=str(tmp_path / "stop"), collection="c") as store:
        with pytest.raises(DataError, match=re.escape(reason)):
            ingest(records, encoder, store, block_size=4, languages=("en", "de", "fr"))
        assert not store.exists() and encoder.encoded == 0  # in memory: checked before anything is made
    with open_store(location=str(tmp_path / "stream"), collection="c") as store:
        with pytest.raises(
            DataError, match=re.escape(reason)
        ):  # streamed: written up to the bad block, resumable
            ingest(iter(records), KeywordEncoder(), store, block_size=4, languages=("en", "de", "fr"))
        written = store.count()
        assert store.count("fr") == 0  # nothing after the bad record
    assert 0 < written <= 20
    with open_store(location=str(tmp_path / "first"), collection="c") as store:
        with pytest.raises(
            DataError, match=re.escape(reason)
        ):  # a bad first block: no empty collection left behind
            ingest(iter([bad, *records]), KeywordEncoder(), store, block_size=4, languages=("en", "de", "fr"))
        assert not store.exists()
    with open_store(location=str(tmp_path / "skip"), collection="c") as store:
        stats = ingest(records, KeywordEncoder(), store, on_error="skip", languages=("en", "de", "fr"))
        assert stats.skipped == {reason: 1}
        assert stats.skipped_examples == [f"{bad.doc_id}: {reason}"]
        assert store.count() == 30


def test_payload_records_language_group_text_and_encoder(tmp_path):
    enc = KeywordEncoder()
    with open_store(location=str(tmp_path / "q"), collection="c") as store:
        ingest(corpus(3), enc, store)
        records = {r.doc_id: r.payload for r in store.iter_records(with_vectors=False)}
    assert records["de/2"]["lang"] == "de"
    assert records["de/2"]["group_id"] == "g2"
    assert records["de/2"]["text"] == corpus(3)[5].text
    assert records["de/2"]["encoder"] == encoder_tag(enc.fingerprint)


CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from mock_encoder import KeywordEncoder
    from test_ingest import corpus
    from hybrid_qdrant.evaluation.ingest import ingest
    from hybrid_qdrant.store import open_store

    class Slow(KeywordEncoder):
        def encode_passages(self, texts):
            print("block", flush=True)
            time.sleep(0.2)
            return super().encode_passages(texts)

    with open_store(location={path!r}, collection="c") as store:
        ingest(corpus(200), Slow(), store, block_size=25, upsert_batch=10)
    print("finished", flush=True)
    """
)


def test_sigkill_part_way_then_resume_gives_exactly_the_expected_points(tmp_path):
    path = str(tmp_path / "q")
    script = CHILD.format(tests=str(Path(__file__).parent), path=path)
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    blocks = 0
    for line in child.stdout:
        blocks += line.startswith("block")
        if blocks == 6:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    expected = {p.doc_id: p for p in corpus(200)}
    with open_store(location=path, collection="c") as store:
        partial = store.count()
        assert 0 < partial < len(expected)
        stats = ingest(corpus(200), KeywordEncoder(), store, block_size=25)
        assert stats.already_stored == partial
        assert store.count() == len(expected)
        records = list(store.iter_records(with_vectors=False))
    assert sorted(r.doc_id for r in records) == sorted(expected)
    for r in records:
        assert r.payload["text"] == expected[r.doc_id].text
        assert r.payload["lang"] == expected[r.doc_id].lang
