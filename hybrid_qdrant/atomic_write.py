"""Atomic file writes: readers see the old file or the new one, never a partial one.

Every file the package writes as a whole (reports, metadata, cache shards, downloads) goes through
``atomic_write_bytes``; a folder written as a whole goes through ``atomic_directory``. Both:

- create their temporary file or folder as a plain ``open`` / ``mkdir`` would, so the umask (and a
  default ACL) decides its mode: ``tempfile.mkstemp`` / ``mkdtemp`` would leave it 0600 / 0700 whatever
  the umask; a file that is replaced keeps its mode, as when it is rewritten in place;
- turn a failed write (disk full, read-only filesystem, no permission) into one ``DiskError`` naming the
  destination, after removing the temporary file: the destination is untouched.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import io
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from hybrid_qdrant.errors import DiskError

_FILE_MODE = 0o666  # what open() asks for; the kernel applies the umask
_DIR_MODE = 0o777  # what mkdir() asks for


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    Args:
        path: the destination; its folder is created when missing.
        data: the whole content.
        fsync: flush the file, then the rename, to the disk (metadata that must survive a crash).

    Raises:
        DiskError: the file cannot be written (full disk, read-only, no permission); nothing changed.
    """
    path = Path(path)
    existed = _exists(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp_file(path)
    except OSError as exc:
        raise disk_error(path, exc, existed) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise disk_error(path, exc, existed) from exc
        raise
    if fsync:
        _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name beside ``path``; on success it replaces ``path``.

    Yields the temporary folder to fill. A failure removes it and leaves ``path`` as it was; an
    ``OSError`` while filling or renaming becomes a ``DiskError`` naming ``path``.
    """
    path = Path(path)
    existed = _exists(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp_dir(path)
    except OSError as exc:
        raise disk_error(path, exc, existed) from exc
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, DiskError):
            raise disk_error(path, exc, existed) from exc
        raise


def atomic_savefig(fig, path: str | Path, dpi: int = 120) -> None:
    """Save a matplotlib figure as PNG through ``atomic_write_bytes`` (no partial image on failure)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())


def disk_error(path: str | Path, exc: OSError, existed: bool = False) -> DiskError:
    """The one-line error for a failed write: ``cannot write PATH: No space left on device [ENOSPC]``."""
    code = exc.errno
    reason = exc.strerror or str(exc) or type(exc).__name__
    name = errno_codes.errorcode.get(code, "") if code is not None else ""
    kept = "the previous version is kept" if existed else "nothing was written"
    return DiskError(f"cannot write {path}: {reason}{f' [{name}]' if name else ''}; {kept}", path, code)


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux), else set and reset."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _create_temp_file(path: Path) -> tuple[int, str]:
    """A new, empty temporary file beside ``path`` (mode from the umask, or ``path``'s own mode)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, _FILE_MODE)
        except FileExistsError:
            continue
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            return fd, tmp  # a new file: the umask decided its mode
        try:
            os.chmod(tmp, mode)  # a replaced file keeps its mode
        except OSError:
            os.close(fd)
            os.unlink(tmp)
            raise
        return fd, tmp
    raise FileExistsError(errno_codes.EEXIST, "no free temporary name", str(path.parent))


def _create_temp_dir(path: Path) -> Path:
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            tmp.mkdir(mode=_DIR_MODE)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno_codes.EEXIST, "no free temporary name", str(path.parent))


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
