"""Temporal-localization mAP: hand-computed cases (worked out in the comments) and an
independent brute-force check of the all-point interpolated AP."""

from __future__ import annotations

import numpy as np
import pytest

from videolens.eval import (
    ACTIVITYNET_IOUS,
    THUMOS14_IOUS,
    Segment,
    average_precision,
    detection_map,
    temporal_iou,
)


def gt(video: str, label: str, start: float, end: float) -> Segment:
    return Segment(video, label, start, end)


def pred(video: str, label: str, start: float, end: float, score: float) -> Segment:
    return Segment(video, label, start, end, score)


# --- temporal_iou -----------------------------------------------------------------------------


def test_temporal_iou_values():
    segments = np.array([[0, 10], [5, 15], [10, 20], [20, 30], [2, 4], [3, 3]], float)
    iou = temporal_iou(np.array([0.0, 10.0]), segments)
    # [0,10]: 1; [5,15]: 5 / 15; [10,20]: touching, 0; [20,30]: disjoint, 0;
    # [2,4] inside: 2 / 10; zero-length [3,3]: intersection 0 -> 0
    np.testing.assert_allclose(iou, [1.0, 1 / 3, 0.0, 0.0, 0.2, 0.0])


def test_temporal_iou_two_zero_length_segments_is_zero_not_nan():
    assert temporal_iou(np.array([3.0, 3.0]), np.array([[3.0, 3.0]])).tolist() == [0.0]


def test_temporal_iou_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\(M, 2\)"):
        temporal_iou(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(2,\)"):
        temporal_iou(np.array([0.0, 1.0, 2.0]), np.zeros((1, 2)))


# --- average_precision ------------------------------------------------------------------------


def brute_force_ap(precision: np.ndarray, recall: np.ndarray, grid: int) -> float:
    """∫_0^1 p̂(r) dr with p̂(r) = max{precision_i : recall_i >= r} (0 if none), by the midpoint
    rule on ``grid`` cells. Exact when every recall value is a multiple of 1 / grid (cells never
    straddle a recall step)."""
    r = (np.arange(grid) + 0.5) / grid
    reachable = recall[None, :] >= r[:, None]  # (grid, N)
    best = np.where(reachable, precision[None, :], 0.0).max(axis=1)
    return float(best.mean())


def test_average_precision_matches_brute_force_on_random_rankings():
    rng = np.random.default_rng(0)
    for _ in range(200):
        npos = int(rng.integers(1, 8))
        n = int(rng.integers(1, 15))
        hits = rng.random(n) < 0.5
        hits[np.cumsum(hits) > npos] = False  # cannot match more than npos ground truths
        tp = np.cumsum(hits)
        precision = tp / np.arange(1, n + 1)
        recall = tp / npos
        expected = brute_force_ap(precision, recall, grid=npos * 64)
        assert average_precision(precision, recall) == pytest.approx(expected, abs=1e-12)


def test_average_precision_hand_computed():
    # ranking TP, FP, TP with 2 ground truths: precision 1, 1/2, 2/3; recall 1/2, 1/2, 1.
    # envelope at recall 1/2 is max(1, 1/2, 2/3) = 1, at recall 1 it is 2/3:
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert average_precision([1, 0.5, 2 / 3], [0.5, 0.5, 1.0]) == pytest.approx(5 / 6)
    assert average_precision([], []) == 0.0


def test_average_precision_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        average_precision([1.0, 0.5], [1.0])
    with pytest.raises(ValueError, match="non-decreasing"):
        average_precision([1.0, 1.0], [1.0, 0.5])


# --- detection_map: hand-computed cases ---------------------------------------------------------


def test_perfect_prediction_scores_one():
    truth = [gt("v1", "run", 0, 10), gt("v1", "jump", 20, 25)]
    predictions = [pred("v1", "run", 0, 10, 0.9), pred("v1", "jump", 20, 25, 0.8)]
    result = detection_map(predictions, truth, ACTIVITYNET_IOUS)
    assert result.map == 1.0
    assert all(value == 1.0 for value in result.map_per_iou.values())
    assert set(result.ap) == {"run", "jump"}
    assert list(result.map_per_iou) == list(ACTIVITYNET_IOUS)


def test_one_true_positive_and_one_false_positive_in_both_orders():
    truth = [gt("v1", "run", 0, 10)]
    hit, miss = (0.0, 10.0), (20.0, 30.0)
    # TP ranked first: precision 1, 1/2; recall 1, 1 -> envelope at recall 1 is 1 -> AP = 1
    first = detection_map(
        [pred("v1", "run", *hit, 0.9), pred("v1", "run", *miss, 0.5)], truth, [0.5]
    )
    assert first.ap["run"][0.5] == pytest.approx(1.0)
    # FP ranked first: precision 0, 1/2; recall 0, 1 -> AP = (1 - 0) * 1/2 = 0.5
    second = detection_map(
        [pred("v1", "run", *hit, 0.5), pred("v1", "run", *miss, 0.9)], truth, [0.5]
    )
    assert second.ap["run"][0.5] == pytest.approx(0.5)


def test_duplicate_prediction_of_one_ground_truth_is_a_false_positive():
    truth = [gt("v1", "run", 0, 10), gt("v1", "run", 20, 30)]
    predictions = [
        pred("v1", "run", 0, 10, 0.9),  # TP (ground truth A)
        pred("v1", "run", 0, 10, 0.8),  # duplicate of A: FP
        pred("v1", "run", 20, 30, 0.7),  # TP (ground truth B)
    ]
    # precision 1, 1/2, 2/3; recall 1/2, 1/2, 1 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    # (were the duplicate a TP it would be 1.0)
    result = detection_map(predictions, truth, [0.5])
    assert result.ap["run"][0.5] == pytest.approx(5 / 6)


def test_best_ground_truth_taken_so_the_next_best_is_matched():
    truth = [gt("v1", "run", 0, 10), gt("v1", "run", 4, 14)]  # A, B
    predictions = [
        # IoU with A = 1, with B = 6/14: takes A
        pred("v1", "run", 0, 10, 0.9),
        # IoU with A = 9/11 = 0.818 (best, but taken), with B = 7/13 = 0.538
        pred("v1", "run", 1, 11, 0.8),
    ]
    result = detection_map(predictions, truth, [0.5, 0.6])
    # at 0.5 the second prediction falls back to B (0.538 >= 0.5): TP, TP -> AP 1
    assert result.ap["run"][0.5] == pytest.approx(1.0)
    # at 0.6 B is too far (0.538 < 0.6): TP, FP; precision 1, 1/2; recall 1/2, 1/2 -> AP 1/2
    assert result.ap["run"][0.6] == pytest.approx(0.5)
    assert result.map == pytest.approx(0.75)


def test_tied_scores_keep_input_order():
    truth = [gt("v1", "run", 0, 10)]
    tp = pred("v1", "run", 0, 10, 0.5)
    fp = pred("v1", "run", 20, 30, 0.5)
    # equal scores: the one given first ranks first (stable sort)
    # FP first: precision 0, 1/2; recall 0, 1 -> AP 1/2.   TP first: AP 1.
    assert detection_map([fp, tp], truth, [0.5]).map == pytest.approx(0.5)
    assert detection_map([tp, fp], truth, [0.5]).map == pytest.approx(1.0)


def test_class_with_ground_truth_but_no_prediction_counts_as_zero():
    truth = [gt("v1", "run", 0, 10), gt("v1", "jump", 0, 10)]
    result = detection_map([pred("v1", "run", 0, 10, 0.9)], truth, [0.5])
    # AP(run) = 1, AP(jump) = 0 -> mAP = (1 + 0) / 2
    assert result.ap["jump"] == {0.5: 0.0}
    assert result.map == pytest.approx(0.5)


def test_prediction_of_a_class_absent_from_ground_truth_is_ignored():
    truth = [gt("v1", "run", 0, 10)]
    alone = detection_map([pred("v1", "run", 0, 10, 0.5)], truth, [0.5])
    with_extra = detection_map(
        [pred("v1", "swim", 0, 10, 0.99), pred("v1", "run", 0, 10, 0.5)], truth, [0.5]
    )
    assert with_extra == alone
    assert "swim" not in with_extra.ap


@pytest.mark.parametrize(("end", "matched_at"), [(3.0, [0.3]), (5.0, [0.3, 0.4, 0.5]),
                                                 (7.0, list(THUMOS14_IOUS))])
def test_iou_equal_to_the_threshold_counts(end, matched_at):
    # prediction [0, end] inside ground truth [0, 10]: IoU = end / 10, exactly 0.3 / 0.5 / 0.7
    # in floating point, which counts as a match at that threshold (IoU >= θ) and not above it
    result = detection_map([pred("v1", "run", 0, end, 0.9)], [gt("v1", "run", 0, 10)])
    assert result.map_per_iou == {iou: float(iou in matched_at) for iou in THUMOS14_IOUS}
    assert result.map == pytest.approx(len(matched_at) / 5)


def test_multiple_videos():
    truth = [gt("v1", "run", 0, 10), gt("v2", "run", 0, 10)]
    predictions = [
        pred("v2", "run", 0, 10, 0.9),  # TP
        pred("v1", "run", 50, 60, 0.8),  # FP: right video, no overlap
        pred("v3", "run", 0, 10, 0.7),  # FP: a video without ground truth (times match v1's)
        pred("v1", "run", 0, 10, 0.6),  # TP
    ]
    # precision 1, 1/2, 1/3, 1/2; recall 1/2, 1/2, 1/2, 1
    # envelope: 1 at recall 1/2, 1/2 at recall 1 -> AP = 1/2 * 1 + 1/2 * 1/2 = 3/4
    result = detection_map(predictions, truth, [0.5])
    assert result.ap["run"][0.5] == pytest.approx(0.75)


def test_result_does_not_depend_on_input_order_when_scores_differ():
    rng = np.random.default_rng(1)
    truth = [gt(f"v{i % 3}", f"c{i % 2}", s, s + rng.uniform(1, 8))
             for i, s in enumerate(rng.uniform(0, 50, 12))]
    starts, scores = rng.uniform(0, 50, 40), rng.random(40)
    predictions = [pred(f"v{i % 3}", f"c{i % 2}", s, s + rng.uniform(1, 8), float(score))
                   for i, (s, score) in enumerate(zip(starts, scores, strict=True))]
    reference = detection_map(predictions, truth, ACTIVITYNET_IOUS)
    shuffled = [predictions[i] for i in rng.permutation(len(predictions))]
    assert detection_map(shuffled, truth, ACTIVITYNET_IOUS) == reference
    assert 0.0 < reference.map < 1.0


# --- validation --------------------------------------------------------------------------------


def test_segment_ending_before_it_starts_is_named():
    bad = pred("clip7", "run", 5, 4, 0.9)
    with pytest.raises(ValueError, match=r"predictions\[1\].*clip7.*ends before it starts"):
        detection_map([pred("v1", "run", 0, 1, 0.5), bad], [gt("v1", "run", 0, 1)])
    with pytest.raises(ValueError, match=r"ground_truth\[0\]"):
        detection_map([], [gt("v1", "run", 3, 2)])


def test_empty_ground_truth_and_bad_thresholds_are_rejected():
    with pytest.raises(ValueError, match="ground_truth is empty"):
        detection_map([pred("v1", "run", 0, 1, 0.5)], [])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        detection_map([], [gt("v1", "run", 0, 1)], [0.0])
    with pytest.raises(ValueError, match="at least one"):
        detection_map([], [gt("v1", "run", 0, 1)], [])
    with pytest.raises(ValueError, match="non-finite"):
        detection_map([pred("v1", "run", 0, 1, float("nan"))], [gt("v1", "run", 0, 1)])


def test_no_predictions_at_all_gives_zero():
    result = detection_map([], [gt("v1", "run", 0, 1)])
    assert result.map == 0.0


def test_activitynet_thresholds_read_as_written():
    assert ACTIVITYNET_IOUS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
