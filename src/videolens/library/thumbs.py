"""Thumbnails of library videos: JPEGs made on demand and kept in the library folder.

Thumbnails are derived library storage, like the vector cache: anyone may delete the
``thumbs/`` folder and they are made again. Decoding runs in a crash-isolated
:class:`~videolens.io.FrameReader` worker, so a file that crashes or hangs FFmpeg costs one
thumbnail, never the caller.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import threading
from functools import partial
from pathlib import Path

from ..errors import VideoDecodeError
from ..io import FrameReader, Sampling, read_frames
from .store import VideoRecord

THUMB_WIDTH = 320  # pixels; a result card is ~240 px wide, so this stays sharp on 1.5x screens
THUMB_STEP = 0.1  # seconds: thumbnail times are rounded to this, bounding the cache per video
THUMB_QUALITY = 82
# seconds one thumbnail may take to decode before its worker is killed
THUMB_TIMEOUT = 30.0


def thumb_time(t: float, duration: float) -> float:
    """``t`` (seconds) clamped into the video and rounded to :data:`THUMB_STEP`."""
    if not math.isfinite(t):
        raise ValueError("t must be a finite number of seconds")
    if duration > 0:
        t = min(t, duration)
    return round(max(0.0, t) / THUMB_STEP) * THUMB_STEP


class ThumbnailCache:
    """JPEG thumbnails of library videos, made on demand and kept under ``folder``.

    File name ``<video id>-<milliseconds>.jpg``: ids are never reused (a re-indexed file
    gets a new id), so a cached thumbnail never shows an older version of a video. Writes go
    to a temporary file then ``os.replace``, so a reader never sees half a JPEG. Decoding
    is bounded by ``max_decoders`` concurrent decodes (a results page asks for a dozen at
    once; 2 cores cannot decode them faster in parallel), and one time of one video is
    decoded once even when asked for concurrently.
    """

    def __init__(self, folder: Path, *, width: int = THUMB_WIDTH, max_decoders: int = 2):
        self.folder = folder
        self.width = width
        self._decoders = threading.BoundedSemaphore(max_decoders)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._reader: FrameReader | None = None
        self._reader_lock = threading.Lock()

    def path_for(self, video_id: int, t: float) -> Path:
        return self.folder / f"{video_id}-{round(t * 1000)}.jpg"

    def get(self, record: VideoRecord, video_path: Path, t: float) -> bytes:
        """The JPEG of ``record`` at ``t`` seconds (already rounded by :func:`thumb_time`).

        Raises VideoDecodeError when no frame decodes.
        """
        target = self.path_for(record.id, t)
        cached = _read_if_exists(target)
        if cached is not None:
            return cached
        with self._lock_for(target.name):
            cached = _read_if_exists(target)  # made by the request we waited for
            if cached is not None:
                return cached
            with self._decoders:
                jpeg = self._render(video_path, t)
            self._store(target, jpeg)
            return jpeg

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            if len(self._locks) > 1024:  # forget idle locks; a held one is recreated harmlessly
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            return self._locks.setdefault(key, threading.Lock())

    def _render(self, video_path: Path, t: float) -> bytes:
        # FFmpeg runs in a worker process: a file that crashes or hangs the decoder costs
        # that thumbnail (a VideoDecodeError), never the server
        with self._reader_lock:
            if self._reader is None:
                self._reader = FrameReader(Sampling(), workers=1, timeout=THUMB_TIMEOUT)
            self._reader.loader = partial(render_thumbnail, t=t, width=self.width)
            [(_, result)] = list(self._reader.map([str(video_path)]))
        if isinstance(result, VideoDecodeError):
            raise result
        return result

    def close(self) -> None:
        """Stop the decoding worker."""
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _store(self, target: Path, jpeg: bytes) -> None:
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


def render_thumbnail(path: str, sampling: Sampling, *, t: float, width: int) -> bytes:
    """JPEG bytes of the frame shown at ``t`` seconds, at most ``width`` px wide (runs in the
    FrameReader worker; ``sampling`` is unused, it is the loader signature)."""
    from PIL import Image

    frame = read_frames(path, [t]).frames[0]  # (H, W, 3) uint8 RGB, upright
    image = Image.fromarray(frame)
    if image.width > width:
        height = max(1, round(image.height * width / image.width))
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def _read_if_exists(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
