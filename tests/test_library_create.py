"""Creating a library survives every kill (issue 12 item 4), and the writer lock is taken
before anything slow so a second writer hears the true reason at once (item 7)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from library_synth import DIM, MODEL, SAMPLING, unit

from videolens.cli import main
from videolens.errors import LibraryError, ModelLoadError
from videolens.library import Library, WriteLock
from videolens.pipelines.index import index

SRC = str(Path(__file__).resolve().parents[1] / "src")

CREATOR = """
import sys
sys.path.insert(0, {src!r})
from videolens.library import Library
model = {{"name": "tiny-clip", "fingerprint": "fp-tiny", "embed_dim": {dim}, "kind": "softmax"}}
print("ready", flush=True)
sys.stdin.readline()
for i in range(1000):
    Library.create({base!r} + "/lib%03d" % i, model, {{"kind": "rate", "fps": 1.0}}).close()
"""


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_9_while_creating_libraries_leaves_none_or_whole(tmp_path, seed):
    """A process creates libraries back to back and is killed at a random moment: every
    folder it touched holds no database, or a whole library, and "rerun" (open_or_create,
    what index does) always works. Before the atomic create, 11 of 30 such kills left a
    database without tables that the rerun refused ("not a videolens library")."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CREATOR.format(src=SRC, dim=DIM, base=str(tmp_path))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(float(np.random.default_rng(seed).uniform(0.05, 0.4)))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    folders = sorted(tmp_path.glob("lib*"))
    assert folders, "the creator was killed before it started: nothing was exercised"
    whole = 0
    for folder in folders:
        database = folder / "library.sqlite"
        if database.exists():  # whole: tables and metadata, never a bare file
            conn = sqlite3.connect(database)
            keys = {row[0] for row in conn.execute("SELECT key FROM meta")}
            conn.close()
            assert {"schema_version", "model", "sampling"} <= keys
            whole += 1
        with Library.open_or_create(folder, MODEL, SAMPLING) as library:
            assert library.model == MODEL and library.videos() == []
            with library.writer():
                pass
        # the temporary database of the killed create is gone once the rerun writes
        assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
    assert whole >= len(folders) - 1  # at most the one being created when killed was empty


def _blank_wal_database(path: Path) -> None:
    """What the old create left when killed after setting WAL mode, before its tables."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


@pytest.mark.parametrize("state", ["empty file", "wal, no tables", "tables, no metadata"])
def test_half_created_library_initialises_itself(tmp_path, state):
    root = tmp_path / "lib"
    root.mkdir()
    database = root / "library.sqlite"
    if state == "empty file":
        database.write_bytes(b"")
    elif state == "wal, no tables":
        _blank_wal_database(database)
    else:
        conn = sqlite3.connect(database)
        conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                           "CREATE TABLE videos (id INTEGER PRIMARY KEY, path TEXT);")
        conn.close()
    # a reader is told to rerun the index command, in one line
    with pytest.raises(LibraryError) as err:
        Library.open(root)
    assert "never finished" in err.value.message
    assert "rerun the same `videolens index` command" in str(err.value)
    assert Library.open_if_exists(root) is None
    # the rerun creates the library in place
    with Library.open_or_create(root, MODEL, SAMPLING) as library:
        with library.writer() as writer:
            writer.add_video({"path": "/v/a.mp4", "size": 1, "mtime_ns": 1, "fingerprint": "f",
                              "duration": 2.0, "fps": 1.0, "width": 1, "height": 1,
                              "indexed_at": 0.0},
                             np.arange(2.0), unit(np.ones((2, DIM))))
    with Library.open(root) as library:
        assert [v.path for v in library.videos()] == ["/v/a.mp4"]


def test_index_reruns_over_a_half_created_library(tmp_path, tiny_clip, video_mp4):
    """The user-level promise: after a kill during creation, rerunning `index` works."""
    root = tmp_path / "lib"
    root.mkdir()
    _blank_wal_database(root / "library.sqlite")
    summary = index([video_mp4], library=root, model=tiny_clip, fps=2, device="cpu")
    assert summary.indexed == [str(Path(video_mp4).resolve())] and not summary.failed
    with Library.open(root) as library:
        assert library.videos()[0].num_frames == 6  # 3.0 s at 2 frames/s


def test_create_still_refuses_an_existing_library(tmp_path):
    Library.create(tmp_path / "lib", MODEL, SAMPLING).close()
    with pytest.raises(LibraryError, match="already exists"):
        Library.create(tmp_path / "lib", MODEL, SAMPLING)


HOLDER = """
import sys, time
sys.path.insert(0, {src!r})
from videolens.library import WriteLock
with WriteLock({root!r}, "index run"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held_lock(tmp_path):
    """Another process holding the library's write lock as an index run does."""
    procs = []

    def hold(root: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(src=SRC, root=str(root))],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("existing", [False, True])
def test_second_index_run_is_told_the_true_reason_before_loading_a_model(
        tmp_path, held_lock, existing):
    """The model named does not exist: if the lock were taken after loading the model (as
    before: 13-17 s later), this would be a ModelLoadError; on a new library the old message
    was "a videolens library already exists here"."""
    root = tmp_path / "lib"
    if existing:
        Library.create(root, MODEL, SAMPLING).close()
    holder = held_lock(root)
    started = time.monotonic()
    with pytest.raises(LibraryError) as err:
        index([], library=root, model=str(tmp_path / "no-such-model"), device="cpu")
    assert time.monotonic() - started < 5
    assert err.value.message == (f"another videolens index run (pid {holder.pid}) is "
                                 "writing to this library")
    assert "wait for it to finish" in str(err.value)


def test_cli_second_index_is_one_line(tmp_path, held_lock, capsys, video_mp4, tiny_clip):
    root = tmp_path / "lib"
    holder = held_lock(root)
    code = main(["index", video_mp4, "--library", str(root), "--model", tiny_clip, "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("videolens: error: ") and f"index run (pid {holder.pid})" in err[-1]


def test_a_failed_first_run_leaves_no_empty_library_folder(tmp_path, video_mp4):
    root = tmp_path / "new" / "lib"
    with pytest.raises(ModelLoadError):
        index([video_mp4], library=root, model=str(tmp_path / "no-such-model"), device="cpu")
    assert not root.exists()
    # ... but a folder that was there before stays, with nothing added but nothing taken
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("mine")
    with pytest.raises(ModelLoadError):
        index([video_mp4], library=root, model=str(tmp_path / "no-such-model"), device="cpu")
    assert (root / "notes.txt").read_text() == "mine"


def test_write_lock_survives_removal_race(tmp_path):
    """A writer that releases a lock file it created and removes it must not let two later
    writers hold two different files: a waiter re-checks the file it locked."""
    root = tmp_path / "lib"
    first = WriteLock(root, "index run").acquire()
    assert (root / "write.lock").read_text().split("\n")[:2] == [str(os.getpid()), "index run"]
    waiter = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {SRC!r})
        from videolens.library import WriteLock
        lock = WriteLock({str(root)!r}, "second").acquire(wait_s=20)
        print("got", lock.held, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", waiter], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the waiter is blocked on the old file
    first.release()  # no library was created: the file and the folder are removed
    out, _ = proc.communicate(timeout=30)
    assert out.strip() == "got True"
    assert (root / "write.lock").exists()  # it locked a live file, not the unlinked one
