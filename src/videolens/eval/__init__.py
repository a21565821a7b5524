"""Research protocols: metrics (each with its definition and official counterpart), test
sampling (views, crops, dense clips), paper recipes, an embedding cache, protocols."""

from .metrics import (
    ACTIVITYNET_IOUS,
    THUMOS14_IOUS,
    DetectionResult,
    RetrievalResult,
    Segment,
    average_precision,
    caption_set_similarity,
    confusion_matrix,
    counterfactual_ranks,
    detection_map,
    mean_class_accuracy,
    multilabel_map,
    retrieval_metrics,
    retrieval_ranks,
    temporal_iou,
    topk_accuracy,
    true_class_ranks,
)

__all__ = [
    "ACTIVITYNET_IOUS",
    "THUMOS14_IOUS",
    "DetectionResult",
    "RetrievalResult",
    "Segment",
    "average_precision",
    "caption_set_similarity",
    "confusion_matrix",
    "counterfactual_ranks",
    "detection_map",
    "mean_class_accuracy",
    "multilabel_map",
    "retrieval_metrics",
    "retrieval_ranks",
    "temporal_iou",
    "topk_accuracy",
    "true_class_ranks",
]
