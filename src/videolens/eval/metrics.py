"""Evaluation metrics, each with its definition written out.

Temporal action localization: mean average precision at temporal-IoU thresholds, as defined by
the ActivityNet challenge's ``Evaluation/eval_detection.py``
(``compute_average_precision_detection`` and ``interpolated_prec_rec``). Most recent THUMOS14
papers evaluate with that same code at IoU 0.3:0.1:0.7, so one definition serves both.

Definition, per class ``c`` and IoU threshold ``θ``:

1. ``npos`` = number of ground-truth instances of ``c`` (over all videos).
2. Predictions of ``c`` are ranked by score, high to low. Two orders for tied scores
   (``ties=``):

   - ``"stable"`` (default): ties keep input order. Deterministic and independent of the NumPy
     version; what a reader expects from "ranked by score".
   - ``"official"``: exactly ``scores.argsort()[::-1]`` as ``compute_average_precision_detection``
     does (``activitynet/ActivityNet``, ``Evaluation/eval_detection.py``). NumPy's default sort
     (introsort) is not stable, so this order among ties is implementation-defined: below 17
     predictions it is insertion sort, and the reversal puts tied predictions in *reverse* input
     order; above that it depends on the data. Use it to reproduce a published number bit for
     bit with the same NumPy; the two orders agree whenever no two scores of a class are equal.
3. Walking down the ranking, a prediction is compared with the ground truth of the same video and
   class, in decreasing temporal IoU (ties among ground-truth instances: input order with
   ``"stable"``, ``tiou_arr.argsort()[::-1]`` with ``"official"``, as the official loop). The
   first instance with
   ``IoU >= θ`` that no higher-ranked prediction has taken at ``θ`` becomes its match (TP); if
   the best-IoU instance is taken, the next best is tried, exactly as the official loop does. A
   prediction with no such instance, or in a video without ground truth of ``c``, is a false
   positive. So each ground truth is matched at most once and duplicates count as FP. IoU equal
   to ``θ`` counts (the official test is ``tiou < θ`` -> FP).
4. ``precision_i = TP_i / i`` and ``recall_i = TP_i / npos`` over the first ``i`` predictions;
   ``AP`` = all-point interpolated area under that curve (:func:`average_precision`).

``mAP(θ)`` is the mean of ``AP(c, θ)`` over every class that has ground truth — a class with
ground truth and no prediction counts as AP 0; predictions of a class absent from the ground
truth are ignored. The headline number is the mean of ``mAP(θ)`` over the thresholds (the
"average mAP" of ActivityNet).

Not modelled: THUMOS14's original MATLAB evaluation (``TH14evalDet.m``) differs — it matches from
the ground-truth side with a strict ``IoU > θ``, ignores false positives overlapping "Ambiguous"
segments and uses 11-point interpolation — so its numbers are not comparable to these.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

TieOrder = Literal["stable", "official"]

THUMOS14_IOUS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
# 0.5:0.05:0.95. Rounded so every threshold equals its decimal literal (np.linspace gives
# 0.8999999999999999 for 0.9) and dictionary keys read as written; the official thresholds differ
# by at most one ulp, which only matters for an IoU within 1e-16 of 0.9.
ACTIVITYNET_IOUS: tuple[float, ...] = tuple(round(float(x), 2) for x in np.linspace(0.5, 0.95, 10))


@dataclass(frozen=True)
class Segment:
    """One labelled stretch of a video: ground truth (``score`` unused) or a prediction.
    ``start`` and ``end`` in seconds, ``end >= start``."""

    video: str
    label: str
    start: float
    end: float
    score: float = 1.0


@dataclass
class DetectionResult:
    """Output of :func:`detection_map`.

    ``map``: mean of ``map_per_iou`` over the thresholds (ActivityNet's "average mAP").
    ``map_per_iou``: threshold -> mean AP over the ground-truth classes.
    ``ap``: label -> threshold -> AP, for every label that has ground truth.
    All values in [0, 1].
    """

    map: float
    map_per_iou: dict[float, float]
    ap: dict[str, dict[float, float]]


def temporal_iou(segment: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Temporal intersection over union of one segment with each of ``segments``.

    ``segment``: ``(2,)`` ``[start, end]`` seconds; ``segments``: ``(M, 2)``. Returns ``(M,)``
    float64: ``|a ∩ b| / |a ∪ b|``, and 0 where the segments do not overlap or the union has zero
    length (two zero-length segments), so the result is always defined and in [0, 1].
    """
    segment = np.asarray(segment, dtype=np.float64)
    segments = np.asarray(segments, dtype=np.float64)
    if segment.shape != (2,):
        raise ValueError(f"segment must have shape (2,), got {segment.shape}")
    if segments.ndim != 2 or segments.shape[1] != 2:
        raise ValueError(f"segments must have shape (M, 2), got {segments.shape}")
    start = np.maximum(segment[0], segments[:, 0])
    end = np.minimum(segment[1], segments[:, 1])
    intersection = np.clip(end - start, 0.0, None)  # (M,)
    union = (segment[1] - segment[0]) + (segments[:, 1] - segments[:, 0]) - intersection
    iou = np.zeros(len(segments), dtype=np.float64)
    positive = union > 0
    iou[positive] = intersection[positive] / union[positive]
    return iou


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """All-point interpolated average precision (PASCAL VOC 2010+, ActivityNet).

    ``precision``, ``recall``: ``(N,)`` values after each of the ``N`` ranked predictions
    (recall non-decreasing, both in [0, 1]). The curve is extended with ``(recall 0, precision
    0)`` in front and ``(recall 1, precision 0)`` behind; precision is replaced by its monotone
    envelope ``p̂(r) = max_{r' >= r} p(r')``, and AP is the area under the resulting step function,
    ``Σ_i (r_i - r_{i-1}) · p̂(r_i)`` over the points where recall changes. An empty curve gives 0.
    """
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if precision.ndim != 1 or precision.shape != recall.shape:
        raise ValueError(
            f"precision and recall must be 1-D of the same length, got {precision.shape} and "
            f"{recall.shape}"
        )
    if precision.size == 0:
        return 0.0
    if np.any(np.diff(recall) < 0):
        raise ValueError("recall must be non-decreasing along the ranking")
    padded_precision = np.concatenate([[0.0], precision, [0.0]])  # (N + 2,)
    padded_recall = np.concatenate([[0.0], recall, [1.0]])  # (N + 2,)
    # monotone envelope: running maximum from the right
    envelope = np.maximum.accumulate(padded_precision[::-1])[::-1]
    steps = np.flatnonzero(padded_recall[1:] != padded_recall[:-1]) + 1
    area = np.sum((padded_recall[steps] - padded_recall[steps - 1]) * envelope[steps])
    return float(area)


def detection_map(
    predictions: Sequence[Segment],
    ground_truth: Sequence[Segment],
    ious: Sequence[float] = THUMOS14_IOUS,
    *,
    ties: TieOrder = "stable",
) -> DetectionResult:
    """Temporal-localization mAP (ActivityNet definition, see the module docstring).

    ``predictions``: scored segments (any order; a higher score ranks first). ``ground_truth``:
    the annotated segments (``score`` ignored). ``ious``: temporal-IoU thresholds in (0, 1]
    (:data:`THUMOS14_IOUS` by default, :data:`ACTIVITYNET_IOUS` for ActivityNet). ``ties``:
    order among tied scores (and tied IoUs), ``"stable"`` or ``"official"`` (module docstring,
    step 2); the predictions of one class are ranked in their input order either way, as the
    official code ranks each class's rows of its prediction table.

    Raises ``ValueError`` for empty ground truth, a segment ending before it starts or with a
    non-finite time or score, a threshold outside (0, 1], or an unknown ``ties``.
    """
    if ties not in ("stable", "official"):
        raise ValueError(f"ties must be 'stable' or 'official', got {ties!r}")
    thresholds = [float(iou) for iou in ious]
    if not thresholds:
        raise ValueError("ious must hold at least one threshold")
    for iou in thresholds:
        if not 0.0 < iou <= 1.0:
            raise ValueError(f"IoU thresholds must be in (0, 1], got {iou}")
    if len(ground_truth) == 0:
        raise ValueError("ground_truth is empty: mAP is undefined without ground-truth segments")
    _check_segments(ground_truth, "ground_truth")
    _check_segments(predictions, "predictions")

    gt_by_label: dict[str, list[Segment]] = defaultdict(list)
    for segment in ground_truth:
        gt_by_label[segment.label].append(segment)
    predictions_by_label: dict[str, list[Segment]] = defaultdict(list)
    for segment in predictions:
        if segment.label in gt_by_label:  # a class absent from the ground truth is ignored
            predictions_by_label[segment.label].append(segment)

    ap: dict[str, dict[float, float]] = {}
    for label, gt in gt_by_label.items():  # classes in first-appearance order
        per_threshold = _class_ap(predictions_by_label.get(label, []), gt, thresholds, ties)
        ap[label] = dict(zip(thresholds, per_threshold, strict=True))
    map_per_iou = {
        iou: float(np.mean([ap[label][iou] for label in ap])) for iou in thresholds
    }
    return DetectionResult(
        map=float(np.mean(list(map_per_iou.values()))), map_per_iou=map_per_iou, ap=ap
    )


def _descending(values: np.ndarray, ties: TieOrder) -> np.ndarray:
    """Indices of ``values`` from the highest to the lowest, ties per ``ties``."""
    if ties == "official":
        return values.argsort()[::-1]  # the official expression, NumPy's default kind
    return np.argsort(-values, kind="stable")


def _class_ap(
    predictions: list[Segment], ground_truth: list[Segment], thresholds: list[float],
    ties: TieOrder = "stable",
) -> list[float]:
    """AP of one class at each threshold (steps 2-4 of the module docstring)."""
    if not predictions:
        return [0.0] * len(thresholds)
    # video -> (indices into ground_truth, (M, 2) [start, end] seconds)
    gt_by_video: dict[str, tuple[list[int], np.ndarray]] = {}
    grouped: dict[str, list[int]] = defaultdict(list)
    for index, segment in enumerate(ground_truth):
        grouped[segment.video].append(index)
    for video, indices in grouped.items():
        bounds = np.array([[ground_truth[i].start, ground_truth[i].end] for i in indices])
        gt_by_video[video] = (indices, bounds)

    scores = np.array([p.score for p in predictions], dtype=np.float64)
    ranking = _descending(scores, ties)
    taken = np.zeros((len(thresholds), len(ground_truth)), dtype=bool)
    true_positive = np.zeros((len(thresholds), len(predictions)), dtype=bool)  # (L, N)
    for rank, index in enumerate(ranking):
        prediction = predictions[index]
        if prediction.video not in gt_by_video:
            continue  # false positive at every threshold
        indices, bounds = gt_by_video[prediction.video]
        iou = temporal_iou(np.array([prediction.start, prediction.end]), bounds)  # (M,)
        candidates = _descending(iou, ties)  # best IoU first
        for level, threshold in enumerate(thresholds):
            for candidate in candidates:
                if iou[candidate] < threshold:
                    break  # every remaining candidate is worse: false positive
                gt_index = indices[candidate]
                if taken[level, gt_index]:
                    continue  # matched already at this threshold: try the next best
                taken[level, gt_index] = True
                true_positive[level, rank] = True
                break

    tp = np.cumsum(true_positive, axis=1, dtype=np.float64)  # (L, N)
    fp = np.cumsum(~true_positive, axis=1, dtype=np.float64)
    recall = tp / len(ground_truth)
    precision = tp / (tp + fp)  # tp + fp = rank + 1 > 0
    return [average_precision(precision[level], recall[level]) for level in range(len(thresholds))]


def _check_segments(segments: Sequence[Segment], name: str) -> None:
    for position, segment in enumerate(segments):
        values = (segment.start, segment.end, segment.score)
        if not all(np.isfinite(v) for v in values):
            raise ValueError(f"{name}[{position}] {segment!r} has a non-finite time or score")
        if segment.end < segment.start:
            raise ValueError(
                f"{name}[{position}] {segment!r} ends before it starts "
                f"(end {segment.end} < start {segment.start})"
            )


# --------------------------------------------------------------------------------------------
# Classification


def true_class_ranks(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1-based rank of each sample's true class among the K class scores, ties pessimistic.

    ``scores``: (N, K); ``labels``: (N,) int. Rank = 1 + the number of *other* classes scoring
    greater than or equal to the true class, so a tie never helps: a model that gives every
    class the same score has top-1 accuracy 0, not 1/K or 1.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"scores must be (N, K) and labels (N,), got {scores.shape} and "
                         f"{labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must lie in [0, {scores.shape[1]}), got {labels.min()}.."
                         f"{labels.max()}")
    true = scores[np.arange(len(labels)), labels][:, None]
    return (scores >= true).sum(axis=1).astype(np.int64)  # counts the true class itself: +1


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Share of samples whose true class is among the ``k`` best (per-video mean, ties
    pessimistic, see :func:`true_class_ranks`). The "top-1"/"top-5" of every action
    recognition paper (e.g. mmaction2's ``top_k_accuracy`` up to its tie handling)."""
    ranks = true_class_ranks(scores, labels)
    return float((ranks <= k).mean()) if len(ranks) else float("nan")


def mean_class_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Top-``k`` accuracy computed per class, then averaged over the classes that have samples
    ("mean class accuracy", mmaction2's ``mean_class_accuracy``); robust to class imbalance."""
    ranks = true_class_ranks(scores, labels)
    labels = np.asarray(labels)
    per_class = [float((ranks[labels == c] <= k).mean()) for c in np.unique(labels)]
    return float(np.mean(per_class)) if per_class else float("nan")


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predicted)), 1)
    return matrix


def multilabel_map(scores: np.ndarray, targets: np.ndarray, *,
                   actionless: Literal["exclude", "negative"] = "exclude"
                   ) -> tuple[float, np.ndarray]:
    """Charades mAP: mean over classes of non-interpolated average precision.

    Definition, as in the official ``Charades_v1_classify.m`` (Charades devkit, adapted from
    THUMOS15's ``THUMOSeventclspr``): per class, videos are ranked by score, high to low (ties
    keep input order: MATLAB's ``sort`` is stable); precision is computed at every rank;
    ``AP = sum(precision at the ranks of positive videos) / number of positives``. Classes
    without any positive video have no AP (NaN in the returned array) and are left out of the
    mean (all 157 Charades classes have test positives, so this only matters for subsets).

    ``actionless``: what to do with videos that have no positive class (75 of the 1,863
    Charades test videos). ``"exclude"`` (default) is the official script: its
    ``load_charades`` leaves the id of such a video empty, so no prediction is ever matched to
    it and its row keeps the ``-inf`` it was initialised with, ranking it below every real
    score of every class — the dataset authors' Python port (``charades_map``) writes that
    ``-inf`` explicitly. Below all positives, such a row changes no precision, so this equals
    leaving those videos out of the ranking, which is what is computed. ``"negative"`` ranks
    them by their scores as negatives of every class (what videolens did before; 0.4–0.7
    points lower on the real label matrix).

    ``scores``: (N, C); ``targets``: (N, C) with 1 for present classes, 0 otherwise.
    Returns (mAP, per-class AP (C,)).
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets) > 0
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(f"scores and targets must both be (N, C), got {scores.shape} and "
                         f"{targets.shape}")
    if actionless not in ("exclude", "negative"):
        raise ValueError(f"actionless must be 'exclude' or 'negative', got {actionless!r}")
    if actionless == "exclude":
        labelled = targets.any(axis=1)
        scores, targets = scores[labelled], targets[labelled]
    ap = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        positives = targets[:, c].sum()
        if positives == 0:
            continue
        order = np.argsort(-scores[:, c], kind="stable")
        hits = targets[order, c]
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        ap[c] = precision[hits].sum() / positives
    valid = ~np.isnan(ap)
    return (float(ap[valid].mean()) if valid.any() else float("nan")), ap


# --------------------------------------------------------------------------------------------
# Retrieval


@dataclass(frozen=True)
class RetrievalResult:
    """Recall at 1/5/10 (share of queries whose first correct item ranks within K), median and
    mean rank (1-based) of the first correct item."""

    r1: float
    r5: float
    r10: float
    median_rank: float
    mean_rank: float
    ranks: tuple[int, ...]

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}R@1": self.r1, f"{prefix}R@5": self.r5, f"{prefix}R@10": self.r10,
                f"{prefix}MdR": self.median_rank, f"{prefix}MnR": self.mean_rank}


def retrieval_ranks(similarity: np.ndarray, relevant: Sequence[Sequence[int]]) -> np.ndarray:
    """1-based rank of the best-ranked relevant item for each query, ties pessimistic.

    ``similarity``: (Q, M) query-by-item scores; ``relevant[q]``: indices of the items that are
    correct for query ``q``. The rank of item ``m`` is 1 + the number of *other* items scoring
    >= it (so a constant similarity matrix ranks every correct item last, not first); a query's
    rank is the smallest rank among its relevant items. With one caption per video this is the
    usual CLIP4Clip / Frozen-in-Time ``compute_metrics`` up to ties (they take
    ``argsort`` order, which favours low indices).
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.ndim != 2 or len(relevant) != similarity.shape[0]:
        raise ValueError(f"similarity must be (Q, M) with one relevant list per query, got "
                         f"{similarity.shape} and {len(relevant)} lists")
    ranks = np.empty(len(relevant), dtype=np.int64)
    for q, items in enumerate(relevant):
        if len(items) == 0:
            raise ValueError(f"query {q} has no relevant item")
        row = similarity[q]
        ranks[q] = min(int((row >= row[m]).sum()) for m in items)
    return ranks


def retrieval_metrics(similarity: np.ndarray, relevant: Sequence[Sequence[int]]
                      ) -> RetrievalResult:
    """R@1, R@5, R@10, median and mean rank from :func:`retrieval_ranks`.

    Several captions per video, as the papers do: text->video uses every caption as its own
    query (``relevant`` = its one video); video->text ranks all captions for each video and
    takes the best-ranked of that video's captions (``relevant`` = all its captions).
    """
    ranks = retrieval_ranks(similarity, relevant)
    return RetrievalResult(
        r1=float((ranks <= 1).mean()), r5=float((ranks <= 5).mean()),
        r10=float((ranks <= 10).mean()), median_rank=float(np.median(ranks)),
        mean_rank=float(ranks.mean()), ranks=tuple(int(r) for r in ranks),
    )


def caption_set_similarity(similarity: np.ndarray, owner: Sequence[int]) -> np.ndarray:
    """Video-by-video scores for multi-sentence video->text retrieval, CLIP4Clip's way.

    ``similarity``: (V, T) video-by-caption scores; ``owner[t]``: the video (0..V-1) caption
    ``t`` describes, every video owning at least one caption. Returns (V, V): entry ``[v, w]``
    is the best score of video ``v`` against any caption of video ``w``. Ranking row ``v`` and
    finding column ``v`` is CLIP4Clip's multi-sentence video->text evaluation
    (``ArrowLuo/CLIP4Clip``, ``main_task_retrieval.py`` ``eval_epoch`` pads the caption groups
    with ``-inf`` and ``metrics.py`` ``tensor_video_to_text_sim`` takes the maximum over each
    group): a video's candidates are the V caption *sets*, each scored by its best caption, so
    another video's 20 captions count once, not 20 times.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    owner = np.asarray(owner, dtype=np.int64)
    if similarity.ndim != 2 or owner.shape != (similarity.shape[1],):
        raise ValueError(f"similarity must be (V, T) with one owner per caption, got "
                         f"{similarity.shape} and {owner.shape}")
    videos = similarity.shape[0]
    if owner.size and (owner.min() < 0 or owner.max() >= videos):
        raise ValueError(f"caption owners must lie in [0, {videos})")
    result = np.full((videos, videos), -np.inf)
    for w in range(videos):
        columns = np.flatnonzero(owner == w)
        if not columns.size:
            raise ValueError(f"video {w} has no caption")
        result[:, w] = similarity[:, columns].max(axis=1)
    return result


def counterfactual_ranks(scores: Sequence[Sequence[float]], *,
                         ties: Literal["pessimistic", "official"] = "pessimistic"
                         ) -> np.ndarray:
    """1-based rank of each video's true caption among itself and its counterfactuals (RCAD).

    ``scores[i]``: the scores of item ``i``'s candidates, the true caption FIRST, then its
    counterfactual captions (any number >= 1; Feint6K has 5). ``ties``: ``"pessimistic"``
    (default, as everywhere in videolens): rank = 1 + the number of counterfactuals scoring
    >= the caption, so a model that cannot tell them apart is never rewarded;
    ``"official"``: 1 + the number scoring strictly more, which is what
    ``facebookresearch/feint6k`` ``eval_rcad.py`` computes (``sorted(matl).index(matl[0]) + 1``
    finds the first of the tied values). The two agree whenever no counterfactual ties the
    caption. Returns (N,) int64.
    """
    if ties not in ("pessimistic", "official"):
        raise ValueError(f"ties must be 'pessimistic' or 'official', got {ties!r}")
    ranks = np.empty(len(scores), dtype=np.int64)
    for i, row in enumerate(scores):
        values = np.asarray(row, dtype=np.float64)
        if values.ndim != 1 or values.size < 2:
            raise ValueError(f"item {i} needs its caption and at least one counterfactual")
        others = values[1:]
        beaten = (others >= values[0]) if ties == "pessimistic" else (others > values[0])
        ranks[i] = 1 + int(beaten.sum())
    return ranks
