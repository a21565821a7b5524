"""Video embeddings computed once per (model weights, sampling, file), kept on disk.

Evaluating new prompts, templates or descriptions only needs new *text* embeddings; the
expensive part — decoding and encoding thousands of videos — is done once. The cache is a
SQLite file per (model fingerprint, sampling) under ``<cache dir>/videos/`` with a manifest
row saying what it holds; each video's embedding is committed as soon as it is computed, so
an interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import VideoDecodeError
from ..io import FrameReader, Sampling, file_fingerprint
from ..models import VideoEmbedding, VideoTextModel
from ..models.text_cache import cache_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (
    fingerprint TEXT PRIMARY KEY,   -- file content fingerprint (size + first/last 64 KiB)
    path TEXT NOT NULL,             -- where it was last seen, for people reading the file
    embedding BLOB NOT NULL,        -- float32 (D,)
    context BLOB,                   -- float32 (L, D) model-specific (X-CLIP), or NULL
    context_rows INTEGER NOT NULL DEFAULT 0,
    timestamps TEXT NOT NULL,       -- JSON seconds of the sampled frames
    created_at REAL NOT NULL
);
"""


@dataclass
class CachedVideos:
    """Embeddings by input path, failures by path, and how many came from the cache."""

    embeddings: dict[str, VideoEmbedding] = field(default_factory=dict)
    timestamps: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    from_cache: int = 0
    computed: int = 0


class EmbeddingCache:
    """Per-video :class:`VideoEmbedding` store for one model and one sampling.

    ``root`` defaults to ``<videolens cache dir>/videos``; pass ``None`` through
    ``VIDEOLENS_CACHE_DIR=off`` to keep everything in memory.
    """

    def __init__(self, model: VideoTextModel, sampling: Sampling, root: Path | None = None):
        self.model = model
        self.sampling = sampling
        base = root if root is not None else cache_dir()
        self.memory: dict[str, tuple[VideoEmbedding, list[float]]] = {}
        self.db: sqlite3.Connection | None = None
        self.path: Path | None = None
        if base is not None and model.fingerprint:
            folder = Path(base) / "videos"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{model.fingerprint}-{sampling.kind}-{self.sampling_key()}.sqlite"
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
        return {"kind": self.sampling.kind, "num_frames": self.sampling.num_frames,
                "fps": self.sampling.fps}

    def sampling_key(self) -> str:
        s = self.sampling
        return f"n{s.num_frames}" if s.kind == "uniform" else f"fps{s.fps:g}"

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, fingerprint: str) -> tuple[VideoEmbedding, list[float]] | None:
        if fingerprint in self.memory:
            return self.memory[fingerprint]
        if self.db is None:
            return None
        row = self.db.execute(
            "SELECT embedding, context, context_rows, timestamps FROM embeddings "
            "WHERE fingerprint = ?", (fingerprint,)).fetchone()
        if row is None:
            return None
        embedding = torch.from_numpy(np.frombuffer(row[0], dtype=np.float32).copy())
        context = None
        if row[1] is not None:
            flat = np.frombuffer(row[1], dtype=np.float32).copy()
            context = torch.from_numpy(flat.reshape(row[2], -1))
        value = (VideoEmbedding(embedding, context), json.loads(row[3]))
        self.memory[fingerprint] = value
        return value

    def put(self, fingerprint: str, path: str, embedding: VideoEmbedding,
            timestamps: Sequence[float]) -> None:
        self.memory[fingerprint] = (embedding, list(timestamps))
        if self.db is None:
            return
        context = embedding.context
        with self.db:  # one commit per video: an interrupted run keeps all finished ones
            self.db.execute(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?, ?, ?)",
                (fingerprint, path, embedding.embedding.numpy().astype(np.float32).tobytes(),
                 None if context is None else context.numpy().astype(np.float32).tobytes(),
                 0 if context is None else int(context.shape[0]),
                 json.dumps([float(t) for t in timestamps]), time.time()),
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
                result.embeddings[path], result.timestamps[path] = cached
                result.from_cache += 1
            else:
                todo[path] = fingerprint
        for path, loaded in self._decode(list(todo), workers, progress):
            if isinstance(loaded, VideoDecodeError):
                result.failures[path] = loaded.one_line()
                continue
            _, sampled = loaded
            embedding = self.model.encode_video(sampled.frames)
            self.put(todo[path], path, embedding, sampled.timestamps.tolist())
            result.embeddings[path] = embedding
            result.timestamps[path] = sampled.timestamps.tolist()
            result.computed += 1
        return result

    def _decode(self, paths: list[str], workers: int, progress: bool) -> Iterator:
        if not paths:
            return
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(paths), unit="video", file=sys.stderr, dynamic_ncols=True,
                       desc="embedding videos")
        try:
            with FrameReader(self.sampling, workers=workers) as reader:
                for item in reader.map(paths):
                    yield item
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
