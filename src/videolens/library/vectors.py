"""The vector side of a library: the derived cache under ``vectors/`` and search over it.

:class:`VectorIndex` is owned by one :class:`~videolens.library.store.Library` (its
``vectors`` attribute) and reads SQLite only through the library's storage methods
(``snapshot``, ``live_videos``, ``iter_frames``, ``frames_of``), so storage and search can be
read, tested and changed apart. ``Library.search``, ``Library.refresh_vectors`` and
``Library.optimize_vectors`` delegate here.

* **Correct search on a stale cache.** Hits from videos deleted since the cache was built
  are dropped, and videos added since (the *tail*) are searched exactly from SQLite.
* **Refresh in time proportional to the change.** A refresh after a few videos were added or
  removed writes one small segment for the new videos (encoded into the base's IVF lists) and
  tombstones the removed ones; a full rebuild happens when the segments after the base
  outgrow ``rebuild_delta_fraction`` of it, tombstoned rows pass ``rebuild_dead_fraction``,
  there are more than ``max_segments``, or on ``videolens library optimize``.
* **The cache rebuilds itself.** When the rows it cannot answer (tail plus deleted) grow
  past the ``refresh_*`` thresholds, search refreshes it (unless a writer is running: that
  run refreshes at its end).
* **Search tuned by measurement.** A full build with an IVF index measures recall@10 against
  exact search on held-out queries of two kinds (image-like: rows moved off stored ones and
  stored frames of videos left out of the search, the worse of the two; text-like: from the
  model's own prompt embeddings when the caller gives ``tuning_text``) at nprobe 1, 2, 4, ...
  and keeps the smallest nprobe whose recall's lower bound reaches ``tune_target`` for each
  kind, with the table, in the manifest; ``search(recall=R)`` picks from that table.
* **A damaged cache is never used.** Every load checks the manifest's checksums of ids,
  offsets and timestamps, the frames per video against SQLite, the norms of sampled rows,
  and whole sampled videos row for row against SQLite (the cache holds exactly the stored
  float16). A cache that fails is set aside, search answers from SQLite meanwhile, and the
  cache is rebuilt.

The file format of the segments and the pure search kernels are in :mod:`.ann`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Collection
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
# benchmarks/bench_search.py (2 cores, D=512, one query): exact 0.8 ms at 10k, 7.8-9.4 ms at
# 100k, while IVF recall@10 at 100k was only 0.71-0.89 for queries without close neighbours;
# exact search is both fast enough and always right here.
ANN_MIN_VECTORS = 250_000
# Search refreshes the cache itself when the rows it cannot answer from the cache (videos
# added since, plus rows of deleted videos) exceed 50k or 20 % of the library, and at least
# 1k (below that, reading the tail from SQLite costs less than a refresh).
REFRESH_STALE_ROWS = 50_000
REFRESH_STALE_FRACTION = 0.2
REFRESH_MIN_STALE_ROWS = 1_000
# An incremental refresh becomes a full rebuild past these: rows in segments after the base
# above 25 % of the base (their rows were encoded with centroids trained without them),
# tombstoned rows above 20 % of all rows (scanned and skipped by every query), 32 segments.
REBUILD_DELTA_FRACTION = 0.25
REBUILD_DEAD_FRACTION = 0.2
MAX_SEGMENTS = 32
# Validation on load: videos compared row for row with SQLite (first, last and a few drawn
# at random) and rows whose norm is checked (stored rows are unit vectors).
SAMPLE_VIDEOS = 4
SAMPLE_ROWS = 512
NORM_TOLERANCE = 1e-2
QUERY_KINDS = ("text", "image")

# (score, video id, timestamp in seconds) candidates, per query
Candidates = list[list[tuple[float, int, float]]]


@dataclass(frozen=True)
class FrameHit:
    """A frame found by search: ``timestamp`` in seconds, ``score`` = cosine similarity."""

    video_id: int
    timestamp: float
    score: float


def check_recall(recall: float | None) -> None:
    """ValueError unless ``recall`` is None or in (0, 1]."""
    if recall is not None and not (0.0 < float(recall) <= 1.0):
        raise ValueError(f"recall must be above 0 and at most 1, got {recall:g}")


class VectorIndex:
    """The derived vector cache of one library and search over it plus the uncached tail.

    The tuning attributes (``ann_min_vectors``, ``pq_min_vectors``, ``rebuild_*``,
    ``max_segments``, ``refresh_*``, ``tune_*``, ``auto_refresh``) default to the module
    constants and may be changed per instance. ``tuning_text``: a callable returning text
    embeddings (Q, D) of a few hundred prompts from the library's model, used to tune text
    search when a full build makes an IVF index (called only then). ``last_refresh`` says
    what the last refresh did (``kind``: "full" | "incremental", ``seconds``, ...).
    """

    def __init__(self, library: Library):
        self.library = library
        self.ann_min_vectors = ANN_MIN_VECTORS
        self.pq_min_vectors = ann.PQ_MIN_VECTORS
        self.refresh_stale_rows = REFRESH_STALE_ROWS
        self.refresh_stale_fraction = REFRESH_STALE_FRACTION
        self.refresh_min_stale_rows = REFRESH_MIN_STALE_ROWS
        self.rebuild_delta_fraction = REBUILD_DELTA_FRACTION
        self.rebuild_dead_fraction = REBUILD_DEAD_FRACTION
        self.max_segments = MAX_SEGMENTS
        self.tune_target = ann.TUNE_TARGET
        self.tune_queries = ann.TUNE_QUERIES
        self.tuning_text: Callable[[], np.ndarray] | None = None
        self.auto_refresh = True
        self.last_refresh: dict | None = None
        self._lock = threading.RLock()  # guards _cache (a web server searches from threads)
        self._cache: ann.VectorCache | None = None
        self._masks: dict[tuple[str, bytes], np.ndarray] = {}
        # tail videos decoded from SQLite, by id (ids are never reused, so never outdated)
        self._tail_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # why the current cache is unusable (None: it is fine, or there is none)
        self.problem: str | None = None
        self._rng = np.random.default_rng()

    @property
    def directory(self) -> Path:
        return self.library.vectors_dir

    def close(self) -> None:
        """Drop the memory-mapped cache and the decoded tail."""
        with self._lock:
            self._cache = None
            self._masks.clear()
            self._tail_cache.clear()

    # ------------------------------------------------------------------ state

    def staleness(self, ids: np.ndarray, counts: np.ndarray) -> dict:
        """Cache state against the live videos ``ids`` (V,) with ``counts`` (V,) frames:
        ``ann``, ``cached_frames``, ``tail_frames`` (live frames missing from the cache),
        ``dead_frames`` (cached frames of deleted videos not yet tombstoned),
        ``tombstoned_frames``, ``segments``, ``nprobe`` (tuned, per query kind)."""
        cache = self.load()
        tail_frames, dead_frames = _staleness(cache, ids, counts)
        tombstoned = 0
        if cache is not None:
            tombstoned = int(np.diff(cache.starts)[np.isin(cache.video_ids,
                                                           cache.tombstones)].sum())
        tuning = ((cache.manifest.get("ann") or {}).get("tuning") or {}) if cache else {}
        return {
            "ann": bool(cache is not None and cache.ann is not None),
            "cached_frames": 0 if cache is None else cache.count - tombstoned,
            "tail_frames": tail_frames,
            "dead_frames": dead_frames,
            "tombstoned_frames": tombstoned,
            "segments": 0 if cache is None else len(cache.segments),
            "nprobe": tuning.get("nprobe"),
            "cache_problem": self.problem,
        }

    # ------------------------------------------------------------------ building

    def refresh(self, *, force_ann: bool | None = None, wait: bool = True,
                full: bool = False) -> bool:
        """Bring ``vectors/`` up to date with SQLite if it differs, or rebuild it if the
        current cache is damaged (see :meth:`load`).

        Small changes are applied incrementally (a new segment, tombstones); ``full`` (or the
        ``rebuild_*`` thresholds) rebuilds everything. ``force_ann``: True builds an ANN index
        whatever the size, False never, None when the library has at least
        ``ann_min_vectors`` vectors. Safe to run while a writer commits (it reads one
        snapshot) and from several processes (they take turns; ``wait=False`` gives up at
        once if another holds the turn). Returns True if a new cache state was written.
        """
        self.directory.mkdir(exist_ok=True)
        lock = FileLock(self.directory / "refresh.lock")
        if wait:
            lock.acquire_blocking()
        elif not lock.try_acquire():
            return False
        try:
            return self._refresh_locked(force_ann, full)
        finally:
            lock.release()

    def optimize(self, *, force_ann: bool | None = None) -> dict:
        """Full rebuild into one segment (drops tombstoned rows, retrains and re-tunes the
        IVF index). Returns ``{"before": staleness, "after": staleness, "seconds"}``."""
        with self.library.snapshot() as conn:
            ids, counts = self.library.live_videos(conn)
        before = self.staleness(ids, counts)
        started = time.perf_counter()
        self.refresh(force_ann=force_ann, full=True)
        seconds = time.perf_counter() - started
        with self.library.snapshot() as conn:
            ids, counts = self.library.live_videos(conn)
        return {"before": before, "after": self.staleness(ids, counts),
                "seconds": round(seconds, 3)}

    def _want_ann(self, force_ann: bool | None, count: int) -> bool:
        return (force_ann if force_ann is not None else count >= self.ann_min_vectors) \
            and count > 0

    def _refresh_locked(self, force_ann: bool | None, full: bool) -> bool:
        library = self.library
        started = time.perf_counter()
        current = ann.read_manifest(self.directory)
        with library.snapshot() as conn:
            ids, counts = library.live_videos(conn)
        cache = self.load() if current is not None else None
        if (not full and cache is not None
                and cache.manifest.get("live_digest") == ann.ids_digest(ids)
                and cache.manifest.get("dim") == library.embed_dim
                and (cache.ann is not None) == self._want_ann(force_ann, int(counts.sum()))):
            return False  # up to date and sound
        damaged = self.problem is not None
        want_ann = self._want_ann(force_ann, int(counts.sum()))
        plan = None if full or cache is None else self._plan(cache, ids, counts, want_ann)
        trained = self._train(ids, counts) if plan is None and want_ann else None
        with library.snapshot() as conn:
            ids, counts = library.live_videos(conn)  # again: a writer may have committed
            want_ann = self._want_ann(force_ann, int(counts.sum()))
            if plan is not None:
                plan = self._plan(cache, ids, counts, want_ann)
            if plan is None:
                if not want_ann:
                    trained = None
                elif trained is None:
                    trained = self._train(ids, counts)
                writer = self._write_rows(conn, ids, counts, None, trained)
            else:
                added, added_counts, _ = plan
                base_trained = None
                if cache.ann is not None and len(added):
                    import faiss

                    # the base's trained, empty index: the new rows go into the same lists
                    base_trained = faiss.read_index(
                        str(cache.segments[0].directory / ann.TRAINED_FILE))
                writer = self._write_rows(conn, added, added_counts,
                                          int(added[0]) if len(added) else None, base_trained)
        # the snapshot is released before tuning so WAL checkpoints go on
        meta = {"schema_version": library.schema_version,
                "model_fingerprint": library.model.get("fingerprint")}
        try:
            if plan is None:
                manifest = self._publish_full(writer, ids, trained, meta)
            else:
                manifest = self._publish_incremental(cache, writer, plan, meta)
        except BaseException:
            if writer is not None:
                writer.discard()
            raise
        keep = ann.segment_names(manifest)
        if current is not None and not damaged:
            keep |= ann.segment_names(current)  # a reader may be between manifest and load
        ann.remove_old_generations(self.directory, keep)
        ann.remove_stale_tmp(self.directory)
        with self._lock:
            self._cache = None
            self._masks.clear()
            self.problem = None
        self.last_refresh = {
            "kind": "full" if plan is None else "incremental",
            "seconds": round(time.perf_counter() - started, 3),
            "added_videos": int(len(ids) if plan is None else len(plan[0])),
            "tombstones": len(manifest["tombstones"]),
            "segments": len(manifest["segments"]),
        }
        return True

    def _plan(self, cache: ann.VectorCache, ids: np.ndarray, counts: np.ndarray,
              want_ann: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(added ids, their frame counts, all tombstones) for an incremental refresh, or
        None when a full rebuild is due."""
        if (cache.ann is not None) != want_ann or not cache.segments[0].count:
            return None
        cached = cache.video_ids
        added_mask = ~np.isin(ids, cached)
        added, added_counts = ids[added_mask], counts[added_mask]
        if len(added) and len(cached) and added.min() <= cached.max():
            return None  # rows must stay grouped by ascending id across segments
        tombstones = np.union1d(cache.tombstones, cached[~np.isin(cached, ids)])
        rows_per_video = np.diff(cache.starts)
        dead_rows = int(rows_per_video[np.isin(cached, tombstones)].sum())
        base_rows = cache.segments[0].count
        delta_rows = cache.count - base_rows + int(added_counts.sum())
        if (delta_rows > self.rebuild_delta_fraction * base_rows
                or dead_rows > self.rebuild_dead_fraction * (cache.count + added_counts.sum())
                or len(cache.segments) + bool(len(added)) > self.max_segments):
            return None
        if cache.ann is not None and not (cache.segments[0].directory
                                          / ann.TRAINED_FILE).exists():
            return None
        return added, added_counts, tombstones

    def _train(self, ids: np.ndarray, counts: np.ndarray):
        """A trained, empty IVF index for these videos, trained on rows drawn from SQLite
        (a few rows from each of many videos drawn at random, so no scene dominates)."""
        count = int(counts.sum())
        kind = ann.ann_kind(count, self.pq_min_vectors)
        size = ann.training_size(count, kind)
        rng = np.random.default_rng(0)  # the same library builds the same index
        num_videos = min(len(ids), max(64, -(-size // 50)))
        chosen = np.sort(rng.choice(ids, num_videos, replace=False))
        per_video = -(-size // num_videos)
        parts = []
        for start in range(0, len(chosen), 256):
            frames = self.library.frames_of(chosen[start : start + 256].tolist())
            for vid in sorted(frames):
                vectors = frames[vid][1]
                take = np.sort(rng.choice(len(vectors), min(len(vectors), per_video),
                                          replace=False))
                parts.append(vectors[take])
        sample = np.concatenate(parts)
        if len(sample) > size:
            sample = sample[np.sort(rng.choice(len(sample), size, replace=False))]
        return ann.train_ann(sample, count, kind)

    def _write_rows(self, conn, ids: np.ndarray, counts: np.ndarray, min_id: int | None,
                    trained) -> ann.SegmentWriter | None:
        """A segment filled with the frames of ``ids`` (all live videos when ``min_id`` is
        None, else those from ``min_id`` on), read from the snapshot ``conn``, and encoded
        into a copy of the ``trained`` IVF index when one is given."""
        library = self.library
        if min_id is not None and not len(ids):
            return None
        index = None
        if trained is not None:
            import faiss

            index = faiss.clone_index(trained)
        writer = ann.SegmentWriter(self.directory, int(counts.sum()), library.embed_dim,
                                   len(ids), ann_index=index)
        try:
            for position, (video_id, times, vectors, half) in enumerate(
                    library.iter_frames(conn, min_id, with_half=True)):
                if position >= len(ids) or video_id != ids[position] or \
                        len(times) != counts[position]:
                    at = min(position, len(ids) - 1)
                    raise DamagedLibraryError(
                        f"video {ids[at]} has {len(times)} frames stored, {counts[at]} "
                        "recorded", path=library.db_path, hint=repair_hint(library.root))
                writer.append(video_id, times, vectors, half)
        except BaseException:
            writer.discard()
            raise
        return writer

    def _publish_full(self, writer: ann.SegmentWriter, ids: np.ndarray, trained,
                      meta: dict) -> dict:
        library = self.library
        ann_meta = None
        if trained is not None:
            _, nprobe = ann.ann_params(writer.count)
            ann_meta = {"kind": "IVF-PQ" if "PQ" in type(trained).__name__ else "IVF-SQ8",
                        "file": ann.ANN_FILE, "nlist": int(trained.nlist),
                        "nprobe": int(min(nprobe, trained.nlist))}
        entry = writer.finish(trained=trained)
        manifest = ann.make_manifest([entry], np.empty(0, np.int64), dim=library.embed_dim,
                                     video_ids=ids, ann_meta=ann_meta, meta=meta)
        if ann_meta is not None:
            ann_meta["tuning"] = self._tune(ann.load_cache(self.directory, manifest))
            # the untuned fallback for readers of the manifest: the largest nprobe tuned
            reached = [n for n in ann_meta["tuning"]["nprobe"].values() if n is not None]
            ann_meta["nprobe"] = max(reached or [r["nprobe"] for r in ann_meta["tuning"]["table"]])
        return ann.publish_manifest(self.directory, manifest)

    def _tune(self, cache: ann.VectorCache) -> dict:
        started = time.perf_counter()
        query_sets, sources = ann.synthetic_queries(cache, self.tune_queries)
        source = "synthetic (offset from sampled rows)"
        if self.tuning_text is not None:
            try:
                text = np.asarray(self.tuning_text(), np.float32)
            except Exception as error:  # noqa: BLE001 - the model is an extra, not a need
                # tuning still measures recall (on synthetic queries) when the model cannot
                # load here (offline, moved, another machine's library)
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                source = f"synthetic (offset from sampled rows; the model did not load: {reason})"
            else:
                if text.ndim == 2 and text.shape[1] == cache.dim and len(text):
                    query_sets["text"] = [(text, None)]
                    source = "the model's prompt embeddings"
        tuning = ann.tune_nprobe(cache, query_sets, self.tune_target)
        tuning["text_source"] = source
        tuning["image_source"] = sources["image"]
        tuning["seconds"] = round(time.perf_counter() - started, 3)
        return tuning

    def _publish_incremental(self, cache: ann.VectorCache, writer: ann.SegmentWriter | None,
                             plan: tuple, meta: dict) -> dict:
        added, _, tombstones = plan
        entries = list(cache.manifest["segments"])
        if writer is not None:
            entries.append(writer.finish())
        video_ids = np.concatenate([cache.video_ids, added])
        manifest = ann.make_manifest(entries, tombstones, dim=cache.dim, video_ids=video_ids,
                                     ann_meta=cache.manifest.get("ann"),
                                     meta={**meta, "refreshes":
                                           int(cache.manifest.get("refreshes", 0)) + 1})
        return ann.publish_manifest(self.directory, manifest)

    def load(self) -> ann.VectorCache | None:
        """The current cache, memory-mapped and validated; None when there is none or it is
        unusable (then ``problem`` says why, and the next refresh rebuilds it)."""
        problem = None
        for _ in range(3):  # a refresh elsewhere may delete a segment as we open it
            manifest = ann.read_manifest(self.directory)
            if manifest is None:
                exists = (self.directory / ann.MANIFEST).exists()
                problem = "manifest.json is unreadable or outdated" if exists else None
                break
            with self._lock:
                if self._cache is not None and \
                        self._cache.manifest.get("state") == manifest.get("state"):
                    return self._cache
            try:
                cache = ann.load_cache(self.directory, manifest)
                problem = self._validate(cache)
            except FileNotFoundError:
                problem = "a file of the current cache is missing"
                continue
            except (OSError, ValueError) as err:
                problem = str(err)
                break
            if problem is None:
                with self._lock:
                    self._cache = cache
                    self._masks.clear()
                    self.problem = None
                return cache
            break
        with self._lock:
            self._cache = None
            self.problem = problem
        return None

    def _validate(self, cache: ann.VectorCache) -> str | None:
        """Compare a loaded cache with SQLite; None if it matches, else what differs.

        Cheap by design: the frame count of every cached video that is still live (V ints),
        the norms of ``SAMPLE_ROWS`` random rows, and ``SAMPLE_VIDEOS`` whole videos row for
        row (first and last of the base, the last of every later segment, a few at random).
        Videos added or deleted since the build are not damage (that is staleness).
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
            sample = cache.rows(rows)  # (m, D)
            with np.errstate(over="ignore", invalid="ignore"):  # garbage bytes: inf, NaN
                norms = np.linalg.norm(sample, axis=1)
            if not np.all(np.abs(norms - 1) <= NORM_TOLERANCE):  # NaN fails too
                return "rows of vectors.faiss are not unit vectors"
        candidates = live_ids[cached]
        if len(candidates):
            chosen = {int(candidates[0]), int(candidates[-1])}
            for segment in cache.segments:
                alive = segment.video_ids[np.isin(segment.video_ids, candidates)]
                if len(alive):
                    chosen.add(int(alive[-1]))
            extra = self._rng.choice(candidates, min(len(candidates), SAMPLE_VIDEOS),
                                     replace=False)
            chosen.update(int(i) for i in extra[: max(0, SAMPLE_VIDEOS - 2)])
            stored = library.frames_of(sorted(chosen))
            for video_id, (times, vectors) in stored.items():
                i = int(np.searchsorted(cache.video_ids, video_id))
                cached_times, cached_vectors = cache.video_frames(i)
                if not (np.array_equal(cached_times, times)
                        and np.array_equal(cached_vectors, vectors)):
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
        recall: float | None = None,
        query_kind: str | None = None,
    ) -> list[list[FrameHit]]:
        """The ``k`` frames most similar to each query, best first.

        ``queries``: (Q, D) or (D,) float32, L2-normalised; the score is the cosine.
        ``video_ids`` restricts the search to those videos. ``exact``: None chooses (ANN
        when an index exists and the searched rows number at least ``ann_min_vectors``),
        True forces brute force, False uses the ANN index whenever one exists (build one
        with ``refresh(force_ann=True)``). ``recall`` (0 < R <= 1): search with the smallest
        nprobe whose measured recall@10 for ``query_kind`` ("text" or "image"; None: both)
        reaches R, exactly if none does; by default the tuned nprobe of the build. Correct on
        a stale cache: deleted videos never appear and videos added since the last refresh
        are searched exactly.
        """
        library = self.library
        check_recall(recall)
        if exact is True and recall is not None:
            raise ValueError("give exact or recall, not both")
        if query_kind is not None and query_kind not in QUERY_KINDS:
            raise ValueError(f"query_kind must be one of {', '.join(QUERY_KINDS)}")
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
            # stale: the run that is writing refreshes at its end, refreshing during it would
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
            self._search_cache(cache, queries, k, keep, exact, recall, query_kind, results)
        if len(tail_ids):
            self._search_tail(tail_ids, queries, k, results)
        hits = []
        for found in results:
            found.sort(key=lambda hit: (-hit[0], hit[1], hit[2]))
            hits.append([FrameHit(vid, ts, score) for score, vid, ts in found[:k]])
        return hits

    def _row_mask(self, cache: ann.VectorCache, keep: np.ndarray) -> np.ndarray | None:
        """(N,) bool of the rows of kept videos, None when all are kept; remembered per
        cache state and set of videos (at 10M rows building one costs ~20 ms)."""
        if keep.all():
            return None
        key = (str(cache.manifest.get("state")),
               hashlib.blake2b(np.packbits(keep).tobytes(), digest_size=16).digest())
        with self._lock:
            mask = self._masks.get(key)
            if mask is None:
                if len(self._masks) >= 8:
                    self._masks.clear()
                mask = self._masks[key] = cache.row_mask(keep)
        return mask

    def _search_cache(self, cache: ann.VectorCache, queries: np.ndarray, k: int,
                      keep: np.ndarray, exact: bool | None, recall: float | None,
                      query_kind: str | None, results: Candidates) -> None:
        rows_per_video = np.diff(cache.starts)  # (V,)
        selected = int(rows_per_video[keep].sum())
        if selected == 0:
            return
        nprobe = None
        if cache.ann is not None and exact is not True and (
                exact is False or selected >= self.ann_min_vectors):
            nprobe = ann.nprobe_for(cache.manifest["ann"], recall, query_kind)
        mask = self._row_mask(cache, keep)
        if nprobe is not None:
            scores, rows = ann.ann_search(cache, queries, k, nprobe, mask)
            if scores.shape[1] < k:  # fewer candidates than k in all: pad for the fallback
                pad = k - scores.shape[1]
                scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
                rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
            # too few allowed rows in the probed lists (a selective filter): answer exactly
            short = np.flatnonzero((rows >= 0).sum(axis=1) < min(k, selected))
            if len(short):
                exact_scores, exact_rows = ann.exact_search_cache(cache, queries[short], mask, k)
                width = exact_rows.shape[1]
                scores[short, :width], rows[short, :width] = exact_scores, exact_rows
                scores[short, width:], rows[short, width:] = -np.inf, -1
        else:
            scores, rows = ann.exact_search_cache(cache, queries, mask, k)
        valid = (rows >= 0) & np.isfinite(scores)
        safe_rows = np.where(valid, rows, 0)
        owners = cache.rows_to_videos(safe_rows)  # (Q, k) video ids
        times = cache.times(safe_rows)  # (Q, k) seconds
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
    """(frames of live videos missing from the cache, cached frames of deleted videos that
    are not tombstoned yet)."""
    if cache is None:
        return int(counts.sum()), 0
    tail = ~np.isin(ids, cache.video_ids)
    dead = ~np.isin(cache.video_ids, ids) & ~np.isin(cache.video_ids, cache.tombstones)
    return int(counts[tail].sum()), int(np.diff(cache.starts)[dead].sum())
