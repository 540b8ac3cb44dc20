"""Vector stores: one Qdrant collection holding every language, ``lang`` in the payload.

``open_store`` picks the engine in one place:

- a directory (default ``.hq/qdrant`` in the working directory) or ``:memory:``: the embedded
  qdrant-edge engine (``engine="edge"``, the default); ``:memory:`` is a temporary directory removed
  on ``close`` because qdrant-edge has no in-memory mode;
- ``engine="client-local"``: qdrant-client's local mode at a directory (default ``.hq/qdrant-local``)
  or ``:memory:`` (slow filtered search; it exercises the server code path without a server);
- ``url=``: a Qdrant server (``engine="server"``).

Engine modules are imported lazily, so importing this package loads neither Qdrant library.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hybrid_qdrant.store.base import (
    DOC_ID_KEY,
    ENCODER_KEY,
    GROUP_KEY,
    LANG_KEY,
    TEXT_KEY,
    AdminStore,
    CollectionInfo,
    CollectionSpec,
    DataStore,
    Hit,
    IndexInfo,
    ManagedStore,
    StoreRecord,
    point_id,
)
from hybrid_qdrant.store.collection_options import CREATE_OPTIONS, INDEX_OPTIONS, CollectionOptions
from hybrid_qdrant.store.connection import API_KEY_ENV, resolve_api_key

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_COLLECTION",
    "DEFAULT_LOCATION",
    "DOC_ID_KEY",
    "ENCODER_KEY",
    "ENGINES",
    "GROUP_KEY",
    "LANG_KEY",
    "TEXT_KEY",
    "CollectionInfo",
    "CollectionOptions",
    "CollectionSpec",
    "Hit",
    "IndexInfo",
    "ManagedStore",
    "StoreRecord",
    "AdminStore",
    "DataStore",
    "collections_info",
    "open_store",
    "point_id",
    "resolve_api_key",
]

logger = logging.getLogger(__name__)

#: Embedded store directory when none is given (relative to the working directory).
DEFAULT_LOCATION = ".hq/qdrant"
#: qdrant-client local-mode directory when none is given.
DEFAULT_LOCAL_LOCATION = ".hq/qdrant-local"
DEFAULT_COLLECTION = "passages"
ENGINES = ("edge", "client-local", "server")

_COMMON = frozenset({"recreate", "upsert_batch", "query_batch", "hnsw_ef", "rescore", "oversampling"})
_CONNECTION = frozenset(
    {"timeout", "prefer_grpc", "grpc_port", "retries", "backoff", "allow_insecure_key", "api_key_env"}
)


def open_store(
    location: str | Path | None = None,
    url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    engine: str | None = None,
    **opts: Any,
) -> ManagedStore:
    """Open the store for ``collection`` (a collection or alias name); use it as a context manager.

    Args:
        location: embedded directory or ``:memory:``; ignored when ``url`` is given.
        url: Qdrant server URL (``http://host:6333``, ``https://...``).
        api_key: the server's API key (the CLI reads ``QDRANT_API_KEY`` or a key file; see
            ``resolve_api_key``); never logged or shown.
        collection: collection or alias name.
        engine: ``edge`` (default without url), ``client-local``, or ``server`` (default with url).
        **opts: ``recreate`` (drop the collection now; ``ensure_collection`` re-creates it),
            ``upsert_batch``, ``query_batch``, ``hnsw_ef``, ``rescore`` and ``oversampling`` (approximate
            search), the index options of a collection created (``quantization``,
            ``product_compression``, ``hnsw_m``, ``hnsw_ef_construct``, ``hnsw_full_scan_threshold``,
            ``indexing_threshold``);
            server only: ``timeout`` (s, default 30: the
            time one attempt of a call may take in total; a call with its retries ends within
            ``(retries + 1) * timeout``), ``prefer_grpc``, ``grpc_port``, ``retries`` (default 3),
            ``backoff`` (s, default 0.5), ``allow_insecure_key`` (send the key over plain http to a
            remote host), ``api_key_env`` (the variable named in "requires an API key" messages) and the
            creation options ``shard_number``, ``replication_factor``, ``on_disk``, ``on_disk_payload``.
            Connection options are ignored by the embedded engines, server creation options by ``edge``
            (with a warning).

    Raises:
        ValueError: an unknown engine or option, or a malformed URL.
        ConfigError: a bad timeout or API key, or a key over plain http to a remote host.
        StoreError: the server is unreachable, rejects the key or is too old; the directory is locked.
    """
    engine = engine or ("server" if url else "edge")
    if engine not in ENGINES:
        raise ValueError(f"unknown store engine {engine!r}; choose one of {', '.join(ENGINES)}")
    unknown = sorted(set(opts) - _COMMON - _CONNECTION - CREATE_OPTIONS)
    if unknown:
        known = ", ".join(sorted(_COMMON | _CONNECTION | CREATE_OPTIONS))
        raise ValueError(f"unknown store option(s) {', '.join(unknown)}; known: {known}")
    if engine == "server":
        if not url:
            raise ValueError("engine 'server' needs a url")
        if location is not None:
            logger.debug("location %s ignored: using the server at the given url", location)
        from hybrid_qdrant.store.server import ServerStore

        return ServerStore.connect(url, collection, api_key=api_key, **opts)
    if url:
        raise ValueError(f"engine {engine!r} is embedded and takes a location, not a url")
    if api_key:
        logger.debug("API key ignored by the embedded engine %s", engine)
    for name in sorted(set(opts) & _CONNECTION):
        opts.pop(name)
    if engine == "client-local":
        from hybrid_qdrant.store.server import ServerStore

        return ServerStore.local(location or DEFAULT_LOCAL_LOCATION, collection, **opts)
    index = {name: opts.pop(name) for name in sorted(set(opts) & INDEX_OPTIONS)}
    for name in sorted(set(opts) & CREATE_OPTIONS):
        if opts.pop(name) is not None:
            logger.warning("store option %s is for server collections; ignored by the embedded store", name)
    from hybrid_qdrant.store.edge import EdgeStore

    create = CollectionOptions(**index) if any(v is not None for v in index.values()) else None
    return EdgeStore(location or DEFAULT_LOCATION, collection, create=create, **opts)


def collections_info(store: ManagedStore) -> list[CollectionInfo]:
    """Every collection at the store's location or server with its count, dim and aliases, by name.

    The embedded store reads its metadata only (``EdgeStore.collections_info``: no shard is opened, so
    nothing is written and collections open in other processes are listed too); other stores are asked
    for each collection's count.
    """
    own = getattr(store, "collections_info", None)
    if own is not None:
        return sorted(own(), key=lambda info: info.name)
    aliases = store.aliases()
    out = []
    for name in sorted(store.collections()):
        with store.for_collection(name) as one:
            spec = one.spec()
            names = tuple(sorted(a for a, target in aliases.items() if target == name))
            out.append(CollectionInfo(name, one.count(), spec.dim if spec else None, names))
    return out
