"""A disk cache of exported models: built once per key, published whole, shared by processes.

Layout: ``{root}/{sha1(key)[:20]}/`` holding ``meta.json`` (the key) and the backend's files. The folder
is built under a temporary name and renamed into place (``atomic_directory``), so a reader sees a whole
export or none; builders of one key hold an advisory lock, so two processes never export it twice. The
root is ``$HQ_CACHE_DIR/backends`` (default ``~/.cache/hybrid-qdrant/backends``), never a model's folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hybrid_qdrant.atomic_write import atomic_directory, atomic_write_bytes, disk_error
from hybrid_qdrant.errors import DiskError, ModelError
from hybrid_qdrant.store.locks import Busy, path_lock

logger = logging.getLogger(__name__)

META = "meta.json"
LOCK_WAIT = 3600.0  # seconds to wait for another process's export of the same key


def default_export_dir() -> Path:
    """``$HQ_CACHE_DIR/backends`` or ``~/.cache/hybrid-qdrant/backends``."""
    base = os.environ.get("HQ_CACHE_DIR") or Path.home() / ".cache" / "hybrid-qdrant"
    return Path(base) / "backends"


def export_key(parts: dict[str, Any]) -> str:
    """The canonical JSON of what identifies an export (model, backend, quantization, versions...)."""
    return json.dumps(parts, sort_keys=True, ensure_ascii=False)


def cached_export(
    parts: dict[str, Any], build: Callable[[Path], None], root: str | Path | None = None
) -> Path:
    """The folder of the export identified by ``parts``, built with ``build(folder)`` when missing.

    Raises:
        DiskError: the cache folder cannot be written.
    """
    key = export_key(parts)
    root = Path(root) if root is not None else default_export_dir()
    folder = root / hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]
    if _complete(folder, key):
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
        with path_lock(root / f".{folder.name}.lock", wait=LOCK_WAIT, create=True):
            if _complete(folder, key):  # another process built it while we waited
                return folder
            logger.warning("exporting %s/%s once to %s", parts.get("backend"), parts.get("quantize"), folder)
            with atomic_directory(folder) as tmp:
                build(tmp)
                atomic_write_bytes(tmp / META, (json.dumps({"key": key}, indent=1) + "\n").encode())
    except Busy:
        raise ModelError(f"another process has been exporting {folder} for over {LOCK_WAIT:.0f} s") from None
    except OSError as exc:
        if isinstance(exc, DiskError):
            raise
        raise disk_error(root, exc) from exc
    return folder


def _complete(folder: Path, key: str) -> bool:
    """Whether ``folder`` holds a whole export of ``key`` (its meta.json is written last)."""
    try:
        return json.loads((folder / META).read_text(encoding="utf-8")).get("key") == key
    except (OSError, ValueError, AttributeError):
        return False
