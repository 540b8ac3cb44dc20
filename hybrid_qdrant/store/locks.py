"""Advisory locks of the embedded store (POSIX ``flock``; a no-op where it does not exist).

Two locks matter:

- the engine's: qdrant-edge holds an exclusive ``flock`` on a shard's ``wal`` folder while the shard is
  open (measured on qdrant-edge-py 0.9.0 with ``/proc/locks``);
- a collection name's (``{location}/.{name}.lock``, a file that stays): its creator holds it
  exclusively until the new collection is open under its name, openers hold it shared while they load,
  and a drop holds it exclusively. So no one opens a collection half-created or half-deleted, and two
  creators of one name take turns.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


class Busy(Exception):
    """The lock is held by someone else (another process, or another open of the path)."""


@contextlib.contextmanager
def path_lock(
    path: str | Path, exclusive: bool = True, wait: float = 0.0, create: bool = False
) -> Iterator[None]:
    """Hold a ``flock`` on a file or folder for the block; ``Busy`` if not got within ``wait`` seconds.

    ``create`` makes a missing lock file (mode from the umask); otherwise a missing path raises
    ``FileNotFoundError``.
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o666)
    try:
        _flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, wait)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def held_elsewhere(path: str | Path) -> bool:
    """Whether someone holds an exclusive lock on ``path`` (False if it does not exist).

    Probes with a shared lock released at once: it writes nothing.
    """
    try:
        with path_lock(path, exclusive=False):
            return False
    except Busy:
        return True
    except OSError:
        return False


def _flock(fd: int, mode: int, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise Busy() from None
            time.sleep(0.02)
