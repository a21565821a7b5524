"""``videolens library``: see and manage a library — info, list, remove, export, check.

Each verb is a function over a library folder (or an open :class:`Library`), the same for
the CLI and for Python. Nothing here loads a model, except ``optimize`` when it re-tunes an
IVF index (it measures text-query recall on the library model's own prompt embeddings).

Export layouts (one row per stored frame, rows grouped by video, videos by id):

* ``npy``: ``OUT/embeddings.npy`` (N, D) float32 L2-normalised, and ``OUT/metadata.jsonl``
  whose line i describes row i (``path``, ``video_id``, ``timestamp`` in seconds), plus
  ``OUT/library.json`` (model and sampling). ``embeddings.npy`` is what autofaiss and
  clip-retrieval's ``index`` step read from an embeddings folder.
* ``parquet``: one file with columns ``path`` (string), ``video_id`` (int64), ``timestamp``
  (float64 seconds) and ``embedding`` (fixed-size list of D float32), the model and sampling
  in the file's key-value metadata; readable by pandas, pyarrow, Hugging Face ``datasets``
  and embedding-reader (``embedding_column="embedding"``). Needs pyarrow
  (``pip install 'videolens[export]'``).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..library import Library, VideoRecord
from ..library.repair import CheckReport, check_library

# = common.DEFAULT_LIBRARY (a test holds them equal); importing .common would import the
# models and torch (~3.5 s), which managing a library never needs
DEFAULT_LIBRARY = ".videolens"

EXPORT_FORMATS = ("npy", "parquet")
# rows written per Parquet row group: ~128 MB of 512-d float32, so memory stays bounded
PARQUET_ROWS_PER_GROUP = 65536

LibraryArg = str | os.PathLike | Library


@dataclass
class LibraryInfo:
    """What a library holds. ``bytes`` on disk (``sqlite_bytes`` of them in library.sqlite
    and its WAL, ``vectors_bytes`` in vectors/); ``video_seconds`` total duration;
    ``failures`` path -> reason."""

    library: str
    model: dict
    sampling: dict
    videos: int
    frames: int
    video_seconds: float
    bytes: int
    sqlite_bytes: int
    vectors_bytes: int
    created_at: float
    videolens_version: str
    schema_version: int
    cache: dict
    failures: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def _open(library: LibraryArg) -> tuple[Library, bool]:
    """(the library, whether we opened it and must close it)."""
    if isinstance(library, Library):
        return library, False
    return Library.open(Path(library).expanduser()), True


def library_info(library: LibraryArg = DEFAULT_LIBRARY) -> LibraryInfo:
    """Model, sampling, counts, size on disk and failures of a library."""
    store, opened = _open(library)
    try:
        stats = store.stats()
        records = store.videos()
        failures = {path: reason for path, (reason, _, _) in store.failures().items()}
        sqlite_bytes = sum(_size(store.root / f"{store.db_path.name}{suffix}")
                           for suffix in ("", "-wal", "-shm"))
        vectors_bytes = sum(_size(p) for p in store.vectors_dir.rglob("*")) \
            if store.vectors_dir.is_dir() else 0
        return LibraryInfo(
            library=str(store.root), model=dict(store.model), sampling=dict(store.sampling),
            videos=stats["videos"], frames=stats["frames"],
            video_seconds=float(sum(r.duration for r in records)), bytes=stats["bytes"],
            sqlite_bytes=sqlite_bytes, vectors_bytes=vectors_bytes,
            created_at=store.created_at, videolens_version=store.videolens_version,
            schema_version=store.schema_version,
            cache={key: stats[key] for key in ("ann", "stale", "cached_frames", "tail_frames",
                                               "dead_frames")},
            failures=failures,
        )
    finally:
        if opened:
            store.close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def list_videos(library: LibraryArg = DEFAULT_LIBRARY) -> list[VideoRecord]:
    """Every video in the library, by path."""
    store, opened = _open(library)
    try:
        return sorted(store.videos(), key=lambda record: record.path)
    finally:
        if opened:
            store.close()


def match_videos(records: Iterable[VideoRecord], patterns: Iterable[str],
                 cwd: str | os.PathLike | None = None) -> list[VideoRecord]:
    """The records a ``remove`` pattern names, in path order.

    A pattern matches a stored path when it equals it (after ``~`` and the current folder
    are resolved), when it names a folder the video lies under, or as a glob against the
    absolute path or the path relative to ``cwd`` (default: the current folder), so
    ``sub/*`` works from the folder that holds ``sub``. Globs are case-sensitive and ``*``
    crosses ``/`` (as in :func:`fnmatch.fnmatchcase`).
    """
    base = Path(cwd if cwd is not None else os.getcwd()).resolve()
    chosen: dict[int, VideoRecord] = {}
    records = list(records)
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        absolute = str((base / expanded).resolve()) if not any(c in expanded for c in "*?[") \
            else None
        for record in records:
            relative = os.path.relpath(record.path, base)
            if ((absolute is not None
                    and (record.path == absolute or record.path.startswith(absolute + os.sep)))
                    or fnmatch.fnmatchcase(record.path, expanded)
                    or fnmatch.fnmatchcase(relative, expanded)
                    or fnmatch.fnmatchcase(relative, os.path.normpath(expanded))):
                chosen[record.id] = record
    return sorted(chosen.values(), key=lambda record: record.path)


def remove_videos(patterns: str | Iterable[str], library: LibraryArg = DEFAULT_LIBRARY, *,
                  dry_run: bool = False, cwd: str | os.PathLike | None = None
                  ) -> list[VideoRecord]:
    """Remove the videos the patterns name (see :func:`match_videos`) in one transaction,
    then bring the vector cache up to date. Returns the records removed (or, with
    ``dry_run``, that would be). The video files themselves are never touched."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    if not patterns:
        raise UsageError("name what to remove: a path, a folder or a glob",
                         hint="e.g. videolens library remove 'holidays/*'")
    store, opened = _open(library)
    try:
        matched = match_videos(store.videos(), patterns, cwd)
        if matched and not dry_run:
            from ..library import WriteLock

            with WriteLock(store.root, "library remove") as lock, store.writer(lock) as writer:
                writer.remove_videos([record.id for record in matched])
            store.refresh_vectors()
        return matched
    finally:
        if opened:
            store.close()


def export_library(out: str | os.PathLike, *, library: LibraryArg = DEFAULT_LIBRARY,
                   format: str = "npy", overwrite: bool = False) -> dict:
    """Write every stored frame's embedding, timestamp and video path to ``out`` (layouts in
    the module docstring). Returns ``{"format", "out", "rows", "dim", "videos", "files"}``.

    Reads one consistent snapshot of library.sqlite (the source of truth, not the cache)
    and streams it: memory stays at one video plus one Parquet row group.
    """
    if format not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {format!r}",
                         hint=f"use one of: {', '.join(EXPORT_FORMATS)}")
    if format == "parquet":
        pa, pq = _pyarrow()
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        raise UsageError(f"{out} exists already",
                         hint="choose another --out, or pass --overwrite to replace it")
    store, opened = _open(library)
    try:
        about = {"model": store.model, "sampling": store.sampling, "library": str(store.root)}
        with store.snapshot() as conn:
            ids, counts = store.live_videos(conn)
            paths = dict(conn.execute("SELECT id, path FROM videos").fetchall())
            total, dim = int(counts.sum()), store.embed_dim
            tmp = out.with_name(f".{out.name}.partial")
            _remove(tmp)
            try:
                if format == "npy":
                    files = _export_npy(tmp, store, conn, paths, total, dim, about)
                else:
                    files = _export_parquet(tmp, store, conn, paths, dim, about, pa, pq)
            except BaseException:
                _remove(tmp)
                raise
        if out.exists():
            _remove(out)
        os.replace(tmp, out)  # complete or absent, never half-written under its own name
        return {"format": format, "out": str(out), "rows": total, "dim": dim,
                "videos": int(len(ids)), "files": [str(out / f) if f else str(out)
                                                   for f in files]}
    finally:
        if opened:
            store.close()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _export_npy(folder: Path, store: Library, conn, paths: dict, total: int, dim: int,
                about: dict) -> list[str]:
    folder.mkdir(parents=True)
    matrix = np.lib.format.open_memmap(folder / "embeddings.npy", mode="w+",
                                       dtype=np.float32, shape=(total, dim))
    row = 0
    with open(folder / "metadata.jsonl", "w") as lines:
        for video_id, times, vectors in store.iter_frames(conn):
            matrix[row : row + len(times)] = vectors
            path = paths[video_id]
            for timestamp in times:
                lines.write(json.dumps({"path": path, "video_id": video_id,
                                        "timestamp": round(float(timestamp), 6)}) + "\n")
            row += len(times)
    matrix.flush()
    del matrix
    (folder / "library.json").write_text(json.dumps(about, indent=1) + "\n")
    return ["embeddings.npy", "metadata.jsonl", "library.json"]


def _export_parquet(path: Path, store: Library, conn, paths: dict, dim: int, about: dict,
                    pa, pq) -> list[str]:
    schema = pa.schema(
        [("path", pa.string()), ("video_id", pa.int64()), ("timestamp", pa.float64()),
         ("embedding", pa.list_(pa.float32(), dim))],
        metadata={"videolens": json.dumps(about)})
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []
    pending_rows = 0

    def flush(writer) -> None:
        nonlocal pending, pending_rows
        if not pending:
            return
        video_ids = np.concatenate([np.full(len(t), v, np.int64) for v, t, _ in pending])
        times = np.concatenate([t for _, t, _ in pending])
        vectors = np.concatenate([m for _, _, m in pending])  # (n, D) float32
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
        writer.write_table(pa.table(
            [pa.array([paths[int(v)] for v in video_ids], pa.string()),
             pa.array(video_ids), pa.array(times), embedding], schema=schema))
        pending, pending_rows = [], 0

    with pq.ParquetWriter(path, schema) as writer:
        for video_id, times, vectors in store.iter_frames(conn):
            pending.append((video_id, times, vectors))
            pending_rows += len(times)
            if pending_rows >= PARQUET_ROWS_PER_GROUP:
                flush(writer)
        flush(writer)
    return [""]


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("exporting to Parquet needs pyarrow, which is not installed",
                         hint="pip install 'videolens[export]' (or pyarrow), or use "
                              "--format npy") from None
    return pa, pq


def check(library: str | os.PathLike = DEFAULT_LIBRARY, *, repair: bool = False) -> CheckReport:
    """Integrity of the database and the vector cache; with ``repair``, rebuild what can be
    rebuilt. See :func:`videolens.library.repair.check_library`."""
    if isinstance(library, Library):
        library = library.root
    return check_library(library, repair=repair)


__all__ = ["EXPORT_FORMATS", "LibraryInfo", "check", "export_library", "library_info",
           "list_videos", "match_videos", "remove_videos"]


def optimize(library: LibraryArg = DEFAULT_LIBRARY, *, text_queries: str = "model",
             device: str = "auto", dtype: str = "auto") -> dict:
    """Rebuild the vector cache in one segment: rows of removed videos dropped, the IVF index
    (past ``ANN_MIN_VECTORS``) retrained on all rows and its nprobe measured again. Index
    runs refresh incrementally; this is the periodic full rebuild they skip. Returns
    ``{"before", "after", "seconds", "ann"}`` (cache states from ``VectorIndex.staleness``,
    ``ann`` the manifest's index description with its tuning table, or None).

    ``text_queries``: what text-query recall is measured on when an IVF index is built:
    ``"model"`` (default) the library model's embeddings of
    :func:`~videolens.text.prompts.tuning_prompts`, loaded on ``device`` / ``dtype`` only
    then (synthetic queries, said in ``ann["tuning"]["text_source"]``, when it does not
    load); ``"synthetic"`` never loads a model."""
    if text_queries not in ("model", "synthetic"):
        raise UsageError(f"text_queries must be 'model' or 'synthetic', got {text_queries!r}")
    store, opened = _open(library)
    try:
        if text_queries == "model":
            store.vectors.tuning_text = _library_prompt_rows(store, device, dtype)
        done = store.optimize_vectors()
        cache = store.vectors.load()
        done["ann"] = None if cache is None else cache.manifest.get("ann")
        return done
    finally:
        if opened:
            store.close()


def _library_prompt_rows(store: Library, device: str, dtype: str):
    """:func:`.common.prompt_rows` of the library's model, importing the models (torch,
    transformers: seconds) only when the index is re-tuned and calls it."""

    def rows() -> np.ndarray:
        from .common import library_model, prompt_rows

        return prompt_rows(lambda: library_model(store, None, device, dtype))()

    return rows
