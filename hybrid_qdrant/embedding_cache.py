"""A disk cache of embeddings keyed by (encoder fingerprint, role, text hash).

Re-evaluating, or evaluating the same texts in another setting, never re-encodes. The fingerprint
covers the model weights and every encoding setting, so a changed model lands in a new cache folder
(the old one stays valid for the old model).

Layout: ``{root}/{sha1(fingerprint)[:20]}/{role}/`` holds append-only shards ``NNNNNN.npy``
(float32 vectors) with ``NNNNNN.keys`` (20-byte SHA-1 digests of the texts, one per row) and
``meta.json`` with the fingerprint. A shard's keys file is written last, through a rename, so an
interrupted write leaves at most an orphaned vectors file that is ignored.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hybrid_qdrant.atomic_write import atomic_write_bytes

logger = logging.getLogger(__name__)

ROLES = ("query", "passage")
DIGEST_SIZE = 20


def default_cache_dir() -> Path:
    """``$HQ_CACHE_DIR/embeddings`` or ``~/.cache/hybrid-qdrant/embeddings``."""
    base = os.environ.get("HQ_CACHE_DIR") or Path.home() / ".cache" / "hybrid-qdrant"
    return Path(base) / "embeddings"


def text_digest(text: str) -> bytes:
    """SHA-1 of the UTF-8 text (the cache key within one fingerprint and role)."""
    return hashlib.sha1(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Embeddings of one encoder fingerprint, for queries and passages."""

    def __init__(self, fingerprint: str, root: str | Path | None = None) -> None:
        self.fingerprint = fingerprint
        key = hashlib.sha1(fingerprint.encode("utf-8")).hexdigest()[:20]
        self.dir = Path(root) if root is not None else default_cache_dir()
        self.dir = self.dir / key
        self._index: dict[str, dict[bytes, tuple[int, int]]] = {}
        self._shards: dict[tuple[str, int], np.ndarray] = {}

    def _role_dir(self, role: str) -> Path:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        return self.dir / role

    def _load_index(self, role: str) -> dict[bytes, tuple[int, int]]:
        if role in self._index:
            return self._index[role]
        index: dict[bytes, tuple[int, int]] = {}
        folder = self._role_dir(role)
        if folder.is_dir():
            for keys_file in sorted(folder.glob("*.keys")):
                shard = int(keys_file.stem)
                raw = keys_file.read_bytes()
                for row in range(len(raw) // DIGEST_SIZE):
                    index[raw[row * DIGEST_SIZE : (row + 1) * DIGEST_SIZE]] = (shard, row)
        self._index[role] = index
        return index

    def _vectors(self, role: str, shard: int) -> np.ndarray:
        key = (role, shard)
        if key not in self._shards:
            self._shards[key] = np.load(self._role_dir(role) / f"{shard:06d}.npy", mmap_mode="r")
        return self._shards[key]

    def __len__(self) -> int:
        return sum(len(self._load_index(role)) for role in ROLES)

    def get(self, role: str, texts: Sequence[str]) -> tuple[np.ndarray | None, list[int]]:
        """Look texts up.

        Returns:
            (vectors, missing): vectors is (n, dim) with the cached rows filled (None when nothing is
            cached), missing the positions of texts not in the cache.
        """
        index = self._load_index(role)
        out: np.ndarray | None = None
        missing: list[int] = []
        for i, text in enumerate(texts):
            hit = index.get(text_digest(text))
            if hit is None:
                missing.append(i)
                continue
            vec = self._vectors(role, hit[0])[hit[1]]
            if out is None:
                out = np.zeros((len(texts), vec.shape[0]), dtype=np.float32)
            out[i] = vec
        return out, missing

    def put(self, role: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors ((n, dim) float32) of texts as a new shard; texts already cached are skipped."""
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        index = self._load_index(role)
        digests, rows, seen = [], [], set()
        for i, text in enumerate(texts):
            digest = text_digest(text)
            if digest in index or digest in seen:
                continue
            seen.add(digest)
            digests.append(digest)
            rows.append(i)
        if not rows:
            return
        folder = self._role_dir(role)
        folder.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "meta.json"
        if not meta.exists():
            atomic_write_bytes(meta, json.dumps({"fingerprint": self.fingerprint}, indent=1).encode())
        existing = [int(p.stem) for p in folder.glob("*.keys")]
        shard = max(existing, default=-1) + 1
        block = np.ascontiguousarray(vectors[rows], dtype=np.float32)
        buffer = io.BytesIO()
        np.save(buffer, block)
        atomic_write_bytes(folder / f"{shard:06d}.npy", buffer.getvalue())
        atomic_write_bytes(folder / f"{shard:06d}.keys", b"".join(digests))
        for row, digest in enumerate(digests):
            index[digest] = (shard, row)

    def encode(
        self, role: str, texts: Sequence[str], encode_fn: Callable[[list[str]], np.ndarray]
    ) -> np.ndarray:
        """Vectors of texts: cached rows read, missing rows encoded with ``encode_fn`` and stored."""
        cached, missing = self.get(role, texts)
        if not missing and cached is not None:
            return cached
        fresh = encode_fn([texts[i] for i in missing])  # (len(missing), dim)
        self.put(role, [texts[i] for i in missing], fresh)
        if cached is None:
            cached = np.zeros((len(texts), fresh.shape[1]), dtype=np.float32)
        cached[missing] = fresh
        logger.info("%s embeddings: %d cached, %d encoded", role, len(texts) - len(missing), len(missing))
        return cached


class CachedEncoder:
    """Wraps an Encoder so that each text is encoded once per fingerprint, across runs."""

    def __init__(self, encoder, cache: EmbeddingCache | None = None, root: str | Path | None = None) -> None:
        self.encoder = encoder
        self.dim = encoder.dim
        self.fingerprint = encoder.fingerprint
        self.cache = cache or EmbeddingCache(encoder.fingerprint, root)

    def _encode(self, role: str, texts: Sequence[str], encode_fn) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.cache.encode(role, texts, encode_fn)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode("query", texts, self.encoder.encode_queries)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode("passage", texts, self.encoder.encode_passages)
