"""The library store: SQLite round trips, search against brute force, stale caches, the
writer lock, model/schema checks, and crash safety under ``kill -9``.

No models: vectors are random unit vectors (clustered where an ANN index is measured).
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from videolens.errors import LibraryError
from videolens.library import FrameHit, Library, VideoRecord

DIM = 32
MODEL = {"name": "tiny-clip", "fingerprint": "fp-tiny", "embed_dim": DIM, "kind": "softmax"}
SAMPLING = {"kind": "rate", "fps": 1.0}
SRC = str(Path(__file__).resolve().parents[1] / "src")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def record(path: str | Path, num_frames: int | None = None, **extra) -> dict:
    values = {"path": str(path), "size": 1000, "mtime_ns": 123, "fingerprint": "abc",
              "duration": 60.0, "fps": 30.0, "width": 640, "height": 360,
              "indexed_at": time.time(), "warnings": ("late frame",)}
    if num_frames is not None:
        values["num_frames"] = num_frames
    values.update(extra)
    return values


def add_random(writer, path, n, rng, dim=DIM, centre=None, spread=0.5):
    """Add a video of ``n`` frames (1 s apart); clustered around ``centre`` if given."""
    if centre is None:
        vectors = unit(rng.standard_normal((n, dim)))
    else:
        vectors = unit(centre + spread * rng.standard_normal((n, dim)) / np.sqrt(dim))
    timestamps = np.arange(n, dtype=np.float64) + 0.5
    return writer.add_video(record(path, n), timestamps, vectors), timestamps, vectors


def brute_force(library: Library, queries: np.ndarray, k: int, video_ids=None):
    """Independent top-k: every stored frame read back through ``frames()``, one matmul."""
    owners, times, vectors = [], [], []
    for video in library.videos():
        if video_ids is not None and video.id not in video_ids:
            continue
        t, v = library.frames(video.id)
        owners += [video.id] * len(t)
        times.append(t)
        vectors.append(v)
    times, vectors, owners = np.concatenate(times), np.concatenate(vectors), np.array(owners)
    scores = queries @ vectors.T  # (Q, N)
    out = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))[:k]
        out.append([(int(owners[i]), float(times[i]), float(row[i])) for i in order])
    return out


def as_tuples(hits: list[FrameHit]):
    return [(h.video_id, h.timestamp, h.score) for h in hits]


def assert_same_hits(got: list[list[FrameHit]], want) -> None:
    for g, w in zip(got, want, strict=True):
        assert [(h.video_id, h.timestamp) for h in g] == [(v, t) for v, t, _ in w]
        np.testing.assert_allclose([h.score for h in g], [s for _, _, s in w], atol=1e-5)


@pytest.fixture
def library(tmp_path):
    lib = Library.create(tmp_path / "lib", MODEL, SAMPLING)
    lib.vectors.auto_refresh = False  # tests below decide when the cache is rebuilt
    yield lib
    lib.close()


def test_round_trip(library, tmp_path):
    rng = np.random.default_rng(0)
    with library.writer() as writer:
        vid, times, vectors = add_random(writer, tmp_path / "a.mp4", 7, rng)
    video = library.video(vid)
    assert isinstance(video, VideoRecord)
    assert video.path == str((tmp_path / "a.mp4").resolve())
    assert (video.num_frames, video.width, video.duration) == (7, 640, 60.0)
    assert video.warnings == ("late frame",)
    assert library.video_by_path(tmp_path / "a.mp4") == video
    assert library.videos() == [video]
    got_times, got_vectors = library.frames(vid)
    assert got_times.dtype == np.float64 and got_vectors.dtype == np.float32
    np.testing.assert_array_equal(got_times, times)
    np.testing.assert_allclose(got_vectors, vectors, atol=1e-3)  # stored as float16
    reopened = Library.open(library.root)
    assert reopened.model == MODEL and reopened.sampling == SAMPLING
    assert reopened.videos() == [video]
    reopened.close()
    stats = library.stats()
    assert (stats["videos"], stats["frames"]) == (1, 7) and stats["bytes"] > 0


def test_reindex_replaces_with_new_id_and_remove(library, tmp_path):
    rng = np.random.default_rng(1)
    with library.writer() as writer:
        writer.record_failure(tmp_path / "a.mp4", "broken", 10, 20)
        assert library.failures() == {str((tmp_path / "a.mp4").resolve()): ("broken", 10, 20)}
        first, _, _ = add_random(writer, tmp_path / "a.mp4", 5, rng)
        assert library.failures() == {}  # indexing the file clears its failure
        add_random(writer, tmp_path / "b.mp4", 3, rng)
        second, _, _ = add_random(writer, tmp_path / "a.mp4", 4, rng)
        assert second > first
        assert library.video(first) is None
        with pytest.raises(LibraryError):
            library.frames(first)
        paths = [v.path for v in library.videos()]
        assert sorted(paths) == sorted(set(paths)) and len(paths) == 2
        assert library.video_by_path(tmp_path / "a.mp4").num_frames == 4
        assert writer.remove_video(tmp_path / "a.mp4") is True
        assert writer.remove_video(tmp_path / "a.mp4") is False
    assert [v.path for v in library.videos()] == [str((tmp_path / "b.mp4").resolve())]
    conn = sqlite3.connect(library.root / "library.sqlite")
    assert conn.execute("SELECT count(*) FROM frames").fetchone()[0] == 1  # cascade
    conn.close()


def test_add_video_rejects_bad_input(library, tmp_path):
    rng = np.random.default_rng(2)
    with library.writer() as writer:
        with pytest.raises(ValueError, match="L2-normalised"):
            writer.add_video(record(tmp_path / "a.mp4"), np.arange(3.0),
                             2 * unit(rng.standard_normal((3, DIM))))
        with pytest.raises(ValueError, match="must be"):
            writer.add_video(record(tmp_path / "a.mp4"), np.arange(3.0),
                             unit(rng.standard_normal((3, DIM + 1))))
        with pytest.raises(ValueError, match="num_frames"):
            writer.add_video(record(tmp_path / "a.mp4", 5), np.arange(3.0),
                             unit(rng.standard_normal((3, DIM))))
    assert library.videos() == []


@pytest.mark.parametrize("cached", [False, True])
def test_exact_search_equals_brute_force(library, tmp_path, cached):
    rng = np.random.default_rng(3)
    with library.writer() as writer:
        for i in range(30):
            add_random(writer, tmp_path / f"{i}.mp4", int(rng.integers(1, 40)), rng)
    if cached:
        library.refresh_vectors()
        assert library.stats()["stale"] is False
    queries = unit(rng.standard_normal((5, DIM)))
    for k in (1, 10, 2000):  # 2000 > number of frames: everything, ranked
        assert_same_hits(library.search(queries, k, exact=True), brute_force(library, queries, k))
    assert library.search(queries[0], 3)[0] == library.search(queries[:1], 3)[0]
    assert library.search(queries, 0) == [[]] * 5


def test_ann_recall(library, tmp_path):
    """~20k clustered vectors with a forced IVF index: recall@10 >= 0.95 against exact."""
    rng = np.random.default_rng(4)
    dim = DIM
    centres = unit(rng.standard_normal((200, dim)))
    with library.writer() as writer:
        for i in range(100):  # 100 videos x 200 frames, each video around a few centres
            vectors = unit(centres[rng.integers(0, 200, 200)]
                           + 0.6 * rng.standard_normal((200, dim)) / np.sqrt(dim))
            writer.add_video(record(tmp_path / f"{i}.mp4", 200), np.arange(200.0), vectors)
    library.refresh_vectors(force_ann=True)
    assert library.stats()["ann"] is True
    queries = unit(centres[rng.integers(0, 200, 100)]
                   + 0.6 * rng.standard_normal((100, dim)) / np.sqrt(dim))
    exact = library.search(queries, 10, exact=True)
    approx = library.search(queries, 10, exact=False)
    recall = np.mean([len({(h.video_id, h.timestamp) for h in a}
                          & {(h.video_id, h.timestamp) for h in e}) / 10
                      for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.95, recall
    # re-scored exactly: the approximate scores are the true cosines
    for hits in approx:
        for hit in hits[:2]:
            times, vectors = library.frames(hit.video_id)
            row = int(np.flatnonzero(times == hit.timestamp)[0])
            assert hit.score == pytest.approx(float(vectors[row] @ queries[approx.index(hits)]),
                                              abs=1e-4)
    # automatic choice: ANN only at or above the threshold
    library.vectors.ann_min_vectors = 10_000
    assert as_tuples(library.search(queries[:3], 10)[0]) == as_tuples(approx[0])
    # a selective filter (200 rows < threshold) is answered exactly over those rows ...
    few = [library.videos()[5].id]
    filtered = library.search(queries[:3], 10, video_ids=few)
    assert_same_hits(filtered, brute_force(library, queries[:3], 10, video_ids=set(few)))
    # ... and, forced through the ANN index, still gives k hits from those videos only
    forced = library.search(queries[:3], 10, video_ids=few, exact=False)
    assert all(len(hits) == 10 and {h.video_id for h in hits} == set(few) for hits in forced)


def test_stale_cache_tail_and_deleted(library, tmp_path):
    rng = np.random.default_rng(5)
    with library.writer() as writer:
        for i in range(10):
            add_random(writer, tmp_path / f"{i}.mp4", 20, rng)
    library.refresh_vectors()
    queries = unit(rng.standard_normal((4, DIM)))
    with library.writer() as writer:
        # added after the refresh: only in SQLite (the tail)
        new_id, _, new_vectors = add_random(writer, tmp_path / "new.mp4", 20, rng)
        removed = library.video_by_path(tmp_path / "3.mp4").id
        writer.remove_video(tmp_path / "3.mp4")
        replaced_old = library.video_by_path(tmp_path / "5.mp4").id
        replaced_new, _, _ = add_random(writer, tmp_path / "5.mp4", 20, rng)
        stats = library.stats()
        assert stats["stale"] and stats["tail_frames"] == 40 and stats["dead_frames"] == 40
        # a query equal to a new frame must find it first
        probe = new_vectors[7][None].copy()
        hits = library.search(probe, 1)[0]
        assert (hits[0].video_id, hits[0].timestamp) == (new_id, 7.5)
        for exact in (True, None):
            results = library.search(queries, 300, exact=exact)
            seen = {h.video_id for hits in results for h in hits}
            assert removed not in seen and replaced_old not in seen
            assert {new_id, replaced_new} <= seen
            assert_same_hits(results, brute_force(library, queries, 300))
    library.refresh_vectors(force_ann=True)  # ANN with deleted rows after another change
    with library.writer() as writer:
        writer.remove_video(tmp_path / "7.mp4")
    assert_same_hits(library.search(queries, 50, exact=False), brute_force(library, queries, 50))
    # losing the cache is harmless: everything comes from SQLite
    shutil.rmtree(library.root / "vectors")
    assert_same_hits(library.search(queries, 50), brute_force(library, queries, 50))


def test_auto_refresh_when_tail_is_big(library, tmp_path):
    rng = np.random.default_rng(6)
    library.vectors.auto_refresh = True
    library.vectors.refresh_min_stale_rows = 10
    with library.writer() as writer:
        for i in range(5):
            add_random(writer, tmp_path / f"{i}.mp4", 20, rng)
        queries = unit(rng.standard_normal((2, DIM)))
        library.search(queries, 5)  # a writer is running: it will refresh, search does not
        assert library.stats()["stale"]
    assert_same_hits(library.search(queries, 5), brute_force(library, queries, 5))
    assert not library.stats()["stale"]


def test_video_ids_filter(library, tmp_path):
    rng = np.random.default_rng(7)
    with library.writer() as writer:
        ids = [add_random(writer, tmp_path / f"{i}.mp4", 15, rng)[0] for i in range(12)]
    library.refresh_vectors()
    with library.writer() as writer:  # one filtered video in the tail too
        ids.append(add_random(writer, tmp_path / "tail.mp4", 15, rng)[0])
    queries = unit(rng.standard_normal((3, DIM)))
    chosen = {ids[1], ids[2], ids[7], ids[-1]}
    results = library.search(queries, 20, video_ids=chosen)
    assert all(h.video_id in chosen for hits in results for h in hits)
    assert_same_hits(results, brute_force(library, queries, 20, video_ids=chosen))
    assert library.search(queries, 5, video_ids=[]) == [[], [], []]
    assert library.search(queries, 5, video_ids=[10**9]) == [[], [], []]


def test_second_writer_is_refused(library, tmp_path):
    with library.writer():
        # a second open file description conflicts even in the same process
        other = Library.open(library.root)
        with pytest.raises(LibraryError, match=r"another videolens process \(pid \d+\)"):
            with other.writer():
                pass
        other.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {SRC!r})
            from videolens.library import Library
            with Library.open({str(library.root)!r}).writer():
                print("locked", flush=True)
                time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LibraryError) as err:
            with library.writer():
                pass
        assert f"pid {holder.pid}" in str(err.value) and "another --library" in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    with library.writer():  # the OS dropped the dead process's lock
        pass


def test_model_check(library, tmp_path):
    library.check_model(MODEL)
    library.check_model("fp-tiny")
    library.check_model({"name": "renamed", "fingerprint": "fp-tiny", "embed_dim": DIM})
    with pytest.raises(LibraryError, match="tiny-clip, not other"):
        library.check_model({"name": "other", "fingerprint": "fp-other", "embed_dim": DIM})
    with pytest.raises(LibraryError, match="tiny-clip"):
        Library.open_or_create(library.root, {**MODEL, "name": "other", "fingerprint": "x"},
                               SAMPLING)
    same = Library.open_or_create(library.root, MODEL, SAMPLING)
    same.close()
    with pytest.raises(LibraryError, match="already exists"):
        Library.create(library.root, MODEL, SAMPLING)
    fresh = Library.open_or_create(tmp_path / "fresh", MODEL, SAMPLING)
    assert fresh.model == MODEL
    fresh.close()


def test_missing_and_newer_schema(tmp_path):
    with pytest.raises(LibraryError, match="no videolens library here") as err:
        Library.open(tmp_path / "nothing")
    assert "videolens index" in str(err.value)
    Library.create(tmp_path / "lib", MODEL, SAMPLING).close()
    conn = sqlite3.connect(tmp_path / "lib" / "library.sqlite")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(LibraryError, match="newer videolens") as err:
        Library.open(tmp_path / "lib")
    assert "upgrade" in str(err.value)


def test_migration_hook(tmp_path, monkeypatch):
    from videolens.library import store

    Library.create(tmp_path / "lib", MODEL, SAMPLING).close()
    monkeypatch.setattr(store, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(store.MIGRATIONS, 1, lambda conn: conn.execute(
        "ALTER TABLE videos ADD COLUMN note TEXT"))
    with Library.open(tmp_path / "lib") as lib:
        assert lib.schema_version == 2
    conn = sqlite3.connect(tmp_path / "lib" / "library.sqlite")
    assert "note" in [row[1] for row in conn.execute("PRAGMA table_info(videos)")]
    conn.close()


CRASH_WRITER = """
import sys
import numpy as np
sys.path.insert(0, {src!r})
from videolens.library import Library
lib = Library.open({root!r})
rng = np.random.default_rng()
with lib.writer() as writer:
    for i in range(100000):
        n = int(rng.integers(100, 600))
        vectors = rng.standard_normal((n, {dim})).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        path = "/videos/%d.mp4" % (i % 25)  # re-indexing: delete + insert in one transaction
        writer.add_video(dict(path=path, size=n, mtime_ns=i, fingerprint="f", duration=n,
                              fps=1.0, width=1, height=1, num_frames=n, indexed_at=0.0),
                         np.arange(n, dtype=np.float64), vectors)
        print(i, flush=True)
"""


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_9_mid_write_leaves_whole_videos(tmp_path, seed):
    dim = 512  # realistic blob sizes (up to 600 KB a video) so the kill lands mid-commit
    root = tmp_path / "lib"
    Library.create(root, {**MODEL, "embed_dim": dim}, SAMPLING).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER.format(src=SRC, root=str(root), dim=dim)],
        stdout=subprocess.PIPE, text=True)
    try:
        rng = np.random.default_rng(seed)
        for _ in range(int(rng.integers(3, 40))):  # wait for some commits
            assert proc.stdout.readline()
        time.sleep(float(rng.uniform(0, 0.05)))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with Library.open(root) as lib:
        conn = sqlite3.connect(root / "library.sqlite")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        orphans = conn.execute("SELECT count(*) FROM videos v LEFT JOIN frames f "
                               "ON f.video_id = v.id WHERE f.video_id IS NULL").fetchone()[0]
        conn.close()
        assert orphans == 0
        videos = lib.videos()
        assert videos and len({v.path for v in videos}) == len(videos)
        for video in videos:
            times, vectors = lib.frames(video.id)
            assert len(times) == len(vectors) == video.num_frames == video.size
        with lib.writer() as writer:  # no stale lock
            writer.remove_video(videos[0].path)
        lib.refresh_vectors()
        assert lib.stats()["stale"] is False


def test_empty_library_and_noop_refresh(library, tmp_path):
    rng = np.random.default_rng(8)
    queries = unit(rng.standard_normal((2, DIM)))
    assert library.search(queries, 5) == [[], []]
    assert library.refresh_vectors(force_ann=True) is True
    assert library.search(queries, 5) == [[], []]
    with library.writer() as writer:
        add_random(writer, tmp_path / "a.mp4", 5, rng)
    assert library.refresh_vectors() is True
    assert library.refresh_vectors() is False  # nothing changed: the generation is kept
    generations = [p for p in (library.root / "vectors").iterdir() if p.name.startswith("gen-")]
    assert len(generations) == 2  # the current one and the one before (readers may hold it)
