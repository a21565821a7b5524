"""Thumbnails of library videos: JPEGs made on demand and kept in the library folder.

Thumbnails are derived library storage, like the vector cache: anyone may delete the
``thumbs/`` folder and they are made again. Three bounds keep a client from filling the disk
or the CPU with them:

* times are quantised to the video's stored frame timestamps (:func:`thumb_time`), so a
  video has at most as many thumbnails as it has stored frames, whatever ``t`` is asked;
* the folder is a least-recently-used cache bounded by total bytes (``max_bytes``);
* decoding runs in one crash-isolated :class:`~videolens.io.FrameReader` worker, at most
  ``max_decoders`` at a time; a file that crashes or hangs FFmpeg costs one thumbnail.

The worker opens the video with :func:`~videolens.library.files.open_indexed` and decodes
that descriptor, so a file swapped for a symlink after the caller's check is never shown.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import threading
from collections import OrderedDict
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import VideoDecodeError
from ..io import FrameReader, Sampling, read_frames
from .files import descriptor_path, indexed_file
from .store import VideoRecord

THUMB_WIDTH = 320  # pixels; a result card is ~240 px wide, so this stays sharp on 1.5x screens
THUMB_QUALITY = 82
# seconds one thumbnail may take to decode before its worker is killed
THUMB_TIMEOUT = 30.0
# ~20 KB per 320 px JPEG: room for ~6,000 thumbnails
THUMB_CACHE_BYTES = 128 * 1024 * 1024


def thumb_time(t: float, timestamps: np.ndarray) -> float:
    """The stored frame time (seconds) nearest to ``t``: ``timestamps`` are a video's stored
    frame times, ascending; ``t`` before the first or past the last gets that end. 0.0 when
    nothing is stored. Raises ValueError for a ``t`` that is not a finite number."""
    if not math.isfinite(t):
        raise ValueError("t must be a finite number of seconds")
    if len(timestamps) == 0:
        return 0.0
    right = int(np.searchsorted(timestamps, t))
    if right == 0:
        return float(timestamps[0])
    if right == len(timestamps):
        return float(timestamps[-1])
    before, after = float(timestamps[right - 1]), float(timestamps[right])
    return before if t - before <= after - t else after


class ThumbnailCache:
    """JPEG thumbnails of library videos, made on demand and kept under ``folder``, at most
    ``max_bytes`` in all (the least recently used are deleted first).

    File name ``<video id>-<milliseconds>.jpg``: ids are never reused (a re-indexed file
    gets a new id), so a cached thumbnail never shows an older version of a video. Writes go
    to a temporary file then ``os.replace``, so a reader never sees half a JPEG. Decoding
    is bounded by ``max_decoders`` concurrent decodes (a results page asks for a dozen at
    once; 2 cores cannot decode them faster in parallel), and one time of one video is
    decoded once even when asked for concurrently.

    The byte bound is kept by this object: files that another process writes into the same
    folder are counted when this one starts, not while it runs.
    """

    def __init__(self, folder: Path, *, width: int = THUMB_WIDTH, max_decoders: int = 2,
                 max_bytes: int = THUMB_CACHE_BYTES):
        self.folder = folder
        self.width = width
        self.max_bytes = max_bytes
        self._decoders = threading.BoundedSemaphore(max_decoders)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._reader: FrameReader | None = None
        self._reader_lock = threading.Lock()
        self._sizes: OrderedDict[str, int] = OrderedDict()  # file name -> bytes, oldest first
        self._total = 0  # sum of _sizes
        self._sizes_guard = threading.Lock()
        self._scan()

    @property
    def total_bytes(self) -> int:
        """Bytes of the thumbnails this cache knows of."""
        return self._total

    def path_for(self, video_id: int, t: float) -> Path:
        return self.folder / f"{video_id}-{round(t * 1000)}.jpg"

    def get(self, record: VideoRecord, t: float) -> bytes:
        """The JPEG of ``record`` at ``t`` seconds (already quantised by :func:`thumb_time`).

        Raises VideoDecodeError when no frame decodes, or when the file is no longer the one
        the library indexed.
        """
        target = self.path_for(record.id, t)
        cached = self._read(target)
        if cached is not None:
            return cached
        with self._lock_for(target.name):
            cached = self._read(target)  # made by the request we waited for
            if cached is not None:
                return cached
            with self._decoders:
                jpeg = self._render(record, t)
            self._store(target, jpeg)
            return jpeg

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            if len(self._locks) > 1024:  # forget idle locks; a held one is recreated harmlessly
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            return self._locks.setdefault(key, threading.Lock())

    def _render(self, record: VideoRecord, t: float) -> bytes:
        # FFmpeg runs in a worker process: a file that crashes or hangs the decoder costs
        # that thumbnail (a VideoDecodeError), never the server
        with self._reader_lock:
            if self._reader is None:
                self._reader = FrameReader(Sampling(), workers=1, timeout=THUMB_TIMEOUT)
            self._reader.loader = partial(render_thumbnail, t=t, width=self.width,
                                          size=record.size, mtime_ns=record.mtime_ns)
            [(_, result)] = list(self._reader.map([record.path]))
        if isinstance(result, VideoDecodeError):
            raise result
        return result

    def close(self) -> None:
        """Stop the decoding worker."""
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # --- the files and their LRU order ---------------------------------------------------

    def _scan(self) -> None:
        """Count what an earlier run left, oldest modification first, and trim to the bound."""
        try:
            entries = [entry for entry in os.scandir(self.folder)
                       if entry.name.endswith(".jpg") and not entry.name.startswith(".")
                       and entry.is_file(follow_symlinks=False)]
            found = sorted((entry.stat().st_mtime_ns, entry.name, entry.stat().st_size)
                           for entry in entries)
        except OSError:
            return  # no folder yet
        for _, name, size in found:
            self._remember(name, size)
        self._evict()

    def _read(self, path: Path) -> bytes | None:
        try:
            data = path.read_bytes()
        except OSError:
            self._forget(path.name)  # not made yet, or deleted behind our back
            return None
        self._remember(path.name, len(data))
        return data

    def _store(self, target: Path, jpeg: bytes) -> None:
        if len(jpeg) > self.max_bytes:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".jpg")
        except OSError:
            return  # read-only library: serve without caching
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(jpeg)
            os.replace(tmp, target)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
            return
        self._remember(target.name, len(jpeg))
        self._evict()

    def _remember(self, name: str, size: int) -> None:
        """``name`` is ``size`` bytes and was just used (the newest in LRU order)."""
        with self._sizes_guard:
            self._total += size - self._sizes.get(name, 0)
            self._sizes[name] = size
            self._sizes.move_to_end(name)

    def _forget(self, name: str) -> None:
        with self._sizes_guard:
            self._total -= self._sizes.pop(name, 0)

    def _evict(self) -> None:
        """Delete the least recently used thumbnails until the rest fit in ``max_bytes``."""
        while True:
            with self._sizes_guard:
                if self._total <= self.max_bytes or not self._sizes:
                    return
                name, size = self._sizes.popitem(last=False)
                self._total -= size
            (self.folder / name).unlink(missing_ok=True)


def render_thumbnail(path: str, sampling: Sampling, *, t: float, width: int, size: int,
                     mtime_ns: int) -> bytes:
    """JPEG bytes of the frame shown at ``t`` seconds, at most ``width`` px wide, of the file
    at ``path`` only while it is still the indexed file (``size`` bytes, ``mtime_ns``). Runs in
    the FrameReader worker; ``sampling`` is unused, it is the loader signature."""
    from PIL import Image

    with indexed_file(path, size, mtime_ns) as fd:
        if fd is None:
            raise VideoDecodeError("the file is gone or was replaced since it was indexed",
                                   path=path, hint="index the folder again")
        # decode the checked descriptor, not the path, wherever the system allows it
        source = descriptor_path(fd) or path
        frame = read_frames(source, [t]).frames[0]  # (H, W, 3) uint8 RGB, upright
    image = Image.fromarray(frame)
    if image.width > width:
        height = max(1, round(image.height * width / image.width))
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=THUMB_QUALITY)
    return out.getvalue()
