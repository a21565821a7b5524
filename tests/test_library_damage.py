"""A damaged library.sqlite is one clear line everywhere, never a traceback, and
`videolens library check --repair` rebuilds what can be rebuilt (issue 12 item 5).

Before: truncated, garbage-page and bad-meta files raised raw sqlite3.DatabaseError,
JSONDecodeError, ValueError or KeyError from open/search, and with garbage mid-file an index
run wrote into the damaged file and reported success.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from library_synth import (
    DIM,
    build_library,
    fresh_hits,
    hits_of,
    overwrite_pages,
    queries,
    set_meta,
    stored_content,
    truncate,
    unit,
)

from videolens.cli import main
from videolens.errors import LibraryError
from videolens.library import DamagedLibraryError, Library, store
from videolens.library.repair import check_library


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return build_library(tmp_path_factory.mktemp("clean") / "lib", videos=30)


@pytest.fixture
def lib(clean, tmp_path) -> Path:
    root = tmp_path / "lib"
    shutil.copytree(clean, root)
    return root


def _middle_page(db: Path) -> int:
    conn = sqlite3.connect(db)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    return pages // 2


DAMAGE = {
    "truncated": lambda db: truncate(db, 0.5),
    "garbage mid-file": lambda db: overwrite_pages(db, _middle_page(db), 3),
    "garbage page 1": lambda db: overwrite_pages(db, 1, 1),
    "meta: model not JSON": lambda db: set_meta(db, "model", "{not json"),
    "meta: schema_version": lambda db: set_meta(db, "schema_version", "one"),
    "meta: no embed_dim": lambda db: set_meta(db, "model", '{"name": "x", "kind": "softmax", '
                                                           '"fingerprint": "f"}'),
    "meta: sampling missing": lambda db: set_meta(db, "sampling", None),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_open_reports_damage_in_one_line(lib, kind):
    DAMAGE[kind](lib / "library.sqlite")
    with pytest.raises(DamagedLibraryError) as err:
        Library.open(lib)
    line = str(err.value)
    assert "\n" not in line and str(lib) in line
    assert "videolens library check" in line
    if not kind.startswith("meta"):
        assert "damaged" in err.value.message and "--repair" in line


@pytest.mark.parametrize("kind", ["truncated", "garbage mid-file", "meta: model not JSON"])
@pytest.mark.parametrize("command", ["search", "index", "localize", "library info"])
def test_every_command_says_one_line_and_exits_2(lib, kind, command, capsys, tmp_path,
                                                  video_mp4):
    DAMAGE[kind](lib / "library.sqlite")
    argv = {"search": ["search", "a dog"], "index": ["index", video_mp4],
            "localize": ["localize", video_mp4, "running"],
            "library info": ["library", "info"]}[command] + ["--library", str(lib)]
    assert main(argv) == 2  # the damage is found before any model is loaded
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("videolens: error: ")
    assert "Traceback" not in err[0] and "library check" in err[0]


def test_serve_refuses_a_damaged_library_in_one_line(lib):
    pytest.importorskip("fastapi")
    from videolens.web.service import LibraryService

    DAMAGE["garbage mid-file"](lib / "library.sqlite")
    with pytest.raises(DamagedLibraryError, match="library check --repair"):
        LibraryService(lib, None, "cpu", "auto")


def test_index_no_longer_writes_into_a_damaged_file(lib, video_mp4, monkeypatch):
    """Before, index over a file with garbage mid-file reported success. Now the writer
    quick-checks before its first write, even where open skipped it (a large file)."""
    from videolens.pipelines.index import index

    DAMAGE["garbage mid-file"](lib / "library.sqlite")
    before = (lib / "library.sqlite").read_bytes()
    monkeypatch.setattr(store, "QUICK_CHECK_OPEN_MAX_BYTES", 0)  # as for a big library
    library = Library.open(lib)  # opens: the damage is not on the pages it read
    with pytest.raises(DamagedLibraryError), library.writer():
        pass
    library.close()
    with pytest.raises(DamagedLibraryError):  # before the library's model is even loaded
        index([video_mp4], library=lib, device="cpu")
    assert (lib / "library.sqlite").read_bytes() == before


def test_damage_met_during_a_query_is_a_library_error(lib, monkeypatch):
    DAMAGE["garbage mid-file"](lib / "library.sqlite")
    monkeypatch.setattr(store, "QUICK_CHECK_OPEN_MAX_BYTES", 0)
    with Library.open(lib) as library:
        library.vectors.auto_refresh = False
        shutil.rmtree(lib / "vectors")  # every search reads SQLite
        with pytest.raises(DamagedLibraryError, match="damaged"):
            library.search(queries(), 10)
        with pytest.raises(DamagedLibraryError):
            for video in library.videos():
                library.frames(video.id)


def test_damaged_vectors_blob_is_caught_where_sqlite_cannot_see_it(lib):
    """Bytes changed inside a frames blob keep SQLite's structure intact: the stored rows
    are no longer unit vectors, which every read checks."""
    conn = sqlite3.connect(lib / "library.sqlite")
    victim = conn.execute("SELECT video_id, length(vectors) FROM frames LIMIT 1 OFFSET 7"
                          ).fetchone()
    conn.execute("UPDATE frames SET vectors = randomblob(?) WHERE video_id = ?",
                 (victim[1], victim[0]))
    conn.commit()
    conn.close()
    with Library.open(lib) as library:  # quick_check: sound b-trees
        with pytest.raises(DamagedLibraryError, match="not finite unit vectors"):
            library.frames(victim[0])
    report = check_library(lib)
    assert not report.ok and [p.id for p in report.bad_videos] == [victim[0]]
    repaired = check_library(lib, repair=True)
    assert repaired.ok and [p.id for p in repaired.lost] == [victim[0]]
    assert repaired.videos == 29


def test_check_a_sound_library(lib):
    report = check_library(lib)
    content = stored_content(lib)
    assert report.ok and report.database == [] and report.meta is None
    assert (report.videos, report.frames) == (30, sum(len(t) for _, t, _ in content.values()))
    assert report.cache == "ok"
    assert check_library(lib, repair=True).actions == []  # nothing to do


@pytest.mark.parametrize("kind", ["garbage mid-file", "truncated", "meta: schema_version"])
def test_repair_keeps_every_readable_video_exactly(lib, kind, tmp_path):
    original = stored_content(lib)
    DAMAGE[kind](lib / "library.sqlite")
    found = check_library(lib)
    assert not found.ok and found.database
    report = check_library(lib, repair=True)
    assert report.ok and report.repaired and report.cache == "ok"
    assert report.damaged_copy and Path(report.damaged_copy).exists()
    assert Path(report.damaged_copy).name.startswith("library.sqlite.damaged-")
    kept = stored_content(lib)
    assert 0 < len(kept) <= 30 and report.videos == len(kept)
    if kind == "meta: schema_version":
        assert len(kept) == 30
    for path, (vid, times, vectors) in kept.items():  # same ids, same frames, bit for bit
        assert original[path][0] == vid
        np.testing.assert_array_equal(times, original[path][1])
        np.testing.assert_array_equal(vectors, original[path][2])
    lost = {p.path for p in report.lost}
    assert lost.isdisjoint(kept)
    if not report.lost_unreadable:  # every row was seen: each is kept or listed as lost
        assert len(kept) + len(lost) == 30
    # the repaired library works end to end: quick_check, search, and ids never reused
    with Library.open(lib) as library:
        assert hits_of(library) == fresh_hits(lib, tmp_path / "fresh")
        with library.writer() as writer:
            new_id = writer.add_video(
                {"path": "/videos/new.mp4", "size": 1, "mtime_ns": 1, "fingerprint": "n",
                 "duration": 1.0, "fps": 1.0, "width": 1, "height": 1, "indexed_at": 0.0},
                np.zeros(1), unit(np.ones((1, DIM))))
        assert new_id > max(vid for vid, _, _ in original.values())
        assert library.stats()["failures"] == 0


def test_repair_salvages_half_of_a_truncated_file(lib):
    truncate(lib / "library.sqlite", 0.5)
    report = check_library(lib)
    assert any(message.startswith("truncated:") for message in report.database)
    repaired = check_library(lib, repair=True)
    assert repaired.ok and 5 <= repaired.videos < 30  # the rows on the pages that are left


@pytest.mark.parametrize("kind", ["meta: model not JSON", "garbage page 1"])
def test_unrepairable_damage_says_why(lib, kind, capsys):
    DAMAGE[kind](lib / "library.sqlite")
    before = (lib / "library.sqlite").read_bytes()
    with pytest.raises(LibraryError, match="cannot repair") as err:
        check_library(lib, repair=True)
    assert "new --library" in str(err.value)
    assert (lib / "library.sqlite").read_bytes() == before  # untouched
    assert main(["library", "check", "--library", str(lib)]) == 1
    out = capsys.readouterr()
    assert "DAMAGED" in out.out and "--repair" in out.err
    assert main(["library", "check", "--repair", "--library", str(lib)]) == 2


def test_cli_check_and_repair(lib, capsys):
    assert main(["library", "check", "--library", str(lib)]) == 0
    assert "database  ok: 30 videos" in capsys.readouterr().out
    DAMAGE["garbage mid-file"](lib / "library.sqlite")
    assert main(["library", "check", "--library", str(lib)]) == 1
    out = capsys.readouterr()
    assert "DAMAGED" in out.out and "library check --repair" in out.err
    assert main(["library", "check", "--repair", "--library", str(lib), "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["repaired"] and report["damaged_copy"]
    assert main(["search", "x", "--library", str(lib), "--model", "nonexistent-model"]) == 2
    assert "damaged" not in capsys.readouterr().err  # opens now; fails on the model instead
