"""Open a library video's file only when it is still the file that was indexed.

The store keeps resolved absolute paths, so no component of a stored path was a symlink when
it was indexed. :func:`open_indexed` opens the path one component at a time, relative to the
folder opened before it and never following a symlink (``O_NOFOLLOW``), then checks the
*open descriptor* (``fstat``): a regular file with the recorded size and modification time.
Whoever reads from that descriptor reads the checked file, whatever is renamed, swapped for
a symlink or replaced at that path afterwards: there is no gap between check and use.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

# O_PATH (Linux) walks folders that may be traversed but not listed (mode 711)
_DIR_FLAGS = (getattr(os, "O_PATH", 0) or os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in at the path must not block the open (it is refused next)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_indexed(path: str | os.PathLike, size: int, mtime_ns: int) -> int | None:
    """A read-only descriptor of the regular file at ``path`` (absolute, every component a
    real folder or file, no symlink) whose size (bytes) and modification time (ns since the
    epoch) are still ``size`` and ``mtime_ns``; None when it is gone, is or passes through a
    symlink, is not a regular file, or changed since. The caller closes the descriptor."""
    parts = Path(path).parts
    if (not Path(path).is_absolute() or len(parts) < 2
            or any(part in (".", "..") for part in parts[1:])):
        return None
    try:
        folder = os.open(parts[0], _DIR_FLAGS)
    except OSError:
        return None
    try:
        for part in parts[1:-1]:
            inner = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=folder)
            os.close(folder)
            folder = inner
        fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=folder)
    except OSError:  # missing, a symlink (ELOOP / ENOTDIR), no permission
        return None
    finally:
        os.close(folder)
    info = os.fstat(fd)
    if not (stat.S_ISREG(info.st_mode) and info.st_size == size
            and info.st_mtime_ns == mtime_ns):
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def indexed_file(path: str | os.PathLike, size: int, mtime_ns: int) -> Iterator[int | None]:
    """:func:`open_indexed` as a context manager: the descriptor (or None), closed on exit."""
    fd = open_indexed(path, size, mtime_ns)
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def descriptor_path(fd: int) -> str | None:
    """A path that opens the very file behind ``fd`` however its name changes (Linux's
    ``/proc/self/fd/N`` reopens the descriptor's own file), for code that only takes a path
    (FFmpeg); None where there is no such path. BSD's ``/dev/fd/N`` is not used: opening it
    duplicates the descriptor, sharing its file offset with every other opener."""
    candidate = f"/proc/self/fd/{fd}"
    with contextlib.suppress(OSError):
        if os.path.samestat(os.stat(candidate), os.fstat(fd)):
            return candidate
    return None
