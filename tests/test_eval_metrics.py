"""Classification, multi-label and retrieval metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from videolens.eval.metrics import (
    confusion_matrix,
    mean_class_accuracy,
    multilabel_map,
    retrieval_metrics,
    retrieval_ranks,
    topk_accuracy,
    true_class_ranks,
)

SCORES = np.array([
    [0.9, 0.05, 0.05],  # true 0: rank 1
    [0.5, 0.3, 0.2],    # true 1: rank 2
    [0.1, 0.6, 0.3],    # true 2: rank 2
    [0.2, 0.2, 0.6],    # true 2: rank 1
])
LABELS = np.array([0, 1, 2, 2])


def test_topk_and_mean_class_accuracy():
    assert true_class_ranks(SCORES, LABELS).tolist() == [1, 2, 2, 1]
    assert topk_accuracy(SCORES, LABELS, 1) == 0.5  # 2 of 4
    assert topk_accuracy(SCORES, LABELS, 2) == 1.0
    # per class top-1: class 0 -> 1/1, class 1 -> 0/1, class 2 -> 1/2; mean = 0.5
    assert mean_class_accuracy(SCORES, LABELS, 1) == pytest.approx(0.5)
    # drop the easy class-2 sample: class 2 -> 0/1, mean = (1 + 0 + 0) / 3
    assert mean_class_accuracy(SCORES[:3], LABELS[:3], 1) == pytest.approx(1 / 3)


def test_ties_are_pessimistic():
    flat = np.full((3, 4), 0.25)
    assert true_class_ranks(flat, np.array([0, 1, 3])).tolist() == [4, 4, 4]
    assert topk_accuracy(flat, np.array([0, 1, 3]), 3) == 0.0
    assert topk_accuracy(flat, np.array([0, 1, 3]), 4) == 1.0


def test_bad_shapes_and_labels():
    with pytest.raises(ValueError, match="labels must lie"):
        topk_accuracy(SCORES, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        topk_accuracy(SCORES[0], LABELS)


def test_confusion_matrix():
    predicted = SCORES.argmax(1)  # [0, 0, 1, 2]
    assert confusion_matrix(predicted, LABELS, 3).tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]


def test_charades_map_by_hand():
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.3, 0.2], [0.1, 0.6]])
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    mean_ap, ap = multilabel_map(scores, targets)
    # class 0 ranking: v0 (+), v1 (-), v2 (+), v3 (-): precisions at positives 1/1 and 2/3
    #   AP = (1 + 2/3) / 2 = 0.8333
    # class 1 ranking: v1 (+), v3, v2, v0: AP = 1
    assert ap.tolist() == pytest.approx([5 / 6, 1.0])
    assert mean_ap == pytest.approx((5 / 6 + 1) / 2)


def test_charades_map_ties_keep_input_order_and_empty_classes_are_skipped():
    scores = np.array([[0.5, 0.3, 0.0], [0.5, 0.3, 0.0]])
    targets = np.array([[0, 1, 0], [1, 0, 0]])
    mean_ap, ap = multilabel_map(scores, targets)
    # class 0 tie: input order v0 (-), v1 (+): AP = 1/2; class 1: v0 (+) first: AP = 1
    assert ap[:2].tolist() == [0.5, 1.0] and np.isnan(ap[2])
    assert mean_ap == 0.75


def test_retrieval_single_caption():
    # 3 texts x 3 videos; text i matches video i
    similarity = np.array([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.2, 0.3, 0.1]])
    result = retrieval_metrics(similarity, [[0], [1], [2]])
    # ranks: text0 -> 1; text1: 0.8 > 0.5 -> 2; text2: 0.2, 0.3 > 0.1 -> 3
    assert result.ranks == (1, 2, 3)
    assert (result.r1, result.r5, result.r10) == (pytest.approx(1 / 3), 1.0, 1.0)
    assert (result.median_rank, result.mean_rank) == (2.0, 2.0)
    assert set(result.as_dict("t2v_")) == {"t2v_R@1", "t2v_R@5", "t2v_R@10", "t2v_MdR",
                                           "t2v_MnR"}


def test_retrieval_multiple_captions_and_ties():
    # video->text: 2 videos x 4 captions; captions 0,1 belong to video 0, 2,3 to video 1
    similarity = np.array([[0.1, 0.7, 0.9, 0.2], [0.5, 0.5, 0.5, 0.1]])
    ranks = retrieval_ranks(similarity, [[0, 1], [2, 3]])
    # video 0: caption 1 ranks 2nd (after caption 2); video 1: caption 2 ties with 0 and 1 ->
    # pessimistic rank 3
    assert ranks.tolist() == [2, 3]
    with pytest.raises(ValueError, match="no relevant"):
        retrieval_ranks(similarity, [[0], []])
