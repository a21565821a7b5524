"""CLIP and SigLIP as frame encoders: a video is the renormalised mean of its frames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .base import VideoEmbedding, VideoTextModel, l2_normalize
from .scoring import ScoreKind


def pooled(output) -> torch.Tensor:
    """The projected embedding from ``get_*_features``.

    transformers 5 returns a ``BaseModelOutputWithPooling`` whose ``pooler_output`` holds it;
    4.x returned the tensor itself.
    """
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.inference_mode()
def projected_text_features(
    hf_model,
    tokenizer,
    texts: Sequence[str],
    *,
    padding: bool | str,
    max_length: int,
    device: torch.device,
    batch_size: int,
) -> torch.Tensor:
    """Projected, unnormalised text embeddings (K, D) float32 on the CPU, in batches."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(
            list(texts[start : start + batch_size]),
            padding=padding,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        tokens = {k: v.to(device) for k, v in tokens.items()}
        chunks.append(pooled(hf_model.get_text_features(**tokens)).float().cpu())
    return torch.cat(chunks)


class FrameAveragingModel(VideoTextModel):
    """``CLIPModel`` or ``SiglipModel`` from transformers, applied frame by frame.

    Video embedding: L2-normalise each frame embedding, average over time, renormalise.
    CLIP scores are a softmax over labels; SigLIP (trained with a sigmoid loss and a learned
    bias) scores each label independently. SigLIP was trained on text padded to the full
    context length, so its prompts are padded to ``max_position_embeddings``; CLIP prompts
    are padded only to the longest in the batch (several times faster, same result, since
    CLIP pools at the end token under a causal mask).
    """

    def __init__(
        self,
        hf_model,
        processor,
        *,
        name: str,
        kind: ScoreKind,
        device: torch.device,
        dtype: torch.dtype,
        fingerprint: str = "",
        default_frames: int = 8,
    ):
        self.model = hf_model
        self.image_processor = processor.image_processor
        self.tokenizer = processor.tokenizer
        self.name = name
        self.kind = kind
        self.device = device
        self.dtype = dtype
        self.fingerprint = fingerprint
        self.default_frames = default_frames
        self.context_length = int(hf_model.config.text_config.max_position_embeddings)
        config = hf_model.config
        # SigLIP has no projection: its embeddings are the vision tower's width
        self.embed_dim = int(getattr(config, "projection_dim", None)
                             or config.vision_config.hidden_size)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().float().exp())

    @property
    def logit_bias(self) -> float:
        bias = getattr(self.model, "logit_bias", None)
        return 0.0 if bias is None else float(bias.detach().float().reshape(()))

    @torch.inference_mode()
    def encode_frames(
        self, frames: np.ndarray | Sequence[np.ndarray], batch_size: int = 32
    ) -> torch.Tensor:
        chunks = []
        for start in range(0, len(frames), batch_size):
            batch = list(frames[start : start + batch_size])
            pixels = self.image_processor(images=batch, return_tensors="pt")["pixel_values"]
            # (b, 3, h, w) -> (b, D)
            features = pooled(
                self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))
            )
            chunks.append(l2_normalize(features.float()).cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, self.embed_dim)
    def encode_videos(self, videos: Sequence[np.ndarray]) -> list[VideoEmbedding]:
        lengths = [len(v) for v in videos]
        if not videos:
            return []
        # All frames of all clips in one list (clips may differ in size): (sum T, D), then
        # split back per clip.
        frame_embeddings = self.encode_frames([frame for clip in videos for frame in clip])
        result = []
        for clip in torch.split(frame_embeddings, lengths):
            result.append(VideoEmbedding(l2_normalize(clip.mean(dim=0))))
        return result

    def text_features(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        if not texts:
            return torch.empty(0, self.embed_dim)
        return projected_text_features(
            self.model,
            self.tokenizer,
            texts,
            padding="max_length" if self.kind == "sigmoid" else True,
            max_length=self.context_length,
            device=self.device,
            batch_size=batch_size,
        )

    def logits(self, videos: Sequence[VideoEmbedding], text: torch.Tensor) -> torch.Tensor:
        # (B, D) @ (D, K) -> (B, K)
        video_matrix = torch.stack([v.embedding for v in videos])
        return self.score_rule.logits(video_matrix @ text.T)
