"""The one interface every video–text model implements.

Three verbs, as in open_clip: ``encode_video`` / ``encode_frames``, ``encode_text`` and
``logits``. The model owns its rules: normalisation happens inside the encoders, text rows
come out ready to score, temperature/bias and softmax-or-sigmoid live in one
:class:`~videolens.models.scoring.ScoreRule`, and :meth:`VideoTextModel.frames_for` is the
one rule for how many frames a video is sampled to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UsageError
from .preprocess import PreprocessSpec, spec_from_processor
from .scoring import ScoreKind, ScoreRule


@dataclass
class VideoEmbedding:
    """One video as the model sees it.

    ``embedding``: (D,) float32, L2-normalised, on the CPU.
    ``context``: model-specific extra state needed to score text against this video, e.g.
    X-CLIP's (L, D) visual tokens that condition its prompt generator; ``None`` for CLIP/SigLIP.
    """

    embedding: torch.Tensor
    context: torch.Tensor | None = None


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class VideoTextModel(ABC):
    """A vision–language model that scores videos against text.

    Attributes:
        name: the hub id or folder it was loaded from.
        kind: ``"softmax"`` when scores are a softmax over the label set (CLIP, X-CLIP);
            ``"sigmoid"`` when each label gets an independent probability (SigLIP).
        num_frames: frames the video encoder requires per clip (X-CLIP), else ``None``.
        default_frames: how many frames to sample per video when the caller does not say.
        frame_max_side: longest side, in pixels, frames are shrunk to when they are decoded
            for this model at a fixed rate (index, localize): CLIP-family processors resize
            to 224-384 px, so 448 keeps their input exact while a long video stays small in
            memory and cheap to hand between processes.
        decode_short_side: frames are scaled while they are decoded so that their shorter
            side is at most this many pixels (336: the largest CLIP-family input, ViT-L/14 at
            336 px, and 1.5x the usual 224, so the processor's own resize still has detail to
            work with): memory then depends on the model's input size, not on the video's
            resolution. Videos whose short side is already within it decode unchanged.
        fingerprint: identifies the weights (used to key on-disk caches).
        embed_dim: D, the width of every embedding.
        runtime: how it computes, set by ``load_model``: device, dtype and why, backend and
            precision (``--verbose`` prints it; :attr:`meta` records it).
    """

    name: str
    kind: ScoreKind
    num_frames: int | None = None
    default_frames: int = 8
    frame_max_side: int = 448
    decode_short_side: int = 336
    fingerprint: str = ""
    embed_dim: int
    device: torch.device
    dtype: torch.dtype
    runtime: dict | None = None

    # --- vision -------------------------------------------------------------------------

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

    def encode_pixels(self, pixels: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """:meth:`encode_frames` for frames already preprocessed, e.g. in a decode worker.

        Args:
            pixels: (T, 3, h, w) uint8 from ``preprocess.resize_crop(frames,
                self.preprocess_spec)`` (normalised here), or float model input.
        Returns:
            (T, D) float32, L2-normalised, CPU.
        """
        raise NotImplementedError(f"{type(self).__name__} encodes frames only")

    @property
    def preprocess_spec(self) -> PreprocessSpec | None:
        """The checkpoint's own preprocessing as plain data (from its image processor), for
        the tensor path of :mod:`.preprocess`; ``None`` when only the processor itself
        reproduces it (then :meth:`encode_frames` is the way in)."""
        if "_preprocess_spec" not in self.__dict__:
            self._preprocess_spec = spec_from_processor(getattr(self, "image_processor", None))
        return self._preprocess_spec

    def frames_for(self, frames: int | None) -> int:
        """Frames to sample per video: ``frames`` if given and valid, else the model's default.

        Raises:
            UsageError: fewer than 1, or not the exact clip length a video encoder requires.
        """
        if frames is None:
            return self.default_frames
        if frames < 1:
            raise UsageError(f"--frames must be at least 1, got {frames}")
        if self.num_frames is not None and frames != self.num_frames:
            raise UsageError(
                f"{self.name} encodes exactly {self.num_frames} frames per video, got --frames "
                f"{frames}",
                hint=f"leave --frames out or pass --frames {self.num_frames}",
            )
        return frames

    # --- text ---------------------------------------------------------------------------

    @abstractmethod
    def text_features(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """(K, D) float32 CPU projected text features as the checkpoint computes them, before
        normalisation. Callers want :meth:`encode_text`; this is what the text cache stores."""

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(K, D) float32 CPU text rows, L2-normalised and ready to score: cosine against
        frame or video embeddings, or :meth:`logits`. Cached per (weights, texts)."""
        from .text_cache import cached_text_features

        return self.text_rows(cached_text_features(self, texts))

    def pool_prompts(self, features: torch.Tensor) -> torch.Tensor:
        """One label's (D,) feature from its prompts' (P, D) :meth:`text_features`.

        CLIP's prompt ensembling: the mean of the L2-normalised prompt embeddings (renormalised
        by :meth:`text_rows`)."""
        return l2_normalize(features).mean(dim=0)

    def text_rows(self, features: torch.Tensor) -> torch.Tensor:
        """(K, D) features (from :meth:`text_features` or :meth:`pool_prompts`) -> the rows
        :meth:`encode_text` returns."""
        return l2_normalize(features)

    # --- scoring ------------------------------------------------------------------------

    @property
    @abstractmethod
    def logit_scale(self) -> float:
        """exp of the learned temperature: scores are ``logit_scale * cosine + logit_bias``."""

    @property
    def logit_bias(self) -> float:
        """Learned bias added to every logit (SigLIP); 0 for contrastive softmax models."""
        return 0.0

    @property
    def score_rule(self) -> ScoreRule:
        """Temperature, bias and softmax-or-sigmoid, for scoring precomputed cosines (frames
        in localization, cached embeddings in eval) exactly as :meth:`logits` does."""
        return ScoreRule(self.kind, self.logit_scale, self.logit_bias)

    @abstractmethod
    def logits(self, videos: Sequence[VideoEmbedding], text: torch.Tensor) -> torch.Tensor:
        """(B, K) float32 logits of B videos against K text rows from :meth:`encode_text`."""

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores in [0, 1]: softmax over the last axis, or an independent sigmoid per label."""
        return self.score_rule.probabilities(logits)

    # --- identity -----------------------------------------------------------------------

    @property
    def meta(self) -> dict:
        """What a library or cache records about the model its vectors come from."""
        meta = {"name": self.name, "fingerprint": self.fingerprint,
                "embed_dim": int(self.embed_dim), "kind": self.kind}
        if self.runtime:
            meta["runtime"] = dict(self.runtime)
        return meta

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, kind={self.kind}, device={self.device})"
