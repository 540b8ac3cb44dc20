"""What both engines write and read back: validated vectors, doc ids, payloads and sorted hits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hybrid_qdrant.store.base import DOC_ID_KEY, ENCODER_KEY, Hit


def check_matrix(vectors: np.ndarray, dim: int, what: str = "vectors") -> np.ndarray:
    """``vectors`` as a finite (n, dim) float32 array; ValueError otherwise."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return arr


def check_doc_id(doc_id: str) -> str:
    """``doc_id`` if it is a non-empty string; ValueError otherwise."""
    if not isinstance(doc_id, str) or not doc_id:
        raise ValueError(f"doc ids must be non-empty strings, got {doc_id!r}")
    return doc_id


def stored_payload(doc_id: str, payload: dict[str, Any], tag: str | None) -> dict[str, Any]:
    """The payload written for a point: the caller's, plus the doc id and (when missing) the encoder tag."""
    out = dict(payload)
    if out.setdefault(DOC_ID_KEY, doc_id) != doc_id:
        raise ValueError(f"payload doc_id {out[DOC_ID_KEY]!r} differs from the point's doc id {doc_id!r}")
    if tag is not None:
        out.setdefault(ENCODER_KEY, tag)
    return out


def record_doc_id(record: Any) -> str:
    """The doc id of a returned point (its payload's, else the point id)."""
    doc_id = (record.payload or {}).get(DOC_ID_KEY)
    return doc_id if doc_id is not None else str(record.id)


def sorted_hits(points: Sequence[Any], negate: bool = False, with_payload: bool = False) -> list[Hit]:
    """Hits sorted by score descending, ties by doc id; ``negate`` turns distances into scores;
    ``with_payload`` keeps each point's payload."""
    hits = [
        Hit(
            record_doc_id(p),
            -float(p.score) if negate else float(p.score),
            dict(p.payload or {}) if with_payload else None,
        )
        for p in points
    ]
    hits.sort(key=lambda h: (-h.score, h.doc_id))
    return hits
