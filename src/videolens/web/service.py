"""The one open library behind the web app: its model (loaded once), the model lock and the
thumbnail cache. Every answer comes from :mod:`videolens.pipelines` (search, localize,
iter_classify); nothing here searches, loads weights or stores anything itself.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import numpy as np
from fastapi import HTTPException

from ..library import Library, VideoRecord
from ..library.thumbs import ThumbnailCache
from ..models import VideoTextModel
from ..pipelines.classify import VideoResult, iter_classify
from ..pipelines.common import library_model
from ..pipelines.localize import Localization
from ..pipelines.localize import localize as localize_video
from ..pipelines.search import search
from ..tasks.search import Moment
from .media import servable_path

DEFAULT_TOP = 12
# ids are SQLite integer keys: digits only, so "1e3", "+1", " 1", "..", "%2e" are all 404
_ID = re.compile(r"[0-9]{1,18}")


class LibraryService:
    """One open library, its model (loaded once), the model lock and the thumbnail cache.

    Every method that runs the model takes :attr:`model_lock`; callers are worker threads.
    """

    def __init__(self, library: str | os.PathLike, model: VideoTextModel | str | None,
                 device: str, dtype: str):
        self.store = Library.open(library)  # LibraryError when there is none
        try:
            self.encoder = library_model(self.store, model, device, dtype)
        except BaseException:
            self.store.close()
            raise
        self.device, self.dtype = device, dtype
        self.model_lock = threading.Lock()
        self.thumbs = ThumbnailCache(self.store.root / "thumbs")

    def close(self) -> None:
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
        """The file to serve for ``record``; 404 when it is gone or no longer the indexed
        file (see :func:`videolens.web.media.servable_path`)."""
        path = servable_path(record)
        if path is None:
            raise HTTPException(404, "the video file is gone or was replaced")
        return path

    def search(self, text: str | None = None, image: np.ndarray | None = None,
               top: int = DEFAULT_TOP) -> list[Moment]:
        with self.model_lock:
            return search(text, image=image, library=self.store, model=self.encoder, top=top,
                          device=self.device, dtype=self.dtype)

    def localize(self, record: VideoRecord, actions: list[str]) -> Localization:
        # checked first: when the library cannot answer, localize_video decodes the path,
        # which must still be the indexed file (not a symlink swapped in since)
        path = self.file(record)
        with self.model_lock:
            return localize_video(path, actions, library=self.store.root,
                                  model=self.encoder, device=self.device, dtype=self.dtype)

    def classify(self, record: VideoRecord, labels: list[str], top: int,
                 frames: int | None) -> VideoResult:
        path = self.file(record)
        with self.model_lock:
            [result] = iter_classify([path], labels, model=self.encoder, frames=frames, top=top)
        return result
