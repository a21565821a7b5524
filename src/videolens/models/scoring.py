"""How a model turns cosine similarities into logits and scores: the one place that applies
temperature, bias and softmax-or-sigmoid.

Pure and shape-agnostic: works on torch tensors and numpy arrays alike, with labels on the
last axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch

ScoreKind = Literal["softmax", "sigmoid"]
Array = TypeVar("Array", torch.Tensor, np.ndarray)


@dataclass(frozen=True)
class ScoreRule:
    """``logits = scale · cosine + bias``; scores are a softmax over labels (``"softmax"``:
    CLIP, X-CLIP) or an independent sigmoid per label (``"sigmoid"``: SigLIP).

    ``scale`` is exp of the model's learned temperature (CLIP ViT-B: 100), ``bias`` its
    learned logit bias (SigLIP; 0 for contrastive softmax models).
    """

    kind: ScoreKind
    scale: float
    bias: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("softmax", "sigmoid"):
            raise ValueError(f"kind must be 'softmax' or 'sigmoid', got {self.kind!r}")

    def logits(self, cosine: Array) -> Array:
        """(..., K) cosine similarities -> (..., K) logits."""
        return self.scale * cosine + self.bias

    def probabilities(self, logits: Array) -> Array:
        """(..., K) logits -> (..., K) scores in [0, 1]."""
        if isinstance(logits, torch.Tensor):
            if self.kind == "sigmoid":
                return torch.sigmoid(logits)
            return torch.softmax(logits, dim=-1)
        logits = np.asarray(logits, dtype=np.float64)
        if self.kind == "sigmoid":
            return 1.0 / (1.0 + np.exp(-logits))
        shifted = logits - logits.max(axis=-1, keepdims=True)  # numerical stability
        exp = np.exp(shifted)
        return exp / exp.sum(axis=-1, keepdims=True)

    def scores(self, cosine: Array) -> Array:
        """(..., K) cosine -> (..., K) scores: :meth:`probabilities` of :meth:`logits`."""
        return self.probabilities(self.logits(cosine))
