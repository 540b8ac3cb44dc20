"""The embedded store's directory: per-collection metadata and the location's alias map.

Layout of a location::

    {location}/catalog.json              {"format": 1, "aliases": {alias: collection}}
    {location}/{collection}/collection.json   dim, distance, vector name, encoder fingerprint and source
                                         (how to load the encoder again), created, labels, points
                                         (recorded when the last writer closed; null while written)
    {location}/{collection}/shard/       the qdrant-edge shard
    {location}/.creating-{collection}-{random}/   a collection being built (renamed into place when whole)
    {location}/.{collection}.lock        held while the collection is created, opened or dropped

Every JSON file is written atomically (temp file + ``os.replace``); alias updates hold an advisory
file lock (``catalog.lock``) so two processes cannot lose each other's changes. Listing reads only this
metadata: it never opens a shard (opening one writes to it).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hybrid_qdrant.atomic_write import atomic_write_bytes
from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.store.base import CollectionSpec
from hybrid_qdrant.store.compat import source_text
from hybrid_qdrant.store.naming import validate_name

try:  # advisory locks: POSIX only; elsewhere alias updates are atomic but not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

FORMAT = 1
CATALOG_FILE = "catalog.json"
COLLECTION_FILE = "collection.json"
SHARD_DIR = "shard"
CREATING_PREFIX = ".creating-"
POINTS_KEY = "points"
SOURCE_KEY = "encoder_source"


def move_aside(directory: Path) -> str:
    """The non-destructive fix for a damaged collection folder."""
    return f"move the folder aside (mv {directory} {directory}.broken) and ingest again"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that readers see the old or the new file, never a partial one."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"), fsync=True)


class Catalog:
    """Collections and aliases of one embedded-store directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def check_root(self) -> None:
        """Refuse a directory that holds a qdrant-client local store (nothing is created)."""
        if (self.root / "meta.json").exists() and (self.root / "collection").is_dir():
            raise StoreError(
                f"{self.root} holds a qdrant-client local store; open it with engine='client-local'"
            )

    def ensure_root(self) -> None:
        """Create the location directory (refusing one that holds a qdrant-client local store)."""
        self.check_root()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store directory {self.root}: {exc.strerror}") from None

    def collection_dir(self, name: str) -> Path:
        return self.root / validate_name(name)

    def shard_dir(self, name: str) -> Path:
        return self.collection_dir(name) / SHARD_DIR

    def collections(self) -> list[str]:
        """Names of the collection directories (complete or not; not those being created), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if not p.name.startswith(".")
            and p.is_dir()
            and ((p / COLLECTION_FILE).exists() or (p / SHARD_DIR).exists())
        )

    def creations(self, name: str) -> list[Path]:
        """Folders where ``name`` is being (or was, if interrupted) built."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob(f"{CREATING_PREFIX}{validate_name(name)}-*") if p.is_dir())

    def creation_dir(self, name: str, token: str) -> Path:
        return self.root / f"{CREATING_PREFIX}{validate_name(name)}-{token}"

    def name_lock(self, name: str) -> Path:
        """The lock file of a collection name (see ``store.locks``)."""
        return self.root / f".{validate_name(name)}.lock"

    def has_collection(self, name: str) -> bool:
        d = self.collection_dir(name)
        return (d / COLLECTION_FILE).exists() or (d / SHARD_DIR).exists()

    def read_spec(self, name: str) -> tuple[CollectionSpec, dict[str, Any]]:
        """The spec of an existing collection and its raw metadata; StoreError saying what is wrong."""
        d = self.collection_dir(name)
        path = d / COLLECTION_FILE
        if not (d / SHARD_DIR).is_dir():
            raise StoreError(
                f"collection '{name}' at {d} is damaged (no {SHARD_DIR} folder); {move_aside(d)}"
            )
        if not path.exists():
            raise StoreError(
                f"collection '{name}' at {d} is incomplete (no {COLLECTION_FILE}: its creation was "
                f"interrupted); {move_aside(d)}"
            )
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            spec = CollectionSpec(
                dim=int(meta["dim"]),
                distance=str(meta["distance"]),
                vector_name=str(meta.get("vector_name", "")),
                encoder=str(meta.get("encoder", "")),
                source=source_text(meta.get(SOURCE_KEY)),
            )
        except PermissionError:
            raise StoreError(f"cannot read {path}: permission denied") from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            problem = f"{COLLECTION_FILE}: {type(exc).__name__}"
            raise StoreError(f"collection '{name}' at {d} is corrupt ({problem}); {move_aside(d)}") from None
        return spec, meta

    def write_spec(
        self, name: str, spec: CollectionSpec, directory: Path | None = None, **extra: Any
    ) -> None:
        """Record a new collection's spec (in ``directory`` when it is built under another name)."""
        meta = {
            "format": FORMAT,
            "name": name,
            "dim": spec.dim,
            "distance": spec.distance,
            "vector_name": spec.vector_name,
            "encoder": spec.encoder,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            POINTS_KEY: 0,
            **extra,
        }
        if spec.source:
            meta[SOURCE_KEY] = json.loads(spec.source)
        write_json_atomic((directory or self.collection_dir(name)) / COLLECTION_FILE, meta)

    def labels(self, name: str) -> dict[str, str]:
        """The labels recorded on a collection (``{}`` when none)."""
        _, meta = self.read_spec(name)
        labels = meta.get(LABELS_KEY) or {}
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}

    def update_labels(self, name: str, changes: dict[str, str | None]) -> None:
        """Set (None: remove) labels on a collection, in one atomic rewrite of its metadata."""
        with self._locked():
            _, meta = self.read_spec(name)
            labels = dict(meta.get(LABELS_KEY) or {})
            for key, value in changes.items():
                if value is None:
                    labels.pop(key, None)
                else:
                    labels[key] = value
            meta[LABELS_KEY] = labels
            write_json_atomic(self.collection_dir(name) / COLLECTION_FILE, meta)

    def record_source(self, name: str, source: str) -> bool:
        """Record the encoder source of a collection created before sources were recorded (one atomic
        rewrite of its metadata); False when it records one already."""
        with self._locked():
            _, meta = self.read_spec(name)
            if meta.get(SOURCE_KEY):
                return False
            meta[SOURCE_KEY] = json.loads(source)
            write_json_atomic(self.collection_dir(name) / COLLECTION_FILE, meta)
        return True

    def aliases(self) -> dict[str, str]:
        """alias -> collection."""
        path = self.root / CATALOG_FILE
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            aliases = data.get("aliases", {})
            if not isinstance(aliases, dict):
                raise TypeError("aliases is not a map")
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise StoreError(f"the alias map {path} is corrupt ({type(exc).__name__})") from None
        return {str(k): str(v) for k, v in aliases.items()}

    def update_aliases(self, changes: dict[str, str | None]) -> None:
        """Apply alias changes (None removes one) in one atomic write."""
        self.ensure_root()
        with self._locked():
            aliases = self.aliases()
            for alias, target in changes.items():
                if target is None:
                    aliases.pop(alias, None)
                else:
                    aliases[alias] = target
            write_json_atomic(self.root / CATALOG_FILE, {"format": FORMAT, "aliases": aliases})

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover
            yield
            return
        with open(self.root / "catalog.lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


#: Key of a collection's labels in its metadata (``hybrid_qdrant.store.qdrant.QdrantStore.labels``).
LABELS_KEY = "labels"


def recorded_points(meta: dict[str, Any]) -> int | None:
    """The point count recorded in a collection's metadata; None when unknown (being written, or old)."""
    points = meta.get(POINTS_KEY)
    return points if isinstance(points, int) and not isinstance(points, bool) and points >= 0 else None


def record_points(collection_dir: Path, points: int | None) -> None:
    """Record a collection's point count (None: unknown, while it is being written) in its metadata.

    Only the process holding the shard calls this, so no other writer races it; nothing is written when
    the value is already there.
    """
    path = Path(collection_dir) / COLLECTION_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.debug("cannot record the point count in %s: %s", path, exc)
        return
    if not isinstance(meta, dict) or (POINTS_KEY in meta and meta[POINTS_KEY] == points):
        return
    meta[POINTS_KEY] = points
    write_json_atomic(path, meta)
