"""Learning rate per optimizer step: linear warm-up, then a half cosine (SlowFast's
``cosine`` policy with ``WARMUP_EPOCHS``/``WARMUP_START_LR``/``COSINE_END_LR``, as FROSTER and
Open-VCLIP set it; ViFi-CLIP's timm cosine scheduler with warm-up from 0 is the same shape).

A pure function of the step, so a resumed run needs no scheduler state to continue exactly.
"""

from __future__ import annotations

import math


def lr_at(step: int, *, total_steps: int, warmup_steps: int, lr: float,
          warmup_start_lr: float = 0.0, min_lr: float = 0.0) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of ``total_steps``.

    Steps ``0 .. warmup_steps - 1`` rise linearly from ``warmup_start_lr`` towards ``lr``
    (reaching it at ``warmup_steps``); the rest follow
    ``min_lr + (lr - min_lr) · (1 + cos(π · p)) / 2`` with ``p`` going from 0 at the end of
    warm-up to 1 at ``total_steps``.
    """
    if step < warmup_steps:
        return warmup_start_lr + (lr - warmup_start_lr) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
