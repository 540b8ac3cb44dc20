"""Atomic writes: the umask decides the mode, and a failed write names its path and changes nothing."""

from __future__ import annotations

import errno
import os
import stat

import pytest
import typer

from hybrid_qdrant.atomic_write import atomic_directory, atomic_write_bytes
from hybrid_qdrant.errors import DiskError, HQError


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_new_files_and_folders_get_the_umask_mode(tmp_path, umask, mask):
    umask(mask)
    atomic_write_bytes(tmp_path / "report.json", b"{}")
    assert mode(tmp_path / "report.json") == 0o666 & ~mask  # as open() would, not mkstemp's 0600
    with atomic_directory(tmp_path / "beir") as folder:
        (folder / "corpus.jsonl").write_text("")
    assert mode(tmp_path / "beir") == 0o777 & ~mask  # as mkdir() would, not mkdtemp's 0700


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o077)
    path = tmp_path / "model.json"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and mode(path) == 0o644


def _full_disk(monkeypatch):
    """The disk fills half-way through the next write."""
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self._fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

        def write(self, data):
            self._fh.write(data[: len(data) // 2])
            self._fh.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._fh, name)

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real_fdopen(fd, *a, **k)))


@pytest.mark.parametrize("existed", [False, True])
def test_a_full_disk_names_the_path_and_leaves_nothing_half_written(tmp_path, monkeypatch, existed):
    path = tmp_path / "out" / "report.json"
    if existed:
        path.parent.mkdir()
        path.write_bytes(b"previous")
    _full_disk(monkeypatch)
    with pytest.raises(DiskError) as err:
        atomic_write_bytes(path, b"x" * 10_000)
    message = str(err.value)
    assert message.startswith(f"cannot write {path}: No space left on device [ENOSPC]")
    assert "\n" not in message and "[Errno 28]" not in message
    assert isinstance(err.value, HQError) and isinstance(err.value, OSError)
    assert err.value.exit_code == 5 and err.value.errno == errno.ENOSPC and err.value.path == str(path)
    assert sorted(p.name for p in path.parent.iterdir()) == (["report.json"] if existed else [])
    if existed:
        assert path.read_bytes() == b"previous"


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_folder_names_the_path(tmp_path, monkeypatch, code):
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(DiskError, match=rf"cannot write {tmp_path / 'a.json'}: {os.strerror(code)}"):
        atomic_write_bytes(tmp_path / "a.json", b"{}")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_folder_write_keeps_the_old_folder(tmp_path):
    dest = tmp_path / "beir"
    dest.mkdir()
    (dest / "corpus.jsonl").write_text("old")
    full = pytest.raises(DiskError, match=f"cannot write {dest}: No space left on device")
    with full, atomic_directory(dest) as folder:
        (folder / "corpus.jsonl").write_text("partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert [p.name for p in tmp_path.iterdir()] == ["beir"]
    assert (dest / "corpus.jsonl").read_text() == "old"


def test_the_cli_prints_one_line_and_exit_code_5(tmp_path, monkeypatch, capsys):
    from hybrid_qdrant.cli.hq import handle_errors

    _full_disk(monkeypatch)
    command = handle_errors(lambda: atomic_write_bytes(tmp_path / "report.json", b"{}" * 100))
    with pytest.raises(typer.Exit) as exit_info:
        command()
    assert exit_info.value.exit_code == 5
    err = capsys.readouterr().err
    path = tmp_path / "report.json"
    assert err == f"error: cannot write {path}: No space left on device [ENOSPC]; nothing was written\n"
