"""The one open library behind the web app: its model (loaded once), the model lock, the
text-query batcher, the work queue for heavy requests and the thumbnail cache. Every answer
comes from :mod:`videolens.pipelines` (search, localize, iter_classify); nothing here
searches, loads weights or stores anything itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import inspect
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from fastapi import HTTPException

from ..library import Library, VideoRecord
from ..library.thumbs import THUMB_CACHE_BYTES, ThumbnailCache, thumb_time
from ..models import VideoTextModel
from ..pipelines.classify import VideoResult, iter_classify
from ..pipelines.common import library_model
from ..pipelines.localize import Localization
from ..pipelines.localize import localize as localize_video
from ..pipelines.search import check_search, moments_near, search
from ..tasks.search import Moment
from .batching import MicroBatcher
from .media import MAX_UPLOAD_BYTES, decode_upload_image, servable_path

# one default for the API, the pages, the CLI and Python: the search function's own
DEFAULT_TOP: int = inspect.signature(search).parameters["top"].default
# ids are SQLite integer keys: digits only, so "1e3", "+1", " 1", "..", "%2e" are all 404
_ID = re.compile(r"[0-9]{1,18}")
# Heavy requests (an image upload, classify, localize) at once, and how many more may wait,
# for how long. Each decodes (an upload: up to 64 MB of pixels; a video: frames) before the
# model runs one request at a time, so two keep the cores busy while memory stays bounded;
# the waiting ones hold a worker thread each, and FastAPI has 40 for every request (pages,
# media, text search), so the queue leaves most of them free.
HEAVY_SLOTS = 2
HEAVY_WAITING = 8
HEAVY_WAIT_S = 30.0
RETRY_AFTER_S = 5
# Text queries that arrive together are encoded in one forward pass (benchmarks/bench_serve.py
# --scenario batching, ViT-B/32 shape): at most TEXT_BATCH per pass; TEXT_WINDOW_S is how
# long a pass waits for more queries while queries are arriving concurrently (never for a
# lone client). TEXT_BATCH = 1 encodes one query per pass under the model lock, as before.
TEXT_BATCH = 32
TEXT_WINDOW_S = 0.0
# query rows remembered (D=512 float32: 2 KB each), so a repeated query skips the model
QUERY_ROWS_CACHED = 1024


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Give memory freed by a heavy request back to the system (glibc ``malloc_trim``; a no-op
    elsewhere). Without it each worker thread's malloc arena keeps the largest buffers it
    ever held: 16 decodes of a 4096 x 4096 PNG, two at a time, left ~1.1 GB resident, because
    FastAPI runs requests on up to 40 threads."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def encode_queries(model: VideoTextModel, texts: list[str]) -> list[np.ndarray]:
    """One (1, D) float32 L2-normalised row per text, from one forward pass over the distinct
    texts: ``model.encode_text([text])`` for each, within float rounding (CLIP pads the batch
    to its longest prompt, and its causal mask keeps the padding out of each prompt's end
    token; SigLIP always pads to its full context). Bypasses the model's text cache, which
    would keep every query a server ever saw."""
    distinct = list(dict.fromkeys(texts))
    # (U, D) features -> (U, D) rows ready to score
    rows = model.text_rows(model.text_features(distinct)).numpy()
    where = {text: i for i, text in enumerate(distinct)}
    # copies: a remembered row must not keep its whole batch alive
    return [rows[where[text]][None].copy() for text in texts]


class ServerBusy(HTTPException):
    """503 with ``Retry-After``: too many heavy requests at once."""

    def __init__(self) -> None:
        super().__init__(503, "the server is busy with other heavy requests: retry in a few "
                         "seconds", headers={"Retry-After": str(RETRY_AFTER_S)})


class WorkQueue:
    """At most ``slots`` holders at once; up to ``waiting`` more wait up to ``wait_s`` seconds
    each for a slot. Beyond that, or after that wait, :class:`ServerBusy`. Memory the holder
    freed is returned to the system when it leaves (:func:`release_freed_memory`)."""

    def __init__(self, slots: int = HEAVY_SLOTS, waiting: int = HEAVY_WAITING,
                 wait_s: float = HEAVY_WAIT_S):
        self.waiting, self.wait_s = waiting, wait_s
        self._slots = threading.BoundedSemaphore(slots)
        self._queued = 0
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if self._slots.acquire(blocking=False):
            got = True
        else:
            with self._guard:
                if self._queued >= self.waiting:
                    raise ServerBusy()
                self._queued += 1
            try:
                got = self._slots.acquire(timeout=self.wait_s)
            finally:
                with self._guard:
                    self._queued -= 1
        if not got:
            raise ServerBusy()
        try:
            yield
        finally:
            self._slots.release()
            release_freed_memory()


class LibraryService:
    """One open library, its model (loaded once), the model lock, the text-query batcher, the
    heavy-request queue and the thumbnail cache.

    Every method that runs the model takes :attr:`model_lock`; callers are worker threads.
    Text searches go through :attr:`text_batcher` (``None`` when ``text_batch`` is 1): the
    queries waiting for the lock are encoded together, in one forward pass.
    """

    def __init__(self, library: str | os.PathLike, model: VideoTextModel | str | None,
                 device: str, dtype: str, *, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 heavy: WorkQueue | None = None, thumb_cache_bytes: int = THUMB_CACHE_BYTES,
                 text_batch: int | None = None, text_window_s: float | None = None):
        self.store = Library.open(library)  # LibraryError when there is none
        try:
            self.encoder = library_model(self.store, model, device, dtype)
        except BaseException:
            self.store.close()
            raise
        self.device, self.dtype = device, dtype
        self.max_upload_bytes = max_upload_bytes
        self.model_lock = threading.Lock()
        text_batch = TEXT_BATCH if text_batch is None else text_batch
        self.text_batcher: MicroBatcher[str, np.ndarray] | None = None
        if text_batch > 1:
            self.text_batcher = MicroBatcher(
                self._encode_queries, max_batch=text_batch, lock=self.model_lock,
                window_s=TEXT_WINDOW_S if text_window_s is None else text_window_s)
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._rows_guard = threading.Lock()
        # one vector search at a time, as when it ran under the model lock: the exact search
        # is a BLAS matmul that already uses every core
        self._search_lock = threading.Lock()
        self.heavy = heavy or WorkQueue()
        self.thumbs = ThumbnailCache(self.store.root / "thumbs", max_bytes=thumb_cache_bytes)
        self._timestamps: OrderedDict[int, np.ndarray] = OrderedDict()
        self._timestamps_guard = threading.Lock()

    def close(self) -> None:
        if self.text_batcher is not None:
            self.text_batcher.close()
        self.thumbs.close()
        self.store.close()

    def record(self, video_id: str | int) -> VideoRecord:
        """The library video with this id; 404 for anything that is not a known integer id."""
        text = str(video_id)
        record = self.store.video(int(text)) if _ID.fullmatch(text) else None
        if record is None:
            raise HTTPException(404, "no such video in the library")
        return record

    def file(self, record: VideoRecord) -> Path:
        """The file to decode for ``record``; 404 when it is gone or no longer the indexed
        file (see :func:`videolens.web.media.servable_path`)."""
        path = servable_path(record)
        if path is None:
            raise HTTPException(404, "the video file is gone or was replaced")
        return path

    def search(self, text: str, top: int = DEFAULT_TOP) -> list[Moment]:
        """Moments matching ``text``, as :func:`videolens.pipelines.search.search` finds them;
        the query is encoded together with the others waiting at the same time."""
        if self.text_batcher is None:
            with self.model_lock:
                return search(text, library=self.store, model=self.encoder, top=top,
                              device=self.device, dtype=self.dtype)
        check_search(text, None, top)
        row = self.query_row(text)
        with self._search_lock:
            return moments_near(self.store, row, top=top, query_kind="text")

    def query_row(self, text: str) -> np.ndarray:
        """(1, D) float32 L2-normalised row of one text query, the same as
        ``model.encode_text([text])`` within float rounding (it may be computed in a batch
        with other queries, padded to the longest); the last :data:`QUERY_ROWS_CACHED`
        queries are remembered."""
        with self._rows_guard:
            row = self._rows.get(text)
            if row is not None:
                self._rows.move_to_end(text)
                return row
        if self.text_batcher is None:
            with self.model_lock:
                row = self._encode_queries([text])[0]
        else:
            row = self.text_batcher.submit(text)
        row.flags.writeable = False  # shared by every request for this text from now on
        with self._rows_guard:
            self._rows[text] = row
            while len(self._rows) > QUERY_ROWS_CACHED:
                self._rows.popitem(last=False)
        return row

    def _encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        # the batcher (or query_row) holds the model lock
        return encode_queries(self.encoder, texts)

    def search_image(self, upload: bytes | BinaryIO, top: int = DEFAULT_TOP) -> list[Moment]:
        """Moments like an uploaded picture, decoded no larger than the model reads frames
        (:func:`~videolens.web.media.decode_upload_image`) in a heavy-work slot; what its
        header already refuses is refused without waiting for one."""
        picture = decode_upload_image(upload, max_bytes=self.max_upload_bytes,
                                      max_side=self.encoder.frame_max_side,
                                      slot=self.heavy.slot())
        with self.model_lock:
            return search(image=picture, library=self.store, model=self.encoder, top=top,
                          device=self.device, dtype=self.dtype)

    def localize(self, record: VideoRecord, actions: list[str]) -> Localization:
        # checked first: when the library cannot answer, localize_video decodes the path,
        # which must still be the indexed file
        path = self.file(record)
        with self.heavy.slot(), self.model_lock:
            return localize_video(path, actions, library=self.store.root,
                                  model=self.encoder, device=self.device, dtype=self.dtype)

    def classify(self, record: VideoRecord, labels: list[str], top: int,
                 frames: int | None) -> VideoResult:
        path = self.file(record)
        with self.heavy.slot(), self.model_lock:
            [result] = iter_classify([path], labels, model=self.encoder, frames=frames, top=top)
        return result

    def thumbnail(self, record: VideoRecord, t: float) -> bytes:
        """The JPEG of ``record`` at the stored frame nearest ``t`` seconds. ValueError for a
        ``t`` that is not finite; 404 when the file is not the indexed one."""
        when = thumb_time(t, self.frame_times(record.id))
        if servable_path(record) is None:
            raise HTTPException(404, "the video file is gone or was replaced")
        return self.thumbs.get(record, when)

    def frame_times(self, video_id: int) -> np.ndarray:
        """(N,) float64 seconds of the frames the library stores for a video, ascending;
        the last 256 videos asked for are remembered."""
        with self._timestamps_guard:
            if video_id in self._timestamps:
                self._timestamps.move_to_end(video_id)
                return self._timestamps[video_id]
        timestamps, _ = self.store.frames(video_id)
        times = np.sort(np.asarray(timestamps, dtype=np.float64))
        with self._timestamps_guard:
            self._timestamps[video_id] = times
            while len(self._timestamps) > 256:
                self._timestamps.popitem(last=False)
        return times
