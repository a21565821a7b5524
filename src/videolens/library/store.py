"""A library of videos on disk: SQLite (the source of truth) plus a derived vector cache.

Layout of a library folder::

    library.sqlite     videos, their frame vectors and timestamps, failures, meta (WAL mode)
    write.lock         flock held by the one process writing (pid and purpose inside)
    vectors/           float16 rows + ANN index, derived from library.sqlite (see ann.py)

Guarantees:

* **Atomic videos.** A video's row and all its frames are one transaction, so a crash at any
  moment (``kill -9`` included) leaves the whole video or none of it.
* **Readers during a write.** WAL mode lets search read a consistent snapshot while an index
  run commits; ``synchronous=NORMAL`` keeps every commit atomic, and after a power loss
  (not a process crash) the last commits may be rolled back, never half-applied.
* **One writer.** :meth:`Library.writer` takes an exclusive ``flock`` (:mod:`.locks`); the
  OS drops it when the process dies, so a crash never leaves a stale lock.
* **Atomic creation, damage reported.** A library is built under a temporary name and
  renamed into place; a damaged file or garbled metadata is a one-line
  :class:`~videolens.library.db.DamagedLibraryError` pointing to ``videolens library check
  --repair`` (see :mod:`.db`), never a raw ``sqlite3`` traceback. ``PRAGMA quick_check`` runs
  on open when the file is small enough for it to be cheap, and before writing.

This module is storage only; the vector cache and search are :mod:`.vectors`
(``library.vectors``), reached through the thin :meth:`Library.search` and
:meth:`Library.refresh_vectors`.

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
from . import db
from .db import DB_NAME, DamagedLibraryError, translated
from .locks import LOCK_NAME, FileLock, WriteLock
from .vectors import FrameHit, VectorIndex

SCHEMA_VERSION = 1
VECTORS_DIR = "vectors"
# PRAGMA quick_check reads every page: ~140 ms for 186 MB here (warm), so readers (search,
# localize, serve) run it on open up to 64 MiB (~50 ms; ~60k frames at D=512), and writers
# before their first write up to 1 GiB (an index run spends seconds loading a model anyway).
QUICK_CHECK_OPEN_MAX_BYTES = 64 << 20
QUICK_CHECK_WRITE_MAX_BYTES = 1 << 30
# Little-endian on disk whatever the machine, so a library can be copied between machines.
VECTOR_DTYPE = np.dtype("<f2")
TIME_DTYPE = np.dtype("<f8")
# A norm this far from 1 means the caller did not L2-normalise (float16 inputs reach ~1e-3).
NORM_TOLERANCE = 1e-2

_RECORD_FIELDS = (
    "path", "size", "mtime_ns", "fingerprint", "duration", "fps", "width", "height",
    "num_frames", "indexed_at", "warnings",
)

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


def _resolve(path: str | os.PathLike) -> str:
    return str(Path(path).expanduser().resolve())


def _row_to_record(row: tuple) -> VideoRecord:
    (vid, path, size, mtime_ns, fingerprint, duration, fps, width, height, num_frames,
     indexed_at, warnings) = row
    try:
        notes = tuple(str(w) for w in json.loads(warnings or "[]"))
    except (TypeError, ValueError):  # a garbled warnings cell must not hide the video
        notes = (str(warnings),)
    return VideoRecord(int(vid), path, int(size), int(mtime_ns), fingerprint, float(duration),
                       float(fps), int(width), int(height), int(num_frames), float(indexed_at),
                       notes)


_SELECT_VIDEO = "SELECT id, " + ", ".join(_RECORD_FIELDS) + " FROM videos"


def _decode_frames(timestamps: bytes, vectors: bytes, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """SQLite blobs -> timestamps (n,) float64 seconds, vectors (n, D) float32.

    Raises sqlite3.DatabaseError when the blobs are damaged in ways SQLite cannot see: sizes
    that disagree, or rows that are not finite unit vectors (every stored row is one; the
    check costs about as much as the float16 -> float32 conversion).
    """
    if len(timestamps) % TIME_DTYPE.itemsize or \
            len(vectors) != len(timestamps) // TIME_DTYPE.itemsize * dim * VECTOR_DTYPE.itemsize:
        raise sqlite3.DatabaseError(
            f"database disk image is malformed (frame blobs of {len(timestamps)} and "
            f"{len(vectors)} bytes do not match)")
    times = np.frombuffer(timestamps, dtype=TIME_DTYPE).astype(np.float64)
    matrix = np.frombuffer(vectors, dtype=VECTOR_DTYPE).reshape(-1, dim).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        squared = np.einsum("nd,nd->n", matrix, matrix)  # (n,) squared norms
    if not (np.isfinite(times).all() and np.all(np.abs(squared - 1) <= 2 * NORM_TOLERANCE)):
        raise sqlite3.DatabaseError("database disk image is malformed (stored frames are not "
                                    "finite unit vectors)")
    return times, matrix


class Library:
    """A video library folder. Open with :meth:`open`, :meth:`create` or :meth:`open_or_create`.

    Thread-safe for readers (one connection, serialised); write through :meth:`writer`.
    ``vectors`` is the library's :class:`~videolens.library.vectors.VectorIndex` (the cache,
    search, and their tuning attributes).
    """

    def __init__(self, root: Path, conn: sqlite3.Connection, meta: dict):
        """Private: use :meth:`open`, :meth:`create` or :meth:`open_or_create`. ``meta`` as
        :func:`.db.parse_meta` returns it."""
        self.root = root
        self._conn = conn
        self._lock = threading.RLock()
        self.schema_version: int = meta["schema_version"]
        self.model: dict = meta["model"]
        self.sampling: dict = meta["sampling"]
        self.created_at: float = meta["created_at"]
        self.videolens_version: str = meta["videolens_version"]
        self.embed_dim = int(self.model["embed_dim"])
        self.vectors = VectorIndex(self)
        # quick_check already run on this connection (on open, or before the first write)
        self._checked = False

    # ------------------------------------------------------------------ opening and creating

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def vectors_dir(self) -> Path:
        return self.root / VECTORS_DIR

    @classmethod
    def create(cls, root: str | os.PathLike, model: dict, sampling: dict, *,
               lock: WriteLock | None = None) -> Library:
        """Create a library at ``root`` bound to ``model`` and ``sampling``.

        ``model`` = ``{"name", "fingerprint", "embed_dim", "kind"}``; ``sampling`` is stored
        as given (e.g. ``{"kind": "rate", "fps": 1.0}``). LibraryError if one exists already.
        Atomic: the database is built under a temporary name and renamed into place, so a
        kill leaves no library or a whole one. A blank file left by an older videolens killed
        while creating is replaced. ``lock``: the folder's :class:`WriteLock` if the caller
        holds it already; otherwise it is taken for the moment of creation.
        """
        missing = {"name", "fingerprint", "embed_dim", "kind"} - set(model)
        if missing:
            raise ValueError(f"model metadata lacks {sorted(missing)}")
        root = Path(root).expanduser().resolve()
        db_path = root / DB_NAME
        if db_path.exists() and not cls._blank(db_path):
            raise LibraryError("a videolens library already exists here", path=root,
                               hint="open it instead of creating it")
        held = lock if lock is not None else WriteLock(root, "library create").acquire()
        try:
            # under the lock nobody else creates or writes: check again, then build aside
            replace = db_path.exists()
            if replace and not cls._blank(db_path):
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
            built = db.temp_name(root)
            try:
                with db.sqlite_errors(built):
                    db.build_database(built, meta)
                try:
                    db.install_database(built, db_path, replace=replace)
                except FileExistsError:
                    raise LibraryError("a videolens library already exists here", path=root,
                                       hint="open it instead of creating it") from None
            except OSError as err:
                raise LibraryError(f"cannot create the library: {err.strerror or err}",
                                   path=root, hint="check the folder's permissions and free "
                                   "space, or use another --library") from err
            finally:
                built.unlink(missing_ok=True)
            db.remove_stale_builds(root)
        finally:
            if lock is None:
                held.release()
        return cls.open(root)

    @staticmethod
    def _blank(db_path: Path) -> bool:
        """True if ``db_path`` holds no library yet (a create was killed midway)."""
        try:
            if db_path.stat().st_size == 0:
                return True
            conn = db.connect(db_path)
        except (OSError, sqlite3.Error):
            return False
        try:
            return db.is_blank(conn)
        except sqlite3.Error:
            return False  # unreadable: damage, reported by open
        finally:
            conn.close()

    @classmethod
    def open(cls, root: str | os.PathLike) -> Library:
        """Open the library at ``root``: LibraryError if there is none, if it was written by
        a newer videolens, or (:class:`DamagedLibraryError`) if it is damaged; an older
        schema is migrated."""
        root = Path(root).expanduser().resolve()
        db_path = root / DB_NAME
        if not db_path.is_file():
            raise LibraryError("no videolens library here", path=root,
                               hint="run `videolens index PATH` first")
        with db.sqlite_errors(db_path):
            conn = db.connect(db_path)
            try:
                meta = cls._read_meta(conn, root)
                if meta["schema_version"] > SCHEMA_VERSION:
                    raise LibraryError(
                        f"this library was written by a newer videolens (schema "
                        f"{meta['schema_version']}; this one reads up to {SCHEMA_VERSION})",
                        path=root, hint="upgrade videolens")
                checked = db_path.stat().st_size <= QUICK_CHECK_OPEN_MAX_BYTES
                if checked:
                    cls._quick_check(conn, db_path)
                if meta["schema_version"] < SCHEMA_VERSION:
                    cls._migrate(conn, root, meta["schema_version"])
                    meta = cls._read_meta(conn, root)
            except BaseException:
                conn.close()
                raise
        library = cls(root, conn, meta)
        library._checked = checked
        return library

    @classmethod
    def open_if_exists(cls, root: str | os.PathLike) -> Library | None:
        """The library at ``root``, or None when there is none yet — also when a create was
        killed midway and left a blank file (the next :meth:`create` replaces it)."""
        db_path = Path(root).expanduser().resolve() / DB_NAME
        if not db_path.is_file() or cls._blank(db_path):
            return None
        return cls.open(root)

    @classmethod
    def open_or_create(cls, root: str | os.PathLike, model: dict, sampling: dict) -> Library:
        """Open the library at ``root`` and check it was built with ``model``, or create it."""
        library = cls.open_if_exists(root)
        if library is None:
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

    @classmethod
    def _read_meta(cls, conn: sqlite3.Connection, root: Path) -> dict:
        db_path = root / DB_NAME
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError as err:
            if "no such table" not in str(err):
                raise
            meta = {}
        if not meta and db.is_blank(conn):
            raise LibraryError(
                "this library was never finished: a run was stopped while creating it",
                path=db_path, hint="rerun the same `videolens index` command; it starts the "
                "library afresh")
        return db.parse_meta(meta, db_path)

    @staticmethod
    def _quick_check(conn: sqlite3.Connection, db_path: Path) -> None:
        problems = db.quick_check(conn)
        if problems:
            raise DamagedLibraryError(
                f"the library database is damaged ({problems[0]})", path=db_path,
                hint=db.repair_hint(db_path.parent))

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

    @translated
    def close(self) -> None:
        """Close the database connection and drop memory-mapped cache files."""
        self.vectors.close()
        with self._lock:
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
        if same:
            return
        if want_name == have_name and not isinstance(model, str):
            # same name, other fingerprint: the files behind that name changed
            raise LibraryError(
                f"the model {have_name} is not the one this library was built with: its "
                f"weights changed (fingerprint {have_fp}, now {model.get('fingerprint')})",
                path=self.root,
                hint="the stored vectors came from the old weights — put the old files back, "
                     "or index into another --library (or `videolens library remove '*'` and "
                     "index again)")
        raise LibraryError(
            f"this library was built with the model {have_name}, not {want_name}",
            path=self.root,
            hint=f"use --model {have_name}, or index into another --library",
        )

    # ------------------------------------------------------------------ reading

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state. sqlite3
        errors inside become :class:`LibraryError` (damage: :class:`DamagedLibraryError`)."""
        with self._lock, db.sqlite_errors(self.db_path):
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")  # read-only: just ends the snapshot

    @translated
    def videos(self) -> list[VideoRecord]:
        """All videos, by id (oldest first)."""
        with self._lock:
            rows = self._conn.execute(_SELECT_VIDEO + " ORDER BY id").fetchall()
        return [_row_to_record(row) for row in rows]

    @translated
    def video(self, id: int) -> VideoRecord | None:
        """The video with this id, or None (never indexed, removed or re-indexed)."""
        with self._lock:
            row = self._conn.execute(_SELECT_VIDEO + " WHERE id = ?", (int(id),)).fetchone()
        return None if row is None else _row_to_record(row)

    @translated
    def video_by_path(self, path: str | os.PathLike) -> VideoRecord | None:
        """The video indexed from ``path`` (resolved to an absolute path), or None."""
        with self._lock:
            row = self._conn.execute(_SELECT_VIDEO + " WHERE path = ?",
                                     (_resolve(path),)).fetchone()
        return None if row is None else _row_to_record(row)

    @translated
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

    @translated
    def failures(self) -> dict[str, tuple[str, int, int]]:
        """Files that failed to index: path -> (reason, size in bytes, mtime_ns)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT path, reason, size, mtime_ns FROM failures ORDER BY path").fetchall()
        return {path: (reason, int(size), int(mtime)) for path, reason, size, mtime in rows}

    @translated
    def stats(self) -> dict:
        """Counts and state: ``videos``, ``frames``, ``bytes`` (on disk, whole folder),
        ``ann`` (an ANN index is in use), ``stale`` (the cache misses added or deleted
        videos), ``cached_frames``, ``tail_frames``, ``dead_frames``, ``failures``."""
        with self.snapshot() as conn:
            ids, counts = self.live_videos(conn)
            failures = conn.execute("SELECT count(*) FROM failures").fetchone()[0]
        cache = self.vectors.staleness(ids, counts)
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
            "ann": cache["ann"],
            "stale": bool(cache["tail_frames"] or cache["dead_frames"]),
            "cached_frames": cache["cached_frames"],
            "tail_frames": cache["tail_frames"],
            "dead_frames": cache["dead_frames"],
            "failures": int(failures),
            "model": self.model.get("name"),
            "schema_version": self.schema_version,
        }

    @staticmethod
    def live_videos(conn: sqlite3.Connection) -> tuple[np.ndarray, np.ndarray]:
        """(ids (V,) int64 ascending, num_frames (V,) int64) of the videos visible in the
        snapshot ``conn`` (from :meth:`snapshot`)."""
        rows = conn.execute("SELECT id, num_frames FROM videos ORDER BY id").fetchall()
        table = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return table[:, 0], table[:, 1]

    def iter_frames(self, conn: sqlite3.Connection, min_id: int | None = None,
                    with_half: bool = False) -> Iterator[tuple]:
        """Every video's ``(id, timestamps (n,) seconds, vectors (n, D) float32)`` by
        ascending id, read from the snapshot ``conn`` (from :meth:`snapshot`); with
        ``min_id`` only videos whose id is at least that (ids only grow: the new ones).
        ``with_half`` adds the stored float16 rows (n, D) as a fourth item (numpy's float16
        conversion costs ~3-7 ns a value here, so callers that store float16 skip it)."""
        where = "" if min_id is None else "WHERE f.video_id >= ? "
        cursor = conn.execute("SELECT f.video_id, f.timestamps, f.vectors FROM frames f "
                              f"JOIN videos v ON v.id = f.video_id {where}ORDER BY f.video_id",
                              () if min_id is None else (int(min_id),))
        for video_id, times_blob, vectors_blob in cursor:
            times, vectors = _decode_frames(times_blob, vectors_blob, self.embed_dim)
            if with_half:
                half = np.frombuffer(vectors_blob, VECTOR_DTYPE).reshape(-1, self.embed_dim)
                yield int(video_id), times, vectors, half
            else:
                yield int(video_id), times, vectors

    @translated
    def frames_of(self, video_ids: Collection[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Frames of many videos at once: id -> (timestamps (n,) seconds, vectors (n, D)
        float32). Unknown ids are left out."""
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        ids = [int(i) for i in video_ids]
        with self._lock:
            for start in range(0, len(ids), 500):  # SQLite caps bound parameters
                batch = ids[start : start + 500]
                marks = ",".join("?" * len(batch))
                for vid, times_blob, vectors_blob in self._conn.execute(
                        f"SELECT video_id, timestamps, vectors FROM frames "
                        f"WHERE video_id IN ({marks})", batch):
                    found[int(vid)] = _decode_frames(times_blob, vectors_blob, self.embed_dim)
        return found

    # ------------------------------------------------------------------ writing

    @contextmanager
    def writer(self, lock: WriteLock | None = None) -> Iterator[LibraryWriter]:
        """Exclusive write access: ``with library.writer() as w: w.add_video(...)``.

        LibraryError at once if another process (or another writer in this one) holds it.
        ``lock``: this folder's :class:`WriteLock`, taken earlier by the caller (who also
        releases it); without it the lock is taken and released here. A small enough
        database is quick-checked first, so nothing is written into a damaged file.
        """
        if lock is not None and (not lock.held or lock.root != self.root):
            raise ValueError(f"writer(lock=...) needs the held WriteLock of {self.root}")
        held = lock if lock is not None else WriteLock(self.root).acquire()
        writer = None
        try:
            db.remove_stale_builds(self.root)  # a create killed between link and cleanup
            if not self._checked and \
                    self.db_path.stat().st_size <= QUICK_CHECK_WRITE_MAX_BYTES:
                with self._lock, db.sqlite_errors(self.db_path):
                    self._quick_check(self._conn, self.db_path)
                self._checked = True
            with db.sqlite_errors(self.db_path):
                writer = LibraryWriter(self, db.connect(self.db_path))
            yield writer
        finally:
            if writer is not None:
                writer._closed = True
                writer._conn.close()
            if lock is None:
                held.release()

    def writer_running(self) -> bool:
        """True if some process holds the write lock (probed with a shared lock, released
        at once; a writer starting in that instant waits for it, see :meth:`writer`)."""
        lock = FileLock(self.root / LOCK_NAME)
        try:
            if lock.try_acquire(fcntl.LOCK_SH):
                lock.release()
                return False
        except OSError:
            return False
        return True

    # ------------------------------------------------------------------ vectors (delegates)

    def refresh_vectors(self, *, force_ann: bool | None = None, _wait: bool = True) -> bool:
        """Bring ``vectors/`` up to date with SQLite (incrementally when the change is small):
        :meth:`VectorIndex.refresh`."""
        return self.vectors.refresh(force_ann=force_ann, wait=_wait)

    def optimize_vectors(self, *, force_ann: bool | None = None) -> dict:
        """Rebuild ``vectors/`` in one segment, dropping deleted rows and re-tuning the
        search: :meth:`VectorIndex.optimize`."""
        return self.vectors.optimize(force_ann=force_ann)

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
        """The ``k`` frames most similar to each L2-normalised query (Q, D) or (D,), best
        first: :meth:`VectorIndex.search`."""
        return self.vectors.search(queries, k, video_ids=video_ids, exact=exact, recall=recall,
                                   query_kind=query_kind)


class LibraryWriter:
    """Writes to a library; obtained from :meth:`Library.writer` (holds the write lock)."""

    def __init__(self, library: Library, conn: sqlite3.Connection):
        self.library = library
        self._conn = conn
        self._closed = False

    @property
    def db_path(self) -> Path:
        return self.library.db_path

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise LibraryError("this writer is closed", path=self.library.root,
                               hint="use it inside `with library.writer() as writer:`")
        with db.sqlite_errors(self.db_path):
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

    def remove_videos(self, video_ids: Collection[int]) -> int:
        """Remove these videos (by id) with their frames in one transaction: all or none.
        Returns how many were removed (unknown ids are skipped)."""
        removed = 0
        with self._transaction() as conn:
            for video_id in video_ids:
                removed += conn.execute("DELETE FROM videos WHERE id = ?",
                                        (int(video_id),)).rowcount
        return removed

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
