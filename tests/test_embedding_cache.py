"""The embedding cache: each text encoded once per fingerprint, across runs and settings."""

from __future__ import annotations

import numpy as np
from mock_encoder import KeywordEncoder

from hybrid_qdrant.embedding_cache import CachedEncoder, EmbeddingCache


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


def test_orphaned_vectors_file_is_ignored(tmp_path):
    cache = EmbeddingCache("fp", tmp_path)
    cache.put("query", ["a"], np.ones((1, 4), np.float32))
    # an interrupted write: vectors landed, keys did not
    np.save(cache.dir / "query" / "000001.npy", np.zeros((1, 4), np.float32))
    fresh = EmbeddingCache("fp", tmp_path)
    vectors, missing = fresh.get("query", ["a", "b"])
    assert missing == [1]
    np.testing.assert_array_equal(vectors[0], np.ones(4, np.float32))
    fresh.put("query", ["b"], np.full((1, 4), 2, np.float32))  # the orphan is overwritten, not read
    vectors, missing = EmbeddingCache("fp", tmp_path).get("query", ["b"])
    assert missing == [] and vectors[0, 0] == 2


def test_empty_input(tmp_path):
    cached = CachedEncoder(KeywordEncoder(), root=tmp_path)
    assert cached.encode_queries([]).shape == (0, KeywordEncoder.dim)
