"""The trainable module of each recipe: ``forward(batch) -> (loss, logged values)``.

One module per run wraps the transformers model (``self.model``, saved at the end) and what
the recipe adds (FROSTER's projectors, CVRL's and RSPNet's heads, dropped at the end). DDP
wraps this module, so everything that needs gradients runs inside its ``forward``.

A video's embedding is computed as videolens computes it at inference
(:class:`~videolens.models.clip.FrameAveragingModel`): the L2-normalised frame embeddings,
averaged over time, renormalised; with ``--temporal expand`` each frame first attends to its
neighbours (:mod:`videolens.models.temporal`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.temporal import clip_features
from .losses import classification_loss, cosine_distance, nt_xent, rspnet_losses

# CLIP's own cap on its learned temperature (logit scale <= 100)
MAX_LOG_SCALE = math.log(100.0)


def video_embedding(hf_model, pixels: torch.Tensor) -> torch.Tensor:
    """``(B, T, 3, S, S)`` pixels -> ``(B, D)`` L2-normalised video embeddings."""
    frames = F.normalize(clip_features(hf_model, pixels), dim=-1)  # (B, T, D)
    return F.normalize(frames.mean(dim=1), dim=-1)


def text_features(hf_model, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
    """Projected text features ``(P, D)`` (unnormalised) of tokenised prompts."""
    output = hf_model.get_text_features(**tokens)
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class PromptBank(nn.Module):
    """The class prompts, tokenised once; :meth:`rows` pools them per class as
    :func:`~videolens.models.build_zero_shot_classifier` does (mean of normalised prompt
    embeddings, renormalised), with gradients.

    ``prompts[k]``: the texts of class ``k`` (templates filled in, then descriptions)."""

    def __init__(self, tokenizer, prompts: Sequence[Sequence[str]], *, pad_to_max: bool,
                 max_length: int) -> None:
        super().__init__()
        flat = [text for texts in prompts for text in texts]
        tokens = tokenizer(flat, padding="max_length" if pad_to_max else True, truncation=True,
                           max_length=max_length, return_tensors="pt")
        self.keys = list(tokens.keys())
        for key in self.keys:
            self.register_buffer(f"tok_{key}", tokens[key], persistent=False)
        owner = torch.cat([torch.full((len(texts),), k) for k, texts in enumerate(prompts)])
        self.register_buffer("owner", owner, persistent=False)
        self.register_buffer("counts", torch.tensor([len(t) for t in prompts]),
                             persistent=False)
        self.num_classes = len(prompts)

    def rows(self, hf_model) -> torch.Tensor:
        """``(K, D)`` L2-normalised class rows."""
        tokens = {key: getattr(self, f"tok_{key}") for key in self.keys}
        features = F.normalize(text_features(hf_model, tokens).float(), dim=-1)  # (P, D)
        summed = features.new_zeros(self.num_classes, features.shape[1])
        summed.index_add_(0, self.owner, features)
        return F.normalize(summed / self.counts[:, None].to(features.dtype), dim=-1)


class ResidualProjector(nn.Module):
    """FROSTER's projector ``f + alpha · W2 GELU(W1 f)``: bias-free ``D -> D`` layers, ``W2``
    zero at the start so the projector begins as the identity."""

    def __init__(self, width: int, alpha: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width, bias=False)
        self.fc2 = nn.Linear(width, width, bias=False)
        nn.init.zeros_(self.fc2.weight)
        self.alpha = alpha

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.alpha * self.fc2(F.gelu(self.fc1(features)))


def freeze(hf_model, part: str) -> None:
    """Stop gradients to the ``text`` tower (with its projection and the logit scale/bias) or
    the ``vision`` tower (with its projection)."""
    prefixes = {"text": ("text_model.", "text_projection", "logit_scale", "logit_bias"),
                "vision": ("vision_model.", "visual_projection")}[part]
    for name, parameter in hf_model.named_parameters():
        if name.startswith(prefixes):
            parameter.requires_grad_(False)


def embed_width(hf_model) -> int:
    config = hf_model.config
    return int(getattr(config, "projection_dim", None) or config.vision_config.hidden_size)


class ClassifyRecipe(nn.Module):
    """ViFi-CLIP fine-tuning, and FROSTER when a ``teacher`` is given.

    Batch: ``pixels`` ``(B, T, 3, S, S)``, ``label`` ``(B,)``. Loss: :func:`classification_loss`
    of the video embeddings against the class rows, plus for FROSTER ``distill_weight ·
    (cosine_distance(P_v(video), teacher video) + cosine_distance(P_t(rows), teacher rows))``
    (the teacher is the frozen starting model, frame averaging, no temporal attention)."""

    log_keys = ("loss", "loss_cls", "accuracy")

    def __init__(self, hf_model, bank: PromptBank, *, kind: str, label_smoothing: float,
                 freeze_part: str = "none", teacher=None, alpha: float = 0.1,
                 distill_weight: float = 2.0) -> None:
        super().__init__()
        self.model = hf_model
        self.bank = bank
        self.kind = kind
        self.label_smoothing = label_smoothing
        self.frozen_text = freeze_part == "text"
        if freeze_part != "none":
            freeze(hf_model, freeze_part)
        self._rows: torch.Tensor | None = None  # class rows of a frozen text tower
        # the teacher is kept out of the module tree: not trained, not saved, not synced
        self.__dict__["teacher"] = teacher
        self.distill_weight = distill_weight
        if teacher is not None:
            width = embed_width(hf_model)
            self.video_projector = ResidualProjector(width, alpha)
            self.text_projector = ResidualProjector(width, alpha)
            self.log_keys = ("loss", "loss_cls", "loss_distill", "accuracy")
            self._teacher_rows: torch.Tensor | None = None

    def class_rows(self) -> torch.Tensor:
        if not self.frozen_text:
            return self.bank.rows(self.model)
        if self._rows is None:
            with torch.no_grad():
                self._rows = self.bank.rows(self.model).detach()
        return self._rows

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pixels, labels = batch["pixels"], batch["label"]
        video = video_embedding(self.model, pixels).float()  # (B, D)
        rows = self.class_rows()  # (K, D)
        scale = self.model.logit_scale.exp().float()
        bias = getattr(self.model, "logit_bias", None)
        loss_cls = classification_loss(video, rows, labels, scale=scale,
                                       bias=None if bias is None else bias.float(),
                                       kind=self.kind, label_smoothing=self.label_smoothing)
        with torch.no_grad():
            accuracy = ((video @ rows.T).argmax(dim=1) == labels).float().mean()
        parts = {"loss_cls": loss_cls.detach(), "accuracy": accuracy}
        loss = loss_cls
        teacher = self.__dict__["teacher"]
        if teacher is not None:
            with torch.no_grad():
                teacher_video = video_embedding(teacher, pixels).float()
                if self._teacher_rows is None:
                    self._teacher_rows = self.bank.rows(teacher).detach()
            distill = (cosine_distance(self.video_projector(video), teacher_video)
                       + cosine_distance(self.text_projector(rows), self._teacher_rows))
            loss = loss_cls + self.distill_weight * distill
            parts["loss_distill"] = distill.detach()
        parts["loss"] = loss.detach()
        return loss, parts

    @torch.no_grad()
    def after_step(self) -> None:
        self.model.logit_scale.clamp_(max=MAX_LOG_SCALE)


def _mlp_head(width: int, hidden: int, out: int) -> nn.Sequential:
    """CVRL/SimCLR's 3-layer projection head: (linear, BN, ReLU) x 2, then linear."""
    return nn.Sequential(
        nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, out),
    )


class CVRLRecipe(nn.Module):
    """CVRL: NT-Xent between the two clips of each video. Batch: ``views``
    ``(B, 2, T, 3, S, S)``. Only the vision tower (and the head) train."""

    log_keys = ("loss", "positive_cos")

    def __init__(self, hf_model, *, hidden: int, out: int, temperature: float) -> None:
        super().__init__()
        self.model = hf_model
        freeze(hf_model, "text")
        self.head = _mlp_head(embed_width(hf_model), hidden, out)
        self.temperature = temperature

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views = batch["views"]
        batch_size = views.shape[0]
        # (B, 2, T, 3, S, S) -> (2B, T, 3, S, S) -> (2B, D) -> (B, 2, out)
        video = video_embedding(self.model, views.flatten(0, 1)).float()
        z = F.normalize(self.head(video), dim=-1).view(batch_size, 2, -1)
        loss = nt_xent(z[:, 0], z[:, 1], self.temperature)
        positive = (z[:, 0] * z[:, 1]).sum(dim=1).mean().detach()
        return loss, {"loss": loss.detach(), "positive_cos": positive}

    def after_step(self) -> None:
        pass


class RSPNetRecipe(nn.Module):
    """RSPNet: A-VID + RSP. Batch: ``query``, ``key``, ``other`` ``(B, T, 3, S, S)``. Only
    the vision tower (and the two linear heads) train."""

    log_keys = ("loss", "loss_appearance", "loss_speed", "speed_accuracy")

    def __init__(self, hf_model, *, out: int, temperature: float, margin: float,
                 weight_appearance: float, weight_speed: float) -> None:
        super().__init__()
        self.model = hf_model
        freeze(hf_model, "text")
        width = embed_width(hf_model)
        self.appearance_head = nn.Linear(width, out)
        self.speed_head = nn.Linear(width, out)
        self.temperature = temperature
        self.margin = margin
        self.weights = (weight_appearance, weight_speed)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clips = torch.cat([batch["query"], batch["key"], batch["other"]])  # (3B, T, 3, S, S)
        video = video_embedding(self.model, clips).float()  # (3B, D)
        appearance = F.normalize(self.appearance_head(video), dim=-1).chunk(3)
        speed = F.normalize(self.speed_head(video), dim=-1).chunk(3)
        loss_a, loss_m = rspnet_losses(*appearance, *speed, temperature=self.temperature,
                                       margin=self.margin)
        loss = self.weights[0] * loss_a + self.weights[1] * loss_m
        with torch.no_grad():
            query, key, other = speed
            right = ((query * key).sum(1) > (query * other).sum(1)).float().mean()
        return loss, {"loss": loss.detach(), "loss_appearance": loss_a.detach(),
                      "loss_speed": loss_m.detach(), "speed_accuracy": right}

    def after_step(self) -> None:
        pass
