"""The derived vector cache of a library: float16 rows on disk, segments, an optional IVF index.

Everything here is rebuildable from ``library.sqlite`` (the source of truth), so losing or
corrupting ``<library>/vectors/`` costs a rebuild, never data. The cache is a list of
*segments*, each an immutable folder written once:

```
vectors/<segment>/vectors.faiss   (n, D) float16 rows, L2-normalised, grouped by video id: a
                                  faiss IndexScalarQuantizer(QT_fp16) file. faiss maps it for
                                  exact search; numpy maps the same bytes for row reads
vectors/<segment>/video_ids.npy   (v,) int64, ascending
vectors/<segment>/starts.npy      (v + 1,) int64: video i owns rows starts[i]:starts[i+1]
vectors/<segment>/timestamps.npy  (n,) float64 seconds
vectors/<segment>/ann.faiss       optional: IVF-SQ8 or IVF-PQ codes of the rows (faiss ids =
                                  row numbers within the segment)
vectors/<base>/trained.faiss      the trained, empty IVF index of the first (base) segment:
                                  later segments are encoded with the same centroids, so their
                                  lists are the base's lists continued in another file
vectors/manifest.json             the segments in order, the tombstones (cached videos deleted
                                  since), the tuned nprobe; replaced atomically, last
```

A full build writes one base segment. An incremental refresh writes one small segment for the
videos added since (ids only grow, so rows stay grouped by ascending id across segments) and
adds the removed videos to the tombstones, in time proportional to the change. Segments are
complete and renamed into place before the manifest names them, so a reader (or a crash)
sees either the old manifest or the new one, never a mixture; an unreferenced segment left by
a crash is removed by the next refresh. Readers memory-map the files; on POSIX a mapped file
stays readable after a newer refresh deletes it.

The manifest holds a BLAKE2b checksum of every file. :func:`load_cache` verifies the small
ones (ids, offsets, timestamps: 8 bytes a row, ~5 ms per million rows) and the structure on
every load; :func:`verify_files` re-hashes the large ones for ``videolens library check``.
Damage the hashes cannot see cheaply (a few vector rows) is caught by comparing sampled rows
with SQLite (:mod:`.vectors`).

Memory: rows are float16 (the precision SQLite stores) and read on demand from the map; the
IVF codes are 1 byte a dimension (SQ8) below ``PQ_MIN_VECTORS`` and D/4 bytes (PQ, 4
dimensions a sub-quantizer) at and above it, so at 10M x 512 the cache is the float16 store
plus ~14 % and search touches the codes plus a few hundred rows per query.

Search functions here are pure: they take a loaded :class:`VectorCache` (or a plain matrix)
and row selections, and return ``(scores, rows)`` over global row numbers (segments
concatenated); mapping rows to videos, dropping deleted videos and merging the not-yet-cached
tail is :mod:`videolens.library.vectors`'s job.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
import time
import uuid
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
# 2: the manifest carries checksums; 3: float16 rows in segments, tombstones, IVF-PQ past
# PQ_MIN_VECTORS and a measured nprobe (an older cache is rebuilt once)
CACHE_FORMAT = 3
FLAT_FILE = "vectors.faiss"
ANN_FILE = "ann.faiss"
TRAINED_FILE = "trained.faiss"
SMALL_FILES = ("video_ids.npy", "starts.npy", "timestamps.npy")
ROW_DTYPE = np.dtype("<f2")
# Rows scored per matmul in exact search: bounds the (Q, CHUNK) score buffer and the
# float32 rows converted out of a memory map at once (64k rows x 512 = 128 MB at most).
CHUNK = 65536
# Rows pooled before they are encoded into an IVF index while a segment is written
ENCODE_ROWS = 8192
# Up to this many queries, exact search over float16 rows runs in faiss (fp16 SIMD, no
# float32 copy): 1 query over 200k rows took 43 ms here against ~240 ms for numpy's
# float16 -> float32 conversion + matmul. Batches convert once per chunk and use BLAS.
FAISS_EXACT_MAX_QUERIES = 4
# Candidates fetched from the quantised index per wanted hit, then re-scored exactly against
# the float16 rows; SQ8 perturbs scores by ~1e-3, enough to swap near-ties. PQ (4 dimensions
# a byte) perturbs them by ~1e-2, and the denser the library the more rows sit within that of
# the true top-10. benchmarks/bench_rerank.py, 10M rows, new-scene image queries at nprobe
# 32 (recall@10, ms a query batched): 330 candidates 0.797 (6.9 ms; 0.7975 at nprobe 128:
# nprobe cannot make it up), 1010 0.9615 (7.7 ms), 3010 0.997 (9.4 ms). So PQ re-scores
# 3000 extra rows (3 MB of float16 rows a query).
RERANK_FACTOR = {"IVF-SQ8": 4, "IVF-PQ": 4}
RERANK_MIN_EXTRA = {"IVF-SQ8": 32, "IVF-PQ": 3000}
# IVF-PQ at and above this many rows (SQ8 codes would be 0.5 of the float16 store, PQ's 0.13)
PQ_MIN_VECTORS = 2_000_000
PQ_DIMS_PER_CODE = 4
# nprobe tuning: recall@10 wanted for both query kinds, queries per kind, and k
TUNE_TARGET = 0.98
TUNE_QUERIES = 200
TUNE_K = 10
TUNE_STOP = 0.995
# nprobe is chosen where the recall's one-sided 95 % lower bound over the tuning queries
# reaches the target, not the mean: at 1M benchmark vectors the mean crossed 0.98 on a
# plateau (0.978-0.984 from nprobe 2 to 8) and the chosen nprobe gave 0.9655 on other queries.
TUNE_Z = 1.645
# The sweep goes up to half the lists for IVF-SQ8 and to all of them for IVF-PQ, measured
# single queries against exact search (faiss's float16 scan): SQ8 codes are half the float16
# bytes, and at 1M vectors nprobe 512 of 1024 cost 68 ms against 79 ms exact (bench_search),
# so probing more would cost more than exact search. PQ codes are an eighth: at 2M vectors
# (measured by hand) probing all 1024 lists took 92 ms against 147 ms exact, touching 260 MB
# of codes instead of 2 GB of rows, and text-like queries, whose best frames sit in many
# lists, need it (10M: recall@10 0.987, lower bound 0.975, at nprobe 512).
TUNE_MAX_FRACTION = {"IVF-SQ8": 0.5, "IVF-PQ": 1.0}
# Image-like tuning queries also include frames of videos left out of the search (a tenth
# of the library at most) when the library has this many videos: such a query has no copy of its
# own scene to find, so its top 10 sit among many near-equal frames of other videos — the
# case that hid PQ's loss at 10M rows from the earlier tuning (stored rows plus noise:
# 0.99 in tuning, 0.797 on frames of new scenes in bench_search).
HELD_OUT_MIN_VIDEOS = 20

# tuning queries of one kind: (queries (m, D) float32, rows mask (N,) bool or None = all)
QueryPart = tuple[np.ndarray, "np.ndarray | None"]

Ranges = Sequence[tuple[int, int]]


# ---------------------------------------------------------------------------------------------
# loaded state


@dataclass
class Segment:
    """One immutable folder of rows. ``offset`` is the global row of its first row."""

    name: str
    directory: Path
    offset: int
    vectors: np.ndarray  # (n, D) float16, memmap
    video_ids: np.ndarray  # (v,) int64
    starts: np.ndarray  # (v + 1,) int64, local rows
    timestamps: np.ndarray  # (n,) float64 seconds, memmap
    flat: object | None  # faiss IndexScalarQuantizer over the same bytes, or None when empty
    ann: object | None  # faiss IVF index or None
    # the rows' file open for positional reads of scattered rows (re-scoring a short list),
    # and the byte offset of row 0 in it; see _RowReader
    scattered: _RowReader | None = None

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])


@dataclass
class VectorCache:
    """The loaded manifest and its segments; global rows number the segments' rows in order."""

    directory: Path
    manifest: dict
    segments: list[Segment]
    tombstones: np.ndarray  # (t,) int64, sorted: cached videos deleted since
    video_ids: np.ndarray = field(init=False)  # (V,) int64 ascending, all segments
    starts: np.ndarray = field(init=False)  # (V + 1,) int64 global row offsets

    def __post_init__(self) -> None:
        ids = [s.video_ids for s in self.segments]
        self.video_ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        starts = [np.zeros(1, np.int64)] + [s.starts[1:] + s.offset for s in self.segments]
        self.starts = np.concatenate(starts)
        self._offsets = np.array([s.offset for s in self.segments] + [self.count], np.int64)

    @property
    def count(self) -> int:
        return sum(s.count for s in self.segments)

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def ann(self) -> object | None:
        """The base segment's IVF index (every segment has one when the base has)."""
        return self.segments[0].ann if self.segments else None

    @property
    def ann_kind(self) -> str | None:
        meta = self.manifest.get("ann")
        return meta.get("kind") if meta else None

    def segment_of(self, rows: np.ndarray) -> np.ndarray:
        """Global rows (any shape) -> index of the segment holding each."""
        return np.searchsorted(self._offsets, rows, side="right") - 1

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Global rows (m,) int64 -> (m, D) float32, read from the float16 maps."""
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), self.dim), np.float32)
        owner = self.segment_of(rows)
        for s in np.unique(owner):
            picked = np.flatnonzero(owner == s)
            segment = self.segments[int(s)]
            local = rows[picked] - segment.offset
            order = np.argsort(local)  # read the map in row order
            if segment.scattered is not None:
                out[picked[order]] = segment.scattered.read(local[order])
            else:
                out[picked[order]] = segment.vectors[local[order]]
        return out

    def times(self, rows: np.ndarray) -> np.ndarray:
        """Global rows (any shape) -> seconds (same shape)."""
        rows = np.asarray(rows, np.int64)
        out = np.empty(rows.shape, np.float64)
        owner = self.segment_of(rows)
        for s in np.unique(owner):
            mask = owner == s
            segment = self.segments[int(s)]
            out[mask] = np.asarray(segment.timestamps)[rows[mask] - segment.offset]
        return out

    def video_frames(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """The cached frames of ``video_ids[position]``: timestamps (n,) seconds, vectors
        (n, D) float32 (exactly the stored float16 values)."""
        start, stop = int(self.starts[position]), int(self.starts[position + 1])
        if start == stop:
            return np.empty(0, np.float64), np.empty((0, self.dim), np.float32)
        segment = self.segments[int(self.segment_of(np.array([start]))[0])]
        a, b = start - segment.offset, stop - segment.offset
        return (np.asarray(segment.timestamps[a:b]),
                np.asarray(segment.vectors[a:b], dtype=np.float32))

    def rows_to_videos(self, rows: np.ndarray) -> np.ndarray:
        """Row numbers (any shape, int64) -> the video id owning each row."""
        position = np.searchsorted(self.starts, rows, side="right") - 1
        return self.video_ids[position]

    def row_mask(self, keep: np.ndarray) -> np.ndarray:
        """(V,) bool over ``video_ids`` -> (N,) bool over global rows."""
        return np.repeat(keep, np.diff(self.starts))


def ranges_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """(n,) bool -> coalesced ``[start, stop)`` ranges of its True runs."""
    if not len(mask):
        return []
    edges = np.flatnonzero(np.diff(np.r_[0, mask.view(np.int8), 0]))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


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


def _blocks(matrix: np.ndarray, ranges: Ranges, reader: _RowReader | None = None
            ) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(block (m, D), rows (m,) int64)`` covering ``ranges`` in <= CHUNK rows.

    Long ranges are sliced (a view of the memmap, no copy; with a ``reader``, read into
    memory instead, so a scan of every row leaves none of the file mapped); many short ranges
    (one video each, from a ``video_ids`` filter) are gathered into one block so each matmul
    stays large.
    """
    pending: list[tuple[int, int]] = []
    pending_rows = 0
    for start, stop in ranges:
        while stop - start >= CHUNK:
            rows = np.arange(start, start + CHUNK)
            yield (matrix[start : start + CHUNK] if reader is None else reader.read(rows)), rows
            start += CHUNK
        if stop <= start:
            continue
        if pending_rows + (stop - start) > CHUNK:
            yield _gather(matrix, pending, reader)
            pending, pending_rows = [], 0
        pending.append((start, stop))
        pending_rows += stop - start
    if pending:
        yield _gather(matrix, pending, reader)


def _gather(matrix: np.ndarray, ranges: list[tuple[int, int]], reader: _RowReader | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    rows = np.concatenate([np.arange(a, b) for a, b in ranges])
    if reader is not None:
        return reader.read(rows), rows
    if len(ranges) == 1:
        start, stop = ranges[0]
        return matrix[start:stop], rows
    return np.concatenate([matrix[a:b] for a, b in ranges]), rows


def _merge(best: tuple[np.ndarray, np.ndarray], scores: np.ndarray, rows: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    return topk_merge(np.concatenate([best[0], scores], axis=1),
                      np.concatenate([best[1], rows], axis=1), k)


def _empty(num_queries: int) -> tuple[np.ndarray, np.ndarray]:
    return np.empty((num_queries, 0), np.float32), np.empty((num_queries, 0), np.int64)


def exact_search(
    queries: np.ndarray, matrix: np.ndarray, ranges: Ranges, k: int,
    reader: _RowReader | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product top-``k`` of ``queries`` (Q, D) over ``matrix[ranges]``.

    ``matrix`` (N, D) float32 or float16 may be a memmap; only the rows in ``ranges`` are
    read (through ``reader`` when given, see :func:`_blocks`). Returns ``scores`` (Q, <=k)
    float32 and ``rows`` (Q, <=k) int64, best first.
    Measured here (2 cores, D=512, one float32 query): numpy matmul ~6 ms at 50k rows, ~13 ms
    at 100k, faster than faiss ``IndexFlatIP`` and needing no copy of the data.
    """
    best = _empty(queries.shape[0])
    for block, rows in _blocks(matrix, ranges, reader):
        scores = queries @ np.asarray(block, dtype=np.float32).T  # (Q, D) @ (D, m) -> (Q, m)
        block_rows = np.broadcast_to(rows, scores.shape)
        best = _merge(best, *topk_merge(scores, block_rows, k), k)
    return best


def _selector(faiss, mask: np.ndarray | None, ranges: list[tuple[int, int]]):
    """A faiss id selector for local rows (None: all rows); returns (selector, keep-alive)."""
    if mask is None:
        return None, None
    if len(ranges) == 1:
        return faiss.IDSelectorRange(*ranges[0]), None
    bitmap = np.packbits(mask, bitorder="little")  # faiss: bit i = row i
    return faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap)), bitmap


def exact_search_cache(cache: VectorCache, queries: np.ndarray, rows_mask: np.ndarray | None,
                       k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` over the cache's rows where ``rows_mask`` (N,) bool is True (None: all).

    Few queries run in faiss on the float16 bytes; batches convert chunks to float32 and
    use BLAS. Returns global ``(scores, rows)`` (Q, <=k), best first.
    """
    import faiss

    best = _empty(queries.shape[0])
    for segment in cache.segments:
        if segment.count == 0:
            continue
        mask = None if rows_mask is None else \
            rows_mask[segment.offset : segment.offset + segment.count]
        ranges = [(0, segment.count)] if mask is None else ranges_of(mask)
        if not ranges:
            continue
        if queries.shape[0] <= FAISS_EXACT_MAX_QUERIES and segment.flat is not None:
            selected = sum(b - a for a, b in ranges)
            selector, keep_alive = _selector(
                faiss, None if selected == segment.count else mask, ranges)
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
            scores, rows = segment.flat.search(queries, min(k, selected), params=params)
            del keep_alive
            scores = np.where(rows >= 0, scores, -np.inf).astype(np.float32)
            rows = np.where(rows >= 0, rows + segment.offset, -1)
        else:
            # batches: float16 -> float32 conversion dominates, and the rows are read
            # into memory first (the copy costs a fraction of the conversion), so a scan of
            # the whole cache (nprobe tuning's truth) does not map the whole file
            scores, rows = exact_search(queries, segment.vectors, ranges, k, segment.scattered)
            rows = rows + segment.offset
        best = _merge(best, scores, rows, k)
    return best


# ---------------------------------------------------------------------------------------------
# approximate search


def ann_params(count: int) -> tuple[int, int]:
    """``(nlist, nprobe)`` for an IVF index over ``count`` vectors (nprobe: the untuned start).

    nlist ~ sqrt(N) rounded to a power of two, in [16, 1024]: at 1M x 512 on 2 cores, 1024
    lists trained in 4 s and added in 10 s, 2048 in 13 + 17 s, 4096 in 25 + 28 s, while query
    time was a few ms for all of them, so build time decides: assigning rows to lists costs
    N x nlist x D multiply-adds, ~10 min for 10M rows and 2048 lists on this loaded machine.
    """
    nlist = 2 ** round(math.log2(max(1.0, math.sqrt(count))))
    nlist = int(min(1024, max(16, nlist)))
    # faiss wants >= 39 training points per centroid; small forced indexes get fewer lists
    nlist = int(max(1, min(nlist, count // 39)))
    nprobe = int(min(nlist, max(1, nlist // 16)))
    return nlist, nprobe


def ann_kind(count: int, pq_min_vectors: int = PQ_MIN_VECTORS) -> str:
    return "IVF-PQ" if count >= pq_min_vectors else "IVF-SQ8"


def _pq_subquantizers(dim: int) -> int:
    m = max(1, dim // PQ_DIMS_PER_CODE)
    while dim % m:
        m -= 1
    return m


def train_ann(sample: np.ndarray, count: int, kind: str):
    """A trained, empty IVF index (inner product) of ``kind`` for ``count`` rows, trained on
    ``sample`` (m, D) float32."""
    import faiss

    dim = sample.shape[1]
    nlist, _ = ann_params(count)
    nlist = int(max(1, min(nlist, len(sample) // 39)))
    quantizer = faiss.IndexFlatIP(dim)
    if kind == "IVF-PQ":
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, _pq_subquantizers(dim), 8,
                                 faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def training_size(count: int, kind: str) -> int:
    """Training rows: 64 per list, and >= 40 per PQ centroid (256 x 40)."""
    nlist, _ = ann_params(count)
    return min(count, 64 * nlist if kind == "IVF-SQ8" else max(64 * nlist, 256 * 40))


def ann_search(cache: VectorCache, queries: np.ndarray, k: int, nprobe: int,
               rows_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-``k`` over every segment's IVF index, re-scored exactly.

    ``rows_mask`` (N,) bool restricts the search (deleted or filtered-out videos) inside
    faiss, so the candidates it returns are all usable. Returns global ``(scores, rows)``
    (Q, <=k), best first; a query can get fewer than ``k`` rows (probed lists held too few
    allowed rows) — the caller falls back to exact search for it. Rows missing are ``-1``.
    """
    import faiss

    kind = cache.ann_kind or "IVF-SQ8"
    fetch_want = max(RERANK_FACTOR[kind] * k, k + RERANK_MIN_EXTRA[kind])
    queries = np.ascontiguousarray(queries, np.float32)
    parts = []
    for segment in cache.segments:
        if segment.ann is None or segment.count == 0:
            continue
        fetch = min(segment.count, fetch_want)
        mask = None if rows_mask is None else \
            rows_mask[segment.offset : segment.offset + segment.count]
        if mask is not None and mask.all():
            mask = None
        if mask is not None and not mask.any():
            continue
        bitmap = None
        if mask is not None:
            bitmap = np.packbits(mask, bitorder="little")
            selector = faiss.IDSelectorBitmap(segment.count, faiss.swig_ptr(bitmap))
            params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        else:
            params = faiss.SearchParametersIVF(nprobe=nprobe)
        # faiss splits a batch over queries (one thread each) by default, so a lone query
        # ran on one core; splitting its lists over the threads instead measured by hand (2M
        # rows, IVF-PQ, 2 threads) 84 -> 70 ms at all 1024 lists, 47 -> 40 ms at 512, while it
        # cost batches 13 %. Same hits either way: a racing search only runs slower.
        segment.ann.parallel_mode = 1 if len(queries) == 1 else 0
        _, candidates = segment.ann.search(queries, fetch, params=params)
        del bitmap  # kept alive until here: faiss reads it during search
        parts.append(np.where(candidates >= 0, candidates + segment.offset, -1))
    if not parts:
        return np.full((len(queries), 0), -np.inf, np.float32), np.empty((len(queries), 0),
                                                                          np.int64)
    candidates = np.concatenate(parts, axis=1)  # (Q, M) global rows
    scores = np.full(candidates.shape, -np.inf, np.float32)
    for qi in range(queries.shape[0]):
        slots = np.flatnonzero(candidates[qi] >= 0)
        # exact re-score: (m, D) @ (D,) -> (m,), reading m float16 rows from the maps
        scores[qi, slots] = cache.rows(candidates[qi, slots]) @ queries[qi]
    scores, rows = topk_merge(scores, candidates, k)
    rows = np.where(np.isfinite(scores), rows, -1)
    return scores, rows


def recall_per_query(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Overlap of each row of ``found`` (Q, k) with ``truth`` (Q, k), over k: (Q,)."""
    k = max(1, truth.shape[1])
    return np.array([len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist())) / k
                     for f, t in zip(found, truth, strict=True)], dtype=np.float64)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean overlap of each row of ``found`` (Q, k) with ``truth`` (Q, k), over k."""
    return float(np.mean(recall_per_query(found, truth)))


def recall_lower_bound(per_query: np.ndarray, z: float = TUNE_Z) -> float:
    """One-sided lower confidence bound of the mean recall (normal approximation)."""
    if len(per_query) < 2:
        return float(np.mean(per_query)) if len(per_query) else 0.0
    spread = float(np.std(per_query, ddof=1)) / np.sqrt(len(per_query))
    return float(np.mean(per_query)) - z * spread


def synthetic_queries(cache: VectorCache, count: int, seed: int = 0
                      ) -> tuple[dict[str, list[QueryPart]], dict[str, str]]:
    """Held-out queries drawn from the library's own rows, two kinds.

    ``image``: a sampled row moved to cosine ~0.8 from it (a frame like the stored ones,
    never a copy of one); with at least :data:`HELD_OUT_MIN_VIDEOS` videos also stored
    frames of videos left out of the search (:func:`held_out_frames`). Neither is the harder
    on all data (held-out frames were on bench_search's scene-structured rows, offset rows
    on unstructured ones), so tuning takes the worse of the two. ``text``: a sampled row at
    cosine ~0.35 plus a direction shared by all text queries (the modality gap: CLIP-family
    text embeddings sit apart from frame embeddings, near many frames at once and near none
    of them closely).

    Returns ``(parts, sources)``: per kind a list of ``(queries (m, D), rows mask (N,) bool
    or None for all rows)`` and a few words on where they came from.
    """
    rng = np.random.default_rng(seed)
    dim = cache.dim
    rows = np.sort(rng.choice(cache.count, size=min(count, cache.count), replace=False))
    base = cache.rows(rows)  # (m, D)
    noise = rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(dim)
    image: list[QueryPart] = [(_unit(base + 0.7 * noise), None)]
    source = "sampled rows moved to cosine ~0.8"
    held = held_out_frames(cache, count, rng)
    if held is not None:
        image.append(held[:2])
        source += f", and stored frames of {held[2]} videos left out of the search"
    gap = _unit(rng.standard_normal(dim).astype(np.float32))
    noise = rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(dim)
    text = _unit(0.35 * base + 0.8 * gap + 0.45 * noise)
    return {"image": image, "text": [(text, None)]}, {"image": source}


def held_out_frames(cache: VectorCache, count: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """``count`` stored frames of up to a tenth of the videos, drawn at random, and the
    row mask that leaves those videos out: ``(queries (m, D), mask (N,), videos)``, or None
    when the library has fewer than :data:`HELD_OUT_MIN_VIDEOS` videos with frames."""
    lengths = np.diff(cache.starts)
    with_frames = np.flatnonzero(lengths > 0)
    if len(with_frames) < HELD_OUT_MIN_VIDEOS or count < 1:
        return None
    held = np.sort(rng.choice(with_frames, min(count, len(with_frames) // 10), replace=False))
    per_video = -(-count // len(held))
    picked = []
    for position in held:
        start, n = int(cache.starts[position]), int(lengths[position])
        picked.append(start + rng.choice(n, min(n, per_video), replace=False))
    rows = np.concatenate(picked)
    if len(rows) > count:
        rows = rows[rng.choice(len(rows), count, replace=False)]
    keep = np.ones(len(cache.video_ids), bool)
    keep[held] = False
    return _unit(cache.rows(np.sort(rows))), cache.row_mask(keep), len(held)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def tune_nprobe(cache: VectorCache, query_sets: dict[str, np.ndarray | list[QueryPart]],
                target: float = TUNE_TARGET, k: int = TUNE_K) -> dict:
    """Measure recall@k against exact search at nprobe 1, 2, 4, ... for each query kind.

    A kind's queries are an (m, D) array searched over all rows, or parts ``(queries, rows
    mask)`` each searched over its own rows; a kind's recall is its worst part's. Returns
    ``{"target", "k", "queries": {kind: n}, "exact_ms_per_query" (batched), "max_nprobe",
    "table": [{"nprobe", kind: mean recall, kind_low: its lower bound, kind_ms_per_query
    (batched)}], "nprobe": {kind: the smallest nprobe whose lower bound reaches target, or
    None: search exactly}}``. A kind is measured until its lower bound reaches
    ``TUNE_STOP`` (so ``--recall`` up to that is served from the table; above it search is
    exact) and the sweep ends there or at :data:`TUNE_MAX_FRACTION` of the lists.
    """
    nlist = int(cache.manifest["ann"]["nlist"])
    fraction = TUNE_MAX_FRACTION.get(cache.ann_kind or "IVF-SQ8", 0.5)
    max_nprobe = max(1, int(nlist * fraction))
    parts = {kind: [(q, None)] if isinstance(q, np.ndarray) else list(q)
             for kind, q in query_sets.items()}
    started = time.perf_counter()
    truth = {kind: [exact_search_cache(cache, q, mask, k)[1] for q, mask in kind_parts]
             for kind, kind_parts in parts.items()}
    exact_ms = (time.perf_counter() - started) * 1e3 / max(
        1, sum(len(q) for kind_parts in parts.values() for q, _ in kind_parts))
    table: list[dict] = []
    # a kind whose lower bound reached TUNE_STOP is not measured again at larger nprobe
    # (its recall can only grow; readers carry its last row forward): at 10M rows image
    # queries stop at nprobe 128 while text ones go on to all lists
    measuring = list(parts)
    nprobe = 1
    while measuring:
        row: dict = {"nprobe": nprobe}
        for kind in measuring:
            means, lows, elapsed = [], [], 0.0
            for (q, mask), part_truth in zip(parts[kind], truth[kind], strict=True):
                begun = time.perf_counter()
                _, found = ann_search(cache, q, k, nprobe, mask)
                elapsed += time.perf_counter() - begun
                per_query = recall_per_query(found, part_truth)
                means.append(float(np.mean(per_query)))
                lows.append(recall_lower_bound(per_query))
            worst = int(np.argmin(lows))
            row[kind] = round(means[worst], 4)
            row[f"{kind}_low"] = round(lows[worst], 4)
            row[f"{kind}_ms_per_query"] = round(
                elapsed * 1e3 / max(1, sum(len(q) for q, _ in parts[kind])), 3)
        table.append(row)
        measuring = [kind for kind in measuring if row[f"{kind}_low"] < TUNE_STOP]
        if nprobe >= max_nprobe:
            break
        nprobe = min(max_nprobe, nprobe * 2)
    # None: no nprobe up to the sweep's end reaches the target (data with little cluster
    # structure, or queries far from every frame); that kind is searched exactly
    chosen = {}
    for kind in parts:
        reaching = [r["nprobe"] for r in table if kind in r and _low(r, kind) >= target]
        chosen[kind] = reaching[0] if reaching else None
    return {"target": target, "k": k,
            "queries": {kind: sum(len(q) for q, _ in p) for kind, p in parts.items()},
            "exact_ms_per_query": round(exact_ms, 3), "max_nprobe": max_nprobe,
            "table": table, "nprobe": chosen}


def _low(row: dict, kind: str) -> float:
    """A table row's recall lower bound (the mean in tables written before it was kept)."""
    return float(row.get(f"{kind}_low", row.get(kind, 0.0)))


def nprobe_for(ann_meta: dict, recall: float | None, kind: str | None) -> int | None:
    """The nprobe to search with: the tuned one for the query ``kind`` ("text", "image";
    None: the larger of both), or, for a wanted ``recall``, the smallest measured nprobe
    whose recall lower bound reaches it. None: no measured nprobe reaches it (search exactly)."""
    tuning = ann_meta.get("tuning") or {}
    kinds = [kind] if kind in (tuning.get("nprobe") or {}) else list(tuning.get("nprobe") or {})
    if recall is None:
        if not kinds:
            return int(ann_meta["nprobe"])
        tuned = [tuning["nprobe"][k] for k in kinds]
        return None if None in tuned else max(int(n) for n in tuned)
    table = tuning.get("table") or []
    if not kinds or not table:
        return None if recall > 0 else int(ann_meta["nprobe"])
    last: dict[str, float] = {}
    for row in table:
        for k in kinds:  # a kind left out of a row kept its last measured recall
            if k in row:
                last[k] = _low(row, k)
        if all(last.get(k, 0.0) >= recall for k in kinds):
            return int(row["nprobe"])
    return None


# ---------------------------------------------------------------------------------------------
# writing segments and manifests


def ids_digest(video_ids: np.ndarray) -> str:
    """Short hash of a sorted int64 id array: names the set of videos a cache holds."""
    return hashlib.blake2b(np.ascontiguousarray(video_ids, np.int64).tobytes(),
                           digest_size=12).hexdigest()


def _flat_header(dim: int, count: int) -> bytes:
    """The bytes faiss writes before the codes of an ``IndexScalarQuantizer(QT_fp16)`` of
    ``count`` rows: its own header for an empty index, with ntotal and the codes' length set.

    faiss's layout (index_write.cpp): "IxSQ", d (int32), ntotal (int64), ..., then the codes
    as a size_t length + bytes, which ends an empty index. Checked here and again on load.
    """
    import faiss

    empty = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16,
                                       faiss.METRIC_INNER_PRODUCT)
    raw = faiss.serialize_index(empty).tobytes()
    if raw[:4] != b"IxSQ" or struct.unpack("<iq", raw[4:16]) != (dim, 0) or raw[-8:] != bytes(8):
        raise RuntimeError("this faiss writes IndexScalarQuantizer in an unknown layout")
    header = bytearray(raw[:-8])
    header[8:16] = struct.pack("<q", count)
    return bytes(header) + struct.pack("<Q", count * dim * ROW_DTYPE.itemsize)


def new_segment_name() -> str:
    return f"gen-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


class SegmentWriter:
    """Fills a new segment folder; :meth:`finish` completes it and renames it into place.

    Usage: ``writer = SegmentWriter(vectors_dir, count, dim, num_videos)``, ``writer.append``
    per video in ascending id order, then ``writer.finish(...)``. If anything fails before,
    :meth:`discard` removes the folder and the current cache stays as it was.
    """

    def __init__(self, vectors_dir: Path, count: int, dim: int, num_videos: int,
                 ann_index=None):
        self.vectors_dir = vectors_dir
        self.name = new_segment_name()
        # a dot-prefixed folder is invisible to cleanup until renamed into place
        self.tmp_dir = vectors_dir / f".{self.name}.tmp"
        self.tmp_dir.mkdir(parents=True)
        self.count, self.dim = count, dim
        # rows are written through the file, in order, not through a map: written pages of
        # a map stay in the process's RSS until it is closed (10 GB at 10M rows)
        self._rows_file = open(self.tmp_dir / FLAT_FILE, "wb")  # noqa: SIM115 - finish/discard
        self._rows_file.write(_flat_header(dim, count))
        self.timestamps = np.empty(count, np.float64)
        self.video_ids = np.empty(num_videos, np.int64)
        self.starts = np.zeros(num_videos + 1, np.int64)
        self._row = 0
        self._video = 0
        # a trained, empty IVF index is filled as rows arrive, from their float32 copies
        # (converting float16 rows back later would cost more than encoding them); short
        # videos are pooled in a reused buffer so faiss gets blocks of ENCODE_ROWS, long ones
        # go in directly (one concatenated 60k-row block cost 90-370 ms to assemble here)
        self.ann_index = ann_index
        self._pending = np.empty((min(ENCODE_ROWS, count) if ann_index is not None else 0,
                                  dim), np.float32)
        self._pending_rows = 0

    def append(self, video_id: int, timestamps: np.ndarray, vectors: np.ndarray,
               half: np.ndarray | None = None) -> None:
        """Add one video's rows: ``timestamps`` (n,) seconds, ``vectors`` (n, D) float32
        (the stored float16 values, converted), ``half`` the same rows as stored (float16;
        converted from ``vectors`` when not given)."""
        n = len(timestamps)
        if self._row + n > self.count:
            raise RuntimeError(f"segment sized for {self.count} rows, got {self._row + n}")
        half = np.asarray(vectors if half is None else half, ROW_DTYPE)
        if half.shape != (n, self.dim):
            raise ValueError(f"rows of shape {half.shape}, expected ({n}, {self.dim})")
        self._rows_file.write(np.ascontiguousarray(half).data)
        self.timestamps[self._row : self._row + n] = timestamps
        self.video_ids[self._video] = video_id
        self._row += n
        self._video += 1
        self.starts[self._video] = self._row
        if self.ann_index is None or not n:
            return
        rows = np.asarray(vectors, np.float32)
        if n >= len(self._pending):
            self._encode()
            self.ann_index.add(np.ascontiguousarray(rows))
            return
        if self._pending_rows + n > len(self._pending):
            self._encode()
        self._pending[self._pending_rows : self._pending_rows + n] = rows
        self._pending_rows += n

    def _encode(self) -> None:
        if self._pending_rows:
            self.ann_index.add(self._pending[: self._pending_rows])
        self._pending_rows = 0

    def finish(self, *, trained=None) -> dict:
        """Write the small files and the IVF index given at creation (``trained``: also keep
        the empty trained index, for later segments); fsync and rename into place. Returns
        the segment's manifest entry."""
        if (self._row, self._video) != (self.count, len(self.video_ids)):
            raise RuntimeError(
                f"segment filled {self._row}/{self.count} rows, "
                f"{self._video}/{len(self.video_ids)} videos")
        self._rows_file.close()
        for name, array in (("timestamps", self.timestamps), ("video_ids", self.video_ids),
                            ("starts", self.starts)):
            np.save(self.tmp_dir / f"{name}.npy", array)
        entry: dict = {"name": self.name, "count": self.count, "num_videos": len(self.video_ids),
                       "ann": False}
        if self.ann_index is not None and self.count:
            import faiss

            self._encode()
            if trained is not None:
                faiss.write_index(trained, str(self.tmp_dir / TRAINED_FILE))
            faiss.write_index(self.ann_index, str(self.tmp_dir / ANN_FILE))
            entry["ann"] = True
        entry["checksums"] = {p.name: file_checksum(p) for p in sorted(self.tmp_dir.iterdir())}
        for path in self.tmp_dir.iterdir():
            _fsync_file(path)
        os.replace(self.tmp_dir, self.vectors_dir / self.name)
        return entry

    def discard(self) -> None:
        self._rows_file.close()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)


def make_manifest(segments: list[dict], tombstones: np.ndarray, *, dim: int,
                  video_ids: np.ndarray, ann_meta: dict | None, meta: dict) -> dict:
    """The manifest naming ``segments`` (entries from :meth:`SegmentWriter.finish`, base
    first) with ``tombstones`` (cached video ids deleted since); not written yet."""
    tombstones = np.unique(np.asarray(tombstones, np.int64))
    live = video_ids[~np.isin(video_ids, tombstones)]
    return {
        "format": CACHE_FORMAT,
        "generation": segments[0]["name"],  # the base segment's folder
        "state": uuid.uuid4().hex,  # this manifest: what a reader's loaded cache is keyed by
        "created_at": time.time(),
        "count": int(sum(s["count"] for s in segments)),
        "dim": dim,
        "num_videos": int(len(video_ids)),
        "max_video_id": int(video_ids.max()) if len(video_ids) else 0,
        "ids_digest": ids_digest(video_ids),
        "live_digest": ids_digest(live),
        "tombstones": [int(i) for i in tombstones],
        "segments": segments,
        "ann": ann_meta,
        **meta,
    }


def publish_manifest(vectors_dir: Path, manifest: dict) -> dict:
    """Make ``manifest`` the current cache: replaced atomically, after every segment it names
    is complete and renamed into place. Returns it."""
    _write_json_atomic(vectors_dir / MANIFEST, manifest)
    _fsync_dir(vectors_dir)
    return manifest


def read_manifest(vectors_dir: Path) -> dict | None:
    """The current manifest, or None when there is no (readable, known-format) cache."""
    try:
        manifest = json.loads((vectors_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
        return None
    return manifest


class CacheDamaged(ValueError):
    """A cache's files do not match its manifest (or each other)."""


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


def _read_index(path: Path, flags: int):
    import faiss

    if not path.exists():
        raise FileNotFoundError(path)
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as err:
        raise CacheDamaged(f"{path.name} cannot be read ({str(err).splitlines()[0]})") from err


def _load_rows(path: Path, count: int, dim: int) -> tuple[np.ndarray, object | None]:
    """The float16 rows of a ``vectors.faiss``: (numpy map, faiss index over the same map)."""
    import faiss

    if count == 0:
        if not path.exists():
            raise FileNotFoundError(path)
        return np.empty((0, dim), ROW_DTYPE), None
    size = path.stat().st_size
    offset = size - count * dim * ROW_DTYPE.itemsize
    if offset <= 0:
        raise CacheDamaged(f"{path.name} is {size} bytes, too short for {count} rows")
    with open(path, "rb") as handle:
        head = handle.read(offset)
    if head[:4] != b"IxSQ" or struct.unpack("<iq", head[4:16]) != (dim, count) or \
            struct.unpack("<Q", head[-8:])[0] != count * dim * ROW_DTYPE.itemsize:
        raise CacheDamaged(f"{path.name} does not hold {count} rows of {dim}-d")
    # IO_FLAG_MMAP_IFC maps the codes instead of reading them: ~ms to open, no RAM copy
    flat = _read_index(path, faiss.IO_FLAG_MMAP_IFC)
    if flat.ntotal != count or flat.d != dim:
        raise CacheDamaged(f"{path.name} does not match the manifest")
    rows = np.memmap(path, ROW_DTYPE, "r", offset, (count, dim))
    return rows, flat


class _RowReader:
    """Scattered float16 rows of a ``vectors.faiss`` read with ``preadv`` instead of through
    the memory map.

    Why: on this kernel the page cache holds large folios and a fault maps a whole folio, so
    gathering 3010 re-scored rows (3 MB) through the map left ~420 MB of the file counted in
    the process's RSS (one image query on a 3M-row IVF-PQ library; after 200 queries at 10M
    rows 9.8 GB), even with ``MADV_RANDOM``. Positional reads leave nothing mapped (the
    page cache is shared and reclaimable, not the process's), and were faster here: 7-10 ms
    against 9-13 ms for the same 3010 rows from a warm cache. Thread-safe (no file position).
    """

    def __init__(self, path: Path, base: int, dim: int) -> None:
        # the descriptor lives as long as the cache that holds this reader (an open file
        # also keeps a segment a later refresh deletes readable, as its map does)
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        weakref.finalize(self, os.close, self.fd)
        self.base = base
        self.row_bytes = dim * ROW_DTYPE.itemsize
        self.dim = dim

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Local rows (m,), ascending -> (m, D) float16; consecutive rows in one read."""
        out = np.empty((len(rows), self.dim), ROW_DTYPE)
        if not len(rows):
            return out
        buffer = memoryview(out).cast("B")
        fd, size = self.fd, self.row_bytes
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for first, stop in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(rows)].tolist(),
                               strict=True):
            want = (stop - first) * size
            got = os.preadv(fd, [buffer[first * size : stop * size]],
                            self.base + int(rows[first]) * size)
            if got != want:
                raise CacheDamaged(f"{FLAT_FILE} ended early ({got} of {want} bytes read)")
        return out


def _row_reader(path: Path, count: int, dim: int) -> _RowReader | None:
    """A :class:`_RowReader` for the rows of ``path``; None where there is no ``preadv``
    (Windows: rows are read through the map)."""
    if count == 0 or not hasattr(os, "preadv"):
        return None
    return _RowReader(path, path.stat().st_size - count * dim * ROW_DTYPE.itemsize, dim)


def load_cache(vectors_dir: Path, manifest: dict) -> VectorCache:
    """Memory-map every segment the manifest names, verifying the checksums of the small files
    and the structure. FileNotFoundError if a segment is gone (a refresh elsewhere removed it);
    :class:`CacheDamaged` if it does not match its manifest."""
    import faiss

    try:
        dim = int(manifest["dim"])
        entries = list(manifest["segments"])
        tombstones = np.array(sorted(int(i) for i in manifest["tombstones"]), np.int64)
        ann_meta = manifest["ann"]
        total = int(manifest["count"])
    except (KeyError, TypeError, ValueError) as err:
        raise CacheDamaged(f"the manifest lacks {err}") from err
    if not entries:
        raise CacheDamaged("the manifest names no segment")
    segments = []
    offset = 0
    for entry in entries:
        try:
            name, count = str(entry["name"]), int(entry["count"])
            checksums = dict(entry["checksums"])
        except (KeyError, TypeError, ValueError) as err:
            raise CacheDamaged(f"a segment entry lacks {err}") from err
        directory = vectors_dir / name
        for small in SMALL_FILES:
            if file_checksum(directory / small) != checksums.get(small):
                raise CacheDamaged(f"{small} does not match its checksum")
        vectors, flat = _load_rows(directory / FLAT_FILE, count, dim)
        video_ids = _load_npy(directory / "video_ids.npy", mmap=False)
        starts = _load_npy(directory / "starts.npy", mmap=False)
        timestamps = _load_npy(directory / "timestamps.npy", mmap=True)
        if (video_ids.dtype != np.int64 or starts.dtype != np.int64
                or timestamps.shape != (count,)
                or len(starts) != len(video_ids) + 1 or starts[0] != 0 or starts[-1] != count
                or np.any(np.diff(starts) < 0) or np.any(np.diff(video_ids) <= 0)):
            raise CacheDamaged("video ids, row offsets and timestamps do not fit together")
        index = None
        if entry.get("ann"):
            if not ann_meta:
                raise CacheDamaged("a segment has an ANN index the manifest does not describe")
            # IO_FLAG_MMAP maps the inverted lists instead of reading them: ~5 ms to open a
            # 1M-vector index here instead of 1-7 s to read it, which matters for a one-shot CLI
            index = _read_index(directory / ANN_FILE, faiss.IO_FLAG_MMAP)
            if index.ntotal != count or index.d != dim:
                raise CacheDamaged("the ANN index does not match vectors.faiss")
        elif ann_meta and count:
            raise CacheDamaged("a segment lacks the ANN index the others have")
        segments.append(Segment(name, directory, offset, vectors, video_ids, starts,
                                timestamps, flat, index,
                                _row_reader(directory / FLAT_FILE, count, dim)))
        offset += count
    cache = VectorCache(vectors_dir, manifest, segments, tombstones)
    if (offset != total or np.any(np.diff(cache.video_ids) <= 0)
            or ids_digest(cache.video_ids) != manifest.get("ids_digest")):
        raise CacheDamaged("video ids, row offsets and timestamps do not fit together")
    return cache


def verify_files(vectors_dir: Path, manifest: dict) -> list[str]:
    """Re-hash every file of every segment against the manifest (reads them all: ~2 s per
    GB). Returns the names of files that differ or are missing."""
    bad = []
    for entry in manifest.get("segments") or []:
        directory = vectors_dir / str(entry.get("name"))
        for name, expected in dict(entry.get("checksums") or {}).items():
            try:
                if file_checksum(directory / name) != expected:
                    bad.append(name)
            except OSError:
                bad.append(name)
    return bad


def segment_names(manifest: dict | None) -> set[str]:
    if not manifest:
        return set()
    return {str(s.get("name")) for s in manifest.get("segments") or []}


def remove_old_generations(vectors_dir: Path, keep: Iterable[str]) -> None:
    """Delete segment folders not in ``keep`` (best effort; a reader may hold a map)."""
    keep = set(keep)
    for path in vectors_dir.iterdir():
        if path.is_dir() and path.name.startswith("gen-") and path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


def remove_stale_tmp(vectors_dir: Path, older_than_s: float = 3600.0) -> None:
    """Delete unfinished segment folders left by a crashed refresh (older than an hour,
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
