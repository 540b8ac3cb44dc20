"""A collection on a Qdrant server through qdrant-client: the only module that imports ``qdrant_client``.

Engines:
    ``server``: a Qdrant server or cluster by URL (http/https, optional gRPC, API key).
    ``client-local``: qdrant-client's local mode (``path`` or ``:memory:``). Slow on filtered search, but
    it runs this module's code path (collection checks, aliases, idempotent upserts) without Docker.

Encoder fingerprint: kept in the collection's metadata (``hq_encoder``; Qdrant >= 1.16 and local mode),
with the encoder's source (``hq_encoder_source``: how to load it again) when the collection is created.
On older servers it is read from the ``ENCODER_KEY`` payload field of a sample point, where ingestion
writes the fingerprint's ``encoder_tag`` (and ``upsert`` adds it when a payload lacks it); they record
no source.

The API key never appears in a message, repr or log line: it is checked before use (printable ASCII,
surrounding whitespace stripped), held as a ``Secret``, every client exception is translated into a
one-line ``StoreError`` scrubbed of the key in every form (raw, escaped, URL-encoded, base64; original
suppressed), text the server sends back (its version, its error messages) is scrubbed the same way,
and retries log only the kind of failure (HTTP status, gRPC code or exception type). A key is not
sent over plain http to another machine unless ``allow_insecure_key`` says so.

Time limits (server engine): ``timeout`` bounds each attempt of a call in total (connect, send, the
whole answer), not each socket read, and every call is retried on transient failures within a budget
of ``(retries + 1) * timeout`` seconds, waits included: each call, retries included, ends within
``(retries + 1) * timeout`` (4 x timeout by default). With gRPC the per-attempt limit is gRPC's own
deadline, ``timeout`` rounded up to whole seconds, and the bound is in those whole seconds. DNS
resolution is left to the system resolver's own limits. Reads, upserts (fixed ids), payload indexes are
idempotent and retried as they are; creating or deleting a collection and changing aliases are retried
only after checking that the earlier attempt did not already take effect.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import math
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.store.base import (
    DOC_ID_KEY,
    ENCODER_KEY,
    LANG_KEY,
    CollectionSpec,
    Hit,
    IndexInfo,
    Langs,
    lang_set,
    point_id,
)
from hybrid_qdrant.store.collection_options import (
    CREATE_OPTIONS,
    DEFAULT_PRODUCT_COMPRESSION,
    QUANTIZATIONS,
    CollectionOptions,
)
from hybrid_qdrant.store.compat import check_spec, encoder_tag, source_text, validate_spec
from hybrid_qdrant.store.connection import (
    API_KEY_ENV,
    Secret,
    check_api_key,
    check_key_transport,
    check_timeout,
    is_loopback,
    one_line,
    redact_url,
    scrub,
    validate_url,
)
from hybrid_qdrant.store.deadline import deadline, deadline_transport
from hybrid_qdrant.store.naming import validate_name
from hybrid_qdrant.store.points import check_doc_id, check_matrix, sorted_hits, stored_payload
from hybrid_qdrant.store.qdrant import QdrantStore, check_search_tuning, search_ef
from hybrid_qdrant.store.retry import call_with_retries
from hybrid_qdrant.store.server_errors import (
    failure_kind,
    is_transient,
    is_transient_status_or_timeout,
    store_error,
)

logger = logging.getLogger(__name__)

MEMORY = ":memory:"
#: Collection metadata keys.
META_ENCODER = "hq_encoder"
META_LABELS = "hq_labels"
META_CREATED = "hq_created"
META_SOURCE = "hq_encoder_source"
#: Oldest server with the Query API and tenant keyword indexes.
MIN_SERVER = (1, 11)
#: First server version with collection metadata.
METADATA_SERVER = (1, 16)

_DONE = object()  # a retried write found the earlier attempt's effect in place
_DISTANCES = {"cosine": qm.Distance.COSINE, "dot": qm.Distance.DOT, "euclid": qm.Distance.EUCLID}


class ServerStore(QdrantStore):
    """A collection on a Qdrant server or in qdrant-client's local mode (implements ``ManagedStore``).

    Build one with ``ServerStore.connect`` (server) or ``ServerStore.local``; ``open_store`` does.

    Args:
        upsert_batch: points per upsert request.
        query_batch: queries per ``query_batch_points`` request.
        hnsw_ef: HNSW beam width for approximate searches (``exact=False``); None: ``search_ef``'s rule.
        rescore / oversampling: approximate searches of a quantized collection: rescore candidates with
            the original vectors (None: the server decides), fetch ``oversampling`` x limit candidates.
        retries: extra attempts after a transient failure (server engine).
        backoff: first retry delay in seconds, doubled each time.
        timeout: seconds one attempt of a call may take in total (server engine); a call with its
            retries ends within ``(retries + 1) * timeout``.
        api_key_env: the variable named in "requires an API key" messages.
    """

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        *,
        engine: str,
        where: str,
        secret: Secret | None = None,
        recreate: bool = False,
        upsert_batch: int = 256,
        query_batch: int = 64,
        hnsw_ef: int | None = None,
        rescore: bool | None = None,
        oversampling: float | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        create: CollectionOptions | None = None,
        metadata: bool = True,
        owns_client: bool = True,
        grpc_port: int = 6334,
        timeout: float = 30.0,
        api_key_env: str = API_KEY_ENV,
        prefer_grpc: bool = False,
    ) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise ValueError(f"retries must be an integer from 0 to 10, got {retries!r}")
        if upsert_batch < 1 or query_batch < 1 or not backoff >= 0:
            raise ValueError("upsert_batch and query_batch must be positive, backoff >= 0")
        self._client = client
        self.collection = validate_name(collection)
        self.engine = engine
        self._where = where
        self._secret = secret
        self.upsert_batch = upsert_batch
        self.query_batch = query_batch
        check_search_tuning(hnsw_ef, rescore, oversampling)
        self.hnsw_ef = hnsw_ef
        self.rescore = rescore
        self.oversampling = oversampling
        self.retries = retries
        self.backoff = backoff
        self.create_options = create or CollectionOptions()
        self._metadata = metadata
        self._owns_client = owns_client
        self._grpc_port = grpc_port
        self.timeout = check_timeout(timeout)
        self._api_key_env = api_key_env
        self._grpc = prefer_grpc
        self._lock = threading.RLock() if engine == "client-local" else contextlib.nullcontext()
        self._spec: CollectionSpec | None = None
        self._spec_of: str | None = None
        self._pending_target: str | None = None  # alias target dropped by recreate, to re-point the alias
        self._closed = False
        if recreate:
            self._recreate_drop()

    # ----------------------------------------------------------------- constructors

    @classmethod
    def connect(
        cls,
        url: str,
        collection: str,
        *,
        api_key: str | None = None,
        prefer_grpc: bool = False,
        grpc_port: int = 6334,
        timeout: float = 30.0,
        allow_insecure_key: bool = False,
        api_key_env: str = API_KEY_ENV,
        **options: Any,
    ) -> ServerStore:
        """Connect to a server, check it is reachable, accepts the key and is recent enough.

        Everything is checked before anything connects: the URL (ValueError), the timeout, the key and
        sending it in clear text (ConfigError; see ``check_key_transport``).
        """
        url = validate_url(url)
        where = redact_url(url)
        timeout = check_timeout(timeout)
        api_key = check_api_key(api_key, "the api_key argument")
        secret = Secret(api_key) if api_key else None
        check_key_transport(url, bool(secret), allow_insecure_key)
        if secret and urlsplit(url).scheme == "http" and not is_loopback(urlsplit(url).hostname):
            logger.warning("sending the API key to %s over plain http (allowed explicitly)", where)
        create, rest = _split_create_options(options)
        recreate = bool(rest.pop("recreate", False))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the insecure-key warning is logged above
                transport = deadline_transport(url)
                client = QdrantClient(
                    url=url,
                    api_key=api_key,
                    prefer_grpc=prefer_grpc,
                    grpc_port=grpc_port,
                    timeout=max(1, math.ceil(timeout)),
                    check_compatibility=False,
                    **({"transport": transport} if transport is not None else {}),
                )
        except Exception as exc:
            raise StoreError(one_line(scrub(f"cannot set up a client for {where}: {exc}", secret))) from None
        store = cls(
            client,
            collection,
            engine="server",
            where=where,
            secret=secret,
            create=create,
            grpc_port=grpc_port,
            timeout=timeout,
            api_key_env=api_key_env,
            prefer_grpc=prefer_grpc,
            **rest,
        )
        try:
            store._handshake()
            if recreate:
                store._recreate_drop()
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def local(cls, location: str | Path, collection: str, **options: Any) -> ServerStore:
        """qdrant-client's local mode at a directory, or ``:memory:``."""
        location = str(location)
        create, rest = _split_create_options(options)
        if location == MEMORY:
            client = QdrantClient(location=MEMORY)
        else:
            path = Path(location)
            if (path / "catalog.json").exists() or any(path.glob("*/collection.json")):
                raise StoreError(f"{path} holds an embedded (edge) store; open it with engine='edge'")
            path.mkdir(parents=True, exist_ok=True)
            try:
                client = QdrantClient(path=str(path), force_disable_check_same_thread=True)
            except RuntimeError as exc:
                if "already accessed" in str(exc):
                    raise StoreError(f"the local store at {path} is open in another process") from None
                raise StoreError(f"cannot open the local store at {path}: {_first_line(exc)}") from None
        return cls(client, collection, engine="client-local", where=location, create=create, **rest)

    # ----------------------------------------------------------------- collection life cycle

    def ensure_collection(self, spec: CollectionSpec, recreate: bool = False) -> bool:
        """Create the collection for ``spec`` or check an existing one; True if it was created."""
        validate_spec(spec)
        self._check_open()
        if recreate:
            self._recreate_drop()
        name = self._target()
        if name in self.collections():
            info = self._call("reading collection", self._client.get_collection, name)
            existing = self._spec_from_info(name, info, spec.vector_name)
            check_spec(self.collection, existing, spec)
            self._ensure_lang_index(name, info)
            self._remember(
                name,
                CollectionSpec(spec.dim, spec.distance, spec.vector_name, existing.encoder or spec.encoder),
            )
            return False
        self._create(name, spec)
        return True

    def exists(self) -> bool:
        """Whether the collection (or its alias target) exists."""
        return self._target() in self.collections()

    def spec(self) -> CollectionSpec | None:
        """The spec of the existing collection, None if it does not exist."""
        name = self._target()
        if name not in self.collections():
            return None
        info = self._call("reading collection", self._client.get_collection, name)
        return self._spec_from_info(name, info, self._spec.vector_name if self._spec else "")

    def collections(self) -> list[str]:
        """Collection names on the server."""
        response = self._call("listing collections", self._client.get_collections)
        return sorted(c.name for c in response.collections)

    def for_collection(self, name: str) -> ServerStore:
        """A store on another collection over the same connection (valid while this one is open)."""
        store = ServerStore(
            self._client,
            name,
            engine=self.engine,
            where=self._where,
            secret=self._secret,
            upsert_batch=self.upsert_batch,
            query_batch=self.query_batch,
            hnsw_ef=self.hnsw_ef,
            rescore=self.rescore,
            oversampling=self.oversampling,
            retries=self.retries,
            backoff=self.backoff,
            create=self.create_options,
            metadata=self._metadata,
            owns_client=False,
            grpc_port=self._grpc_port,
            timeout=self.timeout,
            api_key_env=self._api_key_env,
            prefer_grpc=self._grpc,
        )
        store._lock = self._lock
        return store

    # ----------------------------------------------------------------- aliases

    def aliases(self) -> dict[str, str]:
        """alias -> collection."""
        response = self._call("listing aliases", self._client.get_aliases)
        return {a.alias_name: a.collection_name for a in response.aliases}

    def _switch_alias(self, alias: str, collection: str, old: str | None) -> None:
        """One atomic server call (delete + create), retried only until it took effect."""
        ops: list[Any] = []
        if old is not None:
            ops.append(qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias)))
        ops.append(
            qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name=collection, alias_name=alias))
        )
        self._call(
            "switching alias",
            self._client.update_collection_aliases,
            change_aliases_operations=ops,
            done=lambda: self._raw_aliases().get(alias) == collection,
        )

    def _remove_alias(self, alias: str) -> None:
        op = qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias))
        self._call(
            "deleting alias",
            self._client.update_collection_aliases,
            change_aliases_operations=[op],
            done=lambda: alias not in self._raw_aliases(),
        )

    def labels(self, name: str) -> dict[str, str]:
        """Labels recorded in the collection's metadata (``{}`` on a server without metadata)."""
        if not self._metadata:
            return {}
        info = self._call("reading collection", self._client.get_collection, name)
        metadata = getattr(info.config, "metadata", None) or {}
        labels = metadata.get(META_LABELS) or {}
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}

    def set_labels(self, name: str, changes: dict[str, str | None]) -> None:
        """Record labels in the collection's metadata (a server without metadata keeps none)."""
        if not self._metadata:
            logger.warning(
                "Qdrant at %s has no collection metadata: labels %s not recorded", self._where, changes
            )
            return
        info = self._call("reading collection", self._client.get_collection, name)
        metadata = dict(getattr(info.config, "metadata", None) or {})
        labels = dict(metadata.get(META_LABELS) or {})
        for key, value in changes.items():
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
        metadata[META_LABELS] = labels
        self._call("labelling collection", self._client.update_collection, name, metadata=metadata)

    def _retrieve(self, point_ids: Sequence[str], payload_keys: list[str]) -> list[Any]:
        name, _ = self._attach()
        return self._call(
            "retrieve",
            self._client.retrieve,
            name,
            ids=list(point_ids),
            with_payload=payload_keys,
            with_vectors=False,
        )

    def _spec_now(self) -> CollectionSpec:
        return self._attach()[1]

    def _index_details(self, name: str) -> dict[str, Any]:
        info = self._call("reading collection", self._client.get_collection, name)
        config, params = info.config, info.config.params
        return {
            "engine": self.engine,
            "status": _plain(info.status),
            "hnsw": _plain(config.hnsw_config),
            "quantization": _plain(config.quantization_config),
            "shards": params.shard_number,
            "replicas": params.replication_factor,
            "on_disk_payload": params.on_disk_payload,
            "vectors": _plain(params.vectors),
            "segments": info.segments_count,
            "indexed_vectors": info.indexed_vectors_count,
            "payload_indexes": {k: _plain(v) for k, v in (info.payload_schema or {}).items()},
        }

    def _facet_counts(self, key: str) -> dict[str, int] | None:
        """A facet request; None where the server (or local mode) has none."""
        name, _ = self._attach()
        try:
            response = self._call(
                "counting languages", self._client.facet, name, key=key, limit=100_000, exact=True
            )
        except StoreError as exc:
            logger.info("no facets on %s (%s): counting by scrolling", self._where, exc)
            return None
        return {str(hit.value): int(hit.count) for hit in response.hits}

    def _location(self) -> str:
        return self._where

    def _record_vector(self, record: Any) -> np.ndarray:
        return _record_vector(record, self._spec_now().vector_name)

    # ----------------------------------------------------------------- data

    def upsert(self, doc_ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Write points (vectors: (n, dim) float32) with ``wait=True``; idempotent, retried when transient."""
        name, spec = self._attach()
        ids = list(doc_ids)
        rows = check_matrix(vectors, spec.dim)  # (n, dim)
        payloads = list(payloads)
        if not len(ids) == len(rows) == len(payloads):
            raise ValueError(f"upsert got {len(ids)} doc ids, {len(rows)} vectors, {len(payloads)} payloads")
        tag = encoder_tag(spec.encoder) if spec.encoder else None
        for start in range(0, len(ids), self.upsert_batch):
            end = start + self.upsert_batch
            chunk = rows[start:end].tolist()
            batch = qm.Batch(
                ids=[point_id(check_doc_id(d)) for d in ids[start:end]],
                vectors={spec.vector_name: chunk} if spec.vector_name else chunk,
                payloads=[
                    stored_payload(d, p, tag)
                    for d, p in zip(ids[start:end], payloads[start:end], strict=True)
                ],
            )
            self._call("upsert", self._client.upsert, name, points=batch, wait=True)

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
        name, spec = self._attach()
        queries = check_matrix(vectors, spec.dim, "query vectors")  # (n, dim)
        if exact:
            params = qm.SearchParams(exact=True)
        else:
            quantization = None
            if self.rescore is not None or self.oversampling is not None:
                quantization = qm.QuantizationSearchParams(
                    rescore=self.rescore, oversampling=self.oversampling
                )
            params = qm.SearchParams(
                hnsw_ef=search_ef(self.hnsw_ef, limit), exact=False, quantization=quantization
            )
        if self.engine == "client-local":
            params = None  # local mode always searches exhaustively (and warns about params)
        flt = _lang_filter(lang)
        negate = spec.distance == "euclid"
        out: list[list[Hit]] = []
        for start in range(0, len(queries), self.query_batch):
            requests = [
                qm.QueryRequest(
                    query=row,
                    using=spec.vector_name or None,
                    filter=flt,
                    params=params,
                    limit=limit,
                    with_payload=True if with_payload else [DOC_ID_KEY],
                )
                for row in queries[start : start + self.query_batch].tolist()
            ]
            responses = self._call("search", self._client.query_batch_points, name, requests=requests)
            out.extend(sorted_hits(r.points, negate, with_payload) for r in responses)
        return out

    def optimize(self, timeout: float = 600.0) -> bool:
        """Wait until the server's optimizers are idle (collection status green): a server builds its
        HNSW graph and quantized vectors by itself once enough points arrive. True when it was busy.

        Raises:
            StoreError: still busy after ``timeout`` seconds, or the collection's status is red.
        """
        name, _ = self._attach()
        ends = time.monotonic() + timeout
        busy = False
        while True:
            info = self._call("reading collection", self._client.get_collection, name)
            status = str(getattr(info.status, "value", info.status)).lower()
            if status == "green":
                return busy
            if status == "red":
                raise StoreError(f"collection '{name}' at {self._where} reports status red (optimizer error)")
            busy = True
            if time.monotonic() >= ends:
                raise StoreError(
                    f"collection '{name}' at {self._where} was still optimizing after {timeout:g} s "
                    f"(status {status})"
                )
            time.sleep(0.5)

    def index_info(self) -> IndexInfo:
        """Points, HNSW-indexed vectors, segments, status and the index options of the collection (a
        per-vector override wins over the collection's setting)."""
        name, spec = self._attach()
        info = self._call("reading collection", self._client.get_collection, name)
        config = info.config
        vectors = config.params.vectors
        params = vectors.get(spec.vector_name) if isinstance(vectors, dict) else vectors
        hnsw = getattr(params, "hnsw_config", None) or config.hnsw_config
        hnsw_all = config.hnsw_config
        quantization = getattr(params, "quantization_config", None) or config.quantization_config
        kind, ratio = _quantization_kind(quantization)

        def graph(key: str) -> int | None:
            value = getattr(hnsw, key, None) if hnsw is not None else None
            return value if value is not None else getattr(hnsw_all, key, None)

        options = CollectionOptions(
            quantization=kind,
            product_compression=ratio,
            hnsw_m=graph("m"),
            hnsw_ef_construct=graph("ef_construct"),
            hnsw_full_scan_threshold=graph("full_scan_threshold"),
            indexing_threshold=getattr(config.optimizer_config, "indexing_threshold", None),
        )
        return IndexInfo(
            points=int(info.points_count or 0),
            indexed_vectors=int(info.indexed_vectors_count or 0),
            segments=int(info.segments_count or 0),
            options=options,
            status=str(getattr(info.status, "value", info.status)).lower(),
        )

    def count(self, lang: Langs = None) -> int:
        """Number of points, optionally of one language (exact)."""
        name, _ = self._attach()
        result = self._call("count", self._client.count, name, count_filter=_lang_filter(lang), exact=True)
        return int(result.count)

    # ----------------------------------------------------------------- closing

    def close(self) -> None:
        """Close the client (a ``for_collection`` store leaves the shared client open)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            with contextlib.suppress(Exception):
                self._client.close()

    def __enter__(self) -> ServerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        key = "'***'" if self._secret else "None"
        return (
            f"ServerStore(engine={self.engine!r}, at={self._where!r}, collection={self.collection!r}, "
            f"api_key={key})"
        )

    # ----------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store for collection '{self.collection}' is closed")

    def _handshake(self) -> None:
        """Reachable, recent enough, and the key accepted (one-line StoreError otherwise)."""
        # a refused connection or an unknown host at first contact is a wrong URL: not retried
        answer = self._call("connecting", self._client.info, transient=is_transient_status_or_timeout)
        version = one_line(scrub(str(answer.version), self._secret), 60)  # the server's text: untrusted
        parsed = _parse_version(version)
        if parsed is None:
            logger.warning(
                "Qdrant at %s reports version %r; cannot check compatibility", self._where, version
            )
        elif parsed[0] != 1 or parsed < MIN_SERVER:
            raise StoreError(
                f"Qdrant at {self._where} is version {version}; hybrid-qdrant needs "
                f"{MIN_SERVER[0]}.{MIN_SERVER[1]} or a newer 1.x"
            )
        else:
            client = _parse_version(importlib.metadata.version("qdrant-client"))
            if client and abs(client[1] - parsed[1]) > 1:
                logger.warning(
                    "qdrant-client %d.%d and Qdrant %s are more than one minor version apart",
                    client[0],
                    client[1],
                    version,
                )
        self._metadata = parsed is None or parsed >= METADATA_SERVER
        self.collections()  # the root endpoint may be public: this call checks the key

    def _target(self) -> str:
        name = self.resolve(self.collection)
        if name == self.collection and self._pending_target:
            return self._pending_target
        return name

    def _attach(self) -> tuple[str, CollectionSpec]:
        """The target collection and its spec (read from the server once per target)."""
        self._check_open()
        name = self._target()
        if self._spec is not None and self._spec_of == name:
            return name, self._spec
        if name not in self.collections():
            raise StoreError(
                f"collection '{self.collection}' does not exist at {self._where}; ingest it first"
            )
        info = self._call("reading collection", self._client.get_collection, name)
        self._remember(name, self._spec_from_info(name, info, ""))
        return name, self._spec

    def _remember(self, name: str, spec: CollectionSpec) -> None:
        self._spec, self._spec_of = spec, name

    def _create(self, name: str, spec: CollectionSpec) -> None:
        o = self.create_options
        params = qm.VectorParams(size=spec.dim, distance=_DISTANCES[spec.distance], on_disk=o.on_disk)
        hnsw = None
        graph = (o.hnsw_m, o.hnsw_ef_construct, o.hnsw_full_scan_threshold)
        if any(v is not None for v in graph) or o.on_disk:
            hnsw = qm.HnswConfigDiff(
                m=o.hnsw_m,
                ef_construct=o.hnsw_ef_construct,
                full_scan_threshold=o.hnsw_full_scan_threshold,
                on_disk=o.on_disk,
            )
        quantization = None
        if o.quantization == "scalar":
            quantization = qm.ScalarQuantization(
                scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8, quantile=0.99, always_ram=True)
            )
        elif o.quantization == "binary":
            quantization = qm.BinaryQuantization(binary=qm.BinaryQuantizationConfig(always_ram=True))
        elif o.quantization == "product":
            ratio = o.product_compression or DEFAULT_PRODUCT_COMPRESSION
            quantization = qm.ProductQuantization(
                product=qm.ProductQuantizationConfig(
                    compression=qm.CompressionRatio(f"x{ratio}"), always_ram=True
                )
            )
        optimizers = None
        if o.indexing_threshold is not None:
            optimizers = qm.OptimizersConfigDiff(indexing_threshold=o.indexing_threshold)
        metadata = None
        if self._metadata:
            metadata = {
                META_ENCODER: spec.encoder,
                META_CREATED: datetime.now(UTC).isoformat(timespec="seconds"),
            }
            if spec.source:
                metadata[META_SOURCE] = json.loads(spec.source)
        elif spec.encoder:
            logger.info(
                "Qdrant at %s has no collection metadata: the encoder is checked through payloads",
                self._where,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # local mode: "has no effect" notes
            created = self._call(
                "creating collection",
                self._client.create_collection,
                name,
                vectors_config={spec.vector_name: params} if spec.vector_name else params,
                shard_number=o.shard_number,
                replication_factor=o.replication_factor,
                on_disk_payload=o.on_disk_payload,
                hnsw_config=hnsw,
                optimizers_config=optimizers,
                quantization_config=quantization,
                metadata=metadata,
                done=lambda: name in self._raw_collections(),
            )
        if created is _DONE:  # an earlier attempt created it: check it is the one asked for
            info = self._call("reading collection", self._client.get_collection, name)
            check_spec(self.collection, self._spec_from_info(name, info, spec.vector_name), spec)
        if self.engine == "server":  # local mode ignores payload indexes
            self._create_lang_index(name)
        self._remember(name, spec)
        if self._pending_target == name:
            self.set_alias(self.collection, name)
            self._pending_target = None
        logger.info("created collection %s (dim %d, %s) at %s", name, spec.dim, spec.distance, self._where)

    def _create_lang_index(self, name: str) -> None:
        schema = qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True)
        self._call(
            "creating the lang index",
            self._client.create_payload_index,
            name,
            LANG_KEY,
            field_schema=schema,
            wait=True,
        )

    def _ensure_lang_index(self, name: str, info: Any) -> None:
        if self.engine == "server" and LANG_KEY not in (info.payload_schema or {}):
            logger.info("collection %s has no index on %s: creating it", name, LANG_KEY)
            self._create_lang_index(name)

    def _spec_from_info(self, name: str, info: Any, wanted_vector: str) -> CollectionSpec:
        vectors = info.config.params.vectors
        if isinstance(vectors, dict):
            if wanted_vector in vectors:
                vector_name = wanted_vector
            elif len(vectors) == 1:
                vector_name = next(iter(vectors))
            else:
                raise StoreError(
                    f"collection '{name}' stores vectors {sorted(vectors)}, expected "
                    f"{repr(wanted_vector) if wanted_vector else 'unnamed'}; "
                    "use another --collection or --recreate"
                )
            params = vectors[vector_name]
        elif vectors is None:
            raise StoreError(
                f"collection '{name}' has no dense vectors; use another --collection or --recreate"
            )
        else:
            vector_name, params = "", vectors
        distance = str(getattr(params.distance, "value", params.distance)).lower()
        metadata = getattr(info.config, "metadata", None) or {}
        encoder = metadata.get(META_ENCODER)
        if encoder is None:
            encoder = self._sample_encoder(name)
        return CollectionSpec(
            dim=int(params.size),
            distance=distance,
            vector_name=vector_name,
            encoder=str(encoder or ""),
            source=source_text(metadata.get(META_SOURCE)),
        )

    def _sample_encoder(self, name: str) -> str:
        """The encoder fingerprint or tag in one point's payload ("" if none)."""
        records, _ = self._call(
            "reading a point",
            self._client.scroll,
            name,
            limit=1,
            with_payload=[ENCODER_KEY],
            with_vectors=False,
        )
        return str((records[0].payload or {}).get(ENCODER_KEY, "")) if records else ""

    def _recreate_drop(self) -> None:
        name = self.resolve(self.collection)
        if name != self.collection:
            self._pending_target = name
        self._drop(name)

    def _drop(self, name: str) -> bool:
        if name not in self.collections():
            return False
        self._call(
            "deleting collection",
            self._client.delete_collection,
            name,
            done=lambda: name not in self._raw_collections(),
        )
        if self._spec_of == name:
            self._spec = self._spec_of = None
        logger.warning("dropped collection %s at %s", name, self._where)
        return True

    def _scroll(self, lang: Langs, with_vectors: bool, with_payload: Any, batch: int) -> Iterator[Any]:
        if batch < 1:
            raise ValueError("batch must be positive")
        name, _ = self._attach()
        offset = None
        flt = _lang_filter(lang)
        while True:
            records, offset = self._call(
                "scroll",
                self._client.scroll,
                name,
                scroll_filter=flt,
                limit=batch,
                offset=offset,
                with_payload=with_payload,
                with_vectors=with_vectors,
            )
            yield from records
            if offset is None or not records:
                return

    def _attempt_limit(self) -> float:
        """Seconds one attempt may take: ``timeout`` over REST; gRPC's deadline is whole seconds."""
        return float(max(1, math.ceil(self.timeout))) if self._grpc else self.timeout

    def _raw_collections(self) -> set[str]:
        """Collection names, in one unretried request (for checks inside a retried call)."""
        return {c.name for c in self._client.get_collections().collections}

    def _raw_aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self._client.get_aliases().aliases}

    def _call(
        self,
        what: str,
        fn,
        *args: Any,
        done: Any = None,
        transient: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Run a client call within the time limits, retrying transient failures; translate any failure
        into a one-line StoreError without the key.

        Args:
            done: for a write that is not idempotent, a check made before each retry: True means the
                failed attempt took effect after all, and the call returns ``_DONE`` instead of repeating.
            transient: which failures to retry (default ``_is_transient``).
        """
        self._check_open()
        remote = self.engine == "server"
        limit = self._attempt_limit()
        ends = time.monotonic() + (self.retries + 1) * limit
        tries = 0

        def attempt() -> Any:
            nonlocal tries
            tries += 1
            with self._lock, deadline(min(self.timeout, ends - time.monotonic())) if remote else _nothing():
                if done is not None and tries > 1 and done():
                    logger.info("%s: the earlier attempt took effect", what)
                    return _DONE
                return fn(*args, **kwargs)

        try:
            if remote and self.retries:
                return call_with_retries(
                    attempt,
                    transient or is_transient,
                    attempts=self.retries + 1,
                    backoff=self.backoff,
                    what=f"{what} on {self._where}",
                    budget=(self.retries + 1) * limit,
                    describe=failure_kind,
                    reserve=limit if self._grpc else 0.0,  # gRPC's deadline is not cut to the time left
                )
            return attempt()
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc, what) from None

    def _error(self, exc: BaseException, what: str) -> StoreError:
        limit = self._attempt_limit()
        total = (self.retries + 1) * limit if self.engine == "server" and self.retries else None
        return store_error(
            exc,
            what,
            where=self._where,
            secret=self._secret,
            api_key_env=self._api_key_env,
            grpc_port=self._grpc_port,
            attempt_limit=limit,
            total_limit=total,
        )


# --------------------------------------------------------------------- helpers


def _split_create_options(options: dict[str, Any]) -> tuple[CollectionOptions, dict[str, Any]]:
    create = {k: options.pop(k) for k in list(options) if k in CREATE_OPTIONS}
    return CollectionOptions(**create), options


def _quantization_kind(config: Any) -> tuple[str | None, int | None]:
    """(``scalar`` | ``binary`` | ``product`` | None, product compression) of a quantization config."""
    for kind in QUANTIZATIONS:
        inner = getattr(config, kind, None)
        if inner is not None:
            if kind != "product":
                return kind, None
            ratio = str(getattr(inner.compression, "value", inner.compression)).lstrip("xX")
            return kind, int(ratio)
    return None, None


def _parse_version(version: str | None) -> tuple[int, int] | None:
    try:
        major, minor = str(version).lstrip("v").split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def _first_line(exc: BaseException, width: int = 200) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= width else line[: width - 3] + "..."


def _lang_filter(lang: Langs) -> qm.Filter | None:
    langs = lang_set(lang)
    if langs is None:
        return None
    one = len(langs) == 1
    match = qm.MatchValue(value=next(iter(langs))) if one else qm.MatchAny(any=sorted(langs))
    return qm.Filter(must=[qm.FieldCondition(key=LANG_KEY, match=match)])


def _plain(value: Any) -> Any:
    """A client model as plain JSON values (enums as their values), for ``details``."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return getattr(value, "value", value)


def _record_vector(record: Any, name: str) -> np.ndarray:
    vector = record.vector
    if isinstance(vector, dict):
        vector = vector.get(name)
    if vector is None:
        return np.empty(0, dtype=np.float32)
    return np.asarray(vector, dtype=np.float32)
