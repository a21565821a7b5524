"""Video–text encoders: one interface over CLIP, SigLIP and X-CLIP checkpoints."""

from .base import VideoEmbedding, VideoTextModel, l2_normalize
from .load import load_model, pick_device, pick_dtype
from .presets import DEFAULT_MODEL, PRESETS, Preset
from .scoring import ScoreKind, ScoreRule
from .zeroshot import build_zero_shot_classifier

__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "Preset",
    "ScoreKind",
    "ScoreRule",
    "VideoEmbedding",
    "VideoTextModel",
    "build_zero_shot_classifier",
    "l2_normalize",
    "load_model",
    "pick_device",
    "pick_dtype",
]
