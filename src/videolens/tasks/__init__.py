"""Embeddings -> answers: zero-shot classification (localization and search come later)."""

from .classify import (
    LabelScore,
    VideoResult,
    build_zero_shot_classifier,
    classify,
    iter_classify,
    rank_labels,
)

__all__ = [
    "LabelScore",
    "VideoResult",
    "build_zero_shot_classifier",
    "classify",
    "iter_classify",
    "rank_labels",
]
