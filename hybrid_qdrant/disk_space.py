"""Free space and writability of the filesystem holding a path, checked before writes that must not fail
half-way (memory-mapped stores die with SIGBUS when a write lands on a full disk)."""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import shutil
from pathlib import Path

_HOLES: dict[int, str] = {}  # st_dev -> file_holes()


def _existing(path: str | Path) -> Path:
    """``path`` or its nearest existing ancestor (what ``statvfs`` can look at)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_bytes(path: str | Path) -> int | None:
    """Bytes this user may still write on the filesystem holding ``path``; None when unknown."""
    where = _existing(path)
    try:
        if hasattr(os, "statvfs"):
            st = os.statvfs(where)
            return st.f_bavail * st.f_frsize
        return shutil.disk_usage(where).free
    except OSError:
        return None


def read_only_filesystem(path: str | Path) -> bool:
    """Whether the filesystem holding ``path`` is mounted read-only."""
    if not hasattr(os, "statvfs"):
        return False
    try:
        return bool(os.statvfs(_existing(path)).f_flag & getattr(os, "ST_RDONLY", 1))
    except OSError:
        return False


#: How a filesystem treats the holes of a sparse file (see ``file_holes``).
NO_HOLES, HOLES_KEPT, HOLES_FILLED_ON_READ = "none", "kept", "filled-on-read"


def file_holes(folder: str | Path) -> str:
    """How the filesystem of ``folder`` treats holes in files, which decides what preallocation costs.

    ``kept`` (ext4, xfs): a hole takes no space until written. ``filled-on-read`` (tmpfs): a hole takes
    space as soon as a shared memory map reads it (so opening a memory-mapped store can grow it).
    ``none``: no holes, preallocated bytes are taken at once; also the answer when the probe (a 1 MiB
    temporary file, truncated and read through a memory map) cannot run. Probed once per filesystem.
    """
    where = _existing(folder)
    try:
        device = os.stat(where).st_dev
    except OSError:
        return NO_HOLES
    if device not in _HOLES:
        probe = where / f".hq-holes-probe-{secrets.token_hex(4)}"
        try:
            fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return NO_HOLES  # not writable now: not remembered
        try:
            _HOLES[device] = _probe_holes(fd)
        except (OSError, ValueError):
            _HOLES[device] = NO_HOLES
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)
    return _HOLES[device]


def _probe_holes(fd: int) -> str:
    size = 2**20
    os.ftruncate(fd, size)
    if os.fstat(fd).st_blocks * 512 >= size:
        return NO_HOLES
    with mmap.mmap(fd, size) as view:  # shared, read-write: what the engine maps
        view[size // 2]  # read one page in the middle of the hole
    return HOLES_FILLED_ON_READ if os.fstat(fd).st_blocks else HOLES_KEPT


def human_bytes(n: float) -> str:
    """``143.7 MB`` (decimal units, as ``df -H`` prints)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover
