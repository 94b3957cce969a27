"""Atomic outputs and stage locks.

Every file or directory a stage produces appears complete or not at all: it is written under a
temporary name in the same directory (``.NAME.tmp.<pid>``), flushed and fsync'ed, then renamed.
A stage's "done" state is derived from its validated outputs, never from a marker written before
the work. `StageLock` keeps two runs of the same stage off one output directory.

A write that fails because the disk is full, the file-size limit (RLIMIT_FSIZE) is reached or the
quota is exceeded comes out of these writers as a `DiskFullError` (an OSError) naming the output
being written -- its final name, not the temporary one -- and saying what to do; `cli_main` prints
it on one line. Writers that hide the errno (``torch.save`` reports a short write as a
RuntimeError) are diagnosed by trying to extend the temporary file before it is removed.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Iterator

from s3prl.errors import UserError

TMP_MARK = ".tmp."


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


# "No room": disk full, file larger than RLIMIT_FSIZE, disk quota exceeded.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_ADVICE = "while writing it; free space there (or raise the file-size limit) and rerun: nothing partial was kept"


class DiskFullError(OSError):
    """No room to write `filename` (ENOSPC, EFBIG or EDQUOT); str() is one line with the advice."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def disk_full_error(e: OSError, path: str | Path) -> DiskFullError:
    """`e` (an OSError whose errno is in FULL_ERRNOS) as a DiskFullError naming `path`."""
    if isinstance(e, DiskFullError):
        return DiskFullError(e.errno, e.strerror, str(path))
    return DiskFullError(e.errno, f"{e.strerror or os.strerror(e.errno)} {_ADVICE}", str(path))


def _written_name(e: OSError, tmp: Path, final: Path) -> str:
    """The output a failed write was writing, under its final name: the error's destination
    (shutil.copyfile puts it in filename2) mapped from `tmp` to `final`, or `final` itself."""
    name = e.filename2 if getattr(e, "filename2", None) is not None else e.filename
    if name is None:
        return str(final)
    name, t = os.fsdecode(name), str(tmp)
    if name == t or name.startswith(t + os.sep):
        return str(final) + name[len(t):]
    return name


def _hidden_full_error(tmp: Path) -> OSError | None:
    """After a writer failed without an errno (torch.save: RuntimeError on a short write), try to
    extend its temporary file: the OSError if there is no room (the real cause), else None."""
    try:
        with open(tmp, "ab") as f:
            f.write(bytes(1 << 16))
            f.flush()
    except OSError as e:
        return e if e.errno in FULL_ERRNOS else None
    return None


def _newest_file(root: Path) -> Path | None:
    """The single most recently modified file under `root` (None if none or a tie)."""
    stamps = sorted(((p.stat().st_mtime_ns, p) for p in root.rglob("*") if p.is_file()), reverse=True)
    if not stamps or (len(stamps) > 1 and stamps[0][0] == stamps[1][0]):
        return None
    return stamps[0][1]


def fsync_dir(path: str | Path) -> None:
    """fsync a directory so a rename inside it survives a crash."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` when the block succeeds.

    On an exception the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        if fsync and tmp.is_file():
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except BaseException as e:
        full = e if isinstance(e, OSError) and e.errno in FULL_ERRNOS else None
        if full is None and isinstance(e, RuntimeError) and tmp.is_file():
            full = _hidden_full_error(tmp)
        with contextlib.suppress(FileNotFoundError):
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        if full is not None:
            raise disk_full_error(full, _written_name(full, tmp, path)) from None
        raise


def save_png(fig, path: str | Path) -> Path:
    """Write a matplotlib figure to `path` as PNG (80 dpi) atomically, then close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, fsync=False) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """Open a temporary file for writing; it replaces `path` only when the block succeeds."""
    binary = "b" in mode
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if binary else encoding, newline=None if binary else "\n") as f:
            yield f
            f.flush()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it onto `path` when complete.

    `path` must not exist yet (a complete output is skipped by the caller, not rebuilt).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        fsync_dir(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as e:
        name = None
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
            # A plain open()/write() in the block names no file: the newest one is being written.
            newest = _newest_file(tmp) if e.filename is None and not isinstance(e, DiskFullError) else None
            name = _written_name(e, tmp, path) if newest is None else str(path / newest.relative_to(tmp))
        shutil.rmtree(tmp, ignore_errors=True)
        if name is not None:
            raise disk_full_error(e, name) from None
        raise


def remove_stale_tmp(directory: str | Path) -> list[Path]:
    """Remove temporary files left in `directory` by killed runs whose process is gone."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        if TMP_MARK not in p.name or not p.name.startswith("."):
            continue
        pid = p.name.rsplit(TMP_MARK, 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


class StageLock:
    """An exclusive, non-blocking lock on an output directory (`<dir>/.lock`, flock).

    A second run of the same stage on the same directory fails at once with a message naming the
    holder (host, pid, command, start time). The lock is released by the kernel when the holder
    dies, so a killed run never leaves a stale lock behind.
    """

    def __init__(self, directory: str | Path, what: str = ""):
        self.directory = Path(directory)
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> "StageLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = self.directory / ".lock"
        fd = os.open(str(lock), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = ""
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            os.close(fd)
            raise UserError(f"{self.directory}: locked by another run ({holder or 'unknown holder'})") from None
        info = f"host={socket.gethostname()} pid={os.getpid()} started={time.strftime('%Y-%m-%d %H:%M:%S')} {self.what}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (completion records hash their inputs)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
