"""Locks of a library folder: ``flock`` on a file, released by the OS when a process dies.

:class:`WriteLock` (``write.lock``) admits one writer at a time. A command that will write
takes it *first*, before loading a model or creating the library, so a second run is told at
once who holds it ("another videolens index run (pid N) is writing to this library") instead
of after seconds of model loading, or with a misleading "already exists".
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ..errors import LibraryError

LOCK_NAME = "write.lock"


class FileLock:
    """An ``flock`` on a file, per open file description (so it also excludes a second
    ``open()`` in the same process). Released by :meth:`release` or by process death."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def try_acquire(self, mode: int = fcntl.LOCK_EX, wait_s: float = 0.0) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                self.fd = fd
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)

    def acquire_blocking(self, mode: int = fcntl.LOCK_EX) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, mode)
        self.fd = fd

    def write_holder(self, purpose: str) -> None:
        """Record who holds the lock: ``<pid>\\n<purpose>\\n``, for the next one's message."""
        assert self.fd is not None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n{purpose}\n".encode(), 0)

    def holder(self) -> tuple[str, str]:
        """``(pid, purpose)`` of the holder as it recorded them ("unknown" where absent)."""
        try:
            lines = self.path.read_text().split("\n")
        except OSError:
            lines = []
        pid = lines[0].strip() if lines and lines[0].strip() else "unknown"
        purpose = lines[1].strip() if len(lines) > 1 and lines[1].strip() else "process"
        return pid, purpose

    def same_file(self) -> bool:
        """Whether the locked descriptor is still the file at ``path`` (not unlinked or
        replaced since it was opened)."""
        assert self.fd is not None
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self.fd)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class WriteLock:
    """The one-writer lock of the library folder ``root``; a context manager.

    ``purpose`` names the holder in the message another writer gets ("index run",
    "library remove", ...). The folder is created if missing; if it was created here and no
    library was made in it by the time the lock is released (a model that failed to load),
    the empty folder is removed again.
    """

    def __init__(self, root: str | os.PathLike, purpose: str = "process"):
        self.root = Path(root).expanduser().resolve()
        self.purpose = purpose
        self._lock = FileLock(self.root / LOCK_NAME)
        self._created_root = False

    @property
    def held(self) -> bool:
        return self._lock.fd is not None

    def acquire(self, wait_s: float = 0.5) -> WriteLock:
        """Take the lock or raise LibraryError naming the holder. ``wait_s`` covers a
        search's momentary probe of the lock (see ``Library.writer_running``)."""
        if self.held:
            raise RuntimeError("this WriteLock is already held")
        while True:
            self._make_root()  # again after a holder that created it removed it
            try:
                got = self._lock.try_acquire(fcntl.LOCK_EX, wait_s=wait_s)
            except OSError as err:
                raise LibraryError(f"cannot lock the library for writing: {err.strerror}",
                                   path=self.root,
                                   hint="check the folder's permissions or use another "
                                        "--library") from err
            if not got:
                pid, purpose = self._lock.holder()
                raise LibraryError(
                    f"another videolens {purpose} (pid {pid}) is writing to this library",
                    path=self.root, hint="wait for it to finish, or use another --library")
            if self._lock.same_file():
                break
            self._lock.release()  # the holder before us removed the file: lock the new one
        self._lock.write_holder(self.purpose)
        return self

    def _make_root(self) -> None:
        if self.root.is_dir():
            return
        try:
            self.root.mkdir(parents=True)
            self._created_root = True
        except FileExistsError:
            pass
        except OSError as err:
            raise LibraryError(f"cannot create the library folder: {err.strerror}",
                               path=self.root, hint="choose another --library") from err

    def release(self) -> None:
        if not self.held:
            return
        from .db import DB_NAME

        if self._created_root and not (self.root / DB_NAME).exists():
            # unlinked while held: a process waiting on the old file sees it is gone
            # (same_file) and retries, so two writers never hold two different files
            self._lock.path.unlink(missing_ok=True)
            self._lock.release()
            try:
                self.root.rmdir()
            except OSError:  # not empty: something else lives there
                pass
            return
        self._lock.release()

    def __enter__(self) -> WriteLock:
        return self if self.held else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
