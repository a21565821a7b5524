"""The derived vector cache of a library: a float32 matrix on disk plus an optional ANN index.

Everything here is rebuildable from ``library.sqlite`` (the source of truth), so losing or
corrupting ``<library>/vectors/`` costs a rebuild, never data. One *generation* is a folder

```
vectors/<generation>/vectors.npy      (N, D) float32, L2-normalised, rows grouped by video id
vectors/<generation>/video_ids.npy    (V,) int64, ascending
vectors/<generation>/starts.npy       (V + 1,) int64: video i owns rows starts[i]:starts[i+1]
vectors/<generation>/timestamps.npy   (N,) float64 seconds
vectors/<generation>/ann.faiss        optional: IVF-SQ8 over the rows (faiss ids = row numbers)
vectors/manifest.json                 names the current generation; replaced atomically, last
```

A generation folder is complete before the manifest names it, so a reader (or a crash) sees
either the old generation or the new one, never a mixture. Readers memory-map the files; on
POSIX a mapped file stays readable after a newer generation deletes it.

The manifest holds a BLAKE2b checksum of every file. :func:`load_generation` verifies the
small ones (ids, offsets, timestamps: 8 bytes a row, ~5 ms per million rows) and the
structure on every load; :func:`verify_files` re-hashes the large ones (``vectors.npy``,
``ann.faiss``) for ``videolens library check``. Damage the hashes cannot see cheaply (a few
vector rows) is caught by comparing sampled rows with SQLite (:mod:`.vectors`).

Search functions here are pure: they take a loaded :class:`VectorCache` (or a plain matrix)
and row ranges, and return ``(scores, rows)``; mapping rows to videos, dropping deleted
videos and merging the not-yet-cached tail is :mod:`videolens.library.vectors`'s job.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
# 2: the manifest carries checksums (a format-1 cache is rebuilt once)
CACHE_FORMAT = 2
# Rows scored per matmul in exact search: bounds the (Q, CHUNK) score buffer and the
# float32 rows copied out of a memory map at once (64k rows x 512 = 128 MB at most).
CHUNK = 65536
# Candidates fetched from the quantised index per wanted hit, then re-scored exactly against
# the float32 rows; SQ8 alone perturbs scores by ~1e-3, enough to swap near-ties.
RERANK_FACTOR = 4
RERANK_MIN_EXTRA = 32
# Codes an ANN query scans at most (see ann_params): ~15-20 ms per query on 2 cores.
SCAN_CODES = 200_000

Ranges = Sequence[tuple[int, int]]


@dataclass
class VectorCache:
    """One loaded generation. Arrays are memory-mapped (read-only) where they are large."""

    directory: Path
    manifest: dict
    vectors: np.ndarray  # (N, D) float32, memmap
    video_ids: np.ndarray  # (V,) int64, ascending
    starts: np.ndarray  # (V + 1,) int64 row offsets
    timestamps: np.ndarray  # (N,) float64 seconds
    ann: object | None  # faiss.Index or None

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    def rows_to_videos(self, rows: np.ndarray) -> np.ndarray:
        """Row numbers (any shape, int64) -> the video id owning each row."""
        position = np.searchsorted(self.starts, rows, side="right") - 1
        return self.video_ids[position]

    def ranges_for(self, keep: np.ndarray) -> list[tuple[int, int]]:
        """(V,) bool mask over ``video_ids`` -> coalesced ``[start, stop)`` row ranges."""
        ranges: list[tuple[int, int]] = []
        for i in np.flatnonzero(keep):
            start, stop = int(self.starts[i]), int(self.starts[i + 1])
            if start == stop:
                continue
            if ranges and ranges[-1][1] == start:  # adjacent videos: one contiguous block
                ranges[-1] = (ranges[-1][0], stop)
            else:
                ranges.append((start, stop))
        return ranges


# ---------------------------------------------------------------------------------------------
# exact search


def topk_merge(
    scores: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the ``k`` best of candidate ``(scores, rows)``, both (Q, M) -> (Q, <=k).

    Best first; ties broken by row number so results are deterministic.
    """
    if scores.shape[1] > k:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (Q, k), unordered
        scores = np.take_along_axis(scores, part, axis=1)
        rows = np.take_along_axis(rows, part, axis=1)
    order = np.lexsort((rows, -scores), axis=1)  # primary key: score descending
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


def _blocks(matrix: np.ndarray, ranges: Ranges) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(block (m, D) float32, rows (m,) int64)`` covering ``ranges`` in <= CHUNK rows.

    Long ranges are sliced (a view of the memmap, no copy); many short ranges (one video each,
    from a ``video_ids`` filter) are gathered into one block so each matmul stays large.
    """
    pending: list[tuple[int, int]] = []
    pending_rows = 0
    for start, stop in ranges:
        while stop - start >= CHUNK:
            yield matrix[start : start + CHUNK], np.arange(start, start + CHUNK)
            start += CHUNK
        if stop <= start:
            continue
        if pending_rows + (stop - start) > CHUNK:
            yield _gather(matrix, pending)
            pending, pending_rows = [], 0
        pending.append((start, stop))
        pending_rows += stop - start
    if pending:
        yield _gather(matrix, pending)


def _gather(matrix: np.ndarray, ranges: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    if len(ranges) == 1:
        start, stop = ranges[0]
        return matrix[start:stop], np.arange(start, stop)
    block = np.concatenate([matrix[a:b] for a, b in ranges])
    rows = np.concatenate([np.arange(a, b) for a, b in ranges])
    return block, rows


def exact_search(
    queries: np.ndarray, matrix: np.ndarray, ranges: Ranges, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product top-``k`` of ``queries`` (Q, D) over ``matrix[ranges]``.

    ``matrix`` (N, D) float32 may be a memmap; only the rows in ``ranges`` are read.
    Returns ``scores`` (Q, <=k) float32 and ``rows`` (Q, <=k) int64, best first. Measured here
    (2 cores, D=512, one query): numpy matmul ~6 ms at 50k rows, ~13 ms at 100k, ~22 ms at
    200k, faster than faiss ``IndexFlatIP`` (10 / 19 / 35 ms) and needing no copy of the data.
    """
    num_queries = queries.shape[0]
    best_scores = np.empty((num_queries, 0), np.float32)
    best_rows = np.empty((num_queries, 0), np.int64)
    for block, rows in _blocks(matrix, ranges):
        scores = queries @ np.asarray(block, dtype=np.float32).T  # (Q, D) @ (D, m) -> (Q, m)
        block_rows = np.broadcast_to(rows, scores.shape)
        scores, block_rows = topk_merge(scores, block_rows, k)
        best_scores, best_rows = topk_merge(
            np.concatenate([best_scores, scores], axis=1),
            np.concatenate([best_rows, block_rows], axis=1),
            k,
        )
    return best_scores, best_rows


# ---------------------------------------------------------------------------------------------
# approximate search


def ann_params(count: int) -> tuple[int, int]:
    """``(nlist, nprobe)`` for an IVF index over ``count`` vectors.

    nlist ~ sqrt(N) rounded to a power of two, in [16, 4096]: at 1M x 512 on 2 cores, 1024
    lists trained in 4 s and added in 10 s, 2048 in 13 + 17 s, 4096 in 25 + 28 s, while query
    time was a few ms for all of them, so build time decides.

    nprobe spends the latency budget on recall: enough lists to scan ~200k codes per query
    (~15-20 ms here), at most a quarter of the lists, at least 32. Recall depends on the
    queries more than on N: in benchmarks/bench_search.py recall@10 at 1M (nlist 1024) was
    0.995 at nprobe 8 and 1.0 at 128, but at 300k (nlist 512, where many queries have no close
    stored neighbour, like text queries against frames) 0.92 at nprobe 64, 0.953 at 128 and
    0.98 at 256.
    """
    nlist = 2 ** round(math.log2(max(1.0, math.sqrt(count))))
    nlist = int(min(4096, max(16, nlist)))
    # faiss wants >= 39 training points per centroid; small forced indexes get fewer lists
    nlist = int(max(1, min(nlist, count // 39)))
    fraction = min(0.25, SCAN_CODES / max(1, count))
    nprobe = int(min(nlist, max(32, math.ceil(nlist * fraction))))
    return nlist, nprobe


def build_ann(vectors: np.ndarray, seed: int = 0):
    """IVF-SQ8 inner-product index over ``vectors`` (N, D) float32; faiss ids = row numbers.

    SQ8 (one byte per dimension) keeps the index file at a quarter of the float32 rows
    (0.5 GB at 1M x 512 instead of 2 GB for IVF-Flat) with the same recall after
    re-scoring candidates exactly against the float32 cache. Training uses 64 points per
    list, sampled without replacement.
    """
    import faiss

    count, dim = vectors.shape
    nlist, nprobe = ann_params(count)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    rng = np.random.default_rng(seed)
    sample_rows = np.sort(rng.choice(count, size=min(count, 64 * nlist), replace=False))
    index.train(np.ascontiguousarray(vectors[sample_rows], dtype=np.float32))
    for start in range(0, count, CHUNK):
        stop = min(count, start + CHUNK)
        index.add(np.ascontiguousarray(vectors[start:stop], dtype=np.float32))
    index.nprobe = nprobe
    return index


def ann_search(
    cache: VectorCache, queries: np.ndarray, k: int, allowed_rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-``k`` over the cache's ANN index, re-scored exactly.

    ``allowed_rows`` (N,) bool restricts the search (deleted or filtered-out videos) inside
    faiss, so the candidates it returns are all usable. Returns ``(scores, rows)`` (Q, <=k),
    best first; a query can get fewer than ``k`` rows (probed lists held too few allowed
    rows) — the caller falls back to exact search for it. Rows missing are ``-1``.
    """
    import faiss

    index = cache.ann
    nprobe = int(cache.manifest["ann"]["nprobe"])
    fetch = min(cache.count, max(RERANK_FACTOR * k, k + RERANK_MIN_EXTRA))
    bitmap = None
    if allowed_rows is not None:
        bitmap = np.packbits(allowed_rows, bitorder="little")  # faiss: bit i = row i
        selector = faiss.IDSelectorBitmap(cache.count, faiss.swig_ptr(bitmap))
        params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
    else:
        params = faiss.SearchParametersIVF(nprobe=nprobe)
    _, candidates = index.search(np.ascontiguousarray(queries, np.float32), fetch, params=params)
    del bitmap  # kept alive until here: faiss reads it during search
    scores = np.full(candidates.shape, -np.inf, np.float32)
    for qi in range(queries.shape[0]):
        slots = np.flatnonzero(candidates[qi] >= 0)
        slots = slots[np.argsort(candidates[qi, slots])]  # read the memmap in row order
        # exact re-score: (m, D) @ (D,) -> (m,), reading m rows from the memmap
        scores[qi, slots] = np.asarray(cache.vectors[candidates[qi, slots]]) @ queries[qi]
    scores, rows = topk_merge(scores, candidates, k)
    rows = np.where(np.isfinite(scores), rows, -1)
    return scores, rows


# ---------------------------------------------------------------------------------------------
# writing and loading generations


def ids_digest(video_ids: np.ndarray) -> str:
    """Short hash of a sorted int64 id array: names the set of videos a generation holds."""
    return hashlib.blake2b(np.ascontiguousarray(video_ids, np.int64).tobytes(),
                           digest_size=12).hexdigest()


class GenerationWriter:
    """Fills a new generation folder; :meth:`publish` makes it current (manifest last).

    Usage: ``writer = GenerationWriter(vectors_dir, count, dim)``, ``writer.append(...)`` per
    video in ascending id order, then ``writer.publish(build_ann=...)``. If anything fails
    before ``publish``, :meth:`discard` removes the folder and the old generation stays.
    """

    def __init__(self, vectors_dir: Path, count: int, dim: int, num_videos: int):
        self.vectors_dir = vectors_dir
        self.name = f"gen-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        # a dot-prefixed folder is invisible to cleanup until renamed into place
        self.tmp_dir = vectors_dir / f".{self.name}.tmp"
        self.tmp_dir.mkdir(parents=True)
        self.count, self.dim = count, dim
        self.vectors = np.lib.format.open_memmap(
            self.tmp_dir / "vectors.npy", mode="w+", dtype=np.float32, shape=(count, dim)
        )
        self.timestamps = np.empty(count, np.float64)
        self.video_ids = np.empty(num_videos, np.int64)
        self.starts = np.zeros(num_videos + 1, np.int64)
        self._row = 0
        self._video = 0

    def append(self, video_id: int, timestamps: np.ndarray, vectors: np.ndarray) -> None:
        """Add one video's rows: ``timestamps`` (n,) seconds, ``vectors`` (n, D)."""
        n = len(timestamps)
        self.vectors[self._row : self._row + n] = vectors
        self.timestamps[self._row : self._row + n] = timestamps
        self.video_ids[self._video] = video_id
        self._row += n
        self._video += 1
        self.starts[self._video] = self._row

    def publish(self, *, with_ann: bool, meta: dict) -> dict:
        """Finish the files, optionally build the ANN index, then switch the manifest.

        Returns the manifest written. ``meta`` is merged into it (e.g. the SQLite snapshot's
        max video id).
        """
        if (self._row, self._video) != (self.count, len(self.video_ids)):
            raise RuntimeError(
                f"generation filled {self._row}/{self.count} rows, "
                f"{self._video}/{len(self.video_ids)} videos"
            )
        self.vectors.flush()
        for name, array in (("timestamps", self.timestamps), ("video_ids", self.video_ids),
                            ("starts", self.starts)):
            np.save(self.tmp_dir / f"{name}.npy", array)
        checksums = {name: file_checksum(self.tmp_dir / name) for name in SMALL_FILES}
        checksums["vectors.npy"] = file_checksum(self.tmp_dir / "vectors.npy")
        ann_meta = None
        build_seconds = 0.0
        if with_ann and self.count > 0:
            import faiss

            started = time.perf_counter()
            index = build_ann(self.vectors)
            faiss.write_index(index, str(self.tmp_dir / "ann.faiss"))
            build_seconds = time.perf_counter() - started
            checksums["ann.faiss"] = file_checksum(self.tmp_dir / "ann.faiss")
            ann_meta = {"kind": "IVF-SQ8", "file": "ann.faiss", "nlist": int(index.nlist),
                        "nprobe": int(index.nprobe), "build_seconds": round(build_seconds, 3)}
        del self.vectors  # close the memmap before renaming
        for path in self.tmp_dir.iterdir():
            _fsync_file(path)
        final_dir = self.vectors_dir / self.name
        os.replace(self.tmp_dir, final_dir)
        manifest = {
            "format": CACHE_FORMAT,
            "generation": self.name,
            "created_at": time.time(),
            "count": self.count,
            "dim": self.dim,
            "num_videos": len(self.video_ids),
            "max_video_id": int(self.video_ids.max()) if len(self.video_ids) else 0,
            "ids_digest": ids_digest(self.video_ids),
            "ann": ann_meta,
            "checksums": checksums,
            **meta,
        }
        _write_json_atomic(self.vectors_dir / MANIFEST, manifest)
        _fsync_dir(self.vectors_dir)
        return manifest

    def discard(self) -> None:
        self.__dict__.pop("vectors", None)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)


def read_manifest(vectors_dir: Path) -> dict | None:
    """The current manifest, or None when there is no (readable, known-format) cache."""
    try:
        manifest = json.loads((vectors_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
        return None
    return manifest


SMALL_FILES = ("video_ids.npy", "starts.npy", "timestamps.npy")


class CacheDamaged(ValueError):
    """A generation's files do not match its manifest (or each other)."""


def file_checksum(path: Path) -> str:
    """BLAKE2b (16-byte digest) of a file, read in 1 MiB blocks: ~1 GB/s here."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as err:  # a header or body that is not .npy
        raise CacheDamaged(f"{path.name} is not a readable array ({err})") from err


def load_generation(vectors_dir: Path, manifest: dict) -> VectorCache:
    """Memory-map the generation ``manifest`` names, verifying the checksums of the small
    files and the structure. FileNotFoundError if the generation is gone (a refresh elsewhere
    removed it); :class:`CacheDamaged` if it does not match its manifest."""
    try:
        directory = vectors_dir / str(manifest["generation"])
        count, dim = int(manifest["count"]), int(manifest["dim"])
        checksums = dict(manifest["checksums"])
    except (KeyError, TypeError, ValueError) as err:
        raise CacheDamaged(f"the manifest lacks {err}") from err
    for name in SMALL_FILES:
        if file_checksum(directory / name) != checksums.get(name):
            raise CacheDamaged(f"{name} does not match its checksum")
    vectors = _load_npy(directory / "vectors.npy", mmap=True)
    if vectors.shape != (count, dim) or vectors.dtype != np.float32:
        raise CacheDamaged(f"vectors.npy is {vectors.shape} {vectors.dtype}, the manifest says "
                           f"({count}, {dim}) float32")
    video_ids = _load_npy(directory / "video_ids.npy", mmap=False)
    starts = _load_npy(directory / "starts.npy", mmap=False)
    timestamps = _load_npy(directory / "timestamps.npy", mmap=True)
    if (video_ids.dtype != np.int64 or starts.dtype != np.int64 or len(timestamps) != count
            or len(starts) != len(video_ids) + 1 or starts[0] != 0 or starts[-1] != count
            or np.any(np.diff(starts) < 0) or np.any(np.diff(video_ids) <= 0)
            or ids_digest(video_ids) != manifest.get("ids_digest")):
        raise CacheDamaged("video ids, row offsets and timestamps do not fit together")
    ann = None
    if manifest.get("ann"):
        import faiss

        # IO_FLAG_MMAP maps the inverted lists instead of reading them: ~5 ms to open a
        # 1M-vector index here instead of 1-7 s to read it, which matters for a one-shot CLI
        try:
            ann = faiss.read_index(str(directory / manifest["ann"]["file"]), faiss.IO_FLAG_MMAP)
        except RuntimeError as err:
            raise CacheDamaged(f"the ANN index cannot be read ({str(err).splitlines()[0]})") \
                from err
        if ann.ntotal != count or ann.d != dim:
            raise CacheDamaged("the ANN index does not match vectors.npy")
    return VectorCache(directory, manifest, vectors, video_ids, starts, timestamps, ann)


def verify_files(vectors_dir: Path, manifest: dict) -> list[str]:
    """Re-hash every file of a generation against the manifest (reads them all: ~2 s per
    GB). Returns the names of files that differ or are missing."""
    directory = vectors_dir / str(manifest.get("generation"))
    bad = []
    for name, expected in dict(manifest.get("checksums") or {}).items():
        try:
            if file_checksum(directory / name) != expected:
                bad.append(name)
        except OSError:
            bad.append(name)
    return bad


def remove_old_generations(vectors_dir: Path, keep: Iterable[str]) -> None:
    """Delete generation folders not in ``keep`` (best effort; a reader may hold a map)."""
    keep = set(keep)
    for path in vectors_dir.iterdir():
        if path.is_dir() and path.name.startswith("gen-") and path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


def remove_stale_tmp(vectors_dir: Path, older_than_s: float = 3600.0) -> None:
    """Delete unfinished generation folders left by a crashed refresh (older than an hour,
    so a refresh running right now in another process is left alone)."""
    now = time.time()
    for path in vectors_dir.glob(".gen-*.tmp"):
        try:
            if now - path.stat().st_mtime > older_than_s:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:  # some filesystems refuse fsync on a directory; the data is still written
        pass
