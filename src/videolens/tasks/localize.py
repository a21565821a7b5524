"""Zero-shot temporal action localization: per-frame similarity curves -> segments.

Pure functions over embeddings already computed (no model, no decoding). The pipeline, per label:

1. **Curve** — one value per frame (:func:`label_curves`):

   * ``kind="softmax"`` (CLIP, X-CLIP) with K >= 2 labels: the per-frame softmax over the labels
     of ``logit_scale · cosine``, i.e. how CLIP itself classifies each frame. Contrasting against
     the other prompts cancels a per-frame offset that raw cosine keeps: a frame that is closer
     to *every* prompt would otherwise look like every action at once.
   * ``kind="softmax"`` with K = 1: a softmax over one label is 1 everywhere, so the curve is the
     raw cosine similarity and only its variation within the video carries information.
   * ``kind="sigmoid"`` (SigLIP): ``sigmoid(logit_scale · cosine + logit_bias)`` per label, which
     is already an independent probability, for any K.

2. **Smoothing** (:func:`smooth`) — a Gaussian in seconds, so unevenly spaced frames are weighted
   by their time distance, not their index.

3. **Threshold** from the video's own curve (:func:`adaptive_threshold`, an Otsu split) — in the
   spirit of test-time zero-shot localization (T3AL, Liberatori et al., CVPR 2024, whose
   training-free baseline thresholds each video's normalised similarity curve at its own mean).
   When the curve has no two-level structure the split is refused; for probability curves the
   whole video is then one detection if its mean probability is at least 0.5 and none otherwise,
   and for a raw-cosine curve (K = 1) there is no detection (nothing in the video stands out).
   For a softmax over K >= 2 labels the threshold is never below chance, 1/K: Otsu's split is
   scale-free and would otherwise "find" structure in a label whose probability is ~0
   everywhere (variations of 1e-9 are still two levels to it).

4. **Segments** (:func:`segments_from_curve`) — runs of frames at or above the threshold, gaps of
   at most ``merge_gap`` seconds closed, runs shorter than ``min_duration`` dropped.

5. **Score** — the mean of the *smoothed* curve over the segment's frames: a probability in
   [0, 1] for probability curves, a cosine in [-1, 1] for the K = 1 raw-cosine curve. The mean,
   not the max, so a long stretch of middling evidence with one spike does not outrank a
   sustained one; the smoothed curve, so a lone confident frame (one misclassified frame) scores
   about half of a sustained run at the same level and ranks below it — with the raw curve a
   one-frame false detection at 0.99 outranked a true 8 s segment at 0.9 in our synthetic tests.

6. **NMS** (:func:`nms`) — per label, greedy by score.

Times are seconds. A frame at ``timestamps[i]`` covers ``[timestamps[i], timestamps[i] +
frame_duration)``, so a segment ends at its last frame's time plus ``frame_duration``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..models.scoring import ScoreRule

# FWHM = 2·sqrt(2·ln 2)·σ: converts a window width in seconds to the Gaussian's σ
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_TRUNCATE_SIGMAS = 4.0  # weights beyond 4σ are < 3.4e-4 of the peak; dropping them bounds cost
_SMOOTH_BLOCK = 1 << 22  # (rows x band) elements per block in smooth(), bounding memory
_NORM_TOLERANCE = 1e-2


@dataclass(frozen=True)
class Detection:
    """One localized action. ``start``/``end`` in seconds; ``score`` as in the module docstring
    (a probability in [0, 1], or a mean cosine for a single prompt with a softmax model)."""

    label: str
    start: float
    end: float
    score: float


def smooth(curve: np.ndarray, timestamps: np.ndarray, window_seconds: float) -> np.ndarray:
    """Gaussian smoothing in time, robust to uneven frame spacing.

    ``y_i = Σ_j w_ij x_j / Σ_j w_ij`` with ``w_ij = exp(-(t_i - t_j)² / 2σ²)``, where the kernel's
    full width at half maximum is ``window_seconds`` (``σ = window_seconds / 2.355``; comparable
    to a moving average of that width) and weights beyond 4σ are dropped. The weights are
    renormalised at every frame, so a constant curve is unchanged, the edges are not pulled
    towards zero (no zero padding) and the output has the input's length.

    ``curve``: ``(T,)``; ``timestamps``: ``(T,)`` seconds, non-decreasing. ``window_seconds = 0``
    returns a copy. Returns ``(T,)`` float64.
    """
    values, times = _check_curve(curve, timestamps)
    if not (math.isfinite(window_seconds) and window_seconds >= 0):
        raise ValueError(f"window_seconds must be finite and >= 0, got {window_seconds}")
    if window_seconds == 0 or len(values) <= 1:
        return values.copy()
    sigma = window_seconds / _FWHM_PER_SIGMA
    reach = _TRUNCATE_SIGMAS * sigma
    # frames within ±reach of frame i are lo[i] .. hi[i]-1 (timestamps sorted)
    lo = np.searchsorted(times, times - reach, side="left")  # (T,)
    hi = np.searchsorted(times, times + reach, side="right")  # (T,)
    band = int((hi - lo).max())
    offsets = np.arange(band)
    smoothed = np.empty_like(values)
    rows = max(1, _SMOOTH_BLOCK // band)
    for first in range(0, len(values), rows):
        block = slice(first, min(first + rows, len(values)))
        neighbours = lo[block, None] + offsets[None, :]  # (B, band) frame indices
        inside = neighbours < hi[block, None]
        neighbours = np.minimum(neighbours, len(values) - 1)
        distance = (times[neighbours] - times[block, None]) / sigma  # (B, band)
        weights = np.exp(-0.5 * distance**2) * inside
        smoothed[block] = (weights * values[neighbours]).sum(axis=1) / weights.sum(axis=1)
    return smoothed


def adaptive_threshold(curve: np.ndarray, *, min_separability: float = 0.8) -> float:
    """A per-video threshold: Otsu's split of the curve's values, or ``inf`` when there is none.

    The values are split into a low group (background) and a high group (action) where the
    between-group variance ``w_lo · w_hi · (μ_hi - μ_lo)²`` is largest, searched exactly over
    every split of the sorted values; the threshold is midway between the two groups' nearest
    values. Otsu rather than ``mean + k·std``: the latter depends on how much of the video is
    action (for a clean two-level curve ``mean + 1·std`` is above the action level as soon as the
    action covers half the video), while Otsu finds the gap whatever the proportion.

    Otsu splits any curve, noise included, so the split must explain at least
    ``min_separability`` of the variance (Otsu's effectiveness ``η = σ²_between / σ²_total``):
    1 for a clean two-level curve, ~0.64 for Gaussian noise, 0.75 for uniformly spread values.
    Below that, or for a constant curve, this returns ``inf`` (nothing is above it).

    ``curve``: ``(T,)``, finite. Returns the threshold (same units as the curve).
    """
    values = np.asarray(curve, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"curve must be a non-empty 1-D array, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("curve holds NaN or infinite values")
    if not 0.0 <= min_separability <= 1.0:
        raise ValueError(f"min_separability must be in [0, 1], got {min_separability}")
    ordered = np.sort(values)
    count = len(ordered)
    total_variance = ordered.var()
    if count < 2 or total_variance <= 0:
        return math.inf
    # split after position k: low group ordered[:k], high group ordered[k:], k = 1 .. T-1
    low_size = np.arange(1, count, dtype=np.float64)  # (T-1,)
    low_mean = np.cumsum(ordered)[:-1] / low_size
    high_mean = (ordered.sum() - low_mean * low_size) / (count - low_size)
    between = (low_size / count) * (1 - low_size / count) * (high_mean - low_mean) ** 2
    # a split between equal values is not a threshold: it would cut one value in two
    between[ordered[1:] == ordered[:-1]] = -1.0
    best = int(np.argmax(between))
    if between[best] / total_variance < min_separability:
        return math.inf
    return float((ordered[best] + ordered[best + 1]) / 2)


def segments_from_curve(
    curve: np.ndarray,
    timestamps: np.ndarray,
    threshold: float,
    *,
    frame_duration: float,
    min_duration: float = 0.0,
    merge_gap: float = 0.0,
    scores: np.ndarray | None = None,
) -> list[tuple[float, float, float]]:
    """Runs of consecutive frames with ``curve >= threshold`` as ``(start, end, score)``.

    A run of frames ``i..j`` spans ``[timestamps[i], timestamps[j] + frame_duration)`` seconds.
    Runs whose gap (next start minus previous end) is at most ``merge_gap`` seconds are merged;
    then runs shorter than ``min_duration`` seconds are dropped. ``score`` is the mean of
    ``scores`` (default: ``curve``) over every frame inside the final span, including merged
    gaps — the segment claims those frames too.

    ``curve``, ``timestamps`` (seconds, non-decreasing), ``scores``: ``(T,)``. Returns segments
    in time order.
    """
    values, times = _check_curve(curve, timestamps)
    if scores is None:
        score_values = values
    else:
        score_values = np.asarray(scores, dtype=np.float64)
        if score_values.shape != values.shape:
            raise ValueError(f"scores shape {score_values.shape} != curve shape {values.shape}")
    for name, value in (("frame_duration", frame_duration), ("min_duration", min_duration),
                        ("merge_gap", merge_gap)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")

    above = np.concatenate([[False], values >= threshold, [False]])  # (T + 2,)
    edges = np.flatnonzero(above[1:] != above[:-1])  # alternating run starts and ends
    runs = [[int(a), int(b) - 1] for a, b in zip(edges[::2], edges[1::2], strict=True)]
    merged: list[list[int]] = []
    for run in runs:  # [first frame, last frame]
        if merged and times[run[0]] - (times[merged[-1][1]] + frame_duration) <= merge_gap:
            merged[-1][1] = run[1]
        else:
            merged.append(run)

    segments = []
    for first, last in merged:
        start, end = float(times[first]), float(times[last] + frame_duration)
        if end - start < min_duration:
            continue
        segments.append((start, end, float(score_values[first:last + 1].mean())))
    return segments


def nms(detections: Sequence[Detection], iou_threshold: float = 0.5) -> list[Detection]:
    """Greedy temporal non-maximum suppression, separately for each label.

    Within a label, detections are visited by score (high first, ties in input order); one is
    kept unless its temporal IoU with an already kept detection exceeds ``iou_threshold``.
    Detections of different labels never suppress each other. Returns the kept detections by
    score, high first.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    by_label: dict[str, list[Detection]] = defaultdict(list)
    for detection in sorted(detections, key=lambda d: -d.score):  # sorted() is stable
        by_label[detection.label].append(detection)
    kept: list[Detection] = []
    for group in by_label.values():
        chosen: list[Detection] = []
        for detection in group:
            if all(_iou(detection, other) <= iou_threshold for other in chosen):
                chosen.append(detection)
        kept.extend(chosen)
    kept.sort(key=lambda d: -d.score)
    return kept


def label_curves(
    frame_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    *,
    rule: ScoreRule,
) -> np.ndarray:
    """Per-frame evidence for each label, ``(T, D), (K, D) -> (T, K)`` (module docstring, step
    1): the model's scores (``rule``: softmax over labels of ``scale · cosine``, or
    ``sigmoid(scale · cosine + bias)``), except raw cosine for a softmax over K = 1 label.
    Embeddings must be L2-normalised."""
    cosine = np.asarray(frame_embeddings, np.float64) @ np.asarray(text_embeddings, np.float64).T
    if rule.kind == "softmax" and cosine.shape[1] == 1:
        return cosine
    return rule.scores(cosine)


def localize(
    frame_embeddings: np.ndarray,
    timestamps: np.ndarray,
    text_embeddings: np.ndarray,
    labels: Sequence[str],
    *,
    rule: ScoreRule,
    smoothing_seconds: float = 1.0,
    min_duration: float = 0.0,
    merge_gap: float = 0.0,
    nms_iou: float = 0.5,
    frame_duration: float | None = None,
    min_separability: float = 0.8,
) -> list[Detection]:
    """Find where each label happens in one video (the pipeline of the module docstring).

    ``frame_embeddings``: ``(T, D)`` L2-normalised frame embeddings; ``timestamps``: ``(T,)``
    seconds, non-decreasing; ``text_embeddings``: ``(K, D)`` L2-normalised, one per label;
    ``labels``: K unique names. ``rule``: the model's :class:`ScoreRule` (``model.score_rule``;
    CLIP: softmax, scale 100). ``smoothing_seconds``: FWHM of the Gaussian (:func:`smooth`).
    ``min_duration``, ``merge_gap``: seconds (:func:`segments_from_curve`). ``nms_iou``: per-label
    NMS threshold. ``frame_duration``: seconds one frame covers; default the median spacing of
    ``timestamps``. ``min_separability``: see :func:`adaptive_threshold`.

    Returns detections sorted by score, high first.
    """
    frames = np.asarray(frame_embeddings)
    text = np.asarray(text_embeddings)
    if frames.ndim != 2 or frames.shape[0] == 0:
        raise ValueError(f"frame_embeddings must be (T, D) with T >= 1, got shape {frames.shape}")
    if text.ndim != 2 or text.shape[0] == 0:
        raise ValueError(f"text_embeddings must be (K, D) with K >= 1, got shape {text.shape}")
    if frames.shape[1] != text.shape[1]:
        raise ValueError(
            f"embedding sizes differ: frames are {frames.shape[1]}-d, text is {text.shape[1]}-d"
        )
    if len(labels) != text.shape[0]:
        raise ValueError(f"{len(labels)} labels for {text.shape[0]} text embeddings")
    if len(set(labels)) != len(labels):
        raise ValueError("labels must be unique")
    times = np.asarray(timestamps, dtype=np.float64)
    if times.shape != (frames.shape[0],):
        raise ValueError(
            f"timestamps shape {times.shape} does not match {frames.shape[0]} frame embeddings"
        )
    for name, embeddings in (("frame_embeddings", frames), ("text_embeddings", text)):
        norms = np.linalg.norm(embeddings.astype(np.float64), axis=1)
        if not np.all(np.abs(norms - 1.0) <= _NORM_TOLERANCE):
            raise ValueError(f"{name} must be L2-normalised (norms range "
                             f"{norms.min():.4g}..{norms.max():.4g})")
    if frame_duration is None:
        frame_duration = _median_spacing(times)

    kind = rule.kind
    curves = label_curves(frames, text, rule=rule)  # (T, K)
    # probabilities have an absolute scale (0.5 = "more likely than not"); raw cosine does not
    calibrated = kind == "sigmoid" or curves.shape[1] > 1
    detections = []
    for k, label in enumerate(labels):
        curve = curves[:, k]  # (T,)
        smoothed = smooth(curve, times, smoothing_seconds)
        threshold = adaptive_threshold(smoothed, min_separability=min_separability)
        if math.isinf(threshold) and calibrated and smoothed.mean() >= 0.5:
            threshold = -math.inf  # no structure but present throughout: the whole video
        if kind == "softmax" and len(labels) > 1:
            threshold = max(threshold, 1.0 / len(labels))  # never below chance
        for start, end, score in segments_from_curve(
            smoothed, times, threshold, frame_duration=frame_duration,
            min_duration=min_duration, merge_gap=merge_gap,
        ):
            detections.append(Detection(label, start, end, score))
    return nms(detections, nms_iou)


def _median_spacing(times: np.ndarray) -> float:
    steps = np.diff(times)
    steps = steps[steps > 0]
    if steps.size == 0:
        raise ValueError(
            "cannot infer frame_duration from fewer than two distinct timestamps; pass it"
        )
    return float(np.median(steps))


def _check_curve(curve: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(curve, dtype=np.float64)
    times = np.asarray(timestamps, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"curve must be a non-empty 1-D array, got shape {values.shape}")
    if times.shape != values.shape:
        raise ValueError(f"timestamps shape {times.shape} != curve shape {values.shape}")
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(times))):
        raise ValueError("curve and timestamps must be finite")
    if np.any(np.diff(times) < 0):
        raise ValueError("timestamps must be non-decreasing (seconds, in frame order)")
    return values, times


def _iou(a: Detection, b: Detection) -> float:
    """Temporal IoU of two detections (0 when the union has zero length)."""
    intersection = max(0.0, min(a.end, b.end) - max(a.start, b.start))
    union = (a.end - a.start) + (b.end - b.start) - intersection
    return intersection / union if union > 0 else 0.0
