"""Temporal attention for CLIP-family vision towers, without new parameters.

``"expand"`` is Open-VCLIP's ``expand_temporal_view`` (Weng et al., ICML 2023; also used by
FROSTER): in every self-attention layer of the vision tower, the tokens of frame ``t`` attend
to the keys and values of frames ``t-1``, ``t`` and ``t+1`` of the same clip. Past either end
of a clip the neighbour's keys and values are zeros, exactly as Open-VCLIP's
``slowfast/models/torch_utils/functional.py`` builds them (a zero key still takes a share of
the softmax, with a zero value). The weights are those of the image model, so a frame model
can be trained with it, and it must then be applied at inference too: the mode is saved in
the checkpoint's ``config.json`` (``videolens_temporal``) and :class:`~videolens.models.clip.
FrameAveragingModel` applies it when it wraps a model. ``"none"`` is the plain image model.

Note that attending to a *set* of neighbour tokens cannot tell the previous frame from the next:
the layer is equivariant to reversing time, so after averaging over frames a clip and its
reversal get the same embedding. What it does see is how consecutive frames relate (how far
things moved between them), which frame averaging cannot.

Frames per clip are a property of each forward call (the vision tower sees ``(B*T, C, H, W)``
with each clip's ``T`` frames consecutive): :func:`set_clip_frames` records ``T`` on the
attention modules before a forward, and it stays set so that activation checkpointing, which
recomputes the forward during backward, sees the same value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.clip.modeling_clip import CLIPAttention
from transformers.models.siglip.modeling_siglip import SiglipAttention

from ..errors import UsageError

TEMPORAL_MODES = ("none", "expand")
# config.json attributes a trained checkpoint carries (PretrainedConfig keeps unknown keys)
MODE_KEY = "videolens_temporal"
FRAMES_KEY = "videolens_frames"


def neighbour_view(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Keys or values of each frame's neighbours beside its own.

    Args:
        x: ``(B*T, heads, L, d)`` per-frame keys (or values), the ``T`` frames of each clip
            consecutive.
        frames: ``T``.
    Returns:
        ``(B*T, heads, 3L, d)``: for frame ``t`` the tokens of ``t+1``, ``t-1`` and ``t``
        (Open-VCLIP's order), zeros where ``t+1`` or ``t-1`` is outside the clip.
    """
    n, heads, length, dim = x.shape
    if frames < 1 or n % frames:
        raise ValueError(f"{n} frames in the batch do not split into clips of {frames}")
    # (B*T, h, L, d) -> (B, T, h, L, d)
    clips = x.reshape(n // frames, frames, heads, length, dim)
    zeros = clips.new_zeros(clips[:, :1].shape)
    following = torch.cat([clips[:, 1:], zeros], dim=1)
    previous = torch.cat([zeros, clips[:, :-1]], dim=1)
    # (B, T, h, 3L, d) -> (B*T, h, 3L, d)
    return torch.cat([following, previous, clips], dim=3).reshape(n, heads, 3 * length, dim)


class _ExpandAttention:
    """Forward of a vision self-attention layer with neighbour-frame keys and values.

    Mixed into the model's own attention class, so the weights, their names in the state dict
    and ``save_pretrained`` are unchanged."""

    clip_frames: int = 1

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs) -> tuple[torch.Tensor, None]:
        n, length, width = hidden_states.shape
        shape = (n, length, self.num_heads, self.head_dim)
        # (B*T, L, C) -> (B*T, heads, L, head_dim)
        queries = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        keys = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        values = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        keys = neighbour_view(keys, self.clip_frames)
        values = neighbour_view(values, self.clip_frames)
        # vision towers use no attention mask; (B*T, heads, L, 3L) attention inside SDPA
        output = F.scaled_dot_product_attention(
            queries, keys, values, dropout_p=self.dropout if self.training else 0.0,
            scale=self.scale)
        # (B*T, heads, L, head_dim) -> (B*T, L, C)
        output = output.transpose(1, 2).reshape(n, length, width)
        return self.out_proj(output), None


class CLIPExpandAttention(_ExpandAttention, CLIPAttention):
    """:class:`CLIPAttention` with Open-VCLIP's neighbour-frame view."""


class SiglipExpandAttention(_ExpandAttention, SiglipAttention):
    """:class:`SiglipAttention` with Open-VCLIP's neighbour-frame view."""


_EXPANDED = {CLIPAttention: CLIPExpandAttention, SiglipAttention: SiglipExpandAttention}
_PLAIN = {expanded: plain for plain, expanded in _EXPANDED.items()}


def vision_attentions(hf_model) -> list[torch.nn.Module]:
    """The self-attention module of every layer of a CLIP or SigLIP vision tower."""
    vision = getattr(hf_model, "vision_model", None)
    layers = getattr(getattr(vision, "encoder", None), "layers", None)
    if layers is None:
        raise UsageError(f"{type(hf_model).__name__} has no CLIP-style vision tower",
                         hint="temporal attention works on CLIP and SigLIP checkpoints")
    return [layer.self_attn for layer in layers]


def temporal_mode(hf_model) -> str:
    """The mode a checkpoint was saved with (``"none"`` for every ordinary checkpoint)."""
    return getattr(hf_model.config, MODE_KEY, None) or "none"


def set_temporal(hf_model, mode: str) -> None:
    """Switch the vision tower of ``hf_model`` (CLIPModel, SiglipModel) to ``mode`` in place,
    and record it in ``hf_model.config`` so ``save_pretrained`` keeps it.

    Raises:
        UsageError: unknown mode, or a model whose attention layers are not CLIP's/SigLIP's.
    """
    if mode not in TEMPORAL_MODES:
        raise UsageError(f"unknown temporal mode {mode!r}",
                         hint=f"use one of {', '.join(TEMPORAL_MODES)}")
    for attention in vision_attentions(hf_model):
        plain = _PLAIN.get(type(attention), type(attention))
        if plain not in _EXPANDED:
            raise UsageError(f"temporal attention does not support {plain.__name__}",
                             hint="use a CLIP or SigLIP checkpoint")
        attention.__class__ = _EXPANDED[plain] if mode == "expand" else plain
    if mode == "none" and not hasattr(hf_model.config, MODE_KEY):
        return  # an ordinary checkpoint stays byte-for-byte ordinary
    setattr(hf_model.config, MODE_KEY, mode)


def set_clip_frames(hf_model, frames: int) -> None:
    """Tell the vision tower's temporal attention that each clip of the next forward has
    ``frames`` consecutive frames (a no-op for ``"none"``)."""
    for attention in vision_attentions(hf_model):
        if isinstance(attention, _ExpandAttention):
            attention.clip_frames = int(frames)


def clip_features(hf_model, pixels: torch.Tensor) -> torch.Tensor:
    """Projected, unnormalised frame embeddings of whole clips.

    Args:
        pixels: ``(B, T, 3, H, W)`` normalised pixel values, ``T`` frames per clip in order.
    Returns:
        ``(B, T, D)``; frame ``t`` sees frames ``t-1`` and ``t+1`` under ``"expand"``.
    """
    batch, frames = pixels.shape[:2]
    set_clip_frames(hf_model, frames)
    # (B, T, 3, H, W) -> (B*T, 3, H, W) -> (B*T, D) -> (B, T, D)
    output = hf_model.get_image_features(pixel_values=pixels.flatten(0, 1))
    features = output if isinstance(output, torch.Tensor) else output.pooler_output
    return features.reshape(batch, frames, -1)


def windowed_features(hf_model, pixels: torch.Tensor, window: int) -> torch.Tensor:
    """:func:`clip_features` of a frame sequence cut into clips of ``window`` consecutive
    frames (the last may be shorter). ``pixels``: ``(N, 3, H, W)``; returns ``(N, D)``."""
    full = len(pixels) // window * window
    parts = []
    if full:
        # (N', 3, H, W) -> (N'/w, w, 3, H, W) -> (N', D)
        parts.append(clip_features(hf_model, pixels[:full].unflatten(0, (-1, window)))
                     .flatten(0, 1))
    if full < len(pixels):
        parts.append(clip_features(hf_model, pixels[full:][None])[0])
    return torch.cat(parts)
