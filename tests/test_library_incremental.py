"""Incremental refresh of vectors/ (issue 15): a new segment for added videos, tombstones for
removed ones; results equal a full rebuild, and a crash mid-refresh leaves a usable cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from library_synth import DIM, MODEL, SAMPLING, add_numbered_videos, unit

from videolens.errors import UsageError
from videolens.library import Library, ann
from videolens.pipelines.search import check_recall


def _add(library, rng, first, count, frames=30):
    add_numbered_videos(library, first, count, frames,
                        lambda n: unit(rng.standard_normal((n, DIM))))


def _hits(library, queries, **kw):
    return [[(h.video_id, h.timestamp, round(h.score, 5)) for h in row]
            for row in library.search(queries, 20, **kw)]


@pytest.fixture
def library(tmp_path):
    lib = Library.create(tmp_path / "lib", MODEL, SAMPLING)
    lib.vectors.auto_refresh = False
    yield lib
    lib.close()


def test_incremental_add_remove_equals_full_rebuild(library):
    rng = np.random.default_rng(0)
    _add(library, rng, 0, 40)
    assert library.refresh_vectors() is True
    _add(library, rng, 40, 3)
    with library.writer() as writer:
        removed = library.video_by_path("/v/005.mp4").id
        writer.remove_video("/v/005.mp4")
    assert library.refresh_vectors() is True
    assert library.vectors.last_refresh["kind"] == "incremental"
    manifest = json.loads((library.vectors_dir / ann.MANIFEST).read_text())
    assert len(manifest["segments"]) == 2 and manifest["tombstones"] == [removed]
    assert library.stats()["stale"] is False
    queries = unit(rng.standard_normal((4, DIM)))
    got = _hits(library, queries, exact=True)
    assert all(vid != removed for row in got for vid, _, _ in row)
    library.optimize_vectors()
    manifest = json.loads((library.vectors_dir / ann.MANIFEST).read_text())
    assert len(manifest["segments"]) == 1 and manifest["tombstones"] == []
    assert _hits(library, queries, exact=True) == got


def test_crash_before_the_manifest_keeps_the_old_cache(library, monkeypatch):
    rng = np.random.default_rng(1)
    _add(library, rng, 0, 40)
    library.refresh_vectors()
    queries = unit(rng.standard_normal((3, DIM)))
    _add(library, rng, 40, 2)
    want = _hits(library, queries, exact=True)  # the tail answers from SQLite

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(ann, "publish_manifest", crash)
    with pytest.raises(RuntimeError):
        library.refresh_vectors()
    monkeypatch.undo()
    library.vectors.close()
    assert library.vectors.load() is not None and library.vectors.problem is None
    assert _hits(library, queries, exact=True) == want
    assert library.refresh_vectors() is True
    assert _hits(library, queries, exact=True) == want


@pytest.mark.parametrize("exact, recall, message", [
    (True, 0.9, "give --exact or --recall, not both"),
    (None, 0.0, "--recall must be above 0 and at most 1, got 0"),
    (None, 1.5, "--recall must be above 0 and at most 1, got 1.5"),
])
def test_recall_option_boundaries(exact, recall, message):
    with pytest.raises(UsageError, match=message):
        check_recall(exact, recall)
    check_recall(None, 1.0)
    check_recall(None, None)
