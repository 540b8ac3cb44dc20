"""The embedded store: one qdrant-edge shard per collection in a local directory (the default engine).

qdrant-edge-py runs Qdrant's Rust engine in-process: no server, fast filtered exact search. It has no
collections or aliases, so this module keeps them itself (see ``catalog``). It has no in-memory mode
either: ``:memory:`` is a temporary directory removed on ``close``.

One process may open a shard at a time (the shard's write-ahead log is locked). Inside one process,
stores on the same collection share one open shard, so ``for_collection`` and a second ``EdgeStore``
on the same directory work.

Disks: the engine memory-maps files it creates sparse and fills later, so a write that lands on a full
disk kills the process with SIGBUS. Every write path therefore checks the free space first (see the
measured sizes below) and fails with one ``StoreError`` naming the path; a new collection is built
under a temporary name and renamed into place whole; opening a shard writes to it (the engine rewrites
its config and replays its log), so listing reads the catalog metadata only and never opens a shard.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import faulthandler
import importlib.metadata
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_edge import (
    BinaryQuantizationConfig,
    CompressionRatio,
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    FacetRequest,
    FieldCondition,
    Filter,
    HnswIndexConfig,
    KeywordIndexParams,
    MatchAny,
    MatchValue,
    Point,
    ProductQuantizationConfig,
    QuantizationSearchParams,
    Query,
    QueryBatchRequest,
    QueryRequest,
    ScalarQuantizationConfig,
    ScalarType,
    ScrollRequest,
    SearchParams,
    UpdateOperation,
)

from hybrid_qdrant.disk_space import (
    HOLES_FILLED_ON_READ,
    HOLES_KEPT,
    file_holes,
    free_bytes,
    human_bytes,
    read_only_filesystem,
)
from hybrid_qdrant.errors import HQError, StoreError
from hybrid_qdrant.store.base import (
    DOC_ID_KEY,
    LANG_KEY,
    CollectionDetails,
    CollectionInfo,
    CollectionSpec,
    Hit,
    IndexInfo,
    Langs,
    lang_set,
    point_id,
)
from hybrid_qdrant.store.catalog import (
    SHARD_DIR,
    Catalog,
    move_aside,
    record_points,
    recorded_points,
)
from hybrid_qdrant.store.collection_options import (
    DEFAULT_PRODUCT_COMPRESSION,
    QDRANT_FULL_SCAN_THRESHOLD_KB,
    QDRANT_HNSW_EF_CONSTRUCT,
    QDRANT_HNSW_M,
    CollectionOptions,
)
from hybrid_qdrant.store.compat import check_spec, encoder_tag, validate_spec
from hybrid_qdrant.store.locks import Busy, held_elsewhere, path_lock
from hybrid_qdrant.store.naming import validate_name
from hybrid_qdrant.store.points import (
    check_doc_id,
    check_matrix,
    record_doc_id,
    sorted_hits,
    stored_payload,
)
from hybrid_qdrant.store.qdrant import QdrantStore, check_search_tuning, search_ef

logger = logging.getLogger(__name__)

MEMORY = ":memory:"
#: Points written between segment flushes (each flush costs ~0.1 s; the WAL covers the rest).
FLUSH_EVERY = 100_000

# Disk space, measured with qdrant-edge-py 0.9.0 on ext4 and tmpfs (du --apparent-size vs du):
#: A new collection's files add up to 143.7 MB whatever the dim (two 32 MiB WAL segments, a 32 MiB
#: vector chunk, a 32 MiB payload page, a 4 MiB keyword-index page, 1 MiB trackers and flags). Where
#: files keep their holes (ext4: 120 kB allocated) they are filled later through memory maps; where a
#: memory map's read fills them (tmpfs: 8.5 MB after creating, and every open of a 500-point collection
#: grew it from 8.8 MB to 42.2 MB) or files have none, count all of it.
CREATE_BYTES = 144_000_000
#: What creating needs where files keep their holes: the 120 kB allocated, with room to spare.
CREATE_SPARSE_BYTES = 8 * 2**20
#: An upsert allocated 2.0-2.5 bytes per byte of points (vector + payload + ids, WAL and segment),
#: measured per 1000-point batch at dim 32, 384 and 1024; the estimate takes 3, ...
UPSERT_FACTOR = 3
#: ... plus one 32 MiB growth step of each preallocated file (WAL segment, vector chunk, payload page),
#: allocated at once unless files keep their holes, ...
GROWTH_BYTES = 3 * 32 * 2**20
#: ... and page by page where they do (a page that finds the disk full is SIGBUS: hence the checks).
SPARSE_GROWTH_BYTES = 8 * 2**20
#: Opening rewrites the shard's config and flags; after an unclean close it also replays the write-ahead
#: log into the segments (up to the log's allocated size on top); where a read fills holes, loading
#: reads in the vectors, flags and payload index (not the payload pages): their holes are filled.
OPEN_BYTES = 2**20
#: Per-point overhead in the upsert estimate: point id, version, ids in the payload index.
POINT_OVERHEAD = 64
#: How long an opener waits for another process that is creating or dropping the same collection.
LOCK_WAIT_S = 30.0
_DISTANCES = {"cosine": Distance.Cosine, "dot": Distance.Dot, "euclid": Distance.Euclid}
#: Key of the index options (``CollectionOptions.index``) in a collection's metadata.
INDEX_KEY = "index"
#: Asking for more hits than the pool holds only costs time beyond this limit: below it, a search does
#: not count the pool first (a filtered count took 100-300 us, half a filtered top-10 query).
COUNT_BEFORE_LIMIT = 1000


def _edge_version() -> str:
    try:
        return importlib.metadata.version("qdrant-edge-py")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


@dataclass
class _Open:
    shard: EdgeShard
    users: int = 0
    written: bool = False  # points were written since it was opened


class _ShardPool:
    """Open shards of this process by directory, reference-counted (the engine allows one open each).

    When the last user releases a shard, its point count is recorded in the collection's metadata (what
    ``collections_info`` lists without opening it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[Path, _Open] = {}

    def acquire(self, path: Path, opener) -> EdgeShard:
        key = path.resolve()
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                entry = self._open[key] = _Open(opener())
            entry.users += 1
            return entry.shard

    def release(self, path: Path) -> None:
        key = path.resolve()
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                return
            entry.users -= 1
            if entry.users > 0:
                return
            del self._open[key]
            try:
                points = int(entry.shard.count(CountRequest(exact=True)))
            except Exception:  # the engine raises plain Exception; the count stays unknown
                points = None
            try:
                entry.shard.flush()
            finally:
                entry.shard.close()
        if points is not None:
            try:
                record_points(path.parent, points)
            except OSError as exc:  # a DiskError: the data is safe, only the listing's count is stale
                logger.warning("could not record the point count of %s: %s", path.parent, exc)

    def mark_written(self, path: Path) -> bool:
        """Note that points are being written; True the first time since the shard was opened."""
        with self._lock:
            entry = self._open.get(path.resolve())
            if entry is None or entry.written:
                return False
            entry.written = True
            return True

    def shard(self, path: Path) -> EdgeShard | None:
        with self._lock:
            entry = self._open.get(path.resolve())
            return entry.shard if entry else None

    def users(self, path: Path) -> int:
        with self._lock:
            entry = self._open.get(path.resolve())
            return entry.users if entry else 0


_POOL = _ShardPool()


class EdgeStore(QdrantStore):
    """A collection in an embedded qdrant-edge directory (implements ``ManagedStore``).

    Args:
        location: the store directory, or ``:memory:`` for a temporary one removed on ``close``.
        collection: collection or alias name.
        recreate: drop the collection now (it is re-created by ``ensure_collection``).
        upsert_batch: points per engine update.
        query_batch: queries per ``query_batch`` call.
        hnsw_ef: HNSW beam width for approximate searches (``exact=False``) once a shard is optimised;
            None: ``search_ef``'s rule.
        rescore / oversampling: approximate searches of a quantized collection: rescore the candidates
            with the original vectors (None: the engine decides; it rescores), and fetch
            ``oversampling`` x limit candidates to rescore (None: 1).
        create: how a collection this store creates is indexed (quantization, HNSW; the other
            ``CollectionOptions`` are for servers and ignored). The index is built by ``optimize``.
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
        rescore: bool | None = None,
        oversampling: float | None = None,
        create: CollectionOptions | None = None,
    ) -> None:
        if upsert_batch < 1 or query_batch < 1:
            raise ValueError("upsert_batch and query_batch must be positive")
        check_search_tuning(hnsw_ef, rescore, oversampling)
        self.location = str(location)
        self.collection = validate_name(collection)
        self.upsert_batch = upsert_batch
        self.query_batch = query_batch
        self.hnsw_ef = hnsw_ef
        self.rescore = rescore
        self.oversampling = oversampling
        self.create_options = (create or CollectionOptions()).index()
        self._cleanup = None
        if self.location == MEMORY:
            root = tempfile.mkdtemp(prefix="hq-qdrant-")
            self._cleanup = weakref.finalize(self, shutil.rmtree, root, True)
        else:
            root = self.location
        self.catalog = Catalog(root)
        self.catalog.check_root()  # the folder is created by the first write, not by opening
        _report_crashes()
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
            if self.catalog.has_collection(name) or not self._create(name, spec):
                self._attach()
                check_spec(self.collection, self._spec, spec)
                if spec.source and not self._spec.source:  # built before sources were recorded
                    self.catalog.record_source(name, spec.source)
                    self._spec = replace(self._spec, source=spec.source)
                return False
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

    def collections_info(self) -> list[CollectionInfo]:
        """Every collection with its point count, dim and aliases, read from the metadata: no shard is
        opened (opening writes), so listing changes nothing and works while other processes hold them.

        The count is the one recorded when the last writer closed the collection (None while a process
        writes to it, or after one was killed); a collection open in this process is counted live.
        """
        aliases = self.catalog.aliases()
        out: list[CollectionInfo] = []
        for name in self.catalog.collections():
            names = tuple(sorted(a for a, target in aliases.items() if target == name))
            directory, path = self.catalog.collection_dir(name), self.catalog.shard_dir(name)
            try:
                spec, meta = self.catalog.read_spec(name)
            except StoreError as exc:
                note = str(exc).replace(f"collection '{name}' at {directory} ", "", 1)
                out.append(CollectionInfo(name, None, None, names, note))
                continue
            shard = _POOL.shard(path)
            if shard is not None:
                points = int(self._engine_call("count", shard.count, CountRequest(exact=True)))
                note = ""
            else:
                points = recorded_points(meta)
                note = "open in another process" if held_elsewhere(path / "wal") else ""
                if points is None and not note:
                    note = "count unknown until the collection is next opened"
            out.append(CollectionInfo(name, points, spec.dim, names, note))
        return out

    def details(self) -> CollectionDetails:
        """The collection in detail (see ``QdrantStore.details``). It is opened (which writes to it)
        unless another process holds it: then it is described from its metadata, without per-language
        counts or a sample payload."""
        name = self.resolve(self.collection)
        path = self.catalog.shard_dir(name)
        if self.catalog.has_collection(name) and _POOL.shard(path) is None and held_elsewhere(path / "wal"):
            spec, meta = self.catalog.read_spec(name)
            note = "open in another process: per-language counts and a sample payload need it closed"
            index = _edge_index_config(path, meta)
            aliases = self._aliases_of(name)
            return CollectionDetails(name, spec, recorded_points(meta), None, index, aliases, None, note)
        return super().details()

    def for_collection(self, name: str) -> EdgeStore:
        """A store on another collection of this directory (valid while this store is open)."""
        return EdgeStore(
            self.catalog.root,
            name,
            upsert_batch=self.upsert_batch,
            query_batch=self.query_batch,
            hnsw_ef=self.hnsw_ef,
            rescore=self.rescore,
            oversampling=self.oversampling,
            create=self.create_options,
        )

    # ----------------------------------------------------------------- aliases

    def aliases(self) -> dict[str, str]:
        """alias -> collection."""
        return self.catalog.aliases()

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
        if not ids:
            return
        directory = self.catalog.collection_dir(self._name)
        growth = SPARSE_GROWTH_BYTES if file_holes(directory) == HOLES_KEPT else GROWTH_BYTES
        needed = UPSERT_FACTOR * _points_bytes(rows, payloads) + growth
        _require_space(directory, needed, f"writing {len(ids)} points to collection '{self._name}'")
        if _POOL.mark_written(self.catalog.shard_dir(self._name)):
            record_points(directory, None)  # unknown until this writer closes it (a crash leaves it so)
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
        self,
        vectors: np.ndarray,
        limit: int,
        lang: Langs = None,
        exact: bool = True,
        with_payload: bool = False,
    ) -> list[list[Hit]]:
        """Nearest neighbours per query row, sorted by score descending (ties: doc id); with their
        payloads when ``with_payload``."""
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        shard = self._attach()
        queries = check_matrix(vectors, self._spec.dim, "query vectors")  # (n, dim)
        if len(queries) == 0:
            return []
        if limit > COUNT_BEFORE_LIMIT:
            limit = min(limit, self.count(lang))  # asking far beyond the pool costs time
            if limit == 0:
                return [[] for _ in range(len(queries))]
        flt = _lang_filter(lang)
        if exact:
            params = SearchParams(exact=True)
        else:
            quantization = None
            if self.rescore is not None or self.oversampling is not None:
                quantization = QuantizationSearchParams(rescore=self.rescore, oversampling=self.oversampling)
            params = SearchParams(
                hnsw_ef=search_ef(self.hnsw_ef, limit), exact=False, quantization=quantization
            )
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
                    with_payload=with_payload,  # else doc ids come from the id map: ~1 us per hit saved
                )
                for row in queries[start : start + self.query_batch].tolist()
            ]
            batch = self._engine_call("search", shard.query_batch, QueryBatchRequest(requests))
            if with_payload:
                out.extend(sorted_hits(points, sign < 0, with_payload=True) for points in batch)
                continue
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

    def optimize(self) -> bool:
        """Merge segments and build the HNSW index and quantized vectors (minutes when large); True if
        anything changed."""
        return bool(self._engine_call("optimize", self._attach().optimize))

    def index_info(self) -> IndexInfo:
        """Points, HNSW-indexed vectors and segments as the engine reports them, and the index options
        the collection was created with (recorded in its metadata; none recorded: the engine's
        defaults)."""
        shard = self._attach()
        info = self._engine_call("info", shard.info)
        _, meta = self.catalog.read_spec(self._name)
        recorded = meta.get(INDEX_KEY) or {}
        options = CollectionOptions(**{k: v for k, v in recorded.items() if k in INDEX_FIELDS})
        return IndexInfo(
            int(info.points_count), int(info.indexed_vectors_count), int(info.segments_count), options
        )

    def storage_bytes(self) -> dict[str, int]:
        """Bytes the collection's files take on the disk (allocated, not their sparse sizes), by part:
        ``vectors`` (the originals), ``quantized``, ``graph`` (HNSW links), ``payload`` (payloads and
        their indexes), ``wal`` and ``other`` (id trackers, configs)."""
        self._attach()
        shard = self.catalog.shard_dir(self._name)
        parts = dict.fromkeys(("vectors", "quantized", "graph", "payload", "wal", "other"), 0)
        for parent, _, files in os.walk(shard):
            rel = Path(parent).relative_to(shard).parts
            for name in files:
                with contextlib.suppress(OSError):
                    st = os.stat(os.path.join(parent, name))
                    parts[_storage_part(rel, name)] += getattr(st, "st_blocks", st.st_size // 512) * 512
        return parts

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
            if held_elsewhere(self.catalog.name_lock(name)):
                raise StoreError(
                    f"collection '{self.collection}' at {self.catalog.root} is being created by another "
                    "process; try again when it is done"
                )
            raise StoreError(
                f"collection '{self.collection}' does not exist at {self.catalog.root}; ingest it first"
            )
        spec, meta = self.catalog.read_spec(name)
        path = self.catalog.shard_dir(name)
        self._shard = _POOL.acquire(path, lambda: self._load(name, path, meta))
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

    def _load(self, name: str, path: Path, meta: dict[str, Any]) -> EdgeShard:
        """Open an existing shard (which writes to it: see the module docstring)."""
        directory = path.parent
        _require_writable(directory, f"open collection '{name}'")
        needed = OPEN_BYTES
        if recorded_points(meta) is None:  # not closed cleanly (or by an old version): the log may replay
            needed += _allocated_bytes(path / "wal")
        if file_holes(directory) == HOLES_FILLED_ON_READ:
            needed += _hole_bytes(path / "segments", skip="payload_storage")
        _require_space(directory, needed, f"opening collection '{name}'")
        try:
            with path_lock(self.catalog.name_lock(name), exclusive=False, wait=LOCK_WAIT_S, create=True):
                if not path.is_dir():
                    raise FileNotFoundError(path)
                return _open_shard(name, path)
        except Busy:
            raise StoreError(
                f"collection '{name}' at {directory} is being created or dropped by another process; "
                "try again when it is done"
            ) from None
        except FileNotFoundError:
            raise StoreError(f"collection '{name}' at {directory} was dropped by another process") from None

    def _create(self, name: str, spec: CollectionSpec) -> bool:
        """Build a collection under a temporary name and rename it into place, whole.

        Holds the name's lock throughout, until the new collection is open; returns False when another
        process created it meanwhile (then it is left as it is).
        """
        root = self.catalog.root
        self.catalog.ensure_root()
        _require_writable(root, f"create collection '{name}'")
        needed = CREATE_SPARSE_BYTES if file_holes(root) == HOLES_KEPT else CREATE_BYTES
        _require_space(root, needed, f"creating collection '{name}'")
        params = EdgeVectorParams(size=spec.dim, distance=_DISTANCES[spec.distance])
        config = EdgeConfig(
            vectors={spec.vector_name: params} if spec.vector_name else params,
            **_index_config(self.create_options),
        )
        target = self.catalog.collection_dir(name)
        self._detach()
        try:
            with path_lock(self.catalog.name_lock(name), wait=LOCK_WAIT_S, create=True):
                if self.catalog.has_collection(name):
                    logger.info("collection %s was created by another process meanwhile", name)
                    return False
                for left in self.catalog.creations(name):  # killed creators' (we hold the lock)
                    shutil.rmtree(left, ignore_errors=True)
                    logger.info("removed %s, left by an interrupted creation of %s", left, name)
                building = self.catalog.creation_dir(name, secrets.token_hex(4))
                try:
                    building.mkdir()
                    shard = EdgeShard.create(str(building / SHARD_DIR), config)
                    try:
                        shard.update(
                            UpdateOperation.create_field_index(LANG_KEY, KeywordIndexParams(is_tenant=True))
                        )
                        shard.flush()
                    finally:
                        shard.close()
                    index = self.create_options.set_options()
                    self.catalog.write_spec(
                        name,
                        spec,
                        directory=building,
                        engine=f"qdrant-edge-py {_edge_version()}",
                        **({INDEX_KEY: index} if index else {}),
                    )
                    os.rename(building, target)
                except BaseException as exc:
                    shutil.rmtree(building, ignore_errors=True)
                    if isinstance(exc, HQError) or not isinstance(exc, Exception):
                        raise
                    if isinstance(exc, OSError):
                        raise _os_store_error(f"cannot create collection '{name}'", root, exc) from None
                    raise _engine_error(name, target, exc, "create") from None
                path = self.catalog.shard_dir(name)
                self._shard = _POOL.acquire(path, lambda: _open_shard(name, path))
                self._name, self._spec = name, spec
                self._doc_map = {}
        except Busy:
            raise StoreError(
                f"collection '{name}' at {root} is being created or dropped by another process; "
                "try again when it is done"
            ) from None
        except OSError as exc:  # the lock file (a DiskError from the metadata passes as it is)
            if isinstance(exc, HQError):
                raise
            raise _os_store_error(f"cannot create collection '{name}'", root, exc) from None
        logger.info("created collection %s (dim %d, %s) at %s", name, spec.dim, spec.distance, root)
        return True

    def _drop(self, name: str) -> bool:
        """Delete a collection directory, holding its locks so that no one opens it meanwhile."""
        self._check_open()
        directory = self.catalog.collection_dir(name)
        if not directory.exists():
            return False
        if self._name == name:
            self._detach()
        path = self.catalog.shard_dir(name)
        if _POOL.users(path):
            raise StoreError(f"collection '{name}' at {directory} is open in another store of this process")
        wal = path / "wal"
        try:
            with (
                path_lock(self.catalog.name_lock(name), create=True),
                path_lock(wal) if wal.is_dir() else contextlib.nullcontext(),
            ):
                shutil.rmtree(directory)
        except Busy:
            raise StoreError(f"collection '{name}' at {directory} is open in another process") from None
        except OSError as exc:
            raise _os_store_error(f"cannot drop collection '{name}'", directory, exc) from None
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

    def _retrieve(self, point_ids: Sequence[str], payload_keys: list[str]) -> list[Any]:
        shard = self._attach()
        return self._engine_call(
            "retrieve", shard.retrieve, list(point_ids), with_payload=payload_keys, with_vector=False
        )

    def _spec_now(self) -> CollectionSpec:
        return self._spec_or_attach()

    def _index_details(self, name: str) -> dict[str, Any]:
        _, meta = self.catalog.read_spec(name)
        index = _edge_index_config(self.catalog.shard_dir(name), meta)
        info = self._engine_call("info", self._attach().info)
        index.update(
            segments=int(info.segments_count),
            indexed_vectors=int(info.indexed_vectors_count),
            payload_indexes=sorted(info.payload_schema),
        )
        return index

    def _facet_counts(self, key: str) -> dict[str, int]:
        request = FacetRequest(key=key, limit=100_000, exact=True)
        hits = self._engine_call("facet", self._attach().facet, request)
        return {str(h.value): int(h.count) for h in hits}

    def _location(self) -> str:
        return str(self.catalog.root)

    def labels(self, name: str) -> dict[str, str]:
        """Labels recorded in the collection's metadata file."""
        return self.catalog.labels(name)

    def set_labels(self, name: str, changes: dict[str, str | None]) -> None:
        """Record labels in the collection's metadata file (atomically)."""
        self.catalog.update_labels(name, changes)

    def _switch_alias(self, alias: str, collection: str, old: str | None) -> None:
        self.catalog.update_aliases({alias: collection})

    def _remove_alias(self, alias: str) -> None:
        self.catalog.update_aliases({alias: None})

    def _alias_changed(self, alias: str) -> None:
        if alias == self.collection:
            self._detach()  # the next call opens the new target

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
            directory = self.catalog.collection_dir(self._name) if self._name else self.catalog.root
            raise _engine_error(self._name, directory, exc, what) from None


def _report_crashes() -> None:
    """Let a fatal signal (SIGBUS from a memory-mapped write) print Python's report, not die silently."""
    if not faulthandler.is_enabled():
        with contextlib.suppress(Exception):  # no usable stderr (some embedding hosts)
            faulthandler.enable()


def _open_shard(name: str, path: Path) -> EdgeShard:
    """``EdgeShard.load``, retrying briefly while its lock is held (a lister probes it for microseconds)."""
    for attempt in range(4):
        try:
            return EdgeShard.load(str(path))
        except Exception as exc:  # the engine raises plain Exception
            error = _engine_error(name, path.parent, exc, "open")
            if "open in another process" not in str(error) or attempt == 3:
                raise error from None
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _engine_error(name: str | None, directory: Path, exc: Exception, action: str) -> StoreError:
    """Say what is actually wrong: locked, read-only, no permission, disk full, or (only then) corrupt."""
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    if "WouldBlock" in text or "already locked" in text.lower():
        return StoreError(f"collection '{name}' at {directory} is open in another process")
    codes = [int(c) for c in _OS_ERROR.findall(text)]
    code = codes[-1] if codes else None
    if code in (
        errno_codes.EROFS,
        errno_codes.EACCES,
        errno_codes.EPERM,
        errno_codes.ENOSPC,
        errno_codes.EDQUOT,
    ):
        return _os_store_error(
            f"cannot {action} collection '{name}'", directory, OSError(code, os.strerror(code))
        )
    if action in ("open", "create"):
        return StoreError(
            f"collection '{name}' at {directory} cannot be loaded: its files look corrupt ({first}); "
            f"{move_aside(directory)}"
        )
    return StoreError(f"{action} on collection '{name}' at {directory} failed: {first}")


def _os_store_error(what: str, path: Path, exc: OSError) -> StoreError:
    """One line for a filesystem failure of the store: what failed, where, and what to do."""
    code = exc.errno
    reading = what.startswith("cannot open")
    hint = _WRITES_TO_READ if reading else "use a writable --location"
    if code == errno_codes.EROFS:
        why = f"{path} is on a read-only filesystem ({hint})"
    elif code in (errno_codes.EACCES, errno_codes.EPERM):
        why = f"permission denied: no write access to {path} ({hint})"
    elif code in (errno_codes.ENOSPC, errno_codes.EDQUOT):
        free = free_bytes(path)
        why = f"the disk of {path} is full" + (f" ({human_bytes(free)} free)" if free is not None else "")
    else:
        why = f"{exc.strerror or exc} ({path})"
    return StoreError(f"{what}: {why}")


_WRITES_TO_READ = (
    "the embedded engine writes even to read: copy the folder to a writable disk and pass --location"
)


def _require_writable(directory: Path, what: str) -> None:
    """StoreError unless ``directory`` can be written (the engine writes even when only reading)."""
    if read_only_filesystem(directory):
        raise _os_store_error(f"cannot {what}", directory, OSError(errno_codes.EROFS, "read-only"))
    if directory.exists() and not os.access(directory, os.W_OK | os.X_OK):
        raise _os_store_error(f"cannot {what}", directory, OSError(errno_codes.EACCES, "permission denied"))


def _require_space(path: Path, needed: int, what: str) -> None:
    """StoreError naming the path and the free/needed bytes when the disk cannot take ``needed`` more."""
    free = free_bytes(path)
    if free is not None and free < needed:
        have, want = human_bytes(free), human_bytes(needed)
        if have == want:
            have, want = f"{free:,} bytes", f"{needed:,} bytes"
        raise StoreError(
            f"not enough free space for {what}: {have} free on the disk of {path}, {want} needed; "
            "free some space or use another --location"
        )


def _points_bytes(rows: np.ndarray, payloads: Sequence[dict[str, Any]]) -> int:
    """Bytes of points as written (vectors, payloads from a sample, ids)."""
    sample = payloads[:: max(1, len(payloads) // 32)][:32]
    per_payload = sum(len(json.dumps(p, default=str)) for p in sample) / max(1, len(sample))
    return int(rows.nbytes + len(payloads) * (per_payload + POINT_OVERHEAD))


def _hole_bytes(folder: Path, skip: str) -> int:
    """Bytes of the holes of the files under ``folder`` (size beyond allocation), ``skip`` folders aside."""
    total = 0
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != skip]
        for name in files:
            with contextlib.suppress(OSError):
                st = os.stat(os.path.join(parent, name))
                total += max(0, st.st_size - getattr(st, "st_blocks", st.st_size // 512) * 512)
    return total


def _allocated_bytes(folder: Path) -> int:
    """Bytes allocated on the disk by the files of ``folder`` (not their sparse sizes)."""
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                total += getattr(st, "st_blocks", st.st_size // 512 + 1) * 512
    return total


def _edge_index_config(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """How an embedded collection is indexed and stored, from its files (nothing is opened)."""
    try:
        config = json.loads((path / "edge_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    return {
        "engine": meta.get("engine", "qdrant-edge-py"),
        "hnsw": config.get("hnsw_config") or "engine default (built by optimize; exact search until then)",
        "quantization": config.get("quantization_config"),
        "on_disk_payload": config.get("on_disk_payload"),
        "vectors": config.get("vectors"),
    }


INDEX_FIELDS = frozenset(CollectionOptions().index().__dataclass_fields__)


def _index_config(options: CollectionOptions) -> dict[str, Any]:
    """``EdgeConfig`` keyword arguments for the index options (HNSW, quantization) that are set."""
    out: dict[str, Any] = {}
    if any(
        v is not None for v in (options.hnsw_m, options.hnsw_ef_construct, options.hnsw_full_scan_threshold)
    ):
        out["hnsw_config"] = HnswIndexConfig(
            m=options.hnsw_m if options.hnsw_m is not None else QDRANT_HNSW_M,
            ef_construct=options.hnsw_ef_construct or QDRANT_HNSW_EF_CONSTRUCT,
            full_scan_threshold=options.hnsw_full_scan_threshold or QDRANT_FULL_SCAN_THRESHOLD_KB,
        )
    if options.quantization == "scalar":
        out["quantization_config"] = ScalarQuantizationConfig(
            type=ScalarType.Int8, quantile=0.99, always_ram=True
        )
    elif options.quantization == "binary":
        out["quantization_config"] = BinaryQuantizationConfig(always_ram=True)
    elif options.quantization == "product":
        ratio = options.product_compression or DEFAULT_PRODUCT_COMPRESSION
        out["quantization_config"] = ProductQuantizationConfig(
            compression=getattr(CompressionRatio, f"X{ratio}"), always_ram=True
        )
    if options.indexing_threshold is not None:
        out["optimizers"] = EdgeOptimizersConfig(indexing_threshold=options.indexing_threshold)
    return out


def _storage_part(rel: tuple[str, ...], name: str) -> str:
    """Which part of a collection a file of the shard is (see ``EdgeStore.storage_bytes``)."""
    if rel[:1] == ("wal",):
        return "wal"
    inner = rel[2:] if rel[:1] == ("segments",) else ()
    if inner[:1] == ("vector_index",):
        return "graph"
    if inner[:1] == ("vector_storage",):
        quantized = name.startswith("quantized") or any(d.startswith("quantized") for d in inner[1:2])
        return "quantized" if quantized else "vectors"
    if inner[:1] in (("payload_storage",), ("payload_index",)):
        return "payload"
    return "other"


def _hit_order(hit: Hit) -> tuple[float, str]:
    return (-hit.score, hit.doc_id)


def _lang_filter(lang: Langs) -> Filter | None:
    langs = lang_set(lang)
    if langs is None:
        return None
    match = MatchValue(next(iter(langs))) if len(langs) == 1 else MatchAny(sorted(langs))
    return Filter(must=[FieldCondition(key=LANG_KEY, match=match)])
