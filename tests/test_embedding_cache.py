"""The embedding cache: each text encoded once per fingerprint, across runs, threads and processes."""

from __future__ import annotations

import errno
import hashlib
import logging
import multiprocessing
import os
import random
import threading
from pathlib import Path

import numpy as np
import pytest
from mock_encoder import KeywordEncoder

from hybrid_qdrant.encoding.cache import CachedEncoder, EmbeddingCache, encode_shard, text_digest

FAKE_DIM = 16


def fake_vectors(texts) -> np.ndarray:
    """A deterministic encoder: each text's vector is drawn from a generator seeded by its hash."""
    out = np.empty((len(texts), FAKE_DIM), dtype=np.float32)  # (n, 16)
    for i, text in enumerate(texts):
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        out[i] = np.random.default_rng(seed).standard_normal(FAKE_DIM)
    return out


def shard_files(cache: EmbeddingCache, role: str = "passage") -> list[Path]:
    return sorted((cache.dir / role).glob("*.emb"))


def test_second_pass_encodes_nothing(tmp_path):
    enc = KeywordEncoder()
    cached = CachedEncoder(enc, root=tmp_path)
    texts = ["the cat sits", "der hund rennt", "the bird flies"]
    first = cached.encode_passages(texts)
    assert enc.encoded == 3
    again = CachedEncoder(enc, root=tmp_path).encode_passages(texts)  # a new process would see the same files
    assert enc.encoded == 3
    np.testing.assert_array_equal(first, again)


def test_only_new_texts_are_encoded_and_order_is_kept(tmp_path):
    enc = KeywordEncoder()
    cached = CachedEncoder(enc, root=tmp_path)
    cached.encode_passages(["the cat sits", "the dog runs"])
    out = cached.encode_passages(["the dog runs", "the bird flies", "the cat sits"])
    assert enc.encoded == 3
    np.testing.assert_array_equal(
        out, enc.encode_passages(["the dog runs", "the bird flies", "the cat sits"])
    )


def test_roles_and_fingerprints_are_separate(tmp_path):
    enc = KeywordEncoder()
    cached = CachedEncoder(enc, root=tmp_path)
    cached.encode_passages(["the cat sits"])
    cached.encode_queries(["the cat sits"])
    assert enc.encoded == 2
    other = EmbeddingCache('{"model": "another"}', tmp_path)
    vectors, missing = other.get("passage", ["the cat sits"])
    assert vectors is None and missing == [0]


def test_leftovers_and_first_format_shards_are_ignored(tmp_path):
    cache = EmbeddingCache("fp", tmp_path)
    cache.put("query", ["a"], np.ones((1, 4), np.float32))
    folder = cache.dir / "query"
    # an interrupted write leaves a temporary file; the first format paired files by number only
    (folder / ".00000002-abcd.emb.1234.tmp").write_bytes(b"partial")
    np.save(folder / "000001.npy", np.zeros((1, 4), np.float32))
    (folder / "000001.keys").write_bytes(text_digest("b"))
    fresh = EmbeddingCache("fp", tmp_path)
    vectors, missing = fresh.get("query", ["a", "b"])
    assert missing == [1]
    np.testing.assert_array_equal(vectors[0], np.ones(4, np.float32))
    fresh.put("query", ["b"], np.full((1, 4), 2, np.float32))
    vectors, missing = EmbeddingCache("fp", tmp_path).get("query", ["b"])
    assert missing == [] and vectors[0, 0] == 2


def test_empty_input(tmp_path):
    cached = CachedEncoder(KeywordEncoder(), root=tmp_path)
    assert cached.encode_queries([]).shape == (0, KeywordEncoder.dim)


# ------------------------------------------------------------------------- chunks and progress


class Interrupted(KeywordEncoder):
    """Ctrl-C while encoding the chunk after ``chunks`` finished ones; records every chunk's size."""

    def __init__(self, chunks: int | None = None) -> None:
        super().__init__()
        self.chunks, self.sizes = chunks, []

    def _encode(self, texts):
        if self.chunks is not None and len(self.sizes) == self.chunks:
            raise KeyboardInterrupt
        self.sizes.append(len(texts))
        return super()._encode(texts)


TEXTS = [f"the cat number {i} sits" + " long" * (i % 3) for i in range(9)]


def test_an_interrupted_run_keeps_every_finished_chunk_and_the_rerun_encodes_the_rest(tmp_path):
    first = Interrupted(chunks=2)
    with pytest.raises(KeyboardInterrupt):
        CachedEncoder(first, root=tmp_path, chunk_size=2).encode_passages(TEXTS)
    cache = EmbeddingCache(first.fingerprint, tmp_path)
    assert first.sizes == [2, 2] and len(shard_files(cache)) == 2  # one whole shard per finished chunk
    _, missing = cache.get("passage", TEXTS)
    assert len(missing) == 9 - 4

    rerun = Interrupted()
    out = CachedEncoder(rerun, root=tmp_path, chunk_size=2).encode_passages(TEXTS)
    assert rerun.encoded == 5 and rerun.sizes == [2, 2, 1]
    np.testing.assert_array_equal(out, KeywordEncoder().encode_passages(TEXTS))


def test_progress_reports_the_reused_texts_then_each_chunk(tmp_path):
    events = []
    cached = CachedEncoder(KeywordEncoder(), root=tmp_path, chunk_size=4, progress=events.append)
    cached.encode_queries(TEXTS[:3])
    assert [(e.role, e.total, e.reused, e.encoded) for e in events] == [
        ("query", 3, 0, 0),
        ("query", 3, 0, 3),
    ]
    events.clear()
    cached.encode_queries(TEXTS)
    assert [(e.reused, e.encoded) for e in events] == [(3, 0), (3, 4), (3, 6)]
    assert events[0].to_encode == 6
    events.clear()
    own = []
    cached.encode_queries(TEXTS, progress=own.append)  # a call's own callback wins over the attribute
    assert events == [] and [(e.reused, e.encoded, e.to_encode) for e in own] == [(9, 0, 0)]


def test_chunks_grow_from_one_batch_while_encoding_is_fast(tmp_path, monkeypatch):
    from hybrid_qdrant.encoding import cache as embedding_cache

    texts = [f"text {i}" for i in range(200)]
    fast = Interrupted()
    cached = CachedEncoder(fast, root=tmp_path / "a")
    cached.batch_size = 2
    cached.encode_passages(texts)
    assert fast.sizes[:6] == [2, 4, 8, 16, 32, 64] and max(fast.sizes) <= 64 * 2 and sum(fast.sizes) == 200
    monkeypatch.setattr(embedding_cache, "CHUNK_SECONDS", 0.0)  # every chunk counts as slow: one batch each
    slow = Interrupted()
    cached = CachedEncoder(slow, root=tmp_path / "b")
    cached.batch_size = 8
    cached.encode_passages(texts[:20])
    assert slow.sizes == [8, 8, 4]


# ------------------------------------------------------------------------- never a wrong vector


def test_a_damaged_row_is_a_miss_and_is_encoded_again(tmp_path):
    texts = ["alpha", "beta", "gamma"]
    cache = EmbeddingCache("fp", tmp_path)
    cache.put("passage", texts, fake_vectors(texts))
    (path,) = shard_files(cache)
    raw = bytearray(path.read_bytes())
    raw[-FAKE_DIM * 4 - 1] ^= 0x01  # one bit of "beta"'s vector (the middle row) flips on the disk
    path.write_bytes(bytes(raw))
    fresh = EmbeddingCache("fp", tmp_path)
    vectors, missing = fresh.get("passage", texts)
    assert missing == [1]
    np.testing.assert_array_equal(vectors[[0, 2]], fake_vectors(["alpha", "gamma"]))
    np.testing.assert_array_equal(fresh.encode("passage", texts, fake_vectors), fake_vectors(texts))
    _, missing = EmbeddingCache("fp", tmp_path).get("passage", texts)
    assert missing == []  # the re-encoded row was stored in a new shard


def test_a_row_under_another_texts_digest_is_a_miss(tmp_path):
    """A shard whose table names "b" beside "a"'s vector (keys paired with another writer's vectors)."""
    cache = EmbeddingCache("fp", tmp_path)
    good = encode_shard([text_digest("a")], fake_vectors(["a"]))
    table_start = 16
    swapped = good[:table_start] + text_digest("b") + good[table_start + 20 :]
    (cache.dir / "passage").mkdir(parents=True)
    (cache.dir / "passage" / "00000001-x.emb").write_bytes(swapped)
    vectors, missing = cache.get("passage", ["a", "b"])
    assert vectors is None and missing == [0, 1]


def test_a_truncated_shard_is_ignored(tmp_path, caplog):
    cache = EmbeddingCache("fp", tmp_path)
    cache.put("passage", ["a", "b"], fake_vectors(["a", "b"]))
    (path,) = shard_files(cache)
    path.write_bytes(path.read_bytes()[:-3])
    with caplog.at_level(logging.WARNING):
        vectors, missing = EmbeddingCache("fp", tmp_path).get("passage", ["a", "b"])
    assert vectors is None and missing == [0, 1]
    assert str(path) in caplog.text


def _writer(root: str, worker: int, rounds: int, barrier, failures) -> None:
    """One job: encodes batches mixing texts every job shares with texts of its own."""
    cache = EmbeddingCache("fp", root)
    rng = random.Random(worker)
    barrier.wait()
    for r in range(rounds):
        texts = [f"shared {rng.randrange(150)}" for _ in range(12)] + [
            f"own {worker} {r} {j}" for j in range(6)
        ]
        out = cache.encode("passage", texts, fake_vectors)
        if not np.array_equal(out, fake_vectors(texts)):
            failures.put(f"worker {worker} round {r}: a wrong vector")
        if r % 5 == 0:  # a reader that starts cold sees only whole, verified shards
            peek, _ = EmbeddingCache("fp", root).get("passage", texts)
            if peek is not None and not all(
                not row.any() or np.array_equal(row, want)
                for row, want in zip(peek, fake_vectors(texts), strict=True)
            ):
                failures.put(f"worker {worker} round {r}: a cold reader got a wrong vector")


def test_two_processes_sharing_the_cache_never_read_a_wrong_vector(tmp_path):
    context = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    )
    workers, rounds = 3, 25
    barrier, failures = context.Barrier(workers), context.Queue()
    procs = [
        context.Process(target=_writer, args=(str(tmp_path), w, rounds, barrier, failures))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers
    problems = []
    while not failures.empty():
        problems.append(failures.get())
    assert problems == []
    texts = [f"shared {i}" for i in range(150)] + [
        f"own {w} {r} {j}" for w in range(workers) for r in range(rounds) for j in range(6)
    ]
    cache = EmbeddingCache("fp", tmp_path)
    vectors, missing = cache.get("passage", texts)
    own = workers * rounds * 6
    assert all(i < 150 for i in missing) and len(missing) < 150  # every job's own texts are there
    hit = [i for i in range(len(texts)) if i not in set(missing)]
    np.testing.assert_array_equal(vectors[hit], fake_vectors([texts[i] for i in hit]))
    assert len(cache) == len(hit) and len(hit) >= own
    assert not list((cache.dir / "passage").glob("*.tmp"))


def test_threads_sharing_one_cache_never_read_a_wrong_vector(tmp_path):
    cache = EmbeddingCache("fp", tmp_path)
    errors: list[str] = []

    def work(worker: int) -> None:
        rng = random.Random(worker)
        mine = cache if worker % 2 else EmbeddingCache("fp", tmp_path)  # shared and separate instances
        for r in range(30):
            texts = [f"t {rng.randrange(80)}" for _ in range(10)]
            if not np.array_equal(mine.encode("query", texts, fake_vectors), fake_vectors(texts)):
                errors.append(f"{worker}/{r}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    texts = [f"t {i}" for i in range(80)]
    vectors, missing = EmbeddingCache("fp", tmp_path).get("query", texts)
    hit = [i for i in range(80) if i not in set(missing)]
    np.testing.assert_array_equal(vectors[hit], fake_vectors([texts[i] for i in hit]))


# ------------------------------------------------------------------------- an optional cache


def _fail_writes(monkeypatch, tmp_path: Path, code: int) -> None:
    """Make file creation (EROFS, EACCES) or writing (ENOSPC) under tmp_path fail with ``code``."""
    if code == errno.ENOSPC:
        real_fdopen = os.fdopen

        class Full:
            def __init__(self, fh):
                self._fh = fh

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._fh.close()

            def write(self, data):
                self._fh.write(data[: len(data) // 2])  # half of it lands, then the disk is full
                self._fh.flush()
                raise OSError(code, os.strerror(code))

            def __getattr__(self, name):
                return getattr(self._fh, name)

        monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real_fdopen(fd, *a, **k)))
    else:
        real_open = os.open

        def failing_open(path, flags, *args, **kwargs):
            if str(path).startswith(str(tmp_path)) and flags & os.O_CREAT:
                raise OSError(code, os.strerror(code), str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", failing_open)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_an_unwritable_cache_warns_once_and_the_job_goes_on(tmp_path, monkeypatch, caplog, code):
    cache = EmbeddingCache("fp", tmp_path)
    (cache.dir / "query").mkdir(parents=True)  # a cache folder that exists but cannot take a shard
    _fail_writes(monkeypatch, tmp_path, code)
    cached = CachedEncoder(KeywordEncoder(), cache=cache)
    with caplog.at_level(logging.WARNING):
        first = cached.encode_queries(["the cat sits", "the dog runs"])
        second = cached.encode_queries(["the bird flies"])
    np.testing.assert_array_equal(first, KeywordEncoder().encode_queries(["the cat sits", "the dog runs"]))
    np.testing.assert_array_equal(second, KeywordEncoder().encode_queries(["the bird flies"]))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert str(cache.dir) in warnings[0].getMessage()
    assert os.strerror(code) in warnings[0].getMessage()
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name not in {".lock"}]
    assert leftovers == []  # nothing half-written: no shard, no temporary file
