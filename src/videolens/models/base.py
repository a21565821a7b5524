"""The one interface every video–text model implements.

Three verbs, as in open_clip: ``encode_video`` / ``encode_frames``, ``encode_text`` and
``logits``. Normalisation happens inside the encoders and the learned temperature is applied
in one place (:meth:`VideoTextModel.logits`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

ScoreKind = Literal["softmax", "sigmoid"]


@dataclass
class VideoEmbedding:
    """One video as the model sees it.

    ``embedding``: (D,) float32, L2-normalised, on the CPU.
    ``context``: model-specific extra state needed to score text against this video, e.g.
    X-CLIP's (L, D) visual tokens that condition its prompt generator; ``None`` for CLIP/SigLIP.
    """

    embedding: torch.Tensor
    context: torch.Tensor | None = None


class VideoTextModel(ABC):
    """A vision–language model that scores videos against text.

    Attributes:
        name: the hub id or folder it was loaded from.
        kind: ``"softmax"`` when scores are a softmax over the label set (CLIP, X-CLIP);
            ``"sigmoid"`` when each label gets an independent probability (SigLIP).
        num_frames: frames the video encoder requires per clip (X-CLIP), else ``None``.
        default_frames: how many frames to sample per video when the caller does not say.
        text_normalized: whether :meth:`encode_text` returns L2-normalised rows (CLIP, SigLIP).
            X-CLIP adds a video-conditioned prompt to the raw text embedding before it
            normalises, so its text rows stay raw until :meth:`logits`.
        fingerprint: identifies the weights (used to key on-disk caches).
        embed_dim: D, the width of every embedding.
    """

    name: str
    kind: ScoreKind
    num_frames: int | None = None
    default_frames: int = 8
    text_normalized: bool = True
    fingerprint: str = ""
    embed_dim: int
    device: torch.device
    dtype: torch.dtype

    @abstractmethod
    def encode_frames(
        self, frames: np.ndarray | Sequence[np.ndarray], batch_size: int = 32
    ) -> torch.Tensor:
        """Per-frame embeddings.

        Args:
            frames: (T, H, W, 3) RGB uint8, or a sequence of (H, W, 3) frames of any sizes.
        Returns:
            (T, D) float32, L2-normalised, CPU.
        """

    @abstractmethod
    def encode_videos(self, videos: Sequence[np.ndarray]) -> list[VideoEmbedding]:
        """One :class:`VideoEmbedding` per clip; each clip is (T, H, W, 3) RGB uint8 (clips may
        differ in length and size)."""

    def encode_video(self, frames: np.ndarray) -> VideoEmbedding:
        """:meth:`encode_videos` for a single (T, H, W, 3) clip."""
        return self.encode_videos([frames])[0]

    @abstractmethod
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """(K, D) float32 CPU text embeddings, L2-normalised when ``text_normalized``."""

    @property
    @abstractmethod
    def logit_scale(self) -> float:
        """exp of the learned temperature: scores are ``logit_scale * cosine + logit_bias``."""

    @property
    def logit_bias(self) -> float:
        """Learned bias added to every logit (SigLIP); 0 for contrastive softmax models."""
        return 0.0

    @abstractmethod
    def logits(self, videos: Sequence[VideoEmbedding], text: torch.Tensor) -> torch.Tensor:
        """(B, K) float32 logits of B videos against K text rows from :meth:`encode_text`."""

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores in [0, 1]: softmax over the last axis, or an independent sigmoid per label."""
        if self.kind == "sigmoid":
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, kind={self.kind}, device={self.device})"
