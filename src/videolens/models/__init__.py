"""Video–text encoders: one interface over CLIP, SigLIP and X-CLIP checkpoints.

Names are imported on first use: the presets, :func:`locate` and the argument parser that
lists them need neither torch nor transformers, which take seconds to import.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .presets import DEFAULT_MODEL, PRESETS, Preset

# public name -> submodule that defines it
_LAZY = {
    "VideoEmbedding": "base",
    "VideoTextModel": "base",
    "l2_normalize": "base",
    "ModelSource": "load",
    "load_model": "load",
    "locate": "load",
    "pick_device": "load",
    "pick_dtype": "load",
    "ScoreKind": "scoring",
    "ScoreRule": "scoring",
    "build_zero_shot_classifier": "zeroshot",
}

if TYPE_CHECKING:
    from .base import VideoEmbedding, VideoTextModel, l2_normalize
    from .load import ModelSource, load_model, locate, pick_device, pick_dtype
    from .scoring import ScoreKind, ScoreRule
    from .zeroshot import build_zero_shot_classifier


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "ModelSource",
    "Preset",
    "ScoreKind",
    "ScoreRule",
    "VideoEmbedding",
    "VideoTextModel",
    "build_zero_shot_classifier",
    "l2_normalize",
    "load_model",
    "locate",
    "pick_device",
    "pick_dtype",
]
