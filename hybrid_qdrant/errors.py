"""Errors the CLI turns into a one-line message and a non-zero exit code."""

from __future__ import annotations


class HQError(Exception):
    """Base class: a user-facing failure with a one-line message.

    Attributes:
        exit_code: the process exit code the CLI uses for this kind of failure.
    """

    exit_code = 1


class DataError(HQError):
    """Malformed, missing or inconsistent input data (file and line in the message)."""

    exit_code = 2


class ConfigError(HQError):
    """A bad config file or option (unknown key, value out of range)."""

    exit_code = 2


class ModelError(HQError):
    """A model that cannot be loaded, or one that does not match a collection."""

    exit_code = 3


class StoreError(HQError):
    """A Qdrant failure: unreachable server, bad credentials, incompatible collection."""

    exit_code = 4


class DiskError(HQError, OSError):
    """A file that cannot be written: disk full, read-only filesystem, no permission (path in the message).

    Also an ``OSError`` (with ``errno`` and ``filename`` set), so code that handles write failures as
    ``OSError`` keeps working; ``str()`` is the one-line message.
    """

    exit_code = 5

    def __init__(self, message: str, path: object = None, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.path = self.filename = None if path is None else str(path)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__
