"""Metrics against faithful ports of the official evaluation code, on random inputs with ties,
empty classes and action-less videos.

Each ``official_*`` function below is written from reading the official file (named in its
docstring) and keeps its control flow, including its tie order, so a disagreement is ours.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import torch

from videolens.eval.metrics import (
    Segment,
    caption_set_similarity,
    counterfactual_ranks,
    detection_map,
    multilabel_map,
    retrieval_metrics,
)

# --- ActivityNet Evaluation/eval_detection.py ------------------------------------------------


def official_segment_iou(target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``segment_iou`` of ActivityNet ``Evaluation/utils.py``."""
    tt1 = np.maximum(target[0], candidates[:, 0])
    tt2 = np.minimum(target[1], candidates[:, 1])
    intersection = (tt2 - tt1).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - intersection
    return intersection.astype(float) / union


def official_interpolated_prec_rec(prec: np.ndarray, rec: np.ndarray) -> float:
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def official_class_ap(gt: list[tuple], pred: list[tuple], tious: list[float]) -> np.ndarray:
    """``compute_average_precision_detection``: ``gt`` rows (video, start, end) and ``pred``
    rows (video, start, end, score) of one class, in table order."""
    ap = np.zeros(len(tious))
    if not pred:
        return ap
    npos = float(len(gt))
    lock_gt = np.ones((len(tious), len(gt))) * -1
    sort_idx = np.array([p[3] for p in pred]).argsort()[::-1]
    prediction = [pred[i] for i in sort_idx]
    tp = np.zeros((len(tious), len(prediction)))
    fp = np.zeros((len(tious), len(prediction)))
    by_video: dict[str, list[int]] = defaultdict(list)  # groupby('video-id'), table order
    for index, row in enumerate(gt):
        by_video[row[0]].append(index)
    for idx, this_pred in enumerate(prediction):
        if this_pred[0] not in by_video:
            fp[:, idx] = 1
            continue
        this_gt = by_video[this_pred[0]]  # reset_index(): 'index' = position in the class gt
        tiou_arr = official_segment_iou(np.array(this_pred[1:3]),
                                        np.array([gt[j][1:3] for j in this_gt]))
        tiou_sorted_idx = tiou_arr.argsort()[::-1]
        for tidx, tiou_thr in enumerate(tious):
            for jdx in tiou_sorted_idx:
                if tiou_arr[jdx] < tiou_thr:
                    fp[tidx, idx] = 1
                    break
                if lock_gt[tidx, this_gt[jdx]] >= 0:
                    continue
                tp[tidx, idx] = 1
                lock_gt[tidx, this_gt[jdx]] = idx
                break
            if fp[tidx, idx] == 0 and tp[tidx, idx] == 0:
                fp[tidx, idx] = 1
    tp_cumsum = np.cumsum(tp, axis=1).astype(float)
    fp_cumsum = np.cumsum(fp, axis=1).astype(float)
    recall = tp_cumsum / npos
    precision = tp_cumsum / (tp_cumsum + fp_cumsum)
    for tidx in range(len(tious)):
        ap[tidx] = official_interpolated_prec_rec(precision[tidx, :], recall[tidx, :])
    return ap


def official_detection_map(gt: list[Segment], pred: list[Segment], tious: list[float]
                           ) -> tuple[float, np.ndarray]:
    """``ANETdetection.evaluate``: classes are the ground truth's, ``mAP = ap.mean(axis=1)``,
    the average mAP its mean."""
    labels = list(dict.fromkeys(s.label for s in gt))
    ap = np.zeros((len(tious), len(labels)))
    for c, label in enumerate(labels):
        rows_gt = [(s.video, s.start, s.end) for s in gt if s.label == label]
        rows_pred = [(s.video, s.start, s.end, s.score) for s in pred if s.label == label]
        ap[:, c] = official_class_ap(rows_gt, rows_pred, tious)
    per_iou = ap.mean(axis=1)
    return float(per_iou.mean()), per_iou


def random_detection_case(rng: np.random.Generator, ties: bool
                          ) -> tuple[list[Segment], list[Segment]]:
    """Ground truth and predictions over 4 videos and 4 labels; with ``ties`` scores come from
    a few values and segments from an integer grid (tied scores and tied IoUs), else both are
    continuous. No zero-length segment (the official IoU is 0/0 = NaN for two of them)."""
    videos, labels = ["v0", "v1", "v2", "v3"], ["run", "jump", "swim", "cook"]
    gt, pred = [], []
    for _ in range(rng.integers(1, 12)):
        start = rng.integers(0, 20) if ties else rng.uniform(0, 20)
        gt.append(Segment(str(rng.choice(videos[:3])), str(rng.choice(labels[:3])),
                          float(start), float(start + (rng.integers(1, 8) if ties
                                                       else rng.uniform(0.5, 8)))))
    for _ in range(rng.integers(0, 30)):
        start = rng.integers(0, 20) if ties else rng.uniform(0, 20)
        score = rng.choice([0.2, 0.5, 0.9]) if ties else rng.uniform()
        # labels[3] has no ground truth and v3 no ground truth at all: both must be ignored/FP
        pred.append(Segment(str(rng.choice(videos)), str(rng.choice(labels)), float(start),
                            float(start + (rng.integers(1, 8) if ties else rng.uniform(0.5, 8))),
                            float(score)))
    return gt, pred


@pytest.mark.parametrize("ties", [True, False])
def test_detection_map_official_order_equals_the_port(ties):
    rng = np.random.default_rng(7 if ties else 8)
    tious = [0.3, 0.5, 0.7]
    compared_ties = 0
    for _ in range(400):
        gt, pred = random_detection_case(rng, ties)
        expected, per_iou = official_detection_map(gt, pred, tious)
        ours = detection_map(pred, gt, tious, ties="official")
        assert ours.map == pytest.approx(expected, abs=1e-12)
        assert [ours.map_per_iou[t] for t in tious] == pytest.approx(list(per_iou), abs=1e-12)
        scores = [p.score for p in pred]
        compared_ties += len(set(scores)) < len(scores)
    assert not ties or compared_ties > 300  # the tie cases really had tied scores


def test_stable_order_equals_the_port_without_ties_and_differs_with_them():
    rng = np.random.default_rng(9)
    for _ in range(300):
        gt, pred = random_detection_case(rng, ties=False)
        assert detection_map(pred, gt, [0.5]).map == pytest.approx(
            official_detection_map(gt, pred, [0.5])[0], abs=1e-12)
    # two tied predictions, the FP given first: stable ranks it first (AP 1/2), the official
    # argsort()[::-1] on 2 items reverses them (AP 1)
    truth = [Segment("v", "run", 0, 10)]
    tied = [Segment("v", "run", 20, 30, 0.5), Segment("v", "run", 0, 10, 0.5)]
    assert detection_map(tied, truth, [0.5]).map == pytest.approx(0.5)
    assert detection_map(tied, truth, [0.5], ties="official").map == pytest.approx(1.0)
    assert official_detection_map(truth, tied, [0.5])[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ties"):
        detection_map(tied, truth, [0.5], ties="random")


# --- Charades_v1_classify.m -----------------------------------------------------------------


def official_charades(scores: np.ndarray, gtlabel: np.ndarray) -> np.ndarray:
    """Per-class AP of ``Charades_v1_classify.m`` (Charades devkit): ``load_charades`` leaves
    the id of an action-less video empty, so its row of ``test`` stays ``-inf``;
    ``THUMOSeventclspr`` ranks with MATLAB's stable ``sort(-conf)`` and averages the
    precision at the positives (``0/0 = NaN`` for a class without positives)."""
    test = scores.astype(float).copy()
    test[gtlabel.sum(axis=1) == 0, :] = -np.inf
    aps = []
    for c in range(scores.shape[1]):
        conf, labels = test[:, c], gtlabel[:, c]
        sortind = np.argsort(-conf, kind="stable")
        tp = np.cumsum(labels[sortind] == 1)
        fp = np.cumsum(labels[sortind] != 1)
        npos = int((labels == 1).sum())
        prec = tp / (fp + tp)
        hits = labels[sortind] == 1
        with np.errstate(invalid="ignore"):
            aps.append(prec[hits].sum() / npos if npos else np.nan)
    return np.array(aps)


def test_charades_map_equals_the_official_script_on_random_matrices():
    rng = np.random.default_rng(3)
    differed = 0
    for _ in range(500):
        n, c = rng.integers(2, 40), rng.integers(1, 8)
        scores = rng.choice([0.1, 0.4, 0.7], size=(n, c)) if rng.uniform() < 0.5 else \
            rng.normal(size=(n, c))
        targets = (rng.uniform(size=(n, c)) < 0.25).astype(int)
        targets[rng.uniform(size=n) < 0.2] = 0  # action-less videos
        expected = official_charades(scores, targets)
        mean_ap, ap = multilabel_map(scores, targets)
        np.testing.assert_allclose(ap, expected, atol=1e-12)  # NaN where no positive
        if not np.isnan(expected).all():
            assert mean_ap == pytest.approx(np.nanmean(expected), abs=1e-12)
        negative = multilabel_map(scores, targets, actionless="negative")[0]
        differed += not np.isnan(mean_ap) and abs(negative - mean_ap) > 1e-9
    assert differed > 50  # ranking action-less videos as negatives does change mAP


def test_charades_actionless_video_above_a_positive():
    scores = np.array([[0.9], [0.5]])
    targets = np.array([[0], [1]])  # the top-scored video has no action at all
    assert multilabel_map(scores, targets)[0] == 1.0  # left out: the positive ranks first
    assert multilabel_map(scores, targets, actionless="negative")[0] == 0.5
    with pytest.raises(ValueError, match="actionless"):
        multilabel_map(scores, targets, actionless="drop")


# --- CLIP4Clip metrics.py ----------------------------------------------------------------------


def official_compute_metrics(x: np.ndarray) -> tuple[dict, np.ndarray]:
    """``compute_metrics`` of CLIP4Clip ``metrics.py``; also returns the raw ``ind`` rows."""
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, np.newaxis]
    rows, ind = np.where(sx - d == 0)
    metrics = {"R1": float(np.sum(ind == 0)) * 100 / len(ind),
               "R5": float(np.sum(ind < 5)) * 100 / len(ind),
               "R10": float(np.sum(ind < 10)) * 100 / len(ind),
               "MR": np.median(ind) + 1, "MeanR": np.mean(ind) + 1}
    return metrics, np.stack([rows, ind])


def official_multi_sentence(sim_matrix: np.ndarray, cut_off_points: list[int]
                            ) -> tuple[dict, dict]:
    """``main_task_retrieval.py`` ``eval_epoch`` multi-sentence branch: ``sim_matrix`` is
    (texts, videos), texts grouped by video, ``cut_off_points`` the last text of each group;
    groups padded with ``-inf``; t2v by ``tensor_text_to_video_metrics``, v2t by
    ``compute_metrics(tensor_video_to_text_sim(...))``."""
    cut = [itm + 1 for itm in cut_off_points]
    max_length = max(e - s for s, e in zip([0] + cut[:-1], cut, strict=True))
    blocks = [np.concatenate((sim_matrix[s:e], np.full((max_length - e + s,
                                                        sim_matrix.shape[1]), -np.inf)))
              for s, e in zip([0] + cut[:-1], cut, strict=True)]
    tensor = torch.tensor(np.stack(blocks))  # (V, max_len, V)
    stacked = tensor.permute(1, 0, 2)
    first = torch.argsort(stacked, dim=-1, descending=True)
    second = torch.argsort(first, dim=-1, descending=False)
    ranks = torch.flatten(torch.diagonal(second, dim1=1, dim2=2))
    original = torch.flatten(torch.diagonal(tensor, dim1=0, dim2=2))
    valid = ranks[~torch.logical_or(torch.isinf(original), torch.isnan(original))].numpy()
    t2v = {"R1": float(np.sum(valid < 1) * 100 / len(valid)),
           "R5": float(np.sum(valid < 5) * 100 / len(valid)),
           "R10": float(np.sum(valid < 10) * 100 / len(valid)),
           "MR": float(np.median(valid + 1)), "MeanR": float(np.mean(valid + 1))}
    tensor[tensor != tensor] = float("-inf")
    values, _ = torch.max(tensor, dim=1, keepdim=True)
    v2t = official_compute_metrics(torch.squeeze(values).T.numpy())[0]
    return t2v, v2t


def as_clip4clip(result) -> dict:
    return {"R1": 100 * result.r1, "R5": 100 * result.r5, "R10": 100 * result.r10,
            "MR": result.median_rank, "MeanR": result.mean_rank}


def test_multi_sentence_retrieval_equals_clip4clip_on_random_scores():
    rng = np.random.default_rng(5)
    for _ in range(200):
        videos = int(rng.integers(2, 15))
        counts = rng.integers(1, 6, size=videos)
        owner = np.repeat(np.arange(videos), counts)
        similarity = rng.normal(size=(videos, len(owner)))  # continuous: no ties
        cut_off = list(np.cumsum(counts) - 1)
        t2v_expected, v2t_expected = official_multi_sentence(similarity.T, cut_off)
        t2v = retrieval_metrics(similarity.T, [[o] for o in owner])
        v2t = retrieval_metrics(caption_set_similarity(similarity, owner),
                                [[v] for v in range(videos)])
        assert as_clip4clip(t2v) == pytest.approx(t2v_expected)
        assert as_clip4clip(v2t) == pytest.approx(v2t_expected)


def test_clip4clip_counts_a_tied_query_once_per_tied_item_ours_ranks_it_last():
    rng = np.random.default_rng(6)
    for _ in range(200):
        n = int(rng.integers(2, 12))
        x = rng.choice([0.0, 0.5, 1.0], size=(n, n))
        _, positions = official_compute_metrics(x)
        ours = retrieval_metrics(x, [[i] for i in range(n)]).ranks
        # every tied position of row i appears in CLIP4Clip's list; ours is the last of them
        for i in range(n):
            assert ours[i] == positions[1][positions[0] == i].max() + 1


def test_caption_set_ranking_differs_from_ranking_every_caption():
    # video 0 has 1 caption scoring 0.5; video 1 has 3 captions all more similar to video 0
    similarity = np.array([[0.5, 0.6, 0.7, 0.8], [0.0, 0.9, 0.8, 0.7]])
    owner = [0, 1, 1, 1]
    sets = caption_set_similarity(similarity, owner)
    assert sets.tolist() == [[0.5, 0.8], [0.0, 0.9]]
    assert retrieval_metrics(sets, [[0], [1]]).ranks == (2, 1)  # CLIP4Clip: one rival set
    assert retrieval_metrics(similarity, [[0], [1, 2, 3]]).ranks == (4, 1)  # every caption
    with pytest.raises(ValueError, match="no caption"):
        caption_set_similarity(similarity, [0, 0, 0, 0])


# --- Feint6K eval_rcad.py -----------------------------------------------------------------------


def official_rcad(sim_mat: np.ndarray) -> np.ndarray:
    """``print_metrics`` of ``facebookresearch/feint6k`` ``eval_rcad.py``: ``sim_mat`` is
    (6 N, N), rows ``6 q .. 6 q + 5`` the caption and 5 counterfactuals of video ``q``."""
    rank = []
    for qid in range(sim_mat.shape[0] // 6):
        mat = sim_mat[qid * 6:qid * 6 + 6, qid]
        matl = list(-mat)
        rank.append(sorted(matl).index(matl[0]) + 1)
    return np.array(rank)


def test_rcad_ranks_equal_the_release_with_ties_official_and_pessimistic_without():
    rng = np.random.default_rng(11)
    for tied in (True, False):
        n = 50
        sim = rng.choice([0.1, 0.2, 0.3], size=(6 * n, n)) if tied else rng.normal(size=(6 * n,
                                                                                         n))
        per_item = [sim[6 * q:6 * q + 6, q] for q in range(n)]
        expected = official_rcad(sim)
        assert counterfactual_ranks(per_item, ties="official").tolist() == expected.tolist()
        pessimistic = counterfactual_ranks(per_item)
        if tied:
            assert (pessimistic >= expected).all() and (pessimistic > expected).any()
        else:
            assert pessimistic.tolist() == expected.tolist()
    with pytest.raises(ValueError, match="at least one counterfactual"):
        counterfactual_ranks([[0.5]])
