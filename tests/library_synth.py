"""Synthetic libraries (no model) and ways to damage their files, for the library tests.

A library is built through the real store API with random unit vectors; its content is read
back independently with plain ``sqlite3`` (:func:`stored_content`) so tests compare against
what was written, not against the code under test.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np

from videolens.library import Library

DIM = 32
MODEL = {"name": "tiny-clip", "fingerprint": "fp-tiny", "embed_dim": DIM, "kind": "softmax"}
SAMPLING = {"kind": "rate", "fps": 1.0}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def add_numbered_videos(library: Library, first: int, count: int, frames: int,
                        make_vectors) -> None:
    """Videos ``/v/NNN.mp4`` for NNN in ``first .. first+count-1``, ``frames`` rows each
    from ``make_vectors(frames) -> (frames, DIM)``, one frame a second, in one writer."""
    with library.writer() as writer:
        for i in range(first, first + count):
            writer.add_video(
                {"path": f"/v/{i:03d}.mp4", "size": i, "mtime_ns": i, "fingerprint": f"f{i}",
                 "duration": float(frames), "fps": 30.0, "width": 64, "height": 48,
                 "num_frames": frames, "indexed_at": 1.7e9},
                np.arange(frames, dtype=np.float64) + 0.5, make_vectors(frames))


def build_library(root: Path, *, videos: int = 30, seed: int = 0, frames=(20, 60),
                  cache: bool = True) -> Path:
    """A library of ``videos`` videos (``/videos/NNN.mp4``, frames 1 s apart from 0.5 s) with
    a built vector cache; deterministic for a seed (so is its file layout)."""
    rng = np.random.default_rng(seed)
    with Library.create(root, MODEL, SAMPLING) as library:
        library.vectors.auto_refresh = False
        with library.writer() as writer:
            for i in range(videos):
                n = int(rng.integers(*frames))
                writer.add_video(
                    {"path": f"/videos/{i:03d}.mp4", "size": 1000 + i, "mtime_ns": i,
                     "fingerprint": f"f{i}", "duration": float(n), "fps": 30.0, "width": 64,
                     "height": 48, "num_frames": n, "indexed_at": 1.7e9},
                    np.arange(n, dtype=np.float64) + 0.5, unit(rng.standard_normal((n, DIM))))
        if cache:
            library.refresh_vectors()
    return root


def stored_content(root: Path) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
    """path -> (id, timestamps (n,), vectors (n, D) float32), read with plain sqlite3."""
    conn = sqlite3.connect(root / "library.sqlite")
    try:
        dim = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'model'"
                                      ).fetchone()[0])["embed_dim"]
        rows = conn.execute("SELECT v.id, v.path, f.timestamps, f.vectors FROM videos v "
                            "JOIN frames f ON f.video_id = v.id").fetchall()
    finally:
        conn.close()
    return {path: (vid, np.frombuffer(t, "<f8").copy(),
                   np.frombuffer(v, "<f2").reshape(-1, dim).astype(np.float32))
            for vid, path, t, v in rows}


def queries(n: int = 6, seed: int = 99) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, DIM)))


def hits_of(library: Library, k: int = 15, exact: bool | None = True) -> list:
    """Search results as comparable tuples (video id, timestamp, score rounded to 1e-6)."""
    return [[(h.video_id, h.timestamp, round(h.score, 6)) for h in row]
            for row in library.search(queries(), k, exact=exact)]


def fresh_hits(root: Path, dst: Path, k: int = 15) -> list:
    """Results of the same database with a cache rebuilt from scratch (the reference)."""
    shutil.copytree(root, dst, ignore=shutil.ignore_patterns("vectors"))
    with Library.open(dst) as library:
        library.vectors.auto_refresh = False
        library.refresh_vectors()
        return hits_of(library, k)


def row_map(generation: Path, mode: str = "r+") -> np.memmap:
    """The float16 rows of a segment's ``vectors.faiss`` as a writable map (the codes are the
    file's last count x D x 2 bytes), for damaging them in place."""
    path = generation / "vectors.faiss"
    entry = next(s for s in json.loads((generation.parent / "manifest.json").read_text()
                                       )["segments"] if s["name"] == generation.name)
    count = entry["count"]
    return np.memmap(path, "<f2", mode, path.stat().st_size - count * DIM * 2, (count, DIM))


def generation_dir(root: Path) -> Path:
    manifest = json.loads((root / "vectors" / "manifest.json").read_text())
    return root / "vectors" / manifest["generation"]


def page_size(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def overwrite_pages(db: Path, first_page: int, count: int, seed: int = 0) -> None:
    """Replace ``count`` whole pages from ``first_page`` (1-based) with random bytes."""
    size = page_size(db)
    with open(db, "r+b") as handle:
        handle.seek((first_page - 1) * size)
        handle.write(np.random.default_rng(seed).bytes(count * size))


def truncate(db: Path, fraction: float) -> None:
    size = db.stat().st_size
    with open(db, "r+b") as handle:
        handle.truncate(int(size * fraction))


def set_meta(db: Path, key: str, value: str | None) -> None:
    conn = sqlite3.connect(db)
    try:
        if value is None:
            conn.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
        conn.commit()
    finally:
        conn.close()
