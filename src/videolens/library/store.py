"""A library of videos on disk: SQLite (the source of truth) plus a derived vector cache.

Layout of a library folder::

    library.sqlite     videos, their frame vectors and timestamps, failures, meta (WAL mode)
    write.lock         flock held by the one process writing (its pid inside, for messages)
    vectors/           float32 matrix + ANN index rebuilt from library.sqlite (see ann.py)

Guarantees:

* **Atomic videos.** A video's row and all its frames are one transaction, so a crash at any
  moment (``kill -9`` included) leaves the whole video or none of it.
* **Readers during a write.** WAL mode lets search read a consistent snapshot while an index
  run commits; ``synchronous=NORMAL`` keeps every commit atomic, and after a power loss
  (not a process crash) the last commits may be rolled back, never half-applied.
* **One writer.** :meth:`Library.writer` takes an exclusive ``flock``; the OS drops it when
  the process dies, so a crash never leaves a stale lock.
* **Correct search on a stale cache.** Hits from videos deleted since the cache was built
  are dropped, and videos added since (the *tail*) are searched exactly from SQLite.

Vectors are stored as float16 in SQLite: half the disk and write volume of float32, and on
clustered 512-d unit vectors recall@10 against float32 was 0.999 with score errors below
5e-5 (cosines are in [-1, 1], where float16 has ~3 significant digits). The cache and every
API return float32.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import LibraryError
from . import ann

SCHEMA_VERSION = 1
DB_NAME = "library.sqlite"
LOCK_NAME = "write.lock"
VECTORS_DIR = "vectors"
# Little-endian on disk whatever the machine, so a library can be copied between machines.
VECTOR_DTYPE = np.dtype("<f2")
TIME_DTYPE = np.dtype("<f8")

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
# A norm this far from 1 means the caller did not L2-normalise (float16 inputs reach ~1e-3).
NORM_TOLERANCE = 1e-2

_RECORD_FIELDS = (
    "path", "size", "mtime_ns", "fingerprint", "duration", "fps", "width", "height",
    "num_frames", "indexed_at", "warnings",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a re-indexed file gets a new id
    path TEXT NOT NULL UNIQUE,             -- absolute, resolved
    size INTEGER NOT NULL,                 -- bytes
    mtime_ns INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    duration REAL NOT NULL,                -- seconds
    fps REAL NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    num_frames INTEGER NOT NULL,
    indexed_at REAL NOT NULL,              -- unix time, seconds
    warnings TEXT NOT NULL DEFAULT '[]'    -- JSON list of strings
);
CREATE TABLE IF NOT EXISTS frames (
    -- one row per video holding all its frames: one B-tree entry instead of hundreds
    video_id INTEGER PRIMARY KEY REFERENCES videos(id) ON DELETE CASCADE,
    timestamps BLOB NOT NULL,              -- (n,) little-endian float64 seconds
    vectors BLOB NOT NULL                  -- (n, D) little-endian float16, L2-normalised
);
CREATE TABLE IF NOT EXISTS failures (
    path TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    at REAL NOT NULL                       -- unix time, seconds
);
"""

# Migrations: MIGRATIONS[v] upgrades a library at schema version v to v + 1, inside the
# write transaction that also bumps ``schema_version``. Empty while there is only version 1.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}


@dataclass(frozen=True)
class VideoRecord:
    """One indexed video. ``path`` is absolute; ``duration`` in seconds; ``size`` in bytes."""

    id: int
    path: str
    size: int
    mtime_ns: int
    fingerprint: str
    duration: float
    fps: float
    width: int
    height: int
    num_frames: int
    indexed_at: float
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class FrameHit:
    """A frame found by search: ``timestamp`` in seconds, ``score`` = cosine similarity."""

    video_id: int
    timestamp: float
    score: float


def _resolve(path: str | os.PathLike) -> str:
    return str(Path(path).expanduser().resolve())


def _connect(db_path: Path) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; every transaction here is explicit.
    # check_same_thread=False: a web server calls from a thread pool; Library serialises
    # access with its own lock.
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=30.0, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")  # per connection: needed for ON DELETE CASCADE
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL: atomic, fsync at checkpoints only
    return conn


def _row_to_record(row: tuple) -> VideoRecord:
    (vid, path, size, mtime_ns, fingerprint, duration, fps, width, height, num_frames,
     indexed_at, warnings) = row
    return VideoRecord(int(vid), path, int(size), int(mtime_ns), fingerprint, float(duration),
                       float(fps), int(width), int(height), int(num_frames), float(indexed_at),
                       tuple(json.loads(warnings or "[]")))


_SELECT_VIDEO = "SELECT id, " + ", ".join(_RECORD_FIELDS) + " FROM videos"


def _decode_frames(timestamps: bytes, vectors: bytes, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """SQLite blobs -> timestamps (n,) float64 seconds, vectors (n, D) float32."""
    times = np.frombuffer(timestamps, dtype=TIME_DTYPE).astype(np.float64)
    matrix = np.frombuffer(vectors, dtype=VECTOR_DTYPE).reshape(-1, dim).astype(np.float32)
    return times, matrix


class _FileLock:
    """An ``flock`` on a file, per open file description (so it also excludes a second
    ``open()`` in the same process). Released by :meth:`release` or by process death."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def try_acquire(self, mode: int = fcntl.LOCK_EX, wait_s: float = 0.0) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                self.fd = fd
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)

    def acquire_blocking(self, mode: int = fcntl.LOCK_EX) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, mode)
        self.fd = fd

    def write_pid(self) -> None:
        assert self.fd is not None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def holder_pid(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class Library:
    """A video library folder. Open with :meth:`open`, :meth:`create` or :meth:`open_or_create`.

    Thread-safe for readers (one connection, serialised); write through :meth:`writer`.
    The tuning attributes (``ann_min_vectors``, ``refresh_*``, ``auto_refresh``) default to
    the module constants and may be changed per instance.
    """

    def __init__(self, root: Path, conn: sqlite3.Connection, meta: dict[str, str]):
        """Private: use :meth:`open`, :meth:`create` or :meth:`open_or_create`."""
        self.root = root
        self._conn = conn
        self._lock = threading.RLock()
        self.schema_version = int(meta["schema_version"])
        self.model: dict = json.loads(meta["model"])
        self.sampling: dict = json.loads(meta["sampling"])
        self.created_at = float(meta.get("created_at", "0"))
        self.videolens_version = meta.get("videolens_version", "")
        self.embed_dim = int(self.model["embed_dim"])
        self.ann_min_vectors = ANN_MIN_VECTORS
        self.refresh_stale_rows = REFRESH_STALE_ROWS
        self.refresh_stale_fraction = REFRESH_STALE_FRACTION
        self.refresh_min_stale_rows = REFRESH_MIN_STALE_ROWS
        self.auto_refresh = True
        self._cache: ann.VectorCache | None = None
        # tail videos decoded from SQLite, by id (ids are never reused, so never outdated)
        self._tail_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ opening and creating

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def vectors_dir(self) -> Path:
        return self.root / VECTORS_DIR

    @classmethod
    def create(cls, root: str | os.PathLike, model: dict, sampling: dict) -> Library:
        """Create a library at ``root`` bound to ``model`` and ``sampling``.

        ``model`` = ``{"name", "fingerprint", "embed_dim", "kind"}``; ``sampling`` is stored
        as given (e.g. ``{"kind": "rate", "fps": 1.0}``). LibraryError if one exists already.
        """
        missing = {"name", "fingerprint", "embed_dim", "kind"} - set(model)
        if missing:
            raise ValueError(f"model metadata lacks {sorted(missing)}")
        root = Path(root).expanduser().resolve()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LibraryError(f"cannot create the library folder: {err.strerror}", path=root,
                               hint="choose another --library") from err
        conn = _connect(root / DB_NAME)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                exists = conn.execute(
                    "SELECT value FROM meta WHERE key = 'schema_version'"
                ).fetchone()
                if exists:
                    raise LibraryError("a videolens library already exists here", path=root,
                                       hint="open it instead of creating it")
                from .. import __version__

                meta = {
                    "schema_version": str(SCHEMA_VERSION),
                    "model": json.dumps({**model, "embed_dim": int(model["embed_dim"])}),
                    "sampling": json.dumps(sampling),
                    "created_at": repr(time.time()),
                    "videolens_version": __version__,
                    "vector_dtype": "float16",
                }
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        return cls(root, conn, meta)

    @classmethod
    def open(cls, root: str | os.PathLike) -> Library:
        """Open the library at ``root``: LibraryError if there is none, or if it was written
        by a newer videolens; an older schema is migrated."""
        root = Path(root).expanduser().resolve()
        db_path = root / DB_NAME
        if not db_path.is_file():
            raise LibraryError("no videolens library here", path=root,
                               hint="run `videolens index PATH` first")
        conn = _connect(db_path)
        try:
            meta = cls._read_meta(conn, root)
            version = int(meta["schema_version"])
            if version > SCHEMA_VERSION:
                raise LibraryError(
                    f"this library was written by a newer videolens (schema {version}; this "
                    f"one reads up to {SCHEMA_VERSION})", path=root, hint="upgrade videolens")
            if version < SCHEMA_VERSION:
                cls._migrate(conn, root, version)
                meta = cls._read_meta(conn, root)
        except BaseException:
            conn.close()
            raise
        return cls(root, conn, meta)

    @classmethod
    def open_or_create(cls, root: str | os.PathLike, model: dict, sampling: dict) -> Library:
        """Open the library at ``root`` and check it was built with ``model``, or create it."""
        if not (Path(root).expanduser() / DB_NAME).is_file():
            try:
                return cls.create(root, model, sampling)
            except LibraryError as err:
                if "already exists" not in err.message:  # lost a race with another creator
                    raise
        library = cls.open(root)
        try:
            library.check_model(model)
        except BaseException:
            library.close()
            raise
        return library

    @staticmethod
    def _read_meta(conn: sqlite3.Connection, root: Path) -> dict[str, str]:
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as err:
            raise LibraryError(f"not a videolens library ({err})", path=root / DB_NAME,
                               hint="move it away or use another --library") from err
        if not {"schema_version", "model", "sampling"} <= set(meta):
            raise LibraryError("not a videolens library (incomplete metadata)",
                               path=root / DB_NAME, hint="move it away or use another --library")
        return meta

    @staticmethod
    def _migrate(conn: sqlite3.Connection, root: Path, version: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-read inside the write transaction: another process may have migrated already
            version = int(conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
            while version < SCHEMA_VERSION:
                if version not in MIGRATIONS:
                    raise LibraryError(f"no migration from library schema {version}", path=root,
                                       hint="re-create the library with `videolens index`")
                MIGRATIONS[version](conn)
                version += 1
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                             (str(version),))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the database connection and drop memory-mapped cache files."""
        with self._lock:
            self._cache = None
            self._tail_cache.clear()
            self._conn.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Library({str(self.root)!r}, model={self.model.get('name')!r})"

    # ------------------------------------------------------------------ model

    def check_model(self, model: dict | str) -> None:
        """LibraryError unless ``model`` is the library's model.

        ``model`` is a metadata dict (compared by fingerprint when both have one, else by
        name, and by embedding size) or a fingerprint or name string.
        """
        have_name = self.model.get("name")
        have_fp = self.model.get("fingerprint")
        if isinstance(model, str):
            same = model in (have_fp, have_name)
            want_name = model
        else:
            want_name = model.get("name")
            want_fp = model.get("fingerprint")
            same = want_fp == have_fp if (want_fp and have_fp) else want_name == have_name
            if "embed_dim" in model and int(model["embed_dim"]) != self.embed_dim:
                same = False
        if not same:
            raise LibraryError(
                f"this library was built with the model {have_name}, not {want_name}",
                path=self.root,
                hint=f"use --model {have_name}, or index into another --library",
            )

    # ------------------------------------------------------------------ reading

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")  # read-only: just ends the snapshot

    def videos(self) -> list[VideoRecord]:
        """All videos, by id (oldest first)."""
        with self._lock:
            rows = self._conn.execute(_SELECT_VIDEO + " ORDER BY id").fetchall()
        return [_row_to_record(row) for row in rows]

    def video(self, id: int) -> VideoRecord | None:
        """The video with this id, or None (never indexed, removed or re-indexed)."""
        with self._lock:
            row = self._conn.execute(_SELECT_VIDEO + " WHERE id = ?", (int(id),)).fetchone()
        return None if row is None else _row_to_record(row)

    def video_by_path(self, path: str | os.PathLike) -> VideoRecord | None:
        """The video indexed from ``path`` (resolved to an absolute path), or None."""
        with self._lock:
            row = self._conn.execute(_SELECT_VIDEO + " WHERE path = ?",
                                     (_resolve(path),)).fetchone()
        return None if row is None else _row_to_record(row)

    def frames(self, video_id: int) -> tuple[np.ndarray, np.ndarray]:
        """A video's frames: timestamps (N,) float64 seconds, vectors (N, D) float32
        L2-normalised (stored as float16). LibraryError if the id is unknown."""
        with self._lock:
            row = self._conn.execute("SELECT timestamps, vectors FROM frames WHERE video_id = ?",
                                     (int(video_id),)).fetchone()
        if row is None:
            raise LibraryError(f"no video with id {video_id} in this library", path=self.root,
                               hint="it may have been removed or re-indexed")
        return _decode_frames(row[0], row[1], self.embed_dim)

    def failures(self) -> dict[str, tuple[str, int, int]]:
        """Files that failed to index: path -> (reason, size in bytes, mtime_ns)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT path, reason, size, mtime_ns FROM failures ORDER BY path").fetchall()
        return {path: (reason, int(size), int(mtime)) for path, reason, size, mtime in rows}

    def stats(self) -> dict:
        """Counts and state: ``videos``, ``frames``, ``bytes`` (on disk, whole folder),
        ``ann`` (an ANN index is in use), ``stale`` (the cache misses added or deleted
        videos), ``cached_frames``, ``tail_frames``, ``dead_frames``, ``failures``."""
        with self._snapshot() as conn:
            ids, counts = self._live(conn)
            failures = conn.execute("SELECT count(*) FROM failures").fetchone()[0]
        cache = self._load_cache()
        tail_frames, dead_frames = self._staleness(cache, ids, counts)
        size = 0
        for path in self.root.rglob("*"):
            try:
                if path.is_file():
                    size += path.stat().st_size
            except OSError:
                pass
        return {
            "videos": int(len(ids)),
            "frames": int(counts.sum()),
            "bytes": size,
            "ann": bool(cache is not None and cache.ann is not None),
            "stale": bool(tail_frames or dead_frames),
            "cached_frames": 0 if cache is None else cache.count,
            "tail_frames": tail_frames,
            "dead_frames": dead_frames,
            "failures": int(failures),
            "model": self.model.get("name"),
            "schema_version": self.schema_version,
        }

    @staticmethod
    def _live(conn: sqlite3.Connection) -> tuple[np.ndarray, np.ndarray]:
        """(ids (V,) int64 ascending, num_frames (V,) int64) of the videos visible now."""
        rows = conn.execute("SELECT id, num_frames FROM videos ORDER BY id").fetchall()
        table = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return table[:, 0], table[:, 1]

    @staticmethod
    def _staleness(cache: ann.VectorCache | None, ids: np.ndarray,
                   counts: np.ndarray) -> tuple[int, int]:
        """(frames of live videos missing from the cache, cached frames of deleted videos)."""
        if cache is None:
            return int(counts.sum()), 0
        tail = ~np.isin(ids, cache.video_ids)
        dead = ~np.isin(cache.video_ids, ids)
        return int(counts[tail].sum()), int(np.diff(cache.starts)[dead].sum())

    # ------------------------------------------------------------------ writing

    @contextmanager
    def writer(self) -> Iterator[LibraryWriter]:
        """Exclusive write access: ``with library.writer() as w: w.add_video(...)``.

        LibraryError at once if another process (or another writer in this one) holds it.
        """
        lock = _FileLock(self.root / LOCK_NAME)
        # a short wait covers search's momentary probe of the lock (see _writer_running)
        if not lock.try_acquire(fcntl.LOCK_EX, wait_s=0.5):
            raise LibraryError(
                f"another videolens process (pid {lock.holder_pid()}) is writing to this "
                "library", path=self.root, hint="wait for it to finish, or use another --library")
        writer = None
        try:
            lock.write_pid()
            writer = LibraryWriter(self, _connect(self.db_path))
            yield writer
        finally:
            if writer is not None:
                writer._closed = True
                writer._conn.close()
            lock.release()

    def _writer_running(self) -> bool:
        """True if some process holds the write lock (probed with a shared lock, released
        at once; a writer starting in that instant waits for it, see :meth:`writer`)."""
        lock = _FileLock(self.root / LOCK_NAME)
        try:
            if lock.try_acquire(fcntl.LOCK_SH):
                lock.release()
                return False
        except OSError:
            return False
        return True

    # ------------------------------------------------------------------ vector cache

    def refresh_vectors(self, *, force_ann: bool | None = None, _wait: bool = True) -> bool:
        """Rebuild ``vectors/`` from SQLite if it differs from what SQLite holds now.

        ``force_ann``: True builds an ANN index whatever the size, False never, None when the
        library has at least ``ann_min_vectors`` vectors. Safe to run while a writer commits
        (it reads one snapshot) and from several processes (they take turns). Returns True
        if a new generation was written.
        """
        self.vectors_dir.mkdir(exist_ok=True)
        lock = _FileLock(self.vectors_dir / "refresh.lock")
        if _wait:
            lock.acquire_blocking()
        elif not lock.try_acquire():
            return False
        try:
            return self._refresh_locked(force_ann)
        finally:
            lock.release()

    def _refresh_locked(self, force_ann: bool | None) -> bool:
        current = ann.read_manifest(self.vectors_dir)
        generation = None
        with self._snapshot() as conn:
            ids, counts = self._live(conn)
            count = int(counts.sum())
            want_ann = force_ann if force_ann is not None else count >= self.ann_min_vectors
            if (current is not None and current["ids_digest"] == ann.ids_digest(ids)
                    and current["count"] == count and current["dim"] == self.embed_dim
                    and bool(current.get("ann")) == (want_ann and count > 0)):
                return False
            generation = ann.GenerationWriter(self.vectors_dir, count, self.embed_dim, len(ids))
            try:
                cursor = conn.execute("SELECT f.video_id, f.timestamps, f.vectors FROM frames f "
                                      "JOIN videos v ON v.id = f.video_id ORDER BY f.video_id")
                for position, (video_id, times_blob, vectors_blob) in enumerate(cursor):
                    times, vectors = _decode_frames(times_blob, vectors_blob, self.embed_dim)
                    if video_id != ids[position] or len(times) != counts[position]:
                        raise LibraryError(
                            f"video {video_id} has {len(times)} frames stored, "
                            f"{counts[position]} recorded", path=self.db_path,
                            hint="re-index it (or remove the library and index again)")
                    generation.append(video_id, times, vectors)
            except BaseException:
                generation.discard()
                raise
        try:
            # the snapshot is released before the (slow) ANN build so WAL checkpoints go on
            manifest = generation.publish(
                with_ann=want_ann,
                meta={"schema_version": self.schema_version,
                      "model_fingerprint": self.model.get("fingerprint")})
        except BaseException:
            generation.discard()
            raise
        keep = {manifest["generation"]}
        if current is not None:
            keep.add(current["generation"])  # a reader may be between manifest and load
        ann.remove_old_generations(self.vectors_dir, keep)
        ann.remove_stale_tmp(self.vectors_dir)
        with self._lock:
            self._cache = None
        return True

    def _load_cache(self) -> ann.VectorCache | None:
        """The current generation, memory-mapped; None when missing or unusable."""
        for _ in range(3):  # a refresh elsewhere may delete a generation as we open it
            manifest = ann.read_manifest(self.vectors_dir)
            if manifest is None or manifest.get("dim") != self.embed_dim:
                return None
            with self._lock:
                if self._cache is not None and \
                        self._cache.manifest["generation"] == manifest["generation"]:
                    return self._cache
            try:
                cache = ann.load_generation(self.vectors_dir, manifest)
            except (OSError, ValueError, RuntimeError):
                continue
            with self._lock:
                self._cache = cache
            return cache
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
        with ``refresh_vectors(force_ann=True)``). Correct on a stale cache: deleted videos
        never appear and videos added since the last refresh are searched exactly.
        """
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None]
        if queries.ndim != 2 or queries.shape[1] != self.embed_dim:
            raise ValueError(f"queries must be (Q, {self.embed_dim}), got {queries.shape}")
        queries = np.ascontiguousarray(queries)
        if k <= 0 or queries.shape[0] == 0:
            return [[] for _ in range(queries.shape[0])]
        wanted = None if video_ids is None else np.fromiter(video_ids, np.int64)

        cache = self._load_cache()
        with self._snapshot() as conn:
            live_ids, live_counts = self._live(conn)
        tail_frames, dead_frames = self._staleness(cache, live_ids, live_counts)
        stale = tail_frames + dead_frames
        if (self.auto_refresh and stale >= self.refresh_min_stale_rows
                and (stale > self.refresh_stale_rows
                     or stale > self.refresh_stale_fraction * max(1, live_counts.sum()))
                and not self._writer_running()):
            # the run that is writing refreshes at its end; rebuilding during it would repeat
            try:
                if self.refresh_vectors(_wait=False):
                    cache = self._load_cache()
            except (OSError, LibraryError):
                pass  # read-only folder or broken store: the tail path still answers correctly

        if wanted is not None:
            live_ids = live_ids[np.isin(live_ids, wanted)]
        results: list[list[tuple[float, int, float]]] = [[] for _ in range(queries.shape[0])]
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
                      keep: np.ndarray, exact: bool | None,
                      results: list[list[tuple[float, int, float]]]) -> None:
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
                     results: list[list[tuple[float, int, float]]]) -> None:
        """Exact search over videos not in the cache, read from SQLite (and kept in memory
        while they stay in the tail)."""
        wanted = {int(i) for i in tail_ids}
        for vid in list(self._tail_cache):
            if vid not in wanted:
                del self._tail_cache[vid]
        missing = [vid for vid in wanted if vid not in self._tail_cache]
        with self._lock:
            for start in range(0, len(missing), 500):  # SQLite caps bound parameters
                batch = missing[start : start + 500]
                marks = ",".join("?" * len(batch))
                for vid, times_blob, vectors_blob in self._conn.execute(
                        f"SELECT video_id, timestamps, vectors FROM frames "
                        f"WHERE video_id IN ({marks})", batch):
                    self._tail_cache[int(vid)] = _decode_frames(times_blob, vectors_blob,
                                                                self.embed_dim)
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


class LibraryWriter:
    """Writes to a library; obtained from :meth:`Library.writer` (holds the write lock)."""

    def __init__(self, library: Library, conn: sqlite3.Connection):
        self.library = library
        self._conn = conn
        self._closed = False

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise LibraryError("this writer is closed", path=self.library.root,
                               hint="use it inside `with library.writer() as writer:`")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def add_video(self, record: dict | object, timestamps: np.ndarray,
                  vectors: np.ndarray) -> int:
        """Store one video and all its frames atomically; returns its new id.

        ``record`` is a dict or an object (e.g. :class:`VideoRecord`) with the
        :class:`VideoRecord` fields (``id`` ignored; ``num_frames`` may be omitted).
        ``timestamps`` (N,) seconds, ``vectors`` (N, D) float32 L2-normalised. A video
        already stored for the same path is replaced in the same transaction (the new one
        gets a new id), and a recorded failure for the path is cleared.
        """
        values = _record_values(record)
        path = values["path"]
        times = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        matrix = np.asarray(vectors, dtype=np.float32)
        dim = self.library.embed_dim
        if matrix.ndim != 2 or matrix.shape != (len(times), dim):
            raise ValueError(f"{path}: vectors must be ({len(times)}, {dim}) to match "
                             f"{len(times)} timestamps, got {matrix.shape}")
        if values.get("num_frames") is None:
            values["num_frames"] = len(times)
        elif int(values["num_frames"]) != len(times):
            raise ValueError(f"{path}: num_frames={values['num_frames']} but "
                             f"{len(times)} timestamps given")
        if not (np.isfinite(times).all() and np.isfinite(matrix).all()):
            raise ValueError(f"{path}: timestamps and vectors must be finite")
        if len(matrix) and np.abs(np.linalg.norm(matrix, axis=1) - 1).max() > NORM_TOLERANCE:
            raise ValueError(f"{path}: vectors must be L2-normalised")
        values["warnings"] = json.dumps(list(values.get("warnings") or ()))
        columns = ", ".join(_RECORD_FIELDS)
        marks = ", ".join("?" * len(_RECORD_FIELDS))
        with self._transaction() as conn:
            # old row first (its frames go by cascade), so the UNIQUE path never conflicts
            conn.execute("DELETE FROM videos WHERE path = ?", (path,))
            cursor = conn.execute(f"INSERT INTO videos ({columns}) VALUES ({marks})",
                                  [values[name] for name in _RECORD_FIELDS])
            video_id = int(cursor.lastrowid)
            conn.execute("INSERT INTO frames (video_id, timestamps, vectors) VALUES (?, ?, ?)",
                         (video_id, times.astype(TIME_DTYPE).tobytes(),
                          matrix.astype(VECTOR_DTYPE).tobytes()))
            conn.execute("DELETE FROM failures WHERE path = ?", (path,))
        return video_id

    def remove_video(self, path: str | os.PathLike) -> bool:
        """Remove the video indexed from ``path`` with its frames; False if there was none."""
        with self._transaction() as conn:
            cursor = conn.execute("DELETE FROM videos WHERE path = ?", (_resolve(path),))
        return cursor.rowcount > 0

    def record_failure(self, path: str | os.PathLike, reason: str, size: int,
                       mtime_ns: int) -> None:
        """Remember that ``path`` (at this size in bytes and mtime) failed, and why.

        An existing video row for the path is left as it is: the caller decides whether a
        file that now fails should also leave the library.
        """
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO failures (path, reason, size, mtime_ns, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (_resolve(path), str(reason), int(size), int(mtime_ns), time.time()))


def _record_values(record: dict | object) -> dict:
    """A dict or attribute object -> column values, with ``path`` resolved."""
    if isinstance(record, dict):
        source = record
    elif hasattr(record, "__dataclass_fields__"):
        source = {f.name: getattr(record, f.name) for f in fields(record)}
    else:
        source = {name: getattr(record, name) for name in _RECORD_FIELDS if hasattr(record, name)}
    values = {name: source.get(name) for name in _RECORD_FIELDS}
    missing = [name for name in _RECORD_FIELDS
               if values[name] is None and name not in ("num_frames", "warnings")]
    if missing:
        raise ValueError(f"video record lacks {missing}")
    values["path"] = _resolve(values["path"])
    for name in ("size", "mtime_ns", "width", "height"):
        values[name] = int(values[name])
    for name in ("duration", "fps", "indexed_at"):
        values[name] = float(values[name])
        if math.isnan(values[name]):  # SQLite stores NaN as NULL; 0 reads as "unknown"
            values[name] = 0.0
    return values
