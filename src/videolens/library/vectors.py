"""The vector side of a library: the derived cache under ``vectors/`` and search over it.

:class:`VectorIndex` is owned by one :class:`~videolens.library.store.Library` (its
``vectors`` attribute) and reads SQLite only through the library's storage methods
(``snapshot``, ``live_videos``, ``iter_frames``, ``frames_of``), so storage and search can be
read, tested and changed apart. ``Library.search`` and ``Library.refresh_vectors`` delegate
here.

* **Correct search on a stale cache.** Hits from videos deleted since the cache was built
  are dropped, and videos added since (the *tail*) are searched exactly from SQLite.
* **The cache rebuilds itself.** When the rows it cannot answer (tail plus deleted) grow
  past the ``refresh_*`` thresholds, search rebuilds it (unless a writer is running: that
  run refreshes at its end).
* **A damaged cache is never used.** Every load checks the manifest's checksums of ids,
  offsets and timestamps, the frames per video against SQLite, the norms of sampled rows,
  and whole sampled videos row for row against SQLite (the cache holds exactly the float32
  of the stored float16, so they must be equal). A generation that fails is set aside,
  search answers from SQLite meanwhile, and the cache is rebuilt.

The file format of one generation and the pure search kernels are in :mod:`.ann`.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import LibraryError
from . import ann
from .db import DamagedLibraryError, repair_hint
from .locks import FileLock

if TYPE_CHECKING:
    from .store import Library

# Below this many cached vectors search is exact and no ANN index is built. Measured with
# benchmarks/bench_search.py (2 cores, D=512, one query): exact 0.8 ms at 10k, 9.4 ms at
# 100k, 101 ms at 1M (linear: ~25 ms here), while IVF recall@10 at 100k was only 0.71 for
# queries without close neighbours; exact search is both fast enough and always right here.
ANN_MIN_VECTORS = 250_000
# Search rebuilds the cache itself when the rows it cannot answer from the cache (videos
# added since, plus rows of deleted videos) exceed 50k or 20 % of the library, and at least
# 1k (below that, reading the tail from SQLite costs less than a rebuild).
REFRESH_STALE_ROWS = 50_000
REFRESH_STALE_FRACTION = 0.2
REFRESH_MIN_STALE_ROWS = 1_000
# Validation on load: videos compared row for row with SQLite (first, last and a few drawn
# at random) and rows whose norm is checked (stored rows are unit vectors).
SAMPLE_VIDEOS = 4
SAMPLE_ROWS = 512
NORM_TOLERANCE = 1e-2

# (score, video id, timestamp in seconds) candidates, per query
Candidates = list[list[tuple[float, int, float]]]


@dataclass(frozen=True)
class FrameHit:
    """A frame found by search: ``timestamp`` in seconds, ``score`` = cosine similarity."""

    video_id: int
    timestamp: float
    score: float


class VectorIndex:
    """The derived vector cache of one library and search over it plus the uncached tail.

    The tuning attributes (``ann_min_vectors``, ``refresh_*``, ``auto_refresh``) default to
    the module constants and may be changed per instance.
    """

    def __init__(self, library: Library):
        self.library = library
        self.ann_min_vectors = ANN_MIN_VECTORS
        self.refresh_stale_rows = REFRESH_STALE_ROWS
        self.refresh_stale_fraction = REFRESH_STALE_FRACTION
        self.refresh_min_stale_rows = REFRESH_MIN_STALE_ROWS
        self.auto_refresh = True
        self._lock = threading.RLock()  # guards _cache (a web server searches from threads)
        self._cache: ann.VectorCache | None = None
        # tail videos decoded from SQLite, by id (ids are never reused, so never outdated)
        self._tail_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # why the current generation is unusable (None: it is fine, or there is none)
        self.problem: str | None = None
        self._rng = np.random.default_rng()

    @property
    def directory(self) -> Path:
        return self.library.vectors_dir

    def close(self) -> None:
        """Drop the memory-mapped cache and the decoded tail."""
        with self._lock:
            self._cache = None
            self._tail_cache.clear()

    # ------------------------------------------------------------------ state

    def staleness(self, ids: np.ndarray, counts: np.ndarray) -> dict:
        """Cache state against the live videos ``ids`` (V,) with ``counts`` (V,) frames:
        ``ann``, ``cached_frames``, ``tail_frames`` (live frames missing from the cache),
        ``dead_frames`` (cached frames of deleted videos)."""
        cache = self.load()
        tail_frames, dead_frames = _staleness(cache, ids, counts)
        return {
            "ann": bool(cache is not None and cache.ann is not None),
            "cached_frames": 0 if cache is None else cache.count,
            "tail_frames": tail_frames,
            "dead_frames": dead_frames,
            "cache_problem": self.problem,
        }

    # ------------------------------------------------------------------ building

    def refresh(self, *, force_ann: bool | None = None, wait: bool = True) -> bool:
        """Rebuild ``vectors/`` from SQLite if it differs from what SQLite holds now, or if
        the current generation is damaged (see :meth:`load`).

        ``force_ann``: True builds an ANN index whatever the size, False never, None when the
        library has at least ``ann_min_vectors`` vectors. Safe to run while a writer commits
        (it reads one snapshot) and from several processes (they take turns; ``wait=False``
        gives up at once if another holds the turn). Returns True if a new generation was
        written.
        """
        self.directory.mkdir(exist_ok=True)
        lock = FileLock(self.directory / "refresh.lock")
        if wait:
            lock.acquire_blocking()
        elif not lock.try_acquire():
            return False
        try:
            return self._refresh_locked(force_ann)
        finally:
            lock.release()

    def _refresh_locked(self, force_ann: bool | None) -> bool:
        library = self.library
        current = ann.read_manifest(self.directory)
        with library.snapshot() as conn:
            ids, counts = library.live_videos(conn)
        count = int(counts.sum())
        want_ann = force_ann if force_ann is not None else count >= self.ann_min_vectors
        if (current is not None and current.get("ids_digest") == ann.ids_digest(ids)
                and current.get("count") == count and current.get("dim") == library.embed_dim
                and bool(current.get("ann")) == (want_ann and count > 0)):
            cache = self.load()
            if cache is not None and cache.manifest["generation"] == current["generation"]:
                return False  # up to date and sound
        damaged = self.problem is not None
        generation = None
        with library.snapshot() as conn:
            ids, counts = library.live_videos(conn)  # again: a writer may have committed
            count = int(counts.sum())
            want_ann = force_ann if force_ann is not None else count >= self.ann_min_vectors
            generation = ann.GenerationWriter(self.directory, count, library.embed_dim, len(ids))
            try:
                for position, (video_id, times, vectors) in enumerate(library.iter_frames(conn)):
                    if video_id != ids[position] or len(times) != counts[position]:
                        raise DamagedLibraryError(
                            f"video {ids[position]} has {len(times)} frames stored, "
                            f"{counts[position]} recorded", path=library.db_path,
                            hint=repair_hint(library.root))
                    generation.append(video_id, times, vectors)
            except BaseException:
                generation.discard()
                raise
        try:
            # the snapshot is released before the (slow) ANN build so WAL checkpoints go on
            manifest = generation.publish(
                with_ann=want_ann,
                meta={"schema_version": library.schema_version,
                      "model_fingerprint": library.model.get("fingerprint")})
        except BaseException:
            generation.discard()
            raise
        keep = {manifest["generation"]}
        if current is not None and not damaged:
            keep.add(current["generation"])  # a reader may be between manifest and load
        ann.remove_old_generations(self.directory, keep)
        ann.remove_stale_tmp(self.directory)
        with self._lock:
            self._cache = None
            self.problem = None
        return True

    def load(self) -> ann.VectorCache | None:
        """The current generation, memory-mapped and validated; None when there is none or
        it is unusable (then ``problem`` says why, and the next refresh rebuilds it)."""
        problem = None
        for _ in range(3):  # a refresh elsewhere may delete a generation as we open it
            manifest = ann.read_manifest(self.directory)
            if manifest is None:
                exists = (self.directory / ann.MANIFEST).exists()
                problem = "manifest.json is unreadable or outdated" if exists else None
                break
            with self._lock:
                if self._cache is not None and \
                        self._cache.manifest["generation"] == manifest.get("generation"):
                    return self._cache
            try:
                cache = ann.load_generation(self.directory, manifest)
                problem = self._validate(cache)
            except FileNotFoundError:
                problem = "a file of the current generation is missing"
                continue
            except (OSError, ValueError) as err:
                problem = str(err)
                break
            if problem is None:
                with self._lock:
                    self._cache = cache
                    self.problem = None
                return cache
            break
        with self._lock:
            self._cache = None
            self.problem = problem
        return None

    def _validate(self, cache: ann.VectorCache) -> str | None:
        """Compare a loaded generation with SQLite; None if it matches, else what differs.

        Cheap by design: the frame count of every cached video that is still live (V ints),
        the norms of ``SAMPLE_ROWS`` random rows, and ``SAMPLE_VIDEOS`` whole videos row for
        row. Videos added or deleted since the build are not damage (that is staleness).
        """
        library = self.library
        if cache.manifest.get("dim") != library.embed_dim:
            return f"built for {cache.manifest.get('dim')}-d vectors, the library's are " \
                   f"{library.embed_dim}-d"
        fingerprint = cache.manifest.get("model_fingerprint")
        if fingerprint is not None and fingerprint != library.model.get("fingerprint"):
            return "built from another model's vectors"
        with library.snapshot() as conn:
            live_ids, live_counts = library.live_videos(conn)
        positions = np.searchsorted(cache.video_ids, live_ids)  # (V_live,)
        positions = np.minimum(positions, max(len(cache.video_ids) - 1, 0))
        cached = (cache.video_ids[positions] == live_ids) if len(cache.video_ids) else \
            np.zeros(len(live_ids), bool)
        rows_per_video = np.diff(cache.starts)
        if np.any(rows_per_video[positions[cached]] != live_counts[cached]):
            return "frames per video differ from library.sqlite"
        if cache.count:
            rows = np.unique(self._rng.integers(0, cache.count, min(SAMPLE_ROWS, cache.count)))
            sample = np.asarray(cache.vectors[rows], dtype=np.float32)  # (m, D)
            with np.errstate(over="ignore", invalid="ignore"):  # garbage bytes: inf, NaN
                norms = np.linalg.norm(sample, axis=1)
            if not np.all(np.abs(norms - 1) <= NORM_TOLERANCE):  # NaN fails too
                return "rows of vectors.npy are not unit vectors"
        candidates = live_ids[cached]
        if len(candidates):
            chosen = {int(candidates[0]), int(candidates[-1])}
            extra = self._rng.choice(candidates, min(len(candidates), SAMPLE_VIDEOS),
                                     replace=False)
            chosen.update(int(i) for i in extra[: max(0, SAMPLE_VIDEOS - len(chosen))])
            stored = library.frames_of(sorted(chosen))
            for video_id, (times, vectors) in stored.items():
                i = int(np.searchsorted(cache.video_ids, video_id))
                start, stop = int(cache.starts[i]), int(cache.starts[i + 1])
                if not (np.array_equal(np.asarray(cache.timestamps[start:stop]), times)
                        and np.array_equal(np.asarray(cache.vectors[start:stop]), vectors)):
                    return f"video {video_id} differs from library.sqlite"
        return None

    # ------------------------------------------------------------------ search

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        video_ids: Collection[int] | None = None,
        exact: bool | None = None,
    ) -> list[list[FrameHit]]:
        """The ``k`` frames most similar to each query, best first.

        ``queries``: (Q, D) or (D,) float32, L2-normalised; the score is the cosine.
        ``video_ids`` restricts the search to those videos. ``exact``: None chooses (ANN
        when an index exists and the searched rows number at least ``ann_min_vectors``),
        True forces brute force, False uses the ANN index whenever one exists (build one
        with ``refresh(force_ann=True)``). Correct on a stale cache: deleted videos never
        appear and videos added since the last refresh are searched exactly.
        """
        library = self.library
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None]
        if queries.ndim != 2 or queries.shape[1] != library.embed_dim:
            raise ValueError(f"queries must be (Q, {library.embed_dim}), got {queries.shape}")
        queries = np.ascontiguousarray(queries)
        if k <= 0 or queries.shape[0] == 0:
            return [[] for _ in range(queries.shape[0])]
        wanted = None if video_ids is None else np.fromiter(video_ids, np.int64)

        cache = self.load()
        with library.snapshot() as conn:
            live_ids, live_counts = library.live_videos(conn)
        tail_frames, dead_frames = _staleness(cache, live_ids, live_counts)
        stale = tail_frames + dead_frames
        if self.auto_refresh and ((cache is None and self.problem is not None) or (
                stale >= self.refresh_min_stale_rows
                and (stale > self.refresh_stale_rows
                     or stale > self.refresh_stale_fraction * max(1, live_counts.sum()))
                and not library.writer_running())):
            # stale: the run that is writing refreshes at its end, rebuilding during it would
            # repeat; damaged: rebuild now (answers stay right meanwhile, from SQLite)
            try:
                if self.refresh(wait=False):
                    cache = self.load()
            except (OSError, LibraryError):
                pass  # read-only folder or broken store: the tail path still answers correctly

        if wanted is not None:
            live_ids = live_ids[np.isin(live_ids, wanted)]
        results: Candidates = [[] for _ in range(queries.shape[0])]
        tail_ids = live_ids
        if cache is not None and cache.count:
            keep = np.isin(cache.video_ids, live_ids)  # (V,) bool: live and wanted
            tail_ids = live_ids[~np.isin(live_ids, cache.video_ids)]
            self._search_cache(cache, queries, k, keep, exact, results)
        if len(tail_ids):
            self._search_tail(tail_ids, queries, k, results)
        hits = []
        for found in results:
            found.sort(key=lambda hit: (-hit[0], hit[1], hit[2]))
            hits.append([FrameHit(vid, ts, score) for score, vid, ts in found[:k]])
        return hits

    def _search_cache(self, cache: ann.VectorCache, queries: np.ndarray, k: int,
                      keep: np.ndarray, exact: bool | None, results: Candidates) -> None:
        rows_per_video = np.diff(cache.starts)  # (V,)
        selected = int(rows_per_video[keep].sum())
        if selected == 0:
            return
        use_ann = cache.ann is not None and exact is not True and (
            exact is False or selected >= self.ann_min_vectors)
        if use_ann:
            allowed = None if keep.all() else np.repeat(keep, rows_per_video)  # (N,) bool
            scores, rows = ann.ann_search(cache, queries, k, allowed)
            # too few allowed rows in the probed lists (a selective filter): answer exactly
            short = np.flatnonzero((rows >= 0).sum(axis=1) < min(k, selected))
            if len(short):
                exact_scores, exact_rows = ann.exact_search(
                    queries[short], cache.vectors, cache.ranges_for(keep), k)
                scores[short, : exact_rows.shape[1]] = exact_scores
                rows[short, : exact_rows.shape[1]] = exact_rows
        else:
            scores, rows = ann.exact_search(queries, cache.vectors, cache.ranges_for(keep), k)
        valid = rows >= 0
        safe_rows = np.where(valid, rows, 0)
        owners = cache.rows_to_videos(safe_rows)  # (Q, k) video ids
        times = np.asarray(cache.timestamps)[safe_rows]  # (Q, k) seconds
        for qi in range(queries.shape[0]):
            for j in np.flatnonzero(valid[qi]):
                results[qi].append((float(scores[qi, j]), int(owners[qi, j]),
                                    float(times[qi, j])))

    def _search_tail(self, tail_ids: np.ndarray, queries: np.ndarray, k: int,
                     results: Candidates) -> None:
        """Exact search over videos not in the cache, read from SQLite (and kept in memory
        while they stay in the tail)."""
        wanted = {int(i) for i in tail_ids}
        for vid in list(self._tail_cache):
            if vid not in wanted:
                del self._tail_cache[vid]
        missing = [vid for vid in wanted if vid not in self._tail_cache]
        self._tail_cache.update(self.library.frames_of(missing))
        present = sorted(vid for vid in wanted if vid in self._tail_cache)  # not deleted since
        if not present:
            return
        times = np.concatenate([self._tail_cache[vid][0] for vid in present])  # (M,)
        matrix = np.concatenate([self._tail_cache[vid][1] for vid in present])  # (M, D)
        owners = np.repeat(present, [len(self._tail_cache[vid][0]) for vid in present])
        if len(matrix) == 0:
            return
        scores, rows = ann.exact_search(queries, matrix, [(0, len(matrix))], k)
        for qi in range(queries.shape[0]):
            for score, row in zip(scores[qi], rows[qi], strict=True):
                results[qi].append((float(score), int(owners[row]), float(times[row])))


def _staleness(cache: ann.VectorCache | None, ids: np.ndarray,
               counts: np.ndarray) -> tuple[int, int]:
    """(frames of live videos missing from the cache, cached frames of deleted videos)."""
    if cache is None:
        return int(counts.sum()), 0
    tail = ~np.isin(ids, cache.video_ids)
    dead = ~np.isin(cache.video_ids, ids)
    return int(counts[tail].sum()), int(np.diff(cache.starts)[dead].sum())
