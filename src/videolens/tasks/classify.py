"""Zero-shot classification answers: one video's logits and scores -> ranked labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LabelScore:
    """``score``: probability in [0, 1] (softmax over the label set for CLIP/X-CLIP, an
    independent sigmoid for SigLIP); ``logit``: ``logit_scale * cosine + logit_bias``."""

    label: str
    score: float
    logit: float


def rank_labels(
    labels: Sequence[str], logits: torch.Tensor, probabilities: torch.Tensor, top: int
) -> list[LabelScore]:
    """Labels sorted by score, high to low (ties keep label order); ``top=0`` keeps all.

    ``logits``, ``probabilities``: (K,) for K labels."""
    order = sorted(range(len(labels)), key=lambda k: (-float(probabilities[k]), k))
    if top > 0:
        order = order[:top]
    return [LabelScore(labels[k], float(probabilities[k]), float(logits[k])) for k in order]
