"""`videolens library info|list|remove|export` (issue 13 item 6) and the weights-changed
message (item 7), on a real index run with the tiny model, checked against the database read
with plain sqlite3."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from library_synth import stored_content
from media import make_truncated, make_video

from videolens.cli import main
from videolens.errors import LibraryError, UsageError
from videolens.library import Library, VideoRecord
from videolens.pipelines import common
from videolens.pipelines import library as api
from videolens.pipelines.index import index


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_clip) -> Path:
    """videos/{a,b}.mp4, videos/sub/{c,d}.mp4 and a broken file, indexed at 2 frames/s."""
    base = tmp_path_factory.mktemp("indexed")
    folder = base / "videos"
    (folder / "sub").mkdir(parents=True)
    for name, frames in (("a", 30), ("b", 20), ("sub/c", 40), ("sub/d", 10)):
        make_video(folder / f"{name}.mp4", num_frames=frames, fps=10)
    make_truncated(make_video(base / "whole.mp4", num_frames=30, fps=10, codec="h264"),
                   folder / "broken.mp4", 0.5)
    summary = index([folder], library=base / "lib", model=tiny_clip, fps=2, device="cpu")
    assert len(summary.indexed) == 4 and len(summary.failed) == 1
    return base


@pytest.fixture
def lib(indexed, tmp_path) -> Path:
    shutil.copytree(indexed / "lib", tmp_path / "lib")
    return tmp_path / "lib"


def test_default_library_is_the_one_every_verb_uses():
    assert api.DEFAULT_LIBRARY == common.DEFAULT_LIBRARY


def test_info(lib, indexed, capsys):
    content = stored_content(lib)
    info = api.library_info(lib)
    assert (info.videos, info.frames) == (4, sum(len(t) for _, t, _ in content.values()))
    assert info.frames == (3 + 2 + 4 + 1) * 2  # durations 3, 2, 4, 1 s at 2 frames/s
    assert info.video_seconds == pytest.approx(10.0)
    assert info.sampling["fps"] == 2 and info.model["embed_dim"] == 16
    broken = str((indexed / "videos" / "broken.mp4").resolve())
    assert list(info.failures) == [broken]
    assert info.sqlite_bytes >= (lib / "library.sqlite").stat().st_size > 0
    assert info.vectors_bytes > 20 * 16 * 4  # at least the float32 rows
    assert info.bytes == info.sqlite_bytes + info.vectors_bytes + \
        (lib / "write.lock").stat().st_size  # nothing else lives in this library folder
    assert main(["library", "info", "--library", str(lib)]) == 0
    out = capsys.readouterr().out
    assert "videos    4 (0:10.0 of video), 20 frames" in out
    assert "sampling  2 frames/s" in out and f"  {broken}: " in out
    assert main(["library", "info", "--library", str(lib), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 20


def test_list(lib, capsys):
    assert main(["library", "list", "--library", str(lib), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    content = stored_content(lib)
    assert [r["path"] for r in rows] == sorted(content)
    assert {r["path"]: r["frames"] for r in rows} == {p: len(t) for p, (_, t, _) in
                                                      content.items()}
    assert [r["duration"] for r in rows] == [3.0, 2.0, 4.0, 1.0]
    assert main(["library", "list", "--library", str(lib)]) == 0
    table = capsys.readouterr()
    assert table.out.splitlines()[1].split()[:2] == ["0:03.0", "6"]
    assert "4 videos, 0:10.0 in all" in table.err


def _record(path: str, vid: int) -> VideoRecord:
    return VideoRecord(vid, path, 1, 1, "f", 1.0, 1.0, 1, 1, 1, 0.0)


def test_match_videos_patterns(tmp_path):
    base = tmp_path.resolve()
    records = [_record(str(base / p), i) for i, p in
               enumerate(["x/a.mp4", "x/sub/b.mp4", "x/sub/c.mov", "y/d.mp4", "xy/e.mp4"], 1)]

    def names(*patterns, cwd=base):
        return [Path(r.path).name for r in api.match_videos(records, patterns, cwd)]

    assert names("x/sub/*") == ["b.mp4", "c.mov"]  # relative to the current folder
    assert names("sub/*", cwd=base / "x") == ["b.mp4", "c.mov"]
    assert names("./sub/*.mp4", cwd=base / "x") == ["b.mp4"]
    assert names(str(base / "y" / "*")) == ["d.mp4"]  # against the absolute path
    assert names("x") == ["a.mp4", "b.mp4", "c.mov"]  # a folder: everything under it, not xy/
    assert names("x/a.mp4") == ["a.mp4"]  # a plain path
    assert names("../y/d.mp4", cwd=base / "x") == ["d.mp4"]
    assert names("*.MOV") == []  # case-sensitive, like the file system
    assert names("x/a.mp4", "x/a.mp4", "*/d.mp4") == ["a.mp4", "d.mp4"]  # each once


def test_remove_by_relative_glob_then_search_never_sees_them(lib, indexed, monkeypatch, capsys):
    monkeypatch.chdir(indexed / "videos")
    assert main(["library", "remove", "sub/*", "--library", str(lib), "--dry-run"]) == 0
    dry = capsys.readouterr()
    assert len(dry.out.splitlines()) == 2 and "would remove 2 videos" in dry.err
    assert len(stored_content(lib)) == 4  # a dry run changes nothing
    assert main(["library", "remove", "sub/*", "--library", str(lib)]) == 0
    assert "removed 2 videos" in capsys.readouterr().err
    remaining = stored_content(lib)
    assert sorted(Path(p).name for p in remaining) == ["a.mp4", "b.mp4"]
    assert all((indexed / "videos" / "sub" / n).exists() for n in ("c.mp4", "d.mp4"))
    with Library.open(lib) as library:
        assert library.stats()["stale"] is False  # the cache was refreshed
        hits = library.search(np.ones(16, np.float32) / 4.0, 100)[0]
        assert {h.video_id for h in hits} == {vid for vid, _, _ in remaining.values()}
    assert main(["library", "remove", "sub/*", "--library", str(lib)]) == 1
    assert "nothing in the library matches sub/*" in capsys.readouterr().err


def test_remove_needs_a_pattern(lib):
    with pytest.raises(UsageError, match="name what to remove"):
        api.remove_videos([], lib)


def test_remove_refused_while_another_writer_runs(lib):
    from videolens.library import WriteLock

    with WriteLock(lib, "index run"):
        with pytest.raises(LibraryError, match=rf"index run \(pid {os.getpid()}\)"):
            api.remove_videos("*", lib)


def _expected_rows(lib: Path):
    content = stored_content(lib)
    ordered = sorted(content.items(), key=lambda item: item[1][0])  # by video id
    paths = [p for p, (_, t, _) in ordered for _ in t]
    ids = [vid for _, (vid, t, _) in ordered for _ in t]
    times = np.concatenate([t for _, (_, t, _) in ordered])
    vectors = np.concatenate([v for _, (_, _, v) in ordered])
    return paths, ids, times, vectors


def test_export_npy(lib, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["library", "export", "--format", "npy", "--out", str(out),
                 "--library", str(lib)]) == 0
    assert "exported 20 frames of 4 videos (16-d)" in capsys.readouterr().err
    paths, ids, times, vectors = _expected_rows(lib)
    embeddings = np.load(out / "embeddings.npy")
    assert embeddings.dtype == np.float32 and embeddings.shape == (20, 16)
    np.testing.assert_array_equal(embeddings, vectors)
    lines = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [m["path"] for m in lines] == paths and [m["video_id"] for m in lines] == ids
    np.testing.assert_allclose([m["timestamp"] for m in lines], times, atol=1e-6)
    about = json.loads((out / "library.json").read_text())
    assert about["model"]["embed_dim"] == 16 and about["sampling"]["fps"] == 2
    # an existing --out is refused, then replaced with --overwrite
    assert main(["library", "export", "--format", "npy", "--out", str(out),
                 "--library", str(lib)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["library", "export", "--format", "npy", "--out", str(out), "--overwrite",
                 "--library", str(lib)]) == 0
    assert not list(tmp_path.glob(".*partial"))


def test_export_parquet(lib, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "frames.parquet"
    done = api.export_library(out, library=lib, format="parquet")
    assert done["rows"] == 20 and done["files"] == [str(out)]
    table = pq.read_table(out)
    assert table.column_names == ["path", "video_id", "timestamp", "embedding"]
    paths, ids, times, vectors = _expected_rows(lib)
    assert table["path"].to_pylist() == paths and table["video_id"].to_pylist() == ids
    np.testing.assert_array_equal(table["timestamp"].to_numpy(), times)
    embedding = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(embedding.astype(np.float32), vectors)
    about = json.loads(table.schema.metadata[b"videolens"])
    assert about["model"]["name"] and about["sampling"]["fps"] == 2


def test_export_parquet_of_an_empty_library(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from library_synth import MODEL, SAMPLING

    Library.create(tmp_path / "empty", MODEL, SAMPLING).close()
    api.export_library(tmp_path / "e.parquet", library=tmp_path / "empty", format="parquet")
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 0


def test_export_parquet_without_pyarrow_is_one_line(lib, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert main(["library", "export", "--format", "parquet", "--out",
                 str(tmp_path / "x.parquet"), "--library", str(lib)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("videolens: error: exporting to Parquet needs pyarrow, which is not "
                   "installed — pip install 'videolens[export]' (or pyarrow), or use "
                   "--format npy")
    assert not (tmp_path / "x.parquet").exists()


def test_changed_weights_are_named_as_such(indexed, tmp_path, tiny_clip, capsys):
    """Same folder, files changed since indexing: not "built with the model X, not X"."""
    model = tmp_path / "model"
    shutil.copytree(tiny_clip, model)
    lib = tmp_path / "lib"
    index([indexed / "videos" / "a.mp4"], library=lib, model=str(model), fps=2, device="cpu")
    config = model / "config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    assert main(["search", "a dog", "--library", str(lib), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"the model {model} is not the one this library was built with: its weights " \
           "changed" in err
    assert f"built with the model {model}, not {model}" not in err
