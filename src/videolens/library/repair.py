"""Check a library folder, and repair what can be rebuilt: ``videolens library check``.

:func:`check_library` reads the database without trusting it — ``PRAGMA integrity_check``,
the metadata, every video row with its frames (blob sizes, finite values, unit vectors) —
and validates the vector cache file by file (checksums) and row by row against SQLite.

With ``repair=True`` (under the write lock) a damaged database is rebuilt: every readable,
sound video row is copied with its id into a fresh database built aside (the same atomic
build as a new library), the damaged file is kept as ``library.sqlite.damaged-<time>`` (with
its ``-wal``), the fresh one is renamed into place, and ``vectors/`` is rebuilt. Videos that
could not be read are listed; ``videolens index`` over the same folders adds them back.
A library whose model or sampling metadata is unreadable cannot be repaired (the vectors
cannot be interpreted): it says so.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LibraryError
from . import ann, db
from .locks import WriteLock
from .store import (
    _RECORD_FIELDS,
    NORM_TOLERANCE,
    SCHEMA_VERSION,
    TIME_DTYPE,
    VECTOR_DTYPE,
    VECTORS_DIR,
    Library,
)

_COLUMNS = ("id",) + _RECORD_FIELDS
# ids skipped after a repair that lost video rows it could not read (ids are int64; web
# pages and thumbnails key on them, so an id must never come back meaning another video)
ID_GAP_AFTER_LOSS = 1 << 20


@dataclass
class VideoProblem:
    """A video row that is unusable: ``id`` and ``path`` as far as they could be read."""

    id: int | None
    path: str | None
    reason: str

    def to_json(self) -> dict:
        return {"id": self.id, "path": self.path, "reason": self.reason}


@dataclass
class CheckReport:
    """What :func:`check_library` found (and, after a repair, what it did).

    ``database``: SQLite's complaints (empty when the file is sound). ``meta``: why the
    metadata is unusable, or None. ``videos``/``frames``: sound videos and their frames.
    ``unreadable``: video rows lost to damage (their ids and paths cannot be read).
    ``cache``: ``"ok"``, ``"missing"``, ``"stale"`` (videos added or removed since it was
    built; search handles that) or ``"damaged: ..."``. After a repair the report describes
    the repaired library; ``lost`` lists the videos that could not be kept.
    """

    library: str
    database: list[str] = field(default_factory=list)
    meta: str | None = None
    model: dict | None = None
    videos: int = 0
    frames: int = 0
    failures: int = 0
    bad_videos: list[VideoProblem] = field(default_factory=list)
    unreadable: int = 0
    cache: str = "missing"
    repaired: bool = False
    damaged_copy: str | None = None
    actions: list[str] = field(default_factory=list)
    lost: list[VideoProblem] = field(default_factory=list)
    lost_unreadable: int = 0

    @property
    def database_ok(self) -> bool:
        return not self.database and self.meta is None and not self.bad_videos \
            and not self.unreadable

    @property
    def ok(self) -> bool:
        """Sound as it stands: database, metadata and cache (a stale cache is fine)."""
        return self.database_ok and not self.cache.startswith("damaged")

    def to_json(self) -> dict:
        return {
            "library": self.library, "ok": self.ok, "database": self.database,
            "meta": self.meta, "model": self.model, "videos": self.videos,
            "frames": self.frames, "failures": self.failures,
            "bad_videos": [v.to_json() for v in self.bad_videos],
            "unreadable": self.unreadable, "cache": self.cache, "repaired": self.repaired,
            "damaged_copy": self.damaged_copy, "actions": self.actions,
            "lost": [v.to_json() for v in self.lost], "lost_unreadable": self.lost_unreadable,
        }


def check_library(root: str | os.PathLike, *, repair: bool = False) -> CheckReport:
    """Check the library at ``root``; with ``repair``, rebuild what can be rebuilt.

    Raises LibraryError when there is no library, when another process is writing (repair
    only), or when the damage cannot be repaired (unreadable model/sampling metadata).
    """
    root = Path(root).expanduser().resolve()
    db_path = root / db.DB_NAME
    if not db_path.is_file():
        raise LibraryError("no videolens library here", path=root,
                           hint="run `videolens index PATH` first")
    if not repair:
        return _inspect(root)
    with WriteLock(root, "library repair"):
        report = _inspect(root)
        if report.meta is not None:
            raise LibraryError(
                f"cannot repair: {report.meta}", path=db_path,
                hint="without the model and sampling the vectors cannot be read; keep the file "
                     "if you need it and index the videos again into a new --library")
        actions, damaged_copy = [], None
        if not report.database_ok:
            damaged_copy = _rebuild_database(root, report)
            lost = len(report.bad_videos) + report.unreadable
            actions.append(f"rebuilt library.sqlite with {report.videos} videos"
                           + (f" ({lost} could not be kept)" if lost else "")
                           + f"; the damaged file is kept as {damaged_copy.name}")
        if report.cache not in ("ok", "stale") or actions:
            shutil.rmtree(root / VECTORS_DIR, ignore_errors=True)
            with Library.open(root) as library:
                library.refresh_vectors()
            actions.append("rebuilt vectors/ from library.sqlite")
        if not actions:
            return report
        final = _inspect(root)
        final.actions, final.repaired = actions, True
        final.damaged_copy = None if damaged_copy is None else str(damaged_copy)
        final.lost, final.lost_unreadable = report.bad_videos, report.unreadable
    return final


# ------------------------------------------------------------------ inspecting


@contextmanager
def _readable(db_path: Path, report: CheckReport) -> Iterator[sqlite3.Connection | None]:
    """A connection to read ``db_path`` from, or None (``report`` says why).

    A truncated file (shorter than its header's page count, e.g. a copy cut short or a full
    disk) is unreadable to SQLite as it is; a private copy whose header counts only the pages
    present can be read, and the rows on the pages that are left are salvaged.
    """
    conn = None
    salvage = None
    try:
        conn = db.connect(db_path)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as err:
        if conn is not None:
            conn.close()
        conn = None
        salvage = _truncated_copy(db_path)
        if salvage is None:
            report.database.append(f"cannot be read at all: {err}")
            report.meta = f"the database cannot be read ({err})"
        else:
            report.database.append(f"truncated: {salvage[1]}")
            try:
                conn = db.connect(salvage[0])
            except sqlite3.Error as again:
                report.meta = f"the database cannot be read ({again})"
    try:
        yield conn
    finally:
        if conn is not None:
            conn.close()
        if salvage is not None:
            for suffix in ("", "-wal", "-shm"):
                salvage[0].with_name(salvage[0].name + suffix).unlink(missing_ok=True)


def _truncated_copy(db_path: Path) -> tuple[Path, str] | None:
    """A copy of a truncated database with its header's page count fixed, or None if the
    file is not a truncated SQLite database."""
    try:
        with open(db_path, "rb") as handle:
            header = handle.read(100)
        size = db_path.stat().st_size
    except OSError:
        return None
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return None
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    declared = struct.unpack(">I", header[28:32])[0]
    present = size // page_size
    if not page_size or present >= declared or present == 0:
        return None
    copy = db.temp_name(db_path.parent)  # removed by remove_stale_builds if we are killed
    shutil.copyfile(db_path, copy)
    wal = db_path.with_name(db_path.name + "-wal")
    if wal.exists():  # committed pages not yet in the main file
        shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
    with open(copy, "r+b") as handle:
        handle.truncate(present * page_size)
        handle.seek(28)
        handle.write(struct.pack(">I", present))
    return copy, f"{present} of {declared} pages present"


def _inspect(root: Path) -> CheckReport:
    db_path = root / db.DB_NAME
    report = CheckReport(library=str(root))
    with _readable(db_path, report) as conn:
        if conn is not None:
            _inspect_database(root, conn, report)
    return report


def _inspect_database(root: Path, conn: sqlite3.Connection, report: CheckReport) -> None:
    db_path = root / db.DB_NAME
    try:
        report.database += [m for m in _pragma(conn, "integrity_check(20)") if m != "ok"]
        report.database += [f"frames row of video {row[1]} has no video row"
                            for row in conn.execute("PRAGMA foreign_key_check")]
    except sqlite3.Error as err:
        report.database.append(str(err))
    meta = _read_meta(conn, db_path, report)
    if meta is None:
        report.videos = _count(conn, "videos")
        return
    report.model = meta["model"]
    dim = int(meta["model"]["embed_dim"])
    cache = _load_cache_for_check(root, meta, report)
    for item in _scan_videos(conn, dim, report):
        report.videos += 1
        report.frames += len(item[1])
        if cache is not None:
            _compare_with_cache(cache, item, report)
    report.failures = _count(conn, "failures")
    if cache is not None and report.cache == "ok":
        cached = set(cache.video_ids.tolist()) - set(cache.tombstones.tolist())
        live = {int(i) for i in _live_ids(conn)}
        if cached != live:
            report.cache = "stale"


def _pragma(conn: sqlite3.Connection, pragma: str) -> list[str]:
    """A checking pragma's messages, one per line, without SQLite's section headers."""
    lines = [line for row in conn.execute(f"PRAGMA {pragma}") for line in str(row[0]).split("\n")]
    return [line for line in lines if line and not line.startswith("*** in database")]


def _count(conn: sqlite3.Connection, table: str) -> int:
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.Error:
        return 0


def _live_ids(conn: sqlite3.Connection) -> list[int]:
    try:
        return [row[0] for row in conn.execute("SELECT id FROM videos")]
    except sqlite3.Error:
        return []


def _read_meta(conn: sqlite3.Connection, db_path: Path, report: CheckReport) -> dict | None:
    """Parsed metadata, or None with ``report.meta`` saying why. A garbled schema_version
    alone is not fatal: the tables say which schema this is."""
    try:
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as err:
        report.meta = f"the meta table cannot be read ({err})"
        return None
    if not rows:
        report.meta = "no metadata: a create was stopped midway (rerun `videolens index`)"
        return None
    try:
        return db.parse_meta(rows, db_path)
    except LibraryError as err:
        try:
            meta = db.parse_meta({**rows, "schema_version": str(SCHEMA_VERSION)}, db_path)
        except LibraryError:
            report.meta = err.message
            return None
        report.database.append(f"schema_version is {rows.get('schema_version')!r}")
        return meta


def _rows_after(conn: sqlite3.Connection, sql: str, last: int, upper: int
                ) -> Iterator[tuple]:
    """Rows of ``sql`` (``... WHERE id > ? ORDER BY id``) from ``last`` on, stepping over
    stretches of ids SQLite cannot read. Yields ``(row,)`` or ``(None, skipped_from)`` when
    a stretch is skipped."""
    while True:
        try:
            for row in conn.execute(sql, (last,)):
                last = int(row[0])
                yield (row,)
            return
        except sqlite3.DatabaseError:
            pass
        # probe ids ever further ahead until a read succeeds, or give up past ``upper``
        step, resumed = 1, False
        while last + step <= upper:
            try:
                found = conn.execute(sql.replace("id > ?", "id >= ?") + " LIMIT 1",
                                     (last + step,)).fetchone()
            except sqlite3.DatabaseError:
                step *= 2
                continue
            yield (None, last)
            if found is None:
                return
            last, resumed = int(found[0]) - 1, True
            break
        if not resumed:
            yield (None, last)
            return


def _max_id(conn: sqlite3.Connection) -> int:
    for sql in ("SELECT max(id) FROM videos",
                "SELECT seq FROM sqlite_sequence WHERE name = 'videos'"):
        try:
            row = conn.execute(sql).fetchone()
            if row and row[0] is not None:
                return int(row[0]) + 1
        except sqlite3.Error:
            continue
    return 1 << 31


def _scan_videos(conn: sqlite3.Connection, dim: int, report: CheckReport
                 ) -> Iterator[tuple[tuple, np.ndarray, np.ndarray]]:
    """Every readable, sound video: ``(row (id + record fields), timestamps (n,), vectors
    (n, D) float32)``. Unusable rows go to ``report.bad_videos``, lost stretches to
    ``report.unreadable``."""
    sql = f"SELECT {', '.join(_COLUMNS)} FROM videos WHERE id > ? ORDER BY id"
    upper = _max_id(conn)
    for item in _rows_after(conn, sql, 0, upper):
        if item[0] is None:
            report.unreadable += 1
            continue
        row = item[0]
        video_id, path = int(row[0]), row[1]
        try:
            frames = conn.execute("SELECT timestamps, vectors FROM frames WHERE video_id = ?",
                                  (video_id,)).fetchone()
        except sqlite3.DatabaseError as err:
            report.bad_videos.append(VideoProblem(video_id, path, f"frames unreadable ({err})"))
            continue
        problem = None
        if frames is None:
            problem = "no frames stored"
        else:
            problem = _frames_problem(frames[0], frames[1], dim, int(row[9]))
        if problem:
            report.bad_videos.append(VideoProblem(video_id, path, problem))
            continue
        times = np.frombuffer(frames[0], TIME_DTYPE).astype(np.float64)
        vectors = np.frombuffer(frames[1], VECTOR_DTYPE).reshape(-1, dim).astype(np.float32)
        yield row, times, vectors


def _frames_problem(times_blob: bytes, vectors_blob: bytes, dim: int, num_frames: int
                    ) -> str | None:
    if not isinstance(times_blob, bytes) or not isinstance(vectors_blob, bytes):
        return "frame data of the wrong type"
    n = len(times_blob) // TIME_DTYPE.itemsize
    if len(times_blob) % TIME_DTYPE.itemsize or n != num_frames:
        return f"{n} timestamps stored, {num_frames} recorded"
    if len(vectors_blob) != n * dim * VECTOR_DTYPE.itemsize:
        return f"{len(vectors_blob)} bytes of vectors for {n} frames of {dim}-d"
    times = np.frombuffer(times_blob, TIME_DTYPE)
    vectors = np.frombuffer(vectors_blob, VECTOR_DTYPE).reshape(-1, dim).astype(np.float32)
    if not (np.isfinite(times).all() and np.isfinite(vectors).all()):
        return "timestamps or vectors are not finite"
    if n and np.abs(np.linalg.norm(vectors, axis=1) - 1).max() > NORM_TOLERANCE:
        return "vectors are not unit vectors (damaged bytes)"
    return None


def _load_cache_for_check(root: Path, meta: dict, report: CheckReport
                          ) -> ann.VectorCache | None:
    vectors_dir = root / VECTORS_DIR
    manifest = ann.read_manifest(vectors_dir)
    if manifest is None:
        exists = (vectors_dir / ann.MANIFEST).exists()
        report.cache = "damaged: manifest.json is unreadable or outdated" if exists else "missing"
        return None
    try:
        cache = ann.load_cache(vectors_dir, manifest)
    except (OSError, ValueError) as err:
        report.cache = f"damaged: {err}"
        return None
    if manifest.get("dim") != meta["model"]["embed_dim"]:
        report.cache = "damaged: built for another vector size"
        return None
    bad = ann.verify_files(vectors_dir, manifest)
    if bad:
        report.cache = f"damaged: {', '.join(bad)} do not match their checksums"
        return None
    report.cache = "ok"
    return cache


def _compare_with_cache(cache: ann.VectorCache, item: tuple, report: CheckReport) -> None:
    if report.cache != "ok":
        return
    row, times, vectors = item
    i = int(np.searchsorted(cache.video_ids, int(row[0])))
    if i >= len(cache.video_ids) or cache.video_ids[i] != int(row[0]):
        return  # added since the build: staleness, found afterwards
    cached_times, cached_vectors = cache.video_frames(i)
    if not (np.array_equal(cached_times, times) and np.array_equal(cached_vectors, vectors)):
        report.cache = f"damaged: video {int(row[0])} differs from library.sqlite"


# ------------------------------------------------------------------ repairing


def _rebuild_database(root: Path, report: CheckReport) -> Path:
    """Copy every sound video (with its id), the failures and the metadata into a fresh
    database, keep the damaged file aside, and put the fresh one in its place. Returns the
    damaged copy's path."""
    db_path = root / db.DB_NAME
    with _readable(db_path, CheckReport(library="")) as source:
        if source is None:
            raise LibraryError("the database cannot be read", path=db_path,
                               hint="index the videos again into a new --library")
        raw_meta = dict(source.execute("SELECT key, value FROM meta").fetchall())
        meta = db.parse_meta({**raw_meta, "schema_version": str(SCHEMA_VERSION)}, db_path)
        dim = int(meta["model"]["embed_dim"])
        rows_meta = {key: str(value) for key, value in raw_meta.items()}
        rows_meta["schema_version"] = str(SCHEMA_VERSION)
        rows_meta["repaired_at"] = repr(time.time())
        built = db.temp_name(root)
        try:
            db.build_database(built, rows_meta)
            target = sqlite3.connect(built, isolation_level=None)
            try:
                kept = _copy_content(source, target, dim)
            finally:
                target.close()
            stamp = time.strftime("%Y%m%d-%H%M%S")
            aside = db_path.with_name(f"{db.DB_NAME}.damaged-{stamp}")
            _keep_aside(db_path, aside)
            source.close()
            db.install_database(built, db_path, replace=True)
        finally:
            built.unlink(missing_ok=True)
    report.videos = kept
    return aside


def _copy_content(source: sqlite3.Connection, target: sqlite3.Connection, dim: int) -> int:
    scan = CheckReport(library="")
    columns = ", ".join(_COLUMNS)
    marks = ", ".join("?" * len(_COLUMNS))
    kept = 0
    max_seq = 0
    target.execute("BEGIN IMMEDIATE")
    try:
        for row, times, vectors in _scan_videos(source, dim, scan):
            cursor = target.execute(f"INSERT OR IGNORE INTO videos ({columns}) VALUES ({marks})",
                                    row)
            if cursor.rowcount != 1:
                continue  # a second row with the same path (damaged unique index)
            target.execute("INSERT INTO frames (video_id, timestamps, vectors) VALUES (?, ?, ?)",
                           (int(row[0]), times.astype(TIME_DTYPE).tobytes(),
                            vectors.astype(VECTOR_DTYPE).tobytes()))
            kept += 1
            max_seq = max(max_seq, int(row[0]))
        max_seq = max([max_seq] + [p.id for p in scan.bad_videos if p.id is not None])
        try:
            seq = source.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'videos'").fetchone()
            max_seq = max(max_seq, int(seq[0]) if seq else 0)
        except sqlite3.Error:
            pass
        if scan.unreadable:
            # rows were lost unseen: their ids are unknown, so leave a wide gap after the
            # highest one seen rather than risk handing a lost video's id to a new one
            max_seq += ID_GAP_AFTER_LOSS
        # ids are never reused: the next video gets a new id even after the repair
        # (sqlite_sequence has no unique key: update the row the inserts made, if any)
        if target.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'videos'",
                          (max_seq,)).rowcount == 0:
            target.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('videos', ?)",
                           (max_seq,))
        try:
            for row in source.execute("SELECT path, reason, size, mtime_ns, at FROM failures"):
                target.execute("INSERT OR IGNORE INTO failures VALUES (?, ?, ?, ?, ?)", row)
        except sqlite3.Error:
            pass  # failures are a memo of files to skip; losing some means retrying them
        target.execute("COMMIT")
    except BaseException:
        if target.in_transaction:
            target.execute("ROLLBACK")
        raise
    return kept


def _keep_aside(db_path: Path, aside: Path) -> None:
    """Keep the damaged database (and its WAL, which holds committed pages) under ``aside``,
    as a second link where possible (the original stays in place until replaced)."""
    for suffix in ("", "-wal"):
        path = db_path.with_name(db_path.name + suffix)
        if not path.exists():
            continue
        copy = aside.with_name(aside.name + suffix)
        try:
            os.link(path, copy)
        except OSError:
            shutil.copy2(path, copy)


__all__ = ["CheckReport", "VideoProblem", "check_library"]
