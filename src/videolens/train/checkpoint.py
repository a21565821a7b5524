"""Training checkpoints (everything a run needs to continue exactly) and the saved model.

A checkpoint ``run/checkpoints/step-<N>.pt`` holds, at the boundary after optimizer step
``N``: the recipe module's state (model plus heads or projectors), the optimizer and
gradient-scaler state, torch's CPU and CUDA generator states, the epoch and the resolved
config. The data order needs nothing more: it is a function of ``(seed, epoch)`` (see
:mod:`.data`), and the learning rate a function of the step (:mod:`.schedule`). Files are
written to a temporary name and renamed, so a crash mid-write never leaves a torn checkpoint.

The model is saved with ``save_pretrained`` (weights, config, image processor, tokenizer) so
``load_model(OUT)`` and every ``videolens`` command read it like a hub checkpoint; the
config carries ``videolens_temporal`` and ``videolens_frames``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from ..models.temporal import FRAMES_KEY, set_temporal
from .config import TrainError

FORMAT = 1
_NAME = re.compile(r"^step-(\d{8})\.pt$")


def checkpoints(folder: Path) -> list[Path]:
    """The checkpoint files in ``folder``, oldest step first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` as ``step-<step>.pt`` atomically; keep only the newest ``keep``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:08d}.pt"
    temporary = folder / f".{path.name}.tmp"
    torch.save({"format": FORMAT, **state}, temporary)
    os.replace(temporary, path)
    for old in checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        TrainError: missing, unreadable, or not a videolens training checkpoint.
    """
    if not path.is_file():
        raise TrainError("checkpoint not found", path=path,
                         hint="pass --resume with a run/checkpoints/step-*.pt file or the "
                         "--out folder of the run")
    try:
        # our own files; they hold optimizer state and RNG tensors, not only weights
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise TrainError(f"cannot read the checkpoint ({type(err).__name__})", path=path,
                         hint="the file may be damaged; use an earlier step-*.pt") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TrainError("not a videolens training checkpoint", path=path)
    return state


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def patched_state(trained: dict[str, torch.Tensor], original: dict[str, torch.Tensor],
                  ratio: float) -> dict[str, torch.Tensor]:
    """Weight-space ensembling (Open-VCLIP/FROSTER "patching", ``TEST.PATCHING_RATIO``):
    ``ratio · original + (1 - ratio) · trained`` for every floating-point tensor; others
    (integer buffers such as position ids) stay as trained."""
    out = {}
    for key, value in trained.items():
        base = original.get(key)
        if base is not None and value.is_floating_point() and base.shape == value.shape:
            out[key] = (ratio * base.to(value) + (1.0 - ratio) * value).to(value.dtype)
        else:
            out[key] = value
    return out


def save_model(hf_model, image_processor, tokenizer, out: Path, *, temporal: str,
               frames: int, original: dict[str, torch.Tensor] | None = None,
               patch_ratio: float = 0.0) -> None:
    """``save_pretrained`` of the model (patched when ``patch_ratio > 0``), its image
    processor and tokenizer into ``out``, recording the temporal mode and frames per clip."""
    out.mkdir(parents=True, exist_ok=True)
    set_temporal(hf_model, temporal)
    setattr(hf_model.config, FRAMES_KEY, int(frames))
    if patch_ratio > 0 and original is not None:
        state = patched_state({k: v.detach() for k, v in hf_model.state_dict().items()},
                              original, patch_ratio)
        hf_model.save_pretrained(out, state_dict=state)
    else:
        hf_model.save_pretrained(out)
    image_processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
