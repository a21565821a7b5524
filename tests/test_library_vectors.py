"""A damaged vectors/ cache never gives wrong answers and is rebuilt (issue 12 item 6).

Before: random bytes in vectors.npy gave scores like 1.6e38, zeros gave 0.0, shuffled rows,
reversed ids and shifted times gave wrong videos and times, and none of them was rebuilt.
Each damage below is compared with a fresh library (same database, cache built anew).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from library_synth import build_library, fresh_hits, generation_dir, hits_of, row_map

from videolens.library import Library
from videolens.library.repair import check_library


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return build_library(tmp_path_factory.mktemp("clean") / "lib", videos=40)


@pytest.fixture
def lib(clean, tmp_path) -> Path:
    root = tmp_path / "lib"
    shutil.copytree(clean, root)
    return root


def _rewrite(path: Path, change) -> None:
    array = np.load(path)
    np.save(path, change(array))


def _in_place(generation: Path, change) -> None:
    """Change the float16 rows of vectors.faiss, keeping its header (what bit rot or a bad
    copy does)."""
    array = row_map(generation)
    array[:] = change(np.asarray(array))
    array.flush()
    del array


RNG = np.random.default_rng(5)
DAMAGE = {
    "random bytes (whole file)": lambda g: (g / "vectors.faiss").write_bytes(
        RNG.bytes((g / "vectors.faiss").stat().st_size)),
    "random bytes (data)": lambda g: _in_place(
        g, lambda a: np.frombuffer(RNG.bytes(a.nbytes), a.dtype).reshape(a.shape)),
    "zeros": lambda g: _in_place(g, np.zeros_like),
    "shuffled rows": lambda g: _in_place(g, lambda a: a[RNG.permutation(len(a))]),
    "two rows swapped": lambda g: _in_place(g, lambda a: a[[1, 0] + list(
        range(2, len(a)))]),
    "reversed ids": lambda g: _rewrite(g / "video_ids.npy", lambda a: a[::-1].copy()),
    "shifted times": lambda g: _rewrite(g / "timestamps.npy", lambda a: a + 0.5),
    "shifted row offsets": lambda g: _rewrite(g / "starts.npy",
                                              lambda a: np.r_[a[:1], a[1:-1] + 1, a[-1:]]),
    "truncated vectors.faiss": lambda g: (g / "vectors.faiss").write_bytes(
        (g / "vectors.faiss").read_bytes()[:1000]),
    "missing timestamps.npy": lambda g: (g / "timestamps.npy").unlink(),
    "garbage manifest": lambda g: (g.parent / "manifest.json").write_bytes(RNG.bytes(300)),
    "manifest with a wrong count": lambda g: (g.parent / "manifest.json").write_text(json.dumps(
        {**json.loads((g.parent / "manifest.json").read_text()), "count": 5})),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_cache_gives_fresh_results_and_is_rebuilt(lib, kind, tmp_path):
    want = fresh_hits(lib, tmp_path / "fresh")
    damaged = generation_dir(lib)
    DAMAGE[kind](damaged)
    with Library.open(lib) as library:
        library.vectors.auto_refresh = True
        got = hits_of(library)
        assert got == want
        assert max(score for row in got for _, _, score in row) <= 1.0 + 1e-6
        assert library.vectors.problem is None  # rebuilt, and the new one is sound
        assert library.stats()["cached_frames"] == sum(v.num_frames for v in library.videos())
    rebuilt = generation_dir(lib)
    assert rebuilt != damaged and not damaged.exists()  # the damaged one is not kept
    with Library.open(lib) as library:  # a new process uses the rebuilt cache as it is
        assert hits_of(library) == want and library.vectors.problem is None


@pytest.mark.parametrize("kind", ["shuffled rows", "shifted times", "zeros"])
def test_a_read_only_folder_still_answers_right(lib, kind, tmp_path):
    """Where the cache cannot be rebuilt, search answers from SQLite (never from it)."""
    want = fresh_hits(lib, tmp_path / "fresh")
    DAMAGE[kind](generation_dir(lib))
    with Library.open(lib) as library:
        library.vectors.refresh = lambda **kwargs: (_ for _ in ()).throw(OSError("read-only"))
        assert hits_of(library) == want
        assert library.vectors.problem is not None


def test_refresh_rebuilds_a_damaged_cache_whose_ids_still_match(lib):
    """What an index run calls at its end: the ids match, so before it kept the damage."""
    damaged = generation_dir(lib)
    DAMAGE["shifted times"](damaged)
    with Library.open(lib) as library:
        assert library.refresh_vectors() is True
        assert library.refresh_vectors() is False  # now sound and up to date
    assert generation_dir(lib) != damaged


def test_check_finds_what_the_sample_misses_and_repair_rebuilds(lib, tmp_path):
    """One changed value in one row of a middle video: too small for a cheap sample to be
    sure to see, so `library check` hashes every file."""
    want = fresh_hits(lib, tmp_path / "fresh")
    array = row_map(generation_dir(lib))
    array[777, 3] = -array[777, 3]
    array.flush()
    del array
    report = check_library(lib)
    assert not report.ok and report.database_ok
    assert report.cache == "damaged: vectors.faiss do not match their checksums"
    repaired = check_library(lib, repair=True)
    assert repaired.ok and repaired.actions == ["rebuilt vectors/ from library.sqlite"]
    with Library.open(lib) as library:
        assert hits_of(library) == want


def test_ann_index_damage_is_rebuilt(lib, tmp_path):
    with Library.open(lib) as library:
        library.refresh_vectors(force_ann=True)
        want = hits_of(library, exact=False)
    ann_file = generation_dir(lib) / "ann.faiss"
    ann_file.write_bytes(np.random.default_rng(1).bytes(ann_file.stat().st_size))
    with Library.open(lib) as library:
        library.vectors.ann_min_vectors = 1  # use the ANN index
        assert hits_of(library, exact=False) == want
        assert library.vectors.problem is None and library.stats()["ann"] is True


def test_a_stale_cache_is_not_damage(lib):
    """Videos added or removed since the build are staleness (answered from SQLite), not
    damage: nothing is rebuilt below the refresh thresholds."""
    before = generation_dir(lib)
    with Library.open(lib) as library:
        with library.writer() as writer:
            writer.remove_video("/videos/003.mp4")
        library.search(np.eye(1, 32, dtype=np.float32), 5)
        assert library.vectors.problem is None and library.stats()["stale"]
    assert generation_dir(lib) == before
    assert check_library(lib).cache == "stale"
