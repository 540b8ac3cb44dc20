"""A disk cache of embeddings keyed by (encoder fingerprint, role, text hash), safe with concurrent jobs.

Re-evaluating, or evaluating the same texts in another setting, never re-encodes. The fingerprint
covers the model weights and every encoding setting, so a changed model lands in a new cache folder
(the old one stays valid for the old model).

Layout: ``{root}/{sha1(fingerprint)[:20]}/meta.json`` (the fingerprint) and ``{role}/`` holding shard
files ``NNNNNNNN-{random}.emb``. Why several processes and threads can share it:

- a shard is written once, whole, under a temporary name and renamed into place; it is never rewritten
  or appended to, and its name is unique, so a reader sees a whole shard or none of it;
- each row keeps the SHA-1 of its text beside its vector, and a BLAKE2b checksum over both; every read
  checks both, and a row that fails (a damaged or foreign file) is a miss, never a vector;
- writers of a role hold an advisory lock (``{role}/.lock``) while they number a shard and skip texts
  another writer stored meanwhile; readers take no lock and pick up new shards on a miss.

Missing texts are encoded in chunks, each stored as soon as it is encoded, so an interrupted job (Ctrl-C,
a crash) keeps everything but the chunk in flight: a chunk starts at one encoder batch and doubles while
a chunk takes under ``CHUNK_SECONDS`` (on a GPU one batch is milliseconds of work, so a shard per batch
would cost more than it saves). A ``progress`` callback hears how many texts were reused from the cache,
then the count encoded after each chunk.

The cache is optional: when it cannot be written (disk full, read-only, no permission) the job logs one
warning naming the path and goes on without caching; an unreadable shard is a miss.

Shard format (little-endian): ``HQEMB\\x01\\n\\x00`` (8 bytes), rows (uint32), dim (uint32); rows x 20-byte
text digests; rows x 8-byte row checksums; rows x dim float32. Shards of the first format
(``NNNNNN.npy`` + ``NNNNNN.keys``, numbered without a lock, so two writers could pair one's keys with
the other's vectors) are ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybrid_qdrant.atomic_write import atomic_write_bytes, disk_error
from hybrid_qdrant.errors import DiskError

try:  # advisory locks: POSIX only; elsewhere unique shard names still keep writers apart
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

ROLES = ("query", "passage")
DIGEST_SIZE = 20
CHECK_SIZE = 8
MAGIC = b"HQEMB\x01\n\x00"
HEADER = struct.Struct("<8sII")  # magic, rows, dim
SUFFIX = ".emb"
_DTYPE = np.dtype("<f4")
#: A chunk of missing texts grows (doubling from one encoder batch) while encoding it takes less than this.
CHUNK_SECONDS = 1.0
#: ... up to this many encoder batches.
MAX_CHUNK_BATCHES = 64
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class EncodeProgress:
    """Where one ``encode_queries`` / ``encode_passages`` call stands (what a progress bar shows).

    Attributes:
        role: ``query`` or ``passage``.
        total: texts asked for.
        reused: of them, read from the cache (known at the first report, before anything is encoded).
        encoded: of the others, encoded and stored so far: 0 at the first report, then after each chunk.
    """

    role: str
    total: int
    reused: int
    encoded: int

    @property
    def to_encode(self) -> int:
        return self.total - self.reused


Progress = Callable[[EncodeProgress], None]


def default_cache_dir() -> Path:
    """``$HQ_CACHE_DIR/embeddings`` or ``~/.cache/hybrid-qdrant/embeddings``."""
    base = os.environ.get("HQ_CACHE_DIR") or Path.home() / ".cache" / "hybrid-qdrant"
    return Path(base) / "embeddings"


def text_digest(text: str) -> bytes:
    """SHA-1 of the UTF-8 text (the cache key within one fingerprint and role)."""
    return hashlib.sha1(text.encode("utf-8")).digest()


def row_check(digest: bytes, vector: np.ndarray) -> bytes:
    """Checksum binding a vector ((dim,) float32) to its text digest."""
    data = np.ascontiguousarray(vector, dtype=_DTYPE).tobytes()
    return hashlib.blake2b(digest + data, digest_size=CHECK_SIZE).digest()


def encode_shard(digests: Sequence[bytes], block: np.ndarray) -> bytes:
    """The bytes of a shard holding ``block`` ((rows, dim) float32) for the text digests."""
    block = np.ascontiguousarray(block, dtype=_DTYPE)  # (rows, dim)
    if block.ndim != 2 or len(block) != len(digests) or not len(digests):
        raise ValueError(f"a shard needs (rows, dim) vectors for {len(digests)} digests, got {block.shape}")
    checks = b"".join(row_check(d, row) for d, row in zip(digests, block, strict=True))
    return HEADER.pack(MAGIC, len(digests), block.shape[1]) + b"".join(digests) + checks + block.tobytes()


@dataclass
class _Shard:
    """A shard file's table (read at once) and its vectors (memory-mapped on first use)."""

    path: Path
    rows: int
    dim: int
    digests: bytes
    checks: bytes
    _vectors: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def read(cls, path: Path) -> _Shard:
        """Read and validate the header and table; ValueError when the file is not a whole shard."""
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(HEADER.size)
            if len(head) != HEADER.size:
                raise ValueError("shorter than a header")
            magic, rows, dim = HEADER.unpack(head)
            if magic != MAGIC or rows < 1 or dim < 1:
                raise ValueError("not a shard of this format")
            table = rows * (DIGEST_SIZE + CHECK_SIZE)
            if size != HEADER.size + table + rows * dim * _DTYPE.itemsize:
                raise ValueError(f"{size} bytes do not hold {rows} x {dim} vectors")
            raw = fh.read(table)
        if len(raw) != table:
            raise ValueError("truncated table")
        return cls(path, rows, dim, raw[: rows * DIGEST_SIZE], raw[rows * DIGEST_SIZE :])

    def digest(self, row: int) -> bytes:
        return self.digests[row * DIGEST_SIZE : (row + 1) * DIGEST_SIZE]

    def vector(self, row: int) -> np.ndarray:
        if self._vectors is None:
            offset = HEADER.size + self.rows * (DIGEST_SIZE + CHECK_SIZE)
            self._vectors = np.memmap(
                self.path, dtype=_DTYPE, mode="r", offset=offset, shape=(self.rows, self.dim)
            )
        return np.array(self._vectors[row], dtype=np.float32)  # (dim,), a copy

    def verified(self, row: int, digest: bytes) -> np.ndarray | None:
        """The row's vector if it belongs to ``digest`` and is intact, else None."""
        if not 0 <= row < self.rows or self.digest(row) != digest:
            return None
        vector = self.vector(row)
        if row_check(digest, vector) != self.checks[row * CHECK_SIZE : (row + 1) * CHECK_SIZE]:
            return None
        return vector


class EmbeddingCache:
    """Embeddings of one encoder fingerprint, for queries and passages (thread- and process-safe)."""

    def __init__(self, fingerprint: str, root: str | Path | None = None) -> None:
        self.fingerprint = fingerprint
        key = hashlib.sha1(fingerprint.encode("utf-8")).hexdigest()[:20]
        self.dir = Path(root) if root is not None else default_cache_dir()
        self.dir = self.dir / key
        self._lock = threading.RLock()
        self._index: dict[str, dict[bytes, tuple[str, int]]] = {role: {} for role in ROLES}
        self._scanned: dict[str, set[str]] = {role: set() for role in ROLES}
        self._shards: dict[str, _Shard] = {}  # file name -> shard (names are unique across roles)
        self._order: dict[str, list[str]] = {role: [] for role in ROLES}  # shard names, oldest first
        self._bad: set[tuple[str, int]] = set()  # rows that failed their check
        self._writable = True
        self._usable: bool | None = None  # meta.json checked
        self._warned: set[str] = set()

    # ----------------------------------------------------------------- reading

    def __len__(self) -> int:
        with self._lock:
            return sum(len(self._refreshed(role)) for role in ROLES)

    def get(self, role: str, texts: Sequence[str]) -> tuple[np.ndarray | None, list[int]]:
        """Look texts up.

        Returns:
            (vectors, missing): vectors is (n, dim) with the cached rows filled (None when nothing is
            cached), missing the positions of texts not in the cache (or whose row failed its check).
        """
        self._role_dir(role)
        digests = [text_digest(t) for t in texts]
        with self._lock:
            if not self._usable_cache():
                return None, list(range(len(texts)))
            found = self._lookup(role, digests, range(len(digests)), self._refreshed(role))
            rest = [i for i in range(len(digests)) if i not in found]
            if rest and self._refresh(role):  # another writer may have stored them since
                found.update(self._lookup(role, digests, rest, self._index[role]))
        if not found:
            return None, list(range(len(texts)))
        dims = {v.shape[0] for v in found.values()}
        if len(dims) > 1:  # cannot happen within one fingerprint; never mix sizes
            self._warn_once(
                "dims", "embedding cache %s holds vectors of sizes %s; ignoring it", self.dir, dims
            )
            return None, list(range(len(texts)))
        out = np.zeros((len(texts), dims.pop()), dtype=np.float32)  # (n, dim)
        for i, vector in found.items():
            out[i] = vector
        return out, [i for i in range(len(texts)) if i not in found]

    def _lookup(self, role: str, digests: list[bytes], positions, index) -> dict[int, np.ndarray]:
        found: dict[int, np.ndarray] = {}
        for i in positions:
            digest = digests[i]
            entry = index.get(digest)
            while entry is not None:
                vector = self._verified(entry, digest)
                if vector is not None:
                    found[i] = vector
                    break
                self._bad.add(entry)
                entry = self._other_copy(role, digest)  # another writer may have stored it too
                if entry is None:
                    del index[digest]  # a miss: encoded and stored again
                else:
                    index[digest] = entry
        return found

    def _verified(self, entry: tuple[str, int], digest: bytes) -> np.ndarray | None:
        shard = self._shards[entry[0]]
        try:
            vector = shard.verified(entry[1], digest)
        except (OSError, ValueError) as exc:
            self._warn_once(shard.path, "cannot read embedding cache shard %s (%s)", shard.path, exc)
            return None
        if vector is None:
            self._warn_once(shard.path, "embedding cache shard %s has rows failing their check", shard.path)
        return vector

    def _other_copy(self, role: str, digest: bytes) -> tuple[str, int] | None:
        """Another stored row of ``digest`` not yet found bad (rare: only after a failed check)."""
        for name in self._order[role]:
            table = self._shards[name].digests
            start = table.find(digest)
            while start >= 0:
                if start % DIGEST_SIZE == 0 and (name, start // DIGEST_SIZE) not in self._bad:
                    return name, start // DIGEST_SIZE
                start = table.find(digest, start + 1)
        return None

    def _refreshed(self, role: str) -> dict[bytes, tuple[str, int]]:
        if not self._scanned[role]:
            self._refresh(role)
        return self._index[role]

    def _refresh(self, role: str) -> bool:
        """Index shards written since the last scan (by anyone); True if any were added."""
        folder = self._role_dir(role)
        try:
            names = sorted(p.name for p in folder.iterdir() if p.name.endswith(SUFFIX))
        except FileNotFoundError:
            return False
        except OSError as exc:
            self._warn_once(
                folder, "cannot read the embedding cache %s (%s); encoding without it", folder, exc
            )
            return False
        scanned, index, added = self._scanned[role], self._index[role], False
        for name in names:
            if name in scanned:
                continue
            scanned.add(name)
            try:
                shard = _Shard.read(folder / name)
            except (OSError, ValueError) as exc:
                self._warn_once(folder / name, "ignoring embedding cache shard %s (%s)", folder / name, exc)
                continue
            self._shards[name] = shard
            self._order[role].append(name)
            for row in range(shard.rows):
                index.setdefault(shard.digest(row), (name, row))  # the first stored copy wins
            added = True
        return added

    def _usable_cache(self) -> bool:
        """False when meta.json names another fingerprint (a folder that is not this encoder's)."""
        if self._usable is None:
            meta = self.dir / "meta.json"
            try:
                stored = json.loads(meta.read_text(encoding="utf-8")).get("fingerprint")
            except FileNotFoundError:
                return True  # nothing written yet: check again next time
            except (OSError, ValueError, AttributeError) as exc:
                stored = f"unreadable ({exc})"
            self._usable = stored == self.fingerprint
            if not self._usable:
                logger.warning("embedding cache %s belongs to another encoder; encoding without it", self.dir)
        return self._usable

    # ----------------------------------------------------------------- writing

    def put(self, role: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors ((n, dim) float32) of texts as a new shard; texts already cached are skipped.

        A cache that cannot be written (full, read-only, no permission) is skipped from then on, with one
        warning naming the path.
        """
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        folder = self._role_dir(role)
        if not self._writable or not len(texts):
            return
        digests = [text_digest(t) for t in texts]
        with self._lock:
            if not self._usable_cache():
                return
            try:
                self._put_locked(role, folder, digests, np.asarray(vectors))
            except OSError as exc:
                error = exc if isinstance(exc, DiskError) else disk_error(exc.filename or folder, exc)
                self._writable = False
                logger.warning("embedding cache not written, continuing without it: %s", error)

    def _put_locked(self, role: str, folder: Path, digests: list[bytes], vectors: np.ndarray) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "meta.json"
        if not meta.exists():
            atomic_write_bytes(meta, json.dumps({"fingerprint": self.fingerprint}, indent=1).encode())
        with _locked(folder / ".lock"):
            self._refresh(role)
            index, rows, keys, seen = self._index[role], [], [], set()
            for i, digest in enumerate(digests):
                if digest in index or digest in seen:
                    continue
                seen.add(digest)
                keys.append(digest)
                rows.append(i)
            if not rows:
                return
            data = encode_shard(keys, vectors[rows])
            sequence = 1 + max((_sequence(name) for name in self._scanned[role]), default=0)
            name = f"{sequence:08d}-{secrets.token_hex(8)}{SUFFIX}"
            atomic_write_bytes(folder / name, data)
        self._scanned[role].add(name)
        self._shards[name] = _Shard.read(folder / name)
        self._order[role].append(name)
        for row, digest in enumerate(keys):
            index[digest] = (name, row)

    def encode(
        self,
        role: str,
        texts: Sequence[str],
        encode_fn: Callable[[list[str]], np.ndarray],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        chunk_size: int | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Vectors of texts: cached rows read, missing rows encoded with ``encode_fn`` chunk by chunk, each
        chunk stored as soon as it is encoded (an interruption loses the chunk in flight only).

        Args:
            batch_size: the encoder's batch size: the first chunk, and the unit chunks grow by.
            chunk_size: a fixed chunk size instead (texts).
            progress: called with an :class:`EncodeProgress` before encoding and after each chunk.
        """
        if not texts:
            return np.asarray(encode_fn([]), dtype=np.float32)
        cached, missing = self.get(role, texts)
        total, reused = len(texts), len(texts) - len(missing)
        if progress is not None:
            progress(EncodeProgress(role, total, reused, 0))
        if not missing and cached is not None:
            return cached
        order = sorted(missing, key=lambda i: -len(texts[i]))  # like lengths together: less padding
        size = chunk_size or batch_size
        done = 0
        while done < len(order):
            chunk = order[done : done + size]
            start = time.perf_counter()
            fresh = encode_fn([texts[i] for i in chunk])  # (len(chunk), dim)
            elapsed = time.perf_counter() - start
            if cached is not None and cached.shape[1] != fresh.shape[1]:  # never mix sizes: encode all
                self._warn_once(
                    "dim", "embedding cache %s holds vectors of another size; ignoring it", self.dir
                )
                return encode_fn(list(texts))
            self.put(role, [texts[i] for i in chunk], fresh)
            if cached is None:
                cached = np.zeros((len(texts), fresh.shape[1]), dtype=np.float32)  # (n, dim)
            cached[chunk] = fresh
            done += len(chunk)
            if progress is not None:
                progress(EncodeProgress(role, total, reused, done))
            if chunk_size is None and elapsed < CHUNK_SECONDS and size < MAX_CHUNK_BATCHES * batch_size:
                size *= 2
        logger.info("%s embeddings: %d cached, %d encoded", role, reused, len(missing))
        return cached

    # ----------------------------------------------------------------- internals

    def _role_dir(self, role: str) -> Path:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        return self.dir / role

    def _warn_once(self, key: object, message: str, *args: object) -> None:
        if str(key) not in self._warned:
            self._warned.add(str(key))
            logger.warning(message, *args)


def _sequence(name: str) -> int:
    try:
        return int(name.split("-", 1)[0])
    except ValueError:
        return 0


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class CachedEncoder:
    """Wraps an Encoder so that each text is encoded once per fingerprint, across runs.

    Missing texts are encoded in chunks stored as they complete (see the module docstring); ``progress``
    (settable at any time) hears each call's reused count and the texts encoded after each chunk.
    """

    def __init__(
        self,
        encoder,
        cache: EmbeddingCache | None = None,
        root: str | Path | None = None,
        *,
        progress: Progress | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self.encoder = encoder
        self.dim = encoder.dim
        self.fingerprint = encoder.fingerprint
        self.cache = (
            cache if cache is not None else EmbeddingCache(encoder.fingerprint, root)
        )  # an empty cache is falsy
        self.progress = progress
        self.chunk_size = chunk_size
        settings = getattr(encoder, "settings", None)
        self.batch_size = getattr(settings, "batch_size", None) or DEFAULT_BATCH_SIZE

    def _encode(self, role: str, texts: Sequence[str], encode_fn, progress: Progress | None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.cache.encode(
            role,
            texts,
            encode_fn,
            batch_size=self.batch_size,
            chunk_size=self.chunk_size,
            progress=progress or self.progress,
        )  # (n, dim)
        if isinstance(self.dim, int) and out.shape[1] != self.dim:  # a foreign cache: never its vectors
            logger.warning(
                "embedding cache %s gave %d-d vectors for a %d-d model; ignoring it",
                self.cache.dir,
                out.shape[1],
                self.dim,
            )
            return encode_fn(list(texts))
        return out

    def encode_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._encode("query", texts, self.encoder.encode_queries, progress)

    def encode_passages(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._encode("passage", texts, self.encoder.encode_passages, progress)

    def close(self) -> None:
        """Close the wrapped encoder, if it has something to close (worker processes)."""
        close = getattr(self.encoder, "close", None)
        if callable(close):
            close()
