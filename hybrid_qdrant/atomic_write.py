"""Atomic file writes: readers see the old file or the new one, never a partial one."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    Args:
        path: the destination; its folder is created when missing.
        data: the whole content.
        fsync: flush to the disk before the rename (metadata that must survive a crash).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_savefig(fig, path: str | Path, dpi: int = 120) -> None:
    """Save a matplotlib figure as PNG through ``atomic_write_bytes`` (no partial image on failure)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
