"""Research protocols: metrics (each with its definition) for zero-shot evaluation."""

from .metrics import (
    ACTIVITYNET_IOUS,
    THUMOS14_IOUS,
    DetectionResult,
    Segment,
    average_precision,
    detection_map,
    temporal_iou,
)

__all__ = [
    "ACTIVITYNET_IOUS",
    "THUMOS14_IOUS",
    "DetectionResult",
    "Segment",
    "average_precision",
    "detection_map",
    "temporal_iou",
]
