"""X-CLIP through transformers, used as designed: its own video encoder and prompt generator.

X-CLIP (Ni et al., 2022) does not average frames. Its vision transformer exchanges
"message tokens" across the frames of a clip, a multi-frame integration transformer (MIT)
pools the per-frame class tokens into one video embedding, and a video-specific prompt
generator adds visual context to every text embedding before scoring. The clip length is
fixed by the checkpoint (``vision_config.num_frames``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .base import VideoEmbedding, VideoTextModel, l2_normalize
from .clip import projected_text_features
from .preprocess import normalize


class XClipModel(VideoTextModel):
    """X-CLIP behind the common interface.

    Its prompt generator adds video context to the *raw* text features before it normalises,
    so scoring needs those raw rows. :meth:`encode_text` still returns normalised rows (ready
    for cosine scoring like every model's); the model remembers the raw feature behind each
    row it handed out, and :meth:`logits` looks it up.
    """

    kind = "softmax"

    def __init__(
        self,
        hf_model,
        processor,
        *,
        name: str,
        device: torch.device,
        dtype: torch.dtype,
        fingerprint: str = "",
    ):
        self.model = hf_model
        self.image_processor = processor.image_processor
        self.tokenizer = processor.tokenizer
        self.name = name
        self.device = device
        self.dtype = dtype
        self.fingerprint = fingerprint
        self.num_frames = int(hf_model.config.vision_config.num_frames)
        self.default_frames = self.num_frames
        self.context_length = int(hf_model.config.text_config.max_position_embeddings)
        self.embed_dim = int(hf_model.config.projection_dim)
        # normalised row's bytes -> its raw feature (D,), for every row handed out
        self._raw_rows: dict[bytes, torch.Tensor] = {}

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().float().exp())

    def _pixels(self, frames, prepared: bool = False) -> torch.Tensor:
        # (T, H, W, 3) uint8 -> (T, 3, h, w) in the model's dtype; ``prepared``: already
        # (T, 3, h, w), uint8 from preprocess.resize_crop or float model input
        if prepared:
            pixels = torch.as_tensor(frames)
            if pixels.dtype == torch.uint8:
                if self.preprocess_spec is None:
                    raise ValueError(f"{self.name}: its processor has no tensor path; "
                                     "pass frames to encode_frames")
                pixels = normalize(pixels, self.preprocess_spec)
        else:
            pixels = self.image_processor(images=list(frames),
                                          return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, self.dtype)

    def _check_clip(self, frames: np.ndarray) -> None:
        if len(frames) != self.num_frames:
            raise ValueError(
                f"{self.name} encodes clips of exactly {self.num_frames} frames, got {len(frames)}"
            )

    @torch.inference_mode()
    def _vision(self, pixels: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Shared trunk of ``XCLIPModel.forward``'s video path.

        (B*T, 3, h, w) -> per-frame projected class tokens (B, T, D) and the prompt
        generator's visual context (B, L, D), averaged over time as X-CLIP does.
        """
        model = self.model
        vision = model.vision_model(pixel_values=pixels)
        # (B*T, hidden) -> (B*T, D) -> (B, T, D)
        cls_tokens = model.visual_projection(vision[1]).view(batch, self.num_frames, -1)
        # (B*T, 1 + L, hidden) -> drop the class token -> (B*T, L, D) -> (B, T, L, D) -> (B, L, D)
        patches = model.prompts_visual_layernorm(vision[0][:, 1:, :])
        patches = patches @ model.prompts_visual_projection
        context = patches.view(batch, self.num_frames, -1, cls_tokens.shape[-1]).mean(dim=1)
        return cls_tokens, context

    def encode_frames(
        self, frames: np.ndarray | Sequence[np.ndarray], batch_size: int = 32
    ) -> torch.Tensor:
        """Per-frame projected class tokens, computed clip by clip.

        The message tokens tie frames of one clip together, so frames go through the encoder
        in consecutive groups of ``num_frames``; the last group is padded by repeating its
        final frame and the padding is dropped.
        """
        return self._frame_tokens(frames, batch_size, prepared=False)

    def encode_pixels(self, pixels: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        return self._frame_tokens(pixels, batch_size, prepared=True)

    def _frame_tokens(self, frames, batch_size: int, prepared: bool) -> torch.Tensor:
        total = len(frames)
        if total == 0:
            return torch.empty(0, self.embed_dim)
        pad = (-total) % self.num_frames
        if pad and prepared:
            # (T, 3, h, w) -> (T + pad, 3, h, w), the last frame repeated
            frames = torch.cat([torch.as_tensor(frames),
                                torch.as_tensor(frames[-1:]).expand(pad, -1, -1, -1)])
        elif pad:
            frames = list(frames) + [frames[-1]] * pad
        clips = len(frames) // self.num_frames
        per_batch = max(1, batch_size // self.num_frames)
        chunks = []
        for start in range(0, clips, per_batch):
            count = min(per_batch, clips - start)
            lo, hi = start * self.num_frames, (start + count) * self.num_frames
            cls_tokens, _ = self._vision(self._pixels(frames[lo:hi], prepared), count)
            chunks.append(cls_tokens.reshape(-1, cls_tokens.shape[-1]))
        return l2_normalize(torch.cat(chunks).float())[:total].cpu()

    @torch.inference_mode()
    def encode_videos(self, videos: Sequence[np.ndarray]) -> list[VideoEmbedding]:
        if not videos:
            return []
        for clip in videos:
            self._check_clip(clip)
        pixels = self._pixels([frame for clip in videos for frame in clip])
        cls_tokens, context = self._vision(pixels, len(videos))
        # (B, T, D) -> MIT -> (B, D)
        video_embeds = self.model.mit(cls_tokens)[1]
        video_embeds = l2_normalize(video_embeds.float()).cpu()
        context = context.float().cpu()
        return [VideoEmbedding(video_embeds[i], context[i]) for i in range(len(videos))]

    def text_features(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        if not texts:
            return torch.empty(0, self.embed_dim)
        return projected_text_features(
            self.model,
            self.tokenizer,
            texts,
            padding=True,
            max_length=self.context_length,
            device=self.device,
            batch_size=batch_size,
        )

    def pool_prompts(self, features: torch.Tensor) -> torch.Tensor:
        # X-CLIP's prompt ensemble averages raw rows: the generator expects raw features
        return features.mean(dim=0)

    def text_rows(self, features: torch.Tensor) -> torch.Tensor:
        rows = l2_normalize(features.float())
        for row, raw in zip(rows, features.float(), strict=True):
            self._raw_rows[row.numpy().tobytes()] = raw.clone()
        return rows

    def _raw(self, text: torch.Tensor) -> torch.Tensor:
        """(K, D) rows from :meth:`encode_text` -> the raw features behind them."""
        raw = []
        for row in text.detach().float().cpu():
            found = self._raw_rows.get(row.numpy().tobytes())
            if found is None:
                raise ValueError(
                    "X-CLIP scores only text rows it encoded itself (its prompt generator "
                    "needs the raw features behind them): pass rows from encode_text or "
                    "build_zero_shot_classifier of this model"
                )
            raw.append(found)
        return torch.stack(raw) if raw else torch.empty(0, self.embed_dim)

    @torch.inference_mode()
    def logits(self, videos: Sequence[VideoEmbedding], text: torch.Tensor) -> torch.Tensor:
        text = self._raw(text)
        video_matrix = torch.stack([v.embedding for v in videos])  # (B, D)
        context = torch.stack([v.context for v in videos])  # (B, L, D)
        generator = self.model.prompts_generator
        param = next(generator.parameters())
        # (K, D) -> (B, K, D): every video gets its own prompted copy of the text rows
        text_rows = text.unsqueeze(0).expand(len(videos), -1, -1).to(param.device, param.dtype)
        prompted = text_rows + generator(text_rows, context.to(param.device, param.dtype))
        prompted = l2_normalize(prompted.float()).cpu()
        return self.score_rule.logits(torch.einsum("bd,bkd->bk", video_matrix, prompted))
