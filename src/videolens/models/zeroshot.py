"""Zero-shot classifier weights from a prompt ensemble per label (open_clip's
``build_zero_shot_classifier``, as a plain function)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import UsageError
from .base import VideoTextModel
from .text_cache import cached_text_features


def build_zero_shot_classifier(
    model: VideoTextModel, prompts_per_label: Sequence[Sequence[str]]
) -> torch.Tensor:
    """Text rows (K, D), one per label, ready for ``model.logits`` and cosine scoring.

    Every prompt is encoded once (cached per model and prompt list); each label's prompts are
    pooled by the model's own rule (:meth:`VideoTextModel.pool_prompts`: CLIP and SigLIP
    average the L2-normalised rows; X-CLIP averages its raw rows, which its prompt generator
    works on) and turned into rows by :meth:`VideoTextModel.text_rows`.
    """
    if not prompts_per_label or any(len(p) == 0 for p in prompts_per_label):
        raise UsageError("every label needs at least one prompt")
    flat = [prompt for prompts in prompts_per_label for prompt in prompts]
    features = cached_text_features(model, flat)  # (sum P_k, D)
    pooled, start = [], 0
    for prompts in prompts_per_label:
        pooled.append(model.pool_prompts(features[start : start + len(prompts)]))
        start += len(prompts)
    return model.text_rows(torch.stack(pooled))  # (K, D)
