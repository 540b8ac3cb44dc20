"""The store seam: one interface over the embedded engine and a Qdrant server.

Only the adapter modules in this package import a Qdrant library; nothing outside sees a point id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hybrid_qdrant.store.collection_options import CollectionOptions

#: A language filter: one code, several (any of them), or None (no filter).
Langs = str | Sequence[str] | None

#: Namespace of the UUIDv5 point ids: ``uuid5(POINT_NAMESPACE, doc_id)``.
POINT_NAMESPACE = uuid.UUID("6f1b1c1e-9a57-5d3c-8a52-6b7a1f0e4c21")

#: Payload keys written for every point.
LANG_KEY = "lang"
DOC_ID_KEY = "doc_id"
GROUP_KEY = "group_id"
TEXT_KEY = "text"
#: Key of a hash of what a point was built from (text, language, group, title): a re-ingestion after the
#: source changed re-encodes the points whose hash differs instead of keeping stale text and vectors.
CONTENT_KEY = "content_hash"
#: Key of the model / encoding fingerprint stored in every payload (catches a query with another model).
ENCODER_KEY = "encoder"


def lang_set(lang: Langs) -> frozenset[str] | None:
    """The languages a filter admits (None: all); a str is one code, a sequence any of its codes."""
    if lang is None:
        return None
    if isinstance(lang, str):
        return frozenset([lang])
    langs = frozenset(lang)
    if not langs or not all(isinstance(x, str) for x in langs):
        raise ValueError(f"a language filter needs language codes, got {lang!r}")
    return langs


def point_id(doc_id: str) -> str:
    """Deterministic point id of a document: UUIDv5 of its doc id."""
    return str(uuid.uuid5(POINT_NAMESPACE, doc_id))


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection must look like for an encoder.

    Attributes:
        dim: vector size.
        distance: ``cosine`` (default), ``dot`` or ``euclid``.
        vector_name: named vector, or ``""`` for the default unnamed vector.
        encoder: fingerprint of the model and encoding settings (see ``Encoder.fingerprint``).
        source: how to load that encoder again (JSON of ``hybrid_qdrant.encoding.source.EncoderSource``:
            model reference, prefixes, max length), recorded at creation so that a collection can be
            searched without naming its model; ``""`` when unknown. Never compared: the fingerprint is.
    """

    dim: int
    distance: str = "cosine"
    vector_name: str = ""
    encoder: str = ""
    source: str = field(default="", compare=False)


@dataclass(frozen=True)
class Hit:
    """One search result: the document id and its score (higher is better); the point's payload when
    the search asked for it (``with_payload=True``), else None."""

    doc_id: str
    score: float
    payload: dict[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as ``hq collections list`` shows it.

    Attributes:
        name: the collection.
        points: its point count; None when unknown (the embedded store lists from its metadata, which
            has no count while a process writes to the collection).
        dim: its vector size; None when its metadata cannot be read.
        aliases: aliases pointing to it, sorted.
        note: what else to know (``open in another process``, damaged metadata), or ``""``.
    """

    name: str
    points: int | None
    dim: int | None
    aliases: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class CollectionDetails:
    """One collection as ``hq collections info`` shows it (``ManagedStore.details``).

    Attributes:
        name: the collection (an alias resolved).
        spec: its spec (dim, distance, vector name, encoder fingerprint and source); None if unreadable.
        points: point count; None when unknown.
        per_language: point count per ``lang`` value; None when it cannot be read now (an embedded
            collection open in another process).
        index: how it is indexed and stored, engine-specific plain values (HNSW, quantization,
            indexed vectors, segments, shards, replicas, on-disk storage, payload indexes).
        aliases: aliases pointing to it, sorted.
        sample_payload: one point's payload (what the payload layout is), or None.
        note: what else to know, or ``""``.
    """

    name: str
    spec: CollectionSpec | None
    points: int | None
    per_language: dict[str, int] | None
    index: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    sample_payload: dict[str, Any] | None = None
    note: str = ""


@dataclass(frozen=True)
class IndexInfo:
    """A collection's vector index as the engine reports it (``hq audit`` records it per variant).

    Attributes:
        points: points stored.
        indexed_vectors: vectors in segments with an HNSW graph; 0 means every search scores all
            (matching) points, whatever the search parameters say.
        segments: segments of the collection (each has its own graph).
        options: the index options it was built with (``CollectionOptions``; None fields: the engine's
            defaults).
        status: the server's collection status (``green`` when its optimizers are idle); ``""`` embedded.
    """

    points: int
    indexed_vectors: int
    segments: int
    options: CollectionOptions
    status: str = ""


@dataclass
class StoreRecord:
    """A point as the store keeps it: doc id, vector and payload."""

    doc_id: str
    vector: np.ndarray
    payload: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class DataStore(Protocol):
    """The data plane the jobs use: one Qdrant collection holding all languages, ``lang`` in the payload.

    ``ArrayStore`` (numpy), ``EdgeStore`` (embedded) and ``ServerStore`` (a server) implement it.

    Contract:
        - ``upsert`` is idempotent: point ids are ``point_id(doc_id)``, so writing the same documents
          twice leaves the same points. Writes are durable when it returns (``wait=True``).
        - ``existing`` tells which doc ids are stored and the content hash each was written with.
        - ``search`` returns, per query vector, hits sorted by score descending, ties by doc id
          ascending (evaluation relies on this order); ``lang`` restricts the search to passages of that
          language, or of any of several languages (a payload filter), ``None`` searches all.
          ``exact=True`` asks for exhaustive search (no HNSW approximation); ``with_payload=True``
          returns each hit's payload too (``Hit.payload``).
        - ``count`` counts points, optionally of some languages; ``vectors`` reads them back.
    """

    collection: str

    def exists(self) -> bool:
        """Whether the store's collection (or the collection its alias points to) exists."""
        ...

    def ensure_collection(self, spec: CollectionSpec, recreate: bool = False) -> bool:
        """Create the collection for ``spec`` or check an existing one; True if it was created.

        An existing collection whose dim, distance, vector name or encoder fingerprint differs raises
        ``StoreError``; ``recreate=True`` drops and re-creates it at once (a library option: the jobs
        rebuild beside the old collection instead, see ``evaluation.jobs.reindex_with_alias``).
        """
        ...

    def upsert(self, doc_ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Write points (vectors: (n, dim) float32)."""
        ...

    def existing(self, doc_ids: Iterable[str]) -> dict[str, str | None]:
        """Which of these doc ids are stored, with the content hash each was written with (None when the
        point predates content hashes): resumable ingestion skips the unchanged, re-encodes the rest."""
        ...

    def search(
        self,
        vectors: np.ndarray,
        limit: int,
        lang: Langs = None,
        exact: bool = True,
        with_payload: bool = False,
    ) -> list[list[Hit]]:
        """Nearest neighbours of each row of ``vectors`` ((n, dim) float32)."""
        ...

    def count(self, lang: Langs = None) -> int:
        """Number of points, optionally only those of some languages."""
        ...

    def vectors(self, lang: Langs = None) -> tuple[list[str], np.ndarray]:
        """Doc ids and their stored vectors ((n, dim) float32; cosine vectors come back normalised)."""
        ...

    def close(self) -> None:
        """Release the client or the embedded shard (and its directory lock)."""
        ...


@runtime_checkable
class AdminStore(Protocol):
    """Collections and aliases at a location or server (explicit operations, never implicit)."""

    def collections(self) -> list[str]:
        """Names of all collections at this location or server."""
        ...

    def delete_collection(self, name: str) -> bool:
        """Drop a collection by name; True if it existed. Refuses while an alias points to it."""
        ...

    def aliases(self) -> dict[str, str]:
        """All aliases: alias -> collection."""
        ...

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` atomically (creating or switching it)."""
        ...

    def delete_alias(self, alias: str) -> bool:
        """Remove an alias (its collection stays); True if it existed."""
        ...

    def resolve(self, name: str) -> str:
        """The collection an alias points to, or ``name`` itself."""
        ...

    def next_version(self, base: str) -> str:
        """The next free versioned name ``{base}_v{n}`` for a zero-downtime re-index."""
        ...

    def labels(self, name: str) -> dict[str, str]:
        """Small string labels recorded on a collection (e.g. a re-index's state)."""
        ...

    def set_labels(self, name: str, changes: dict[str, str | None]) -> None:
        """Record labels on a collection (None removes one)."""
        ...

    def for_collection(self, name: str) -> ManagedStore:
        """A store for another collection at the same location / on the same connection."""
        ...


@runtime_checkable
class ManagedStore(DataStore, AdminStore, Protocol):
    """Both planes, plus reading points back: what ``open_store`` returns (``EdgeStore``,
    ``ServerStore``)."""

    def spec(self) -> CollectionSpec | None:
        """The spec of the existing collection, None if it does not exist."""
        ...

    def doc_ids(self, lang: Langs = None) -> set[str]:
        """All stored doc ids, optionally of some languages."""
        ...

    def iter_records(
        self, lang: Langs = None, with_vectors: bool = True, batch: int = 1000
    ) -> Iterator[StoreRecord]:
        """Scroll the points (vector: (dim,) float32, or empty when ``with_vectors=False``)."""
        ...

    def details(self) -> CollectionDetails:
        """The store's collection in detail: per-language counts, index and storage settings, aliases,
        a sample payload."""
        ...

    def __enter__(self) -> ManagedStore: ...

    def __exit__(self, *exc: object) -> None: ...
