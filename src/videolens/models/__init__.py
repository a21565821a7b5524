"""Video–text encoders: one interface over CLIP, SigLIP and X-CLIP checkpoints."""

from .base import ScoreKind, VideoEmbedding, VideoTextModel
from .load import load_model, pick_device, pick_dtype
from .presets import DEFAULT_MODEL, PRESETS, Preset

__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "Preset",
    "ScoreKind",
    "VideoEmbedding",
    "VideoTextModel",
    "load_model",
    "pick_device",
    "pick_dtype",
]
