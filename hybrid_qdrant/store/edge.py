"""The embedded store: one qdrant-edge shard per collection in a local directory (the default engine).

qdrant-edge-py runs Qdrant's Rust engine in-process: no server, fast filtered exact search. It has no
collections or aliases, so this module keeps them itself (see ``catalog``). It has no in-memory mode
either: ``:memory:`` is a temporary directory removed on ``close``.

One process may open a shard at a time (the shard's write-ahead log is locked). Inside one process,
stores on the same collection share one open shard, so ``for_collection`` and a second ``EdgeStore``
on the same directory work.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    KeywordIndexParams,
    MatchAny,
    MatchValue,
    Point,
    Query,
    QueryBatchRequest,
    QueryRequest,
    ScrollRequest,
    SearchParams,
    UpdateOperation,
)

from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.store.base import (
    CONTENT_KEY,
    DOC_ID_KEY,
    LANG_KEY,
    CollectionSpec,
    Hit,
    Langs,
    StoreRecord,
    lang_set,
    point_id,
)
from hybrid_qdrant.store.catalog import Catalog
from hybrid_qdrant.store.compat import check_spec, encoder_tag, validate_spec
from hybrid_qdrant.store.naming import check_deletable, next_version, validate_name
from hybrid_qdrant.store.points import check_doc_id, check_matrix, record_doc_id, stored_payload

logger = logging.getLogger(__name__)

MEMORY = ":memory:"
#: Points written between segment flushes (each flush costs ~0.1 s; the WAL covers the rest).
FLUSH_EVERY = 100_000
_DISTANCES = {"cosine": Distance.Cosine, "dot": Distance.Dot, "euclid": Distance.Euclid}


def _edge_version() -> str:
    try:
        return importlib.metadata.version("qdrant-edge-py")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


class _ShardPool:
    """Open shards of this process by directory, reference-counted (the engine allows one open each)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[Path, list[Any]] = {}  # path -> [shard, refcount]

    def acquire(self, path: Path, opener) -> EdgeShard:
        key = path.resolve()
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                entry = self._open[key] = [opener(), 0]
            entry[1] += 1
            return entry[0]

    def release(self, path: Path) -> None:
        key = path.resolve()
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del self._open[key]
                try:
                    entry[0].flush()
                finally:
                    entry[0].close()

    def users(self, path: Path) -> int:
        with self._lock:
            entry = self._open.get(path.resolve())
            return entry[1] if entry else 0


_POOL = _ShardPool()


class EdgeStore:
    """A collection in an embedded qdrant-edge directory (implements ``ManagedStore``).

    Args:
        location: the store directory, or ``:memory:`` for a temporary one removed on ``close``.
        collection: collection or alias name.
        recreate: drop the collection now (it is re-created by ``ensure_collection``).
        upsert_batch: points per engine update.
        query_batch: queries per ``query_batch`` call.
        hnsw_ef: HNSW beam width for approximate searches (``exact=False``) once a shard is optimised.
    """

    engine = "edge"

    def __init__(
        self,
        location: str | Path,
        collection: str,
        *,
        recreate: bool = False,
        upsert_batch: int = 1024,
        query_batch: int = 256,
        hnsw_ef: int | None = None,
    ) -> None:
        if upsert_batch < 1 or query_batch < 1:
            raise ValueError("upsert_batch and query_batch must be positive")
        self.location = str(location)
        self.collection = validate_name(collection)
        self.upsert_batch = upsert_batch
        self.query_batch = query_batch
        self.hnsw_ef = hnsw_ef
        self._cleanup = None
        if self.location == MEMORY:
            root = tempfile.mkdtemp(prefix="hq-qdrant-")
            self._cleanup = weakref.finalize(self, shutil.rmtree, root, True)
        else:
            root = self.location
        self.catalog = Catalog(root)
        self.catalog.ensure_root()
        self._shard: EdgeShard | None = None
        self._name: str | None = None  # the collection the open shard belongs to
        self._doc_map: dict[Any, str] = {}  # point id -> doc id, filled by searches
        self._spec: CollectionSpec | None = None
        self._closed = False
        self._unflushed = 0
        self._attach_lock = threading.RLock()  # ingestion upserts from a worker thread
        if recreate:
            self._drop(self.resolve(self.collection))

    # ----------------------------------------------------------------- collection life cycle

    def ensure_collection(self, spec: CollectionSpec, recreate: bool = False) -> bool:
        """Create the collection for ``spec`` or check an existing one; True if it was created."""
        validate_spec(spec)
        self._check_open()
        with self._attach_lock:
            name = self.resolve(self.collection)
            if recreate:
                self._drop(name)
            if self.catalog.has_collection(name):
                self._attach()
                check_spec(self.collection, self._spec, spec)
                return False
            self._create(name, spec)
            return True

    def exists(self) -> bool:
        """Whether the collection (or its alias target) exists."""
        return self.catalog.has_collection(self.resolve(self.collection))

    def spec(self) -> CollectionSpec | None:
        """The spec of the existing collection, None if it does not exist."""
        name = self.resolve(self.collection)
        if not self.catalog.has_collection(name):
            return None
        return self.catalog.read_spec(name)[0]

    def collections(self) -> list[str]:
        """Collections in this directory."""
        return self.catalog.collections()

    def delete_collection(self, name: str) -> bool:
        """Drop a collection (explicitly, by name); refuses aliases and alias targets."""
        check_deletable(name, self.catalog.aliases())
        return self._drop(name)

    def next_version(self, base: str) -> str:
        """The next free ``{base}_v{n}``."""
        return next_version(base, self.collections())

    def for_collection(self, name: str) -> EdgeStore:
        """A store on another collection of this directory (valid while this store is open)."""
        return EdgeStore(
            self.catalog.root,
            name,
            upsert_batch=self.upsert_batch,
            query_batch=self.query_batch,
            hnsw_ef=self.hnsw_ef,
        )

    # ----------------------------------------------------------------- aliases

    def aliases(self) -> dict[str, str]:
        """alias -> collection."""
        return self.catalog.aliases()

    def resolve(self, name: str) -> str:
        """The collection an alias points to, or ``name``."""
        return self.catalog.aliases().get(name, name)

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` (one atomic write); the previous target is kept."""
        validate_name(alias, "alias")
        validate_name(collection)
        if self.catalog.has_collection(alias):
            raise StoreError(f"cannot create alias '{alias}': a collection has that name")
        if not self.catalog.has_collection(collection):
            raise StoreError(
                f"cannot point alias '{alias}' at '{collection}': no such collection at {self.catalog.root}"
            )
        old = self.catalog.aliases().get(alias)
        self.catalog.update_aliases({alias: collection})
        logger.info("alias %s -> %s (was %s)", alias, collection, old)
        if alias == self.collection and self._name != collection:
            self._detach()  # the next call opens the new target

    def delete_alias(self, alias: str) -> bool:
        """Remove an alias; its collection stays."""
        if alias not in self.catalog.aliases():
            return False
        self.catalog.update_aliases({alias: None})
        if alias == self.collection:
            self._detach()
        return True

    # ----------------------------------------------------------------- data

    def upsert(self, doc_ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Write points (vectors: (n, dim) float32); idempotent.

        Durable against a crash of this process when it returns (the engine's write-ahead log is replayed
        on the next open); segments are flushed every ``FLUSH_EVERY`` points and on ``close``.
        """
        shard = self._attach()
        ids = list(doc_ids)
        rows = check_matrix(vectors, self._spec.dim)  # (n, dim)
        payloads = list(payloads)
        if not len(ids) == len(rows) == len(payloads):
            raise ValueError(f"upsert got {len(ids)} doc ids, {len(rows)} vectors, {len(payloads)} payloads")
        tag = encoder_tag(self._spec.encoder) if self._spec.encoder else None
        for start in range(0, len(ids), self.upsert_batch):
            end = start + self.upsert_batch
            points = [
                Point(
                    id=point_id(check_doc_id(d)), vector=self._vector(row), payload=stored_payload(d, p, tag)
                )
                for d, row, p in zip(
                    ids[start:end], rows[start:end].tolist(), payloads[start:end], strict=True
                )
            ]
            self._engine_call("upsert", shard.update, UpdateOperation.upsert_points(points))
            self._unflushed += len(points)
        if self._unflushed >= FLUSH_EVERY:
            self._engine_call("flush", shard.flush)
            self._unflushed = 0

    def search(
        self, vectors: np.ndarray, limit: int, lang: Langs = None, exact: bool = True
    ) -> list[list[Hit]]:
        """Nearest neighbours per query row, sorted by score descending (ties: doc id)."""
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        shard = self._attach()
        queries = check_matrix(vectors, self._spec.dim, "query vectors")  # (n, dim)
        if len(queries) == 0:
            return []
        limit = min(limit, self.count(lang))  # asking beyond the collection only costs time
        if limit == 0:
            return [[] for _ in range(len(queries))]
        flt = _lang_filter(lang)
        params = SearchParams(exact=True) if exact else SearchParams(hnsw_ef=self.hnsw_ef, exact=False)
        using = self._spec.vector_name or None
        sign = -1.0 if self._spec.distance == "euclid" else 1.0
        out: list[list[Hit]] = []
        for start in range(0, len(queries), self.query_batch):
            requests = [
                QueryRequest(
                    limit=limit,
                    query=Query.Nearest(row, using=using),
                    filter=flt,
                    params=params,
                    with_payload=False,  # doc ids come from the id map: payloads cost ~1 us per hit
                )
                for row in queries[start : start + self.query_batch].tolist()
            ]
            batch = self._engine_call("search", shard.query_batch, QueryBatchRequest(requests))
            batch = [[(p.id, p.score) for p in points] for points in batch]
            doc_of = self._doc_ids_of({pid for points in batch for pid, _ in points})
            for points in batch:
                hits = [Hit(doc_of[pid], sign * score) for pid, score in points]
                hits.sort(key=_hit_order)
                out.append(hits)
        return out

    def _doc_ids_of(self, pids: set[Any]) -> dict[Any, str]:
        """Doc ids of point ids, from a per-collection map filled on demand (one retrieve per miss batch)."""
        known = self._doc_map
        missing = [pid for pid in pids if pid not in known]
        for start in range(0, len(missing), 1000):
            records = self._engine_call(
                "retrieve",
                self._shard.retrieve,
                missing[start : start + 1000],
                with_payload=[DOC_ID_KEY],
                with_vector=False,
            )
            for record in records:
                known[record.id] = record_doc_id(record)
        return known

    def count(self, lang: Langs = None) -> int:
        """Number of points, optionally of one language."""
        shard = self._attach()
        return int(
            self._engine_call("count", shard.count, CountRequest(exact=True, filter=_lang_filter(lang)))
        )

    def iter_records(
        self, lang: Langs = None, with_vectors: bool = True, batch: int = 1000
    ) -> Iterator[StoreRecord]:
        """Scroll every point (optionally of one language) with its full payload."""
        for record in self._scroll(lang, with_vectors, True, batch):
            payload = dict(record.payload or {})
            yield StoreRecord(record_doc_id(record), self._record_vector(record), payload)

    def vectors(self, lang: Langs = None) -> tuple[list[str], np.ndarray]:
        """Doc ids and stored vectors ((n, dim) float32) for exact reference scoring."""
        doc_ids: list[str] = []
        rows: list[list[float]] = []
        name = self._spec_or_attach().vector_name
        for record in self._scroll(lang, True, [DOC_ID_KEY], 2000):
            doc_ids.append(record_doc_id(record))
            rows.append(record.vector[name] if name else record.vector)
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), self._spec.dim)  # (n, dim)
        return doc_ids, matrix

    def doc_ids(self, lang: Langs = None) -> set[str]:
        """All stored doc ids, optionally of one language."""
        return {record_doc_id(r) for r in self._scroll(lang, False, [DOC_ID_KEY], 5000)}

    def existing(self, doc_ids: Iterable[str]) -> dict[str, str | None]:
        """Which of these doc ids are already stored, with their content hashes (None: none stored)."""
        shard = self._attach()
        by_point = {point_id(d): d for d in doc_ids}
        pids = list(by_point)
        found: dict[str, str | None] = {}
        for start in range(0, len(pids), 1000):
            records = self._engine_call(
                "retrieve",
                shard.retrieve,
                pids[start : start + 1000],
                with_payload=[CONTENT_KEY],
                with_vector=False,
            )
            found.update((by_point[str(r.id)], (r.payload or {}).get(CONTENT_KEY)) for r in records)
        return found

    def optimize(self) -> bool:
        """Merge segments and build the HNSW index (minutes when large); True if anything changed."""
        return bool(self._engine_call("optimize", self._attach().optimize))

    # ----------------------------------------------------------------- closing

    def close(self) -> None:
        """Flush and release the shard; remove a ``:memory:`` directory."""
        if self._closed:
            return
        self._closed = True
        self._detach()
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EdgeStore(location={self.location!r}, collection={self.collection!r})"

    # ----------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store for collection '{self.collection}' is closed")

    def _attach(self) -> EdgeShard:
        """The open shard of the store's collection (opened on first use)."""
        with self._attach_lock:
            return self._attach_locked()

    def _attach_locked(self) -> EdgeShard:
        self._check_open()
        name = self.resolve(self.collection)
        if self._shard is not None and self._name == name:
            return self._shard
        self._detach()
        if not self.catalog.has_collection(name):
            raise StoreError(
                f"collection '{self.collection}' does not exist at {self.catalog.root}; ingest it first"
            )
        spec, _ = self.catalog.read_spec(name)
        path = self.catalog.shard_dir(name)
        self._shard = _POOL.acquire(path, lambda: self._load(name, path))
        self._name, self._spec = name, spec
        self._doc_map = {}
        return self._shard

    def _spec_or_attach(self) -> CollectionSpec:
        self._attach()
        return self._spec

    def _detach(self) -> None:
        with self._attach_lock:
            if self._shard is not None:
                self._shard = None
                _POOL.release(self.catalog.shard_dir(self._name))
                self._name = self._spec = None

    def _load(self, name: str, path: Path) -> EdgeShard:
        try:
            return EdgeShard.load(str(path))
        except Exception as exc:  # the engine raises plain Exception
            raise _load_error(name, path, exc) from None

    def _create(self, name: str, spec: CollectionSpec) -> None:
        path = self.catalog.shard_dir(name)
        params = EdgeVectorParams(size=spec.dim, distance=_DISTANCES[spec.distance])
        config = EdgeConfig(vectors={spec.vector_name: params} if spec.vector_name else params)
        path.mkdir(parents=True, exist_ok=True)

        def create() -> EdgeShard:
            try:
                shard = EdgeShard.create(str(path), config)
                shard.update(UpdateOperation.create_field_index(LANG_KEY, KeywordIndexParams(is_tenant=True)))
                return shard
            except Exception as exc:
                raise _load_error(name, path, exc) from None

        self._detach()
        self._shard = _POOL.acquire(path, create)
        self._name, self._spec = name, spec
        self._doc_map = {}
        self.catalog.write_spec(name, spec, engine=f"qdrant-edge-py {_edge_version()}")
        logger.info("created collection %s (dim %d, %s) at %s", name, spec.dim, spec.distance, path.parent)

    def _drop(self, name: str) -> bool:
        """Delete a collection directory after making sure no one has its shard open."""
        self._check_open()
        directory = self.catalog.collection_dir(name)
        if not directory.exists():
            return False
        if self._name == name:
            self._detach()
        path = self.catalog.shard_dir(name)
        if _POOL.users(path):
            raise StoreError(f"collection '{name}' at {directory} is open in another store of this process")
        if path.is_dir() and any(path.iterdir()):
            try:
                EdgeShard.load(str(path)).close()
            except Exception as exc:
                error = _load_error(name, path, exc)
                if "open in another process" in str(error):
                    raise error from None
        shutil.rmtree(directory)
        logger.warning("dropped collection %s at %s", name, directory)
        return True

    def _scroll(self, lang: Langs, with_vectors: bool, with_payload: Any, batch: int) -> Iterator[Any]:
        if batch < 1:
            raise ValueError("batch must be positive")
        shard = self._attach()
        offset = None
        flt = _lang_filter(lang)
        while True:
            request = ScrollRequest(
                offset=offset, limit=batch, filter=flt, with_payload=with_payload, with_vector=with_vectors
            )
            records, offset = self._engine_call("scroll", shard.scroll, request)
            yield from records
            if offset is None or not records:
                return

    def _record_vector(self, record: Any) -> np.ndarray:
        if record.vector is None:
            return np.empty(0, dtype=np.float32)
        name = self._spec.vector_name
        return np.asarray(record.vector[name] if name else record.vector, dtype=np.float32)

    def _vector(self, row: list[float]) -> Any:
        name = self._spec.vector_name
        return {name: row} if name else row

    def _engine_call(self, what: str, fn, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreError(f"{what} on collection '{self._name}' failed: {message}") from None


def _load_error(name: str, path: Path, exc: Exception) -> StoreError:
    text = str(exc)
    if "WouldBlock" in text or "already locked" in text.lower():
        return StoreError(f"collection '{name}' at {path.parent} is open in another process")
    first = text.splitlines()[0] if text else type(exc).__name__
    return StoreError(
        f"collection '{name}' at {path.parent} is corrupt or unreadable ({first}); use --recreate"
    )


def _hit_order(hit: Hit) -> tuple[float, str]:
    return (-hit.score, hit.doc_id)


def _lang_filter(lang: Langs) -> Filter | None:
    langs = lang_set(lang)
    if langs is None:
        return None
    match = MatchValue(next(iter(langs))) if len(langs) == 1 else MatchAny(sorted(langs))
    return Filter(must=[FieldCondition(key=LANG_KEY, match=match)])
