"""Text features cached per (model weights, prompt list): in memory and on disk.

Encoding a large label set with a template ensemble costs tens of seconds on a CPU
(400 labels x 16 templates), and the same prompts are encoded again on every run; the disk
cache makes the second run instant. Keyed by the model's fingerprint (hub snapshot or the
folder's files), so new weights never reuse stale vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .base import VideoTextModel


def cache_dir() -> Path | None:
    """``$VIDEOLENS_CACHE_DIR``, else ``$XDG_CACHE_HOME/videolens``, else ``~/.cache/videolens``.

    ``VIDEOLENS_CACHE_DIR=off`` (or empty) disables the disk cache.
    """
    configured = os.environ.get("VIDEOLENS_CACHE_DIR")
    if configured is not None:
        return None if configured.strip() in ("", "off", "0") else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "videolens"


def numerics_tag(model: VideoTextModel) -> str:
    """``""``, or ``"-int8"`` for a model quantized to int8 (``--precision int8``).

    Caches keyed by weights alone are shared by fp32, bf16 and fp16 and by every backend
    (all within the documented tolerance of fp32); int8 differs more and keeps its own.
    """
    runtime = model.runtime or {}
    return "-int8" if str(runtime.get("precision", "")).startswith("int8") else ""


def _key(model: VideoTextModel, texts: Sequence[str]) -> str:
    # "features-v2": entries hold raw projected features (before normalisation); v1 entries
    # held CLIP's normalised rows and must never be read as features
    payload = json.dumps(["features-v2", model.fingerprint + numerics_tag(model),
                          type(model).__name__, list(texts)])
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def cached_text_features(model: VideoTextModel, texts: Sequence[str]) -> torch.Tensor:
    """``model.text_features(texts)``, reusing earlier results for the same model and texts.

    Returns (K, D) float32. A disk cache that cannot be read or written is skipped silently:
    the cache only ever saves time, it never changes a result.
    """
    memory: dict[str, torch.Tensor] = model.__dict__.setdefault("_text_cache", {})
    key = _key(model, texts)
    if key in memory:
        return memory[key]
    folder = cache_dir()
    path = None
    if folder is not None and model.fingerprint:
        path = folder / "text" / model.fingerprint / f"{key}.npy"
        try:
            cached = np.load(path)
            if cached.shape[0] == len(texts):
                memory[key] = torch.from_numpy(cached)
                return memory[key]
        except (OSError, ValueError):
            pass
    embeddings = model.text_features(list(texts))
    memory[key] = embeddings
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # write then rename, so a concurrent reader never sees half a file
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
                np.save(f, embeddings.numpy())
            os.replace(f.name, path)
        except OSError:
            pass
    return embeddings
