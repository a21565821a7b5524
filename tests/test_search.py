"""Frame hits -> moments, on hand-built hits."""

from __future__ import annotations

from dataclasses import dataclass

from videolens.tasks.search import Moment, merge_hits


@dataclass(frozen=True)
class H:
    video_id: int
    timestamp: float
    score: float


VIDEOS = {1: ("a.mp4", 10.0), 2: ("b.mp4", 3.2)}


def test_peaks_grow_over_good_neighbours_only():
    # video 1 at 1 frame/s: a peak at 3-5 s over a background around 0.2
    scores = [0.2, 0.21, 0.19, 0.8, 0.9, 0.85, 0.2, 0.22, 0.18, 0.2]
    hits = [H(1, float(t), s) for t, s in enumerate(scores)]
    moments = merge_hits(hits, VIDEOS, step=1.0)
    # median 0.205; seed 0.9 -> floor 0.9 - 0.5 * (0.9 - 0.205) = 0.5525: 0.8 and 0.85 join
    assert moments[0] == Moment(1, "a.mp4", 3.0, 6.0, 0.9)
    # the rest become single-frame or small background moments, all scored lower
    assert all(m.score <= 0.22 for m in moments[1:])
    covered = sorted(t for m in moments for t in range(int(m.start), int(m.end)))
    assert covered == list(range(10))  # every hit lands in exactly one moment


def test_gaps_split_and_duration_caps_the_end():
    hits = [H(2, 0.0, 0.9), H(2, 0.5, 0.9), H(2, 2.5, 0.9), H(2, 3.0, 0.9)]
    moments = merge_hits(hits, VIDEOS, step=0.5)
    # 0.5 -> 2.5 is 2 s > 1.5 steps: two moments; the last ends at the 3.2 s duration
    assert [(m.start, m.end) for m in moments] == [(0.0, 1.0), (2.5, 3.2)]


def test_unknown_videos_are_dropped_and_ties_are_deterministic():
    hits = [H(9, 0.0, 1.0), H(1, 5.0, 0.5), H(2, 1.0, 0.5)]
    moments = merge_hits(hits, VIDEOS, step=1.0)
    assert [(m.video, m.start) for m in moments] == [("a.mp4", 5.0), ("b.mp4", 1.0)]
    assert merge_hits([], VIDEOS, step=1.0) == []


def test_equal_neighbours_of_a_weak_seed_join():
    hits = [H(1, 0.0, 0.9), H(1, 1.0, 0.9), H(1, 5.0, 0.1), H(1, 6.0, 0.1), H(1, 9.0, 0.5)]
    moments = merge_hits(hits, VIDEOS, step=1.0)
    # median 0.5: the 0.1 frames are below it, yet the two equal ones form one moment
    assert [(m.start, m.end) for m in moments] == [(0.0, 2.0), (9.0, 10.0), (5.0, 7.0)]
