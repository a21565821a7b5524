"""Video embeddings computed once per (model weights, full test sampling, file), kept on disk.

Evaluating new prompts, templates or descriptions only needs new *text* embeddings; the
expensive part — decoding and encoding thousands of videos — is done once. The cache is a
SQLite file per (model fingerprint, sampling) under ``<cache dir>/videos/`` with a manifest
row saying what it holds; each video's embedding is committed as soon as it is computed, so
an interrupted evaluation resumes where it stopped.

The sampling is the whole :class:`~videolens.eval.views.ViewSampling` — mode, frames, stride,
views, crops, crop fraction, view placement and, when it changes what is encoded, the
ensemble — so two samplings never share a file. A multi-view entry holds one embedding per
clip (views x crops), stored as one ``(clips, D)`` float32 row.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError, VideoDecodeError
from ..io import FrameReader, Sampling, file_fingerprint
from ..models import VideoEmbedding, VideoTextModel
from ..models.base import l2_normalize
from ..models.text_cache import cache_dir, numerics_tag
from .views import ViewSampling, load_views

SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (
    fingerprint TEXT PRIMARY KEY,   -- file content fingerprint (size + first/last 64 KiB)
    path TEXT NOT NULL,             -- where it was last seen, for people reading the file
    embedding BLOB NOT NULL,        -- float32 (D,), or (clips, D) for multi-view samplings
    context BLOB,                   -- float32 (clips * L, D) model-specific (X-CLIP), or NULL
    context_rows INTEGER NOT NULL DEFAULT 0,
    timestamps TEXT NOT NULL,       -- JSON seconds of the sampled frames (one list per clip)
    created_at REAL NOT NULL
);
"""


@dataclass
class CachedVideos:
    """Embeddings by input path, failures by path, and how many came from the cache.

    ``views[path]``: one :class:`VideoEmbedding` per clip the sampling encodes (views x crops;
    one for single-view sampling). ``embeddings[path]``: the video as one embedding — the
    only clip, or for several the renormalised mean of their embeddings (and the mean of
    their contexts), for protocols that need one vector per video (few-shot features)."""

    embeddings: dict[str, VideoEmbedding] = field(default_factory=dict)
    views: dict[str, list[VideoEmbedding]] = field(default_factory=dict)
    timestamps: dict[str, list] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    from_cache: int = 0
    computed: int = 0

    def add(self, path: str, clips: list[VideoEmbedding], timestamps: list) -> None:
        self.views[path] = clips
        self.embeddings[path] = clips[0] if len(clips) == 1 else pooled_embedding(clips)
        self.timestamps[path] = timestamps


def pooled_embedding(clips: Sequence[VideoEmbedding]) -> VideoEmbedding:
    """One embedding for several clips: the renormalised mean (and the mean context)."""
    mean = l2_normalize(torch.stack([c.embedding for c in clips]).mean(dim=0))
    contexts = [c.context for c in clips]
    context = None if any(c is None for c in contexts) else torch.stack(contexts).mean(dim=0)
    return VideoEmbedding(mean, context)


def as_view_sampling(sampling: Sampling | ViewSampling) -> ViewSampling:
    """A :class:`ViewSampling` for ``sampling`` (a uniform :class:`~videolens.io.Sampling` is
    its single-view segment sampling)."""
    if isinstance(sampling, ViewSampling):
        return sampling
    if sampling.kind != "uniform":
        raise UsageError(f"evaluation samples videos by segments or dense clips, not "
                         f"{sampling.kind!r}")
    return ViewSampling(mode="segment", frames=sampling.num_frames)


class EmbeddingCache:
    """Per-video :class:`VideoEmbedding` store for one model and one test sampling.

    ``sampling``: a :class:`~videolens.eval.views.ViewSampling` (or a uniform
    :class:`~videolens.io.Sampling`, read as its single-view segment sampling). ``root``
    defaults to ``<videolens cache dir>/videos``; pass ``None`` through
    ``VIDEOLENS_CACHE_DIR=off`` to keep everything in memory. ``engine``: ``(cache, reader)
    -> reader`` for another engine (:func:`videolens.pipelines.ray_engine.cache_engine`),
    whose ``map()`` yields ``(path, loaded, clips)``, the clips encoded by its workers.

    Raises:
        UsageError: ``ensemble="frames"`` with a model that encodes fixed-length clips.
    """

    def __init__(self, model: VideoTextModel, sampling: Sampling | ViewSampling,
                 root: Path | None = None, engine: Callable | None = None):
        self.model = model
        self.engine = engine
        self.sampling = as_view_sampling(sampling)
        if self.sampling.ensemble == "frames" and model.num_frames is not None:
            raise UsageError(
                f"{model.name} encodes clips of exactly {model.num_frames} frames, so views "
                "cannot be pooled into one clip", hint="use --ensemble logits or probs")
        base = root if root is not None else cache_dir()
        self.memory: dict[str, tuple[list[VideoEmbedding], list]] = {}
        self.db: sqlite3.Connection | None = None
        self.path: Path | None = None
        if base is not None and model.fingerprint:
            folder = Path(base) / "videos"
            folder.mkdir(parents=True, exist_ok=True)
            # single-view segment sampling keeps the name it had before multi-view existed
            kind = "uniform" if self.sampling.is_single_segment else "views"
            name = (f"{model.fingerprint}{numerics_tag(model)}-{kind}-"
                    f"{self.sampling_key()}.sqlite")
            self.path = folder / name
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
            with self.db:
                self.db.executemany(
                    "INSERT OR IGNORE INTO manifest VALUES (?, ?)",
                    [("model", model.name), ("fingerprint", model.fingerprint),
                     ("sampling", json.dumps(self.sampling_dict())),
                     ("created_at", str(time.time()))],
                )

    def sampling_dict(self) -> dict:
        return self.sampling.as_dict()

    def sampling_key(self) -> str:
        return self.sampling.key()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, fingerprint: str) -> tuple[list[VideoEmbedding], list] | None:
        """The stored clips of a file (one :class:`VideoEmbedding` per clip) and their
        timestamps, or ``None``."""
        if fingerprint in self.memory:
            return self.memory[fingerprint]
        if self.db is None:
            return None
        row = self.db.execute(
            "SELECT embedding, context, context_rows, timestamps FROM embeddings "
            "WHERE fingerprint = ?", (fingerprint,)).fetchone()
        if row is None:
            return None
        clips = self.sampling.clips
        # (clips * D,) -> (clips, D)
        embeddings = np.frombuffer(row[0], dtype=np.float32).copy().reshape(clips, -1)
        contexts: list[torch.Tensor | None] = [None] * clips
        if row[1] is not None:
            # (clips * L * D,) -> (clips, L, D)
            flat = np.frombuffer(row[1], dtype=np.float32).copy()
            per_clip = flat.reshape(clips, row[2] // clips, -1)
            contexts = [torch.from_numpy(c.copy()) for c in per_clip]
        value = ([VideoEmbedding(torch.from_numpy(e.copy()), c)
                  for e, c in zip(embeddings, contexts, strict=True)], json.loads(row[3]))
        self.memory[fingerprint] = value
        return value

    def put(self, fingerprint: str, path: str, embedding: VideoEmbedding | list[VideoEmbedding],
            timestamps: Sequence) -> None:
        """Store one file's clips (a single embedding for single-view sampling)."""
        clips = [embedding] if isinstance(embedding, VideoEmbedding) else list(embedding)
        if len(clips) != self.sampling.clips:
            raise ValueError(f"this sampling stores {self.sampling.clips} clips per video, "
                             f"got {len(clips)}")
        stamps = _plain(timestamps)
        self.memory[fingerprint] = (clips, stamps)
        if self.db is None:
            return
        matrix = torch.stack([c.embedding for c in clips]).numpy().astype(np.float32)
        contexts = [c.context for c in clips]
        context = None if contexts[0] is None else torch.cat(contexts).numpy()
        with self.db:  # one commit per video: an interrupted run keeps all finished ones
            self.db.execute(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?, ?, ?)",
                (fingerprint, path, matrix.tobytes(),
                 None if context is None else context.astype(np.float32).tobytes(),
                 0 if context is None else int(context.shape[0]),
                 json.dumps(stamps), time.time()),
            )

    def embed(self, paths: Sequence[str], *, workers: int = 1, progress: bool = False
              ) -> CachedVideos:
        """Embeddings of ``paths`` (decoded and encoded only when not cached)."""
        result = CachedVideos()
        todo: dict[str, str] = {}
        for path in paths:
            try:
                fingerprint = file_fingerprint(path, os.path.getsize(path))
            except OSError as err:
                result.failures[path] = VideoDecodeError(
                    f"cannot read the file ({err.strerror})", path=path,
                    hint="check that the dataset is complete").one_line()
                continue
            cached = self.get(fingerprint)
            if cached is not None:
                result.add(path, *cached)
                result.from_cache += 1
            else:
                todo[path] = fingerprint
        for path, loaded, *encoded in self._decode(list(todo), workers, progress):
            if isinstance(loaded, VideoDecodeError):
                result.failures[path] = loaded.one_line()
                continue
            _, sampled = loaded
            clips = encoded[0] if encoded else self._encode(sampled.frames)
            if isinstance(clips, Exception):  # the other engine's worker could not encode it
                raise clips
            stamps = _plain(sampled.timestamps.tolist())
            self.put(todo[path], path, clips, stamps)
            result.add(path, clips, stamps)
            result.computed += 1
        return result

    def _encode(self, frames: np.ndarray) -> list[VideoEmbedding]:
        """Clips of one video -> one embedding per stored clip."""
        if self.sampling.is_single_segment:
            return [self.model.encode_video(frames)]  # (T, H, W, 3), as videolens classify
        if self.sampling.ensemble == "frames":
            # (V*C, T, h, w, 3) -> (V*C*T, h, w, 3): every view's frames as one clip
            return [self.model.encode_video(frames.reshape(-1, *frames.shape[2:]))]
        return self.model.encode_videos(list(frames))  # V*C clips of (T, h, w, 3)

    def _decode(self, paths: list[str], workers: int, progress: bool) -> Iterator:
        if not paths:
            return
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(paths), unit="video", file=sys.stderr, dynamic_ncols=True,
                       desc="embedding videos")
        try:
            if self.sampling.is_single_segment:
                reader = FrameReader(Sampling(kind="uniform", num_frames=self.sampling.frames),
                                     workers=workers)
            else:
                # FrameReader passes its sampling on to the loader untouched
                reader = FrameReader(self.sampling, workers=workers,  # type: ignore[arg-type]
                                     loader=load_views)  # type: ignore[arg-type]
            if self.engine is not None:  # it decodes and encodes: items carry the clips
                reader = self.engine(self, reader)
            with reader:
                for item in reader.map(paths):
                    yield item
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()


def embed_videos(paths: Sequence[str], model: VideoTextModel, cache: EmbeddingCache | None,
                 sampling: ViewSampling, *, workers: int = 1, progress: bool = False
                 ) -> tuple[CachedVideos, ViewSampling]:
    """Embeddings of ``paths`` (each once, order kept) through ``cache``, or through a cache of
    its own for ``sampling`` when ``cache`` is ``None``; and the sampling actually used (the
    cache's)."""
    own_cache = cache is None
    cache = cache or EmbeddingCache(model, sampling)
    try:
        videos = cache.embed(list(dict.fromkeys(paths)), workers=workers, progress=progress)
    finally:
        if own_cache:
            cache.close()
    return videos, cache.sampling


def _plain(timestamps: Sequence) -> list:
    """JSON-ready timestamps: floats, or one list of floats per clip."""
    return [_plain(t) if isinstance(t, (list, tuple, np.ndarray)) else float(t)
            for t in timestamps]
