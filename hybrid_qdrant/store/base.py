"""The store seam: one interface over the embedded engine and a Qdrant server.

Only the adapter modules in this package import a Qdrant library; nothing outside sees a point id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: Namespace of the UUIDv5 point ids: ``uuid5(POINT_NAMESPACE, doc_id)``.
POINT_NAMESPACE = uuid.UUID("6f1b1c1e-9a57-5d3c-8a52-6b7a1f0e4c21")

#: Payload keys written for every point.
LANG_KEY = "lang"
DOC_ID_KEY = "doc_id"
GROUP_KEY = "group_id"
TEXT_KEY = "text"
#: Key of the model / encoding fingerprint stored in every payload (catches a query with another model).
ENCODER_KEY = "encoder"


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
    """

    dim: int
    distance: str = "cosine"
    vector_name: str = ""
    encoder: str = ""


@dataclass(frozen=True)
class Hit:
    """One search result: the document id and its score (higher is better)."""

    doc_id: str
    score: float


@dataclass
class StoreRecord:
    """A point as the store keeps it: doc id, vector and payload."""

    doc_id: str
    vector: np.ndarray
    payload: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorStore(Protocol):
    """A Qdrant collection holding all languages, ``lang`` in the payload.

    Contract:
        - ``upsert`` is idempotent: point ids are ``point_id(doc_id)``, so writing the same documents
          twice leaves the same points. Writes are durable when it returns (``wait=True``).
        - ``search`` returns, per query vector, hits sorted by score descending; ``lang`` restricts
          the search to passages of that language (a payload filter), ``None`` searches all.
          ``exact=True`` asks for exhaustive search (no HNSW approximation).
        - ``count`` counts points, optionally of one language.
    """

    def ensure_collection(self, spec: CollectionSpec) -> bool:
        """Create the collection for ``spec`` or check an existing one; True if it was created."""
        ...

    def upsert(self, doc_ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Write points (vectors: (n, dim) float32)."""
        ...

    def search(
        self, vectors: np.ndarray, limit: int, lang: str | None = None, exact: bool = True
    ) -> list[list[Hit]]:
        """Nearest neighbours of each row of ``vectors`` ((n, dim) float32)."""
        ...

    def count(self, lang: str | None = None) -> int:
        """Number of points, optionally only those with ``lang``."""
        ...

    def close(self) -> None:
        """Release the client or the embedded shard (and its directory lock)."""
        ...
