"""CLIP and SigLIP as frame encoders: a video is the renormalised mean of its frames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import temporal
from .base import VideoEmbedding, VideoTextModel, l2_normalize
from .preprocess import normalize
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
    encode=None,
) -> torch.Tensor:
    """Projected, unnormalised text embeddings (K, D) float32 on the CPU, in batches.

    ``encode``: tokens -> (k, D) features in place of the torch text tower (a backend's
    exported copy, :mod:`.backends`).
    """
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
        features = (encode(**tokens) if encode is not None
                    else pooled(hf_model.get_text_features(**tokens)))
        chunks.append(features.float().cpu())
    return torch.cat(chunks)


class FrameAveragingModel(VideoTextModel):
    """``CLIPModel`` or ``SiglipModel`` from transformers, applied frame by frame.

    Video embedding: L2-normalise each frame embedding, average over time, renormalise.
    CLIP scores are a softmax over labels; SigLIP (trained with a sigmoid loss and a learned
    bias) scores each label independently. SigLIP was trained on text padded to the full
    context length, so its prompts are padded to ``max_position_embeddings``; CLIP prompts
    are padded only to the longest in the batch (several times faster, same result, since
    CLIP pools at the end token under a causal mask).

    A checkpoint trained with ``videolens train --temporal expand`` records that in its
    config; the vision tower then attends across neighbouring frames (:mod:`.temporal`):
    each clip is encoded as one sequence, and :meth:`encode_frames` treats every run of
    ``default_frames`` consecutive frames as a clip.
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
        # an exported copy of the towers (OpenVINO, ONNX Runtime) that encodes in place of
        # torch when set by `load_model(backend=...)`; see .backends
        self.runner = None
        self.text_padding: bool | str = "max_length" if kind == "sigmoid" else True
        # what `videolens train` saved: frames per clip and the temporal attention it used
        self.default_frames = getattr(hf_model.config, temporal.FRAMES_KEY, None) or default_frames
        self.temporal = temporal.temporal_mode(hf_model)
        temporal.set_temporal(hf_model, self.temporal)
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
        window = 1 if self.temporal == "none" else self.default_frames
        return self._encode(frames, window, batch_size)

    def _encode(self, frames: np.ndarray | Sequence[np.ndarray] | torch.Tensor, window: int,
                batch_size: int, prepared: bool = False) -> torch.Tensor:
        """(T, D) normalised frame embeddings; ``window`` consecutive frames form one clip
        for temporal attention (1: each frame alone). ``prepared``: ``frames`` are pixels
        for :meth:`encode_pixels`."""
        chunks = []
        step = max(window, batch_size - batch_size % window)
        for start in range(0, len(frames), step):
            pixels = self._pixels(frames[start : start + step], prepared)
            if window == 1:
                # (b, 3, h, w) -> (b, D)
                features = (self.runner.image_features(pixels) if self.runner is not None
                            else pooled(self.model.get_image_features(pixel_values=pixels)))
            else:
                features = temporal.windowed_features(self.model, pixels, window)
            chunks.append(l2_normalize(features.float()).cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, self.embed_dim)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        window = 1 if self.temporal == "none" else self.default_frames
        return self._encode(pixels, window, batch_size, prepared=True)

    def _pixels(self, batch, prepared: bool) -> torch.Tensor:
        """Frames -> (b, 3, h, w) model input on the model's device: the processor for raw
        frames, :func:`.preprocess.normalize` for uint8 from ``resize_crop``."""
        if prepared:
            spec = self.preprocess_spec
            batch = torch.as_tensor(batch)
            if batch.dtype == torch.uint8:
                if spec is None:
                    raise ValueError(f"{self.name}: its processor has no tensor path; "
                                     "pass frames to encode_frames")
                batch = normalize(batch, spec)
            return batch.to(self.device, self.dtype)
        pixels = self.image_processor(images=list(batch), return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, self.dtype)

    def encode_videos(self, videos: Sequence[np.ndarray]) -> list[VideoEmbedding]:
        lengths = [len(v) for v in videos]
        if not videos:
            return []
        if self.temporal != "none":
            # temporal attention: each clip is one sequence of its own length
            with torch.inference_mode():
                return [VideoEmbedding(l2_normalize(self._encode(clip, len(clip), 32)
                                                    .mean(dim=0))) for clip in videos]
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
            padding=self.text_padding,
            max_length=self.context_length,
            device=self.device,
            batch_size=batch_size,
            encode=self.runner.text_features if self.runner is not None else None,
        )

    def logits(self, videos: Sequence[VideoEmbedding], text: torch.Tensor) -> torch.Tensor:
        # (B, D) @ (D, K) -> (B, K)
        video_matrix = torch.stack([v.embedding for v in videos])
        return self.score_rule.logits(video_matrix @ text.T)
