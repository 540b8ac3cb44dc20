"""Whether an existing collection fits a ``CollectionSpec``: the checks both engines share."""

from __future__ import annotations

import hashlib
import json
import logging

from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.store.base import CollectionSpec

logger = logging.getLogger(__name__)

#: Distances a ``CollectionSpec`` may name.
DISTANCES = ("cosine", "dot", "euclid")

_HINT = "use another --collection or --recreate"


def validate_spec(spec: CollectionSpec) -> None:
    """Raise ValueError for a spec no engine can create."""
    if not isinstance(spec.dim, int) or spec.dim < 1:
        raise ValueError(f"collection dim must be a positive integer, got {spec.dim!r}")
    if spec.distance not in DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {spec.distance!r}")


def encoder_tag(fingerprint: str) -> str:
    """Short stable hash of an encoder fingerprint (what ingestion writes to each payload)."""
    return hashlib.sha1(fingerprint.encode("utf-8")).hexdigest()[:16]


def fingerprint_matches(stored: str, fingerprint: str) -> bool:
    """Whether a stored fingerprint (full, or its ``encoder_tag``) is that of ``fingerprint``."""
    return stored == fingerprint or stored == encoder_tag(fingerprint)


def source_text(value: object) -> str:
    """A recorded encoder source (an object in the metadata) as ``CollectionSpec.source`` holds it: JSON
    text, ``""`` when none."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value if isinstance(value, str) else ""


def check_spec(name: str, existing: CollectionSpec, wanted: CollectionSpec) -> None:
    """Raise StoreError naming the first difference between an existing collection and ``wanted``.

    An empty encoder fingerprint on either side is unknown and not compared.
    """
    if existing.dim != wanted.dim:
        raise StoreError(f"collection '{name}' has dim {existing.dim}, model gives {wanted.dim}; {_HINT}")
    if existing.distance != wanted.distance:
        raise StoreError(
            f"collection '{name}' uses distance {existing.distance}, expected {wanted.distance}; {_HINT}"
        )
    if existing.vector_name != wanted.vector_name:
        raise StoreError(
            f"collection '{name}' stores vector {_vector(existing.vector_name)}, "
            f"expected {_vector(wanted.vector_name)}; {_HINT}"
        )
    check_fingerprint(name, existing.encoder, wanted.encoder)


def check_fingerprint(name: str, stored: str, wanted: str) -> None:
    """Raise StoreError when a collection was built with another encoder."""
    if not stored or not wanted:
        if wanted and not stored:
            logger.warning("collection '%s' records no encoder fingerprint; cannot check the model", name)
        return
    if fingerprint_matches(stored, wanted):
        return
    raise StoreError(
        f"collection '{name}' was built with another encoder ({describe_difference(stored, wanted)}); {_HINT}"
    )


def describe_difference(stored: str, wanted: str) -> str:
    """One-line account of how two fingerprints differ (JSON fingerprints: the differing keys)."""
    try:
        old, new = json.loads(stored), json.loads(wanted)
    except ValueError:
        old = new = None
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        return ", ".join(f"{k}: {_short(old.get(k))} vs {_short(new.get(k))}" for k in keys)
    return f"{_short(stored)} vs {_short(wanted)}"


def _short(value: object, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _vector(name: str) -> str:
    return f"'{name}'" if name else "unnamed"
