"""Zero-shot temporal localization on synthetic curves and embeddings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from videolens.models import ScoreRule
from videolens.tasks.localize import (
    Detection,
    adaptive_threshold,
    label_curves,
    localize,
    nms,
    segments_from_curve,
    smooth,
)

STEP = 0.5  # seconds between frames in most tests (2 fps)
CLIP = ScoreRule("softmax", 100.0)  # CLIP ViT-B's learned temperature


def plateau(times: np.ndarray, spans: list[tuple[float, float]], low=0.1, high=0.9):
    curve = np.full(len(times), low)
    for start, end in spans:
        curve[(times >= start) & (times < end)] = high
    return curve


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


# --- smooth ------------------------------------------------------------------------------------


def test_smooth_keeps_a_constant_curve_even_at_the_edges_and_with_uneven_spacing():
    times = np.cumsum(np.random.default_rng(0).uniform(0.1, 1.5, 50))
    smoothed = smooth(np.full(50, 0.3), times, window_seconds=4.0)
    np.testing.assert_allclose(smoothed, 0.3)


def test_smooth_keeps_a_steps_midpoint():
    # 21 evenly spaced frames, 0 before t = 5, 1 after, 0.5 at the step; the kernel is symmetric
    # and so is the curve about (5, 0.5), so smoothing keeps the midpoint and the symmetry
    times = np.arange(21) * STEP
    curve = np.where(times < 5, 0.0, 1.0)
    curve[10] = 0.5
    smoothed = smooth(curve, times, window_seconds=2.0)
    assert smoothed[10] == pytest.approx(0.5)
    np.testing.assert_allclose(smoothed + smoothed[::-1], 1.0)
    assert np.all(np.diff(smoothed) >= 0)  # still monotone
    assert 0.0 < smoothed[8] < 0.5 < smoothed[12] < 1.0  # and actually smoothed


def test_smooth_weights_by_time_not_index():
    # uneven spacing: a frame 10 s away must barely count even though it is the next index
    times = np.array([0.0, 0.5, 1.0, 11.0])
    smoothed = smooth(np.array([0.0, 0.0, 0.0, 1.0]), times, window_seconds=1.0)
    assert smoothed[2] == pytest.approx(0.0, abs=1e-12)
    assert smoothed[3] == pytest.approx(1.0)


def test_smooth_matches_a_direct_gaussian():
    rng = np.random.default_rng(1)
    times = np.sort(rng.uniform(0, 30, 80))
    curve = rng.normal(size=80)
    sigma = 3.0 / (2 * math.sqrt(2 * math.log(2)))
    weights = np.exp(-0.5 * ((times[:, None] - times[None, :]) / sigma) ** 2)
    weights[np.abs(times[:, None] - times[None, :]) > 4 * sigma] = 0
    expected = weights @ curve / weights.sum(axis=1)
    np.testing.assert_allclose(smooth(curve, times, 3.0), expected, rtol=1e-12)


def test_smooth_zero_window_is_identity_and_bad_input_raises():
    curve, times = np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0])
    np.testing.assert_array_equal(smooth(curve, times, 0.0), curve)
    with pytest.raises(ValueError, match="non-decreasing"):
        smooth(curve, times[::-1], 1.0)
    with pytest.raises(ValueError, match="shape"):
        smooth(curve, times[:2], 1.0)
    with pytest.raises(ValueError, match="window_seconds"):
        smooth(curve, times, -1.0)


# --- adaptive_threshold ------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.8])
def test_otsu_splits_a_two_level_curve_whatever_the_action_fraction(fraction):
    curve = np.r_[np.full(int(100 * (1 - fraction)), 0.2), np.full(int(100 * fraction), 0.7)]
    assert adaptive_threshold(curve) == pytest.approx(0.45)


def test_no_threshold_for_a_constant_or_noise_curve():
    assert adaptive_threshold(np.full(30, 0.4)) == math.inf
    rng = np.random.default_rng(2)
    times = np.arange(400) * STEP
    refused = sum(
        adaptive_threshold(smooth(rng.normal(size=400), times, 2.0)) == math.inf
        for _ in range(50)
    )
    assert refused == 50


# --- segments_from_curve -----------------------------------------------------------------------


def test_one_plateau_gives_one_segment_at_the_right_times():
    times = np.arange(40) * STEP
    curve = plateau(times, [(5.0, 12.0)])
    segments = segments_from_curve(curve, times, 0.5, frame_duration=STEP)
    # frames at 5.0 .. 11.5 are above: the segment ends at 11.5 + 0.5
    assert segments == [(5.0, 12.0, pytest.approx(0.9))]


def test_two_separated_plateaus_give_two_segments_and_a_small_gap_can_be_merged():
    times = np.arange(60) * STEP
    curve = plateau(times, [(2.0, 6.0), (7.0, 10.0)])
    apart = segments_from_curve(curve, times, 0.5, frame_duration=STEP)
    assert [(s, e) for s, e, _ in apart] == [(2.0, 6.0), (7.0, 10.0)]
    merged = segments_from_curve(curve, times, 0.5, frame_duration=STEP, merge_gap=1.0)
    # one segment over 2 .. 10 s; its score averages the two gap frames too: (14·0.9 + 2·0.1)/16
    assert merged == [(2.0, 10.0, pytest.approx((14 * 0.9 + 2 * 0.1) / 16))]


def test_min_duration_drops_short_runs_and_scores_can_come_from_another_curve():
    times = np.arange(40) * STEP
    curve = plateau(times, [(2.0, 2.5), (10.0, 14.0)])
    raw = np.linspace(0, 1, 40)
    segments = segments_from_curve(curve, times, 0.5, frame_duration=STEP, min_duration=1.0,
                                   scores=raw)
    assert [(s, e) for s, e, _ in segments] == [(10.0, 14.0)]
    assert segments[0][2] == pytest.approx(raw[20:28].mean())


def test_uneven_timestamps():
    times = np.array([0.0, 0.4, 1.5, 1.7, 3.0, 3.2, 5.0, 5.5])
    curve = np.array([0, 0, 1, 1, 1, 0, 0, 1], float)
    segments = segments_from_curve(curve, times, 0.5, frame_duration=0.3)
    assert [(s, e) for s, e, _ in segments] == [(1.5, pytest.approx(3.3)), (5.5, 5.8)]


def test_nothing_above_threshold_gives_no_segment():
    times = np.arange(10) * STEP
    assert segments_from_curve(np.zeros(10), times, math.inf, frame_duration=STEP) == []


# --- nms ---------------------------------------------------------------------------------------


def test_nms_suppresses_overlapping_lower_scored_detections_of_the_same_label_only():
    detections = [
        Detection("run", 0.0, 10.0, 0.6),
        Detection("run", 1.0, 10.0, 0.9),  # IoU 0.9 with the first: keeps this, drops that
        Detection("run", 20.0, 30.0, 0.5),  # no overlap: kept
        Detection("jump", 0.0, 10.0, 0.7),  # other label: kept
        Detection("run", 5.0, 15.0, 0.8),  # IoU with [1, 10] = 5 / 14 < 0.5: kept
    ]
    kept = nms(detections, iou_threshold=0.5)
    assert kept == [
        Detection("run", 1.0, 10.0, 0.9),
        Detection("run", 5.0, 15.0, 0.8),
        Detection("jump", 0.0, 10.0, 0.7),
        Detection("run", 20.0, 30.0, 0.5),
    ]
    assert nms([], 0.5) == []


# --- localize ----------------------------------------------------------------------------------


def two_action_video(t0=6.0, t1=14.0, frames=48, dim=16, seed=0, noise=0.3):
    """Frames in [t0, t1) near text vector A, elsewhere near B, plus noise."""
    rng = np.random.default_rng(seed)
    text = unit(rng.normal(size=(3, dim)))  # A, B, and an unrelated C
    times = np.arange(frames) * STEP
    inside = (times >= t0) & (times < t1)
    frames_ = np.where(inside[:, None], text[0], text[1]) + noise * rng.normal(size=(frames, dim))
    return unit(frames_), times, text


def test_localize_finds_the_action_within_one_frame():
    frames, times, text = two_action_video()
    detections = localize(frames, times, text, ["A", "B", "C"], rule=CLIP)
    assert detections == sorted(detections, key=lambda d: -d.score)
    best_a = max((d for d in detections if d.label == "A"), key=lambda d: d.score)
    assert best_a.start == pytest.approx(6.0, abs=STEP)
    assert best_a.end == pytest.approx(14.0, abs=STEP)
    assert 0.9 < best_a.score <= 1.0
    # B is the rest of the video: before and after A
    b_spans = sorted((d.start, d.end) for d in detections if d.label == "B" and d.score > 0.5)
    assert b_spans[0][0] == 0.0 and b_spans[0][1] == pytest.approx(6.0, abs=STEP)
    assert b_spans[-1][1] == pytest.approx(24.0) and b_spans[-1][0] == pytest.approx(14.0, abs=STEP)
    assert all(0.0 <= d.score <= 1.0 for d in detections)
    assert not any(d.label == "C" and d.score > 0.1 for d in detections)


def test_localize_with_a_single_prompt_uses_raw_cosine():
    # raw cosine has no contrast with B to lean on, so this video is less noisy than the others
    # (at noise 0.3 per dimension the smoothed cosine curve is too close to noise, η = 0.77)
    frames, times, text = two_action_video(t0=3.0, t1=9.0, noise=0.15)
    detections = localize(frames, times, text[:1], ["A"], rule=CLIP)
    assert len(detections) == 1
    (only,) = detections
    assert only.start == pytest.approx(3.0, abs=STEP)
    assert only.end == pytest.approx(9.0, abs=STEP)
    # the score is the mean smoothed cosine over the segment's frames
    inside = (times >= only.start) & (times < only.end)
    expected = smooth(frames.astype(np.float64) @ text[0], times, 1.0)[inside].mean()
    assert only.score == pytest.approx(expected)


@pytest.mark.parametrize("labels", [["A"], ["A", "B", "C"]])
def test_localize_on_noise_frames_finds_nothing(labels):
    # CLIP-like geometry: 512-d, frames unrelated to every prompt (cosines ~ N(0, 1/√512))
    rng = np.random.default_rng(6)
    for _ in range(5):
        frames = unit(rng.normal(size=(200, 512)))
        text = unit(rng.normal(size=(len(labels), 512)))
        assert localize(frames, np.arange(200) * STEP, text, labels, rule=CLIP) == []


def test_localize_single_prompt_on_a_uniform_video_finds_nothing():
    rng = np.random.default_rng(3)
    text = unit(rng.normal(size=(1, 16)))
    frames = unit(text[0] + 0.3 * rng.normal(size=(60, 16)))
    assert localize(frames, np.arange(60) * STEP, text, ["A"], rule=CLIP) == []


def test_localize_action_through_the_whole_video_is_one_detection():
    rng = np.random.default_rng(4)
    text = unit(rng.normal(size=(2, 16)))
    frames = unit(text[0] + 0.1 * rng.normal(size=(30, 16)))
    detections = localize(frames, np.arange(30) * STEP, text, ["A", "B"], rule=CLIP)
    assert [(d.label, d.start, d.end) for d in detections] == [("A", 0.0, 15.0)]


def test_localize_sigmoid_kind_scores_are_probabilities():
    frames, times, text = two_action_video()
    detections = localize(frames, times, text, ["A", "B", "C"],
                          rule=ScoreRule("sigmoid", 10.0, -5.0))
    a = [d for d in detections if d.label == "A"]
    assert a and a[0].start == pytest.approx(6.0, abs=STEP)
    assert all(0.0 <= d.score <= 1.0 for d in detections)


def test_label_curves_softmax_rows_sum_to_one():
    frames, _, text = two_action_video()
    curves = label_curves(frames, text, rule=CLIP)
    assert curves.shape == (48, 3)
    np.testing.assert_allclose(curves.sum(axis=1), 1.0)


def test_localize_uneven_timestamps():
    frames, _, text = two_action_video()
    rng = np.random.default_rng(5)
    times = np.cumsum(rng.uniform(0.3, 0.7, len(frames)))
    detections = localize(frames, times, text, ["A", "B", "C"], rule=CLIP)
    best_a = max((d for d in detections if d.label == "A"), key=lambda d: d.score)
    # A's frames are indices 12..27 (made for 0.5 s spacing); allow one median spacing
    step = float(np.median(np.diff(times)))
    assert best_a.start == pytest.approx(times[12], abs=step)
    assert best_a.end == pytest.approx(times[27] + step, abs=step)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"frame_embeddings": np.zeros((0, 16), np.float32)}, "T >= 1"),
        ({"timestamps": np.arange(10.0)}, "timestamps shape"),
        ({"text_embeddings": unit(np.ones((3, 8)))}, "embedding sizes differ"),
        ({"labels": ["A", "B"]}, "2 labels for 3 text embeddings"),
        ({"labels": ["A", "A", "B"]}, "unique"),
        ({"frame_embeddings": np.ones((48, 16), np.float32)}, "L2-normalised"),
    ],
)
def test_localize_rejects_bad_input(change, message):
    frames, times, text = two_action_video()
    arguments = {"frame_embeddings": frames, "timestamps": times, "text_embeddings": text,
                 "labels": ["A", "B", "C"], "rule": CLIP}
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        localize(**arguments)


def test_localize_single_frame_needs_a_frame_duration():
    frames, _, text = two_action_video()
    with pytest.raises(ValueError, match="frame_duration"):
        localize(frames[:1], np.array([0.0]), text, ["A", "B", "C"], rule=CLIP)
    detections = localize(frames[:1], np.array([0.0]), text, ["A", "B", "C"], frame_duration=1.0,
                          rule=CLIP)
    assert [(d.label, d.start, d.end) for d in detections] == [("B", 0.0, 1.0)]
