"""The embedded store's directory: per-collection metadata and the location's alias map.

Layout of a location::

    {location}/catalog.json              {"format": 1, "aliases": {alias: collection}}
    {location}/{collection}/collection.json   dim, distance, vector name, encoder fingerprint, created
    {location}/{collection}/shard/       the qdrant-edge shard

Every JSON file is written atomically (temp file + ``os.replace``); alias updates hold an advisory
file lock (``catalog.lock``) so two processes cannot lose each other's changes.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hybrid_qdrant.atomic_write import atomic_write_bytes
from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.store.base import CollectionSpec
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


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that readers see the old or the new file, never a partial one."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"), fsync=True)


class Catalog:
    """Collections and aliases of one embedded-store directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def ensure_root(self) -> None:
        """Create the location directory (refusing one that holds a qdrant-client local store)."""
        if (self.root / "meta.json").exists() and (self.root / "collection").is_dir():
            raise StoreError(
                f"{self.root} holds a qdrant-client local store; open it with engine='client-local'"
            )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store directory {self.root}: {exc.strerror}") from None

    def collection_dir(self, name: str) -> Path:
        return self.root / validate_name(name)

    def shard_dir(self, name: str) -> Path:
        return self.collection_dir(name) / SHARD_DIR

    def collections(self) -> list[str]:
        """Names of the collection directories (complete or not), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and ((p / COLLECTION_FILE).exists() or (p / SHARD_DIR).exists())
        )

    def has_collection(self, name: str) -> bool:
        d = self.collection_dir(name)
        return (d / COLLECTION_FILE).exists() or (d / SHARD_DIR).exists()

    def read_spec(self, name: str) -> tuple[CollectionSpec, dict[str, Any]]:
        """The spec of an existing collection and its raw metadata; StoreError when it is corrupt."""
        d = self.collection_dir(name)
        path = d / COLLECTION_FILE
        if not (d / SHARD_DIR).is_dir():
            raise StoreError(f"collection '{name}' at {d} is corrupt (no shard directory); use --recreate")
        if not path.exists():
            raise StoreError(
                f"collection '{name}' at {d} is corrupt or incomplete (no {COLLECTION_FILE}); use --recreate"
            )
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            spec = CollectionSpec(
                dim=int(meta["dim"]),
                distance=str(meta["distance"]),
                vector_name=str(meta.get("vector_name", "")),
                encoder=str(meta.get("encoder", "")),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"{COLLECTION_FILE}: {type(exc).__name__}"
            raise StoreError(f"collection '{name}' at {d} is corrupt ({problem}); use --recreate") from None
        return spec, meta

    def write_spec(self, name: str, spec: CollectionSpec, **extra: Any) -> None:
        """Record a new collection's spec (written last when creating, so a crash leaves it marked)."""
        meta = {
            "format": FORMAT,
            "name": name,
            "dim": spec.dim,
            "distance": spec.distance,
            "vector_name": spec.vector_name,
            "encoder": spec.encoder,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **extra,
        }
        write_json_atomic(self.collection_dir(name) / COLLECTION_FILE, meta)

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
