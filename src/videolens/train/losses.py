"""The recipes' losses as pure functions of tensors (each testable against a hand computation).

Shapes: ``B`` clips in this process's batch, ``K`` classes, ``D`` embedding width; rows are
L2-normalised unless a docstring says otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import ddp


def classification_loss(video: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, *,
                        scale: torch.Tensor, bias: torch.Tensor | None = None,
                        kind: str = "softmax", label_smoothing: float = 0.0) -> torch.Tensor:
    """Loss of ``B`` videos ``(B, D)`` against ``K`` class rows ``(K, D)``.

    ``softmax`` (CLIP, ViFi-CLIP): cross-entropy over ``scale · cosine`` with label smoothing.
    ``sigmoid`` (SigLIP): the SigLIP loss over classes, ``-log σ(z · (scale · cosine +
    bias))`` with ``z = +1`` for the true class and ``-1`` for the others, summed over classes
    and averaged over videos."""
    logits = scale * video @ text.T  # (B, K)
    if kind == "sigmoid":
        logits = logits + (bias if bias is not None else 0.0)
        signs = 2.0 * F.one_hot(labels, text.shape[0]).to(logits.dtype) - 1.0
        return -F.logsigmoid(signs * logits).sum(dim=1).mean()
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """FROSTER's distillation term: mean over rows of ``1 - cos(student_i, teacher_i)``
    (rows need not be normalised)."""
    return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss used by CVRL, over the global batch.

    ``first``, ``second``: ``(B, D)`` normalised embeddings of the two clips of each video.
    Each of the ``2N`` clips (``N`` videos over all processes) has its video's other clip as
    positive and the other ``2N - 2`` clips as negatives. Returns the mean over this
    process's ``2B`` clips."""
    views = torch.cat([first, second])  # (2B, D): this process's clips
    everyone = torch.cat([ddp.gather_with_grad(first), ddp.gather_with_grad(second)])
    total = everyone.shape[0] // 2  # N videos in the global batch
    batch = first.shape[0]
    offset = ddp.rank() * batch
    own = torch.cat([torch.arange(batch) + offset, torch.arange(batch) + offset + total])
    partner = torch.cat([own[batch:], own[:batch]]).to(views.device)
    logits = views @ everyone.T / temperature  # (2B, 2N)
    logits[torch.arange(2 * batch, device=views.device), own.to(views.device)] = float("-inf")
    return F.cross_entropy(logits, partner)


def rspnet_losses(query_a: torch.Tensor, key_a: torch.Tensor, other_a: torch.Tensor,
                  query_m: torch.Tensor, key_m: torch.Tensor, other_m: torch.Tensor, *,
                  temperature: float, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RSPNet's two losses (``moco/builder_diffspeed_diffloss.py``, ``MoCoDiffLossTwoFc``).

    ``*_a``: ``(B, D)`` normalised appearance-head outputs of the query, the same-speed key
    and the other-speed key of each video; ``*_m``: the speed head's. Returns ``(A-VID,
    RSP)``: A-VID is the sum of two InfoNCE terms, the query against each key of its own
    video, with every key of other videos in the global batch as negatives (RSPNet: a
    queue); RSP is ``max(0, margin - (q·k_same - q·k_other) / T)`` averaged over videos."""
    keys = torch.cat([ddp.gather_with_grad(key_a), ddp.gather_with_grad(other_a)])  # (2N, D)
    total = keys.shape[0] // 2
    batch = query_a.shape[0]
    own = torch.arange(batch, device=query_a.device) + ddp.rank() * batch
    logits = query_a @ keys.T / temperature  # (B, 2N)
    rows = torch.arange(batch, device=query_a.device)
    same, other = logits[rows, own], logits[rows, own + total]
    # negatives: all keys of other videos; each positive is scored against them alone
    negatives = logits.clone()
    negatives[rows, own] = float("-inf")
    negatives[rows, own + total] = float("-inf")
    zero = torch.zeros(batch, dtype=torch.long, device=query_a.device)
    appearance = (F.cross_entropy(torch.cat([same[:, None], negatives], dim=1), zero)
                  + F.cross_entropy(torch.cat([other[:, None], negatives], dim=1), zero))
    same_m = (query_m * key_m).sum(dim=1) / temperature
    other_m_score = (query_m * other_m).sum(dim=1) / temperature
    speed = F.margin_ranking_loss(same_m, other_m_score, torch.ones_like(same_m),
                                  margin=margin)
    return appearance, speed
