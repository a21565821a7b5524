"""Training recipes as plain dataclasses: defaults from each paper, loadable from a file.

One dataclass per recipe; :data:`RECIPES` maps the recipe name to it (a plain dict, no
registry). Fields are the command-line knobs (``--lr`` is ``lr``); a YAML/JSON file holds any
subset of them (``videolens train finetune --config run.yaml``), command-line options win over
the file, and the run folder keeps the resolved config (``run/train_config.json``) so a run can
be repeated from it.

Units: learning rates per optimizer step; ``warmup`` and ``epochs`` in epochs;
``batch_size`` clips per step summed over all processes (each of ``N`` torchrun processes
takes ``batch_size / N``), times ``grad_accum`` for the clips behind one optimizer step;
``clip_seconds`` in seconds; ``checkpoint_every`` in optimizer steps.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import UsageError, VideolensError
from ..models.temporal import TEMPORAL_MODES
from ..text.loader import StructuredFileError, parse_structured

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "sgd")
FREEZE = ("none", "text", "vision")
EVAL_PROTOCOLS = ("zero-shot", "base-to-novel")


class TrainError(VideolensError):
    """Training cannot go on: out of memory, a diverged loss, a checkpoint that does not match
    the run. The message says which knob to turn."""


@dataclass
class TrainConfig:
    """What every recipe shares (see the module docstring for units)."""

    name: ClassVar[str] = ""
    source: ClassVar[str] = ""

    # --- data and model -------------------------------------------------------------------
    model: str = "clip-b16"
    out: str = ""
    dataset: str | None = None
    root: str | None = None
    split: str | None = None
    data: str | None = None
    classes: str | None = None
    val_data: str | None = None
    videos: tuple[str, ...] = ()
    class_texts: str | None = None
    templates: tuple[str, ...] = ("a photo of a {}.",)
    # --- optimisation ---------------------------------------------------------------------
    epochs: int = 10
    lr: float = 8e-6
    warmup_start_lr: float = 0.0
    min_lr: float = 0.0
    warmup: float = 0.0
    weight_decay: float = 0.001
    optimizer: str = "adamw"
    momentum: float = 0.9
    batch_size: int = 32
    grad_accum: int = 1
    grad_clip: float = 0.0
    precision: str = "auto"
    grad_checkpointing: bool = False
    seed: int = 0
    # --- clips ----------------------------------------------------------------------------
    frames: int = 8
    temporal: str = "none"
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    color_jitter: float = 0.8
    jitter_strength: float = 0.5
    grayscale: float = 0.2
    # --- run ------------------------------------------------------------------------------
    workers: int = 2
    device: str = "auto"
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    eval_every: int = 0
    eval_protocol: str = "zero-shot"
    max_steps: int = 0
    log_every: int = 10
    tensorboard: bool = False
    decode_timeout: float = 60.0
    patch_ratio: float = 0.0
    progress: bool = True

    @property
    def recipe(self) -> str:
        return self.name

    def validate(self) -> None:
        """Raise :class:`~videolens.errors.UsageError` for an option value that cannot work."""
        if not self.out:
            raise UsageError("no output folder given", hint="pass --out DIR")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size,
                    "grad_accum": self.grad_accum, "frames": self.frames,
                    "log_every": self.log_every, "keep_checkpoints": self.keep_checkpoints}
        for key, value in positive.items():
            if value < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
        nonneg = {"lr": self.lr, "min_lr": self.min_lr, "warmup": self.warmup,
                  "weight_decay": self.weight_decay, "grad_clip": self.grad_clip,
                  "workers": self.workers, "checkpoint_every": self.checkpoint_every,
                  "eval_every": self.eval_every, "max_steps": self.max_steps,
                  "warmup_start_lr": self.warmup_start_lr}
        for key, value in nonneg.items():
            if value < 0:
                raise UsageError(f"--{key.replace('_', '-')} must not be negative, got {value}")
        if self.warmup > self.epochs:
            raise UsageError(f"--warmup ({self.warmup:g} epochs) is longer than --epochs "
                             f"({self.epochs})", hint="pass a shorter --warmup as well")
        choices = {"precision": (self.precision, PRECISIONS),
                   "optimizer": (self.optimizer, OPTIMIZERS),
                   "temporal": (self.temporal, TEMPORAL_MODES),
                   "eval_protocol": (self.eval_protocol, EVAL_PROTOCOLS)}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise UsageError(f"--{key.replace('_', '-')} must be one of "
                                 f"{', '.join(allowed)}, got {value!r}")
        if not 0.0 <= self.patch_ratio <= 1.0:
            raise UsageError(f"--patch-ratio must be in [0, 1], got {self.patch_ratio}")
        for key in ("color_jitter", "grayscale"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise UsageError(f"{key} is a probability in [0, 1], got {getattr(self, key)}")
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise UsageError(f"crop_scale must satisfy 0 < low <= high <= 1, got "
                             f"{self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise UsageError(f"crop_ratio must be positive and ordered, got {self.crop_ratio}")
        sources = [bool(self.dataset), bool(self.data), bool(self.videos)]
        if sum(sources) != 1:
            raise UsageError("give exactly one data source",
                             hint="--dataset D --root DIR [--split N], --data LIST, or "
                             "--videos PATH... (self-supervised recipes)")
        if self.dataset and not self.root:
            raise UsageError(f"--dataset {self.dataset} needs --root DIR (the dataset folder)")
        if self.eval_every and not (self.dataset or self.val_data):
            raise UsageError("--eval-every needs a validation split",
                             hint="train with --dataset (its test list) or pass --val-data")

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as JSON-ready values, recipe name included."""
        values = dataclasses.asdict(self)
        return {"recipe": self.name, **{k: list(v) if isinstance(v, tuple) else v
                                        for k, v in values.items()}}


@dataclass
class FinetuneConfig(TrainConfig):
    """ViFi-CLIP (Rasheed et al., CVPR 2023): full fine-tuning of both towers, a video is the
    mean of its frame embeddings, cross-entropy over ``logit_scale · cosine`` with the class
    prompts. Defaults from ViFi-CLIP's ``configs/zero_shot/train/k400/16_16_vifi_clip.yaml``
    (32 frames, LR 8e-6, 10 epochs, 4 clips x 8 accumulation steps x 8 GPUs = 256 per step)
    and ``utils/config.py`` (AdamW, weight decay 0.001, cosine with 5 warm-up epochs, label
    smoothing 0.1, colour jitter p 0.8, grey p 0.2, prompt ``"a photo of a {}."``). Left out:
    mixup/cutmix (ViFi-CLIP's 0.8/1.0), which mixes one-hot targets over a fixed class list."""

    name: ClassVar[str] = "finetune"
    source: ClassVar[str] = "ViFi-CLIP, configs/zero_shot/train/k400/16_16_vifi_clip.yaml"

    frames: int = 32
    lr: float = 8e-6
    epochs: int = 10
    warmup: float = 5.0
    weight_decay: float = 0.001
    batch_size: int = 32
    grad_accum: int = 8
    label_smoothing: float = 0.1
    freeze: str = "none"

    def validate(self) -> None:
        super().validate()
        if self.videos:
            raise UsageError(f"{self.name} needs labelled videos",
                             hint="use --dataset or --data LIST with 'path label' lines")
        if self.freeze not in FREEZE:
            raise UsageError(f"--freeze must be one of {', '.join(FREEZE)}, got "
                             f"{self.freeze!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UsageError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclass
class DistillConfig(FinetuneConfig):
    """FROSTER (Huang et al., ICLR 2024): fine-tuning with a frozen copy of the starting model
    as teacher. The student's video feature and class-text features each pass a residual
    projector ``f + alpha · MLP(f)`` (two bias-free linear layers with GELU, the last zero at
    start, alpha 0.1, ``temporalclip_video_model.py``) and ``distill_weight · (1 - cos)`` to
    the teacher's features is added to the classification loss (``DISTILLATION_RATIO 2.0``,
    ``train_net.py``). Open-VCLIP's temporal attention on by default (FROSTER's
    ``TEMPORAL_MODELING_TYPE: expand_temporal_view``). Defaults from FROSTER's base-training
    scripts (``script/training/*.sh`` with ``configs/Kinetics/TemporalCLIP_vitb16_8x16_
    STAdapter.yaml``): 8 frames, AdamW, LR 3.33e-6 from 3.33e-8 over 2 warm-up epochs, cosine
    down to 3.33e-8, weight decay 0.01, 22 epochs, batch 64, gradient clipping 1.0, no colour
    augmentation, SlowFast's short-side jitter 256-320 with a 224 crop (an area of 0.49-0.77
    of the short-side square), plain cross-entropy. The saved model is the student alone;
    ``patch_ratio`` r saves ``r · original + (1 - r) · trained`` (FROSTER/Open-VCLIP's
    ``TEST.PATCHING_RATIO``; 0 = off, as in FROSTER's scripts)."""

    name: ClassVar[str] = "distill"
    source: ClassVar[str] = "FROSTER, script/training + TemporalCLIP_vitb16_8x16_STAdapter.yaml"

    frames: int = 8
    temporal: str = "expand"
    lr: float = 3.33e-6
    warmup_start_lr: float = 3.33e-8
    min_lr: float = 3.33e-8
    warmup: float = 2.0
    epochs: int = 22
    weight_decay: float = 0.01
    batch_size: int = 64
    grad_accum: int = 1
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    crop_scale: tuple[float, float] = (0.49, 0.77)
    crop_ratio: tuple[float, float] = (1.0, 1.0)
    color_jitter: float = 0.0
    grayscale: float = 0.0
    alpha: float = 0.1
    distill_weight: float = 2.0


@dataclass
class CVRLConfig(TrainConfig):
    """CVRL (Qian et al., CVPR 2021): two clips of one video, their start times apart by an
    offset drawn from a linearly decreasing density ``P(t) ∝ T - t``; each clip augmented with
    one random crop, flip and colour distortion for all its frames (temporally consistent),
    independently of the other clip; InfoNCE (temperature 0.1) between the clips of a video
    against every other clip of the global batch, through a 3-layer MLP head (2048 hidden,
    128 out) that is dropped afterwards. From the paper's Sec. 3-4: 16 frames at stride 2
    (1.28 s at 25 fps), crop area 0.3-1 with aspect 0.5-2, SimCLR colour strength 1.0 (p 0.8,
    grey p 0.2), batch 1024, lr 0.32 per 256 clips with LARS, weight decay 1e-6, 200 epochs,
    cosine. LARS is replaced by SGD with momentum (torch has no LARS). Only the vision tower
    trains; the saved model keeps its text tower, and its video embeddings are meant for
    ``videolens eval few-shot``'s linear probe."""

    name: ClassVar[str] = "cvrl"
    source: ClassVar[str] = "CVRL paper (arXiv 2008.03800), Sec. 3.2-3.3 and 4.1"

    templates: tuple[str, ...] = ()
    frames: int = 16
    clip_seconds: float = 1.28
    epochs: int = 200
    lr: float = 1.28
    optimizer: str = "sgd"
    weight_decay: float = 1e-6
    warmup: float = 0.0
    batch_size: int = 1024
    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_ratio: tuple[float, float] = (0.5, 2.0)
    color_jitter: float = 0.8
    jitter_strength: float = 1.0
    grayscale: float = 0.2
    temperature: float = 0.1
    head_hidden: int = 2048
    head_dim: int = 128

    def validate(self) -> None:
        super().validate()
        if self.temperature <= 0 or self.clip_seconds <= 0:
            raise UsageError("temperature and clip_seconds must be positive")
        if self.eval_every:
            raise UsageError(f"--eval-every has no meaning for {self.name}",
                             hint="evaluate the saved model with `videolens eval few-shot`")


@dataclass
class RSPNetConfig(TrainConfig):
    """RSPNet (Chen et al., AAAI 2021): relative speed perception plus appearance-focused
    video instance discrimination. Per video, a query clip and a key clip at the same speed
    (1x or ``speeds`` x, half the batch each) and a key at the other speed; A-VID: InfoNCE
    (temperature 0.07) of the query against both keys of its video versus the clips of other
    videos; RSP: margin ranking (margin 2.0 on logits) so that the same-speed key scores
    above the other-speed key, each through its own linear 128-d head. Defaults from RSPNet's
    ``config/pretrain/moco-train-base.jsonnet`` (16 frames, speeds [2], batch 64, 200 epochs),
    ``config/optimizer/sgd.libsonnet`` (SGD lr 0.1, momentum 0.9, weight decay 1e-4, cosine
    to lr/1000), ``loss_lambda.libsonnet`` (A = M = 1) and ``pretrain.py`` (margin 2.0).
    Negatives come from the global batch instead of RSPNet's 16384-clip MoCo queue with a
    momentum key encoder."""

    name: ClassVar[str] = "rspnet"
    source: ClassVar[str] = "RSPNet, config/pretrain/moco-train-base.jsonnet + pretrain.py"

    templates: tuple[str, ...] = ()
    frames: int = 16
    frame_seconds: float = 0.04
    speeds: tuple[int, ...] = (2,)
    epochs: int = 200
    lr: float = 0.1
    optimizer: str = "sgd"
    weight_decay: float = 1e-4
    warmup: float = 0.0
    min_lr: float = 1e-4
    batch_size: int = 64
    crop_scale: tuple[float, float] = (0.08, 1.0)
    color_jitter: float = 0.8
    jitter_strength: float = 0.5
    grayscale: float = 0.2
    temperature: float = 0.07
    margin: float = 2.0
    weight_appearance: float = 1.0
    weight_speed: float = 1.0
    head_dim: int = 128

    def validate(self) -> None:
        super().validate()
        if not self.speeds or min(self.speeds) < 2:
            raise UsageError(f"speeds must be integers >= 2, got {list(self.speeds)}")
        if self.temperature <= 0 or self.frame_seconds <= 0:
            raise UsageError("temperature and frame_seconds must be positive")
        if self.eval_every:
            raise UsageError(f"--eval-every has no meaning for {self.name}",
                             hint="evaluate the saved model with `videolens eval few-shot`")


# recipe name -> its config class (a plain dict: four fixed recipes, see STYLE.md)
RECIPES: dict[str, type[TrainConfig]] = {
    cls.name: cls for cls in (FinetuneConfig, DistillConfig, CVRLConfig, RSPNetConfig)
}


def _coerce(cls: type[TrainConfig], key: str, value: Any, where: str) -> Any:
    """``value`` (from JSON/YAML or the command line) as the type of field ``key``."""
    default = next(f for f in dataclasses.fields(cls) if f.name == key).default
    if default is dataclasses.MISSING:  # pragma: no cover - every field has a default
        return value
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(default, bool) and not isinstance(value, bool):
        raise UsageError(f"{where}: {key} must be true or false, got {value!r}")
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int | float | str | tuple) and default is not None and \
            not isinstance(value, type(default)):
        raise UsageError(f"{where}: {key} must be a {type(default).__name__}, got {value!r}")
    return value


def make_config(recipe: str, values: dict[str, Any] | None = None, *,
                where: str = "options") -> TrainConfig:
    """The recipe's config with ``values`` (field name -> value) on top of its defaults.

    Raises:
        UsageError: unknown recipe, unknown field (all named), or a value of the wrong type.
    """
    if recipe not in RECIPES:
        raise UsageError(f"unknown recipe {recipe!r}", hint=f"choose {', '.join(RECIPES)}")
    cls = RECIPES[recipe]
    values = dict(values or {})
    values.pop("recipe", None)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"{where}: unknown {recipe} settings {', '.join(unknown)}",
                         hint=f"known: {', '.join(sorted(known))}")
    return cls(**{k: _coerce(cls, k, v, where) for k, v in values.items()})


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Field values from a YAML or JSON file (a mapping; the strict project reader, so a
    repeated key is an error). A ``recipe`` key, if present, is returned with the rest."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read the config file ({err.strerror or err})", path=path,
                         hint="check the path given to --config") from None
    try:
        data = parse_structured(text, path.suffix)
    except StructuredFileError as err:
        raise UsageError(err.detail, path=path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError("a config file holds a mapping of settings", path=path,
                         hint="write 'lr: 1e-5' style lines")
    return data


def save_config(config: TrainConfig, path: Path) -> None:
    """Write the resolved config where :func:`read_config_file` reads it back."""
    path.write_text(json.dumps(config.to_dict(), indent=2) + "\n")


def config_from_checkpoint(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a config stored by :func:`TrainConfig.to_dict`."""
    return make_config(values["recipe"], values, where="checkpoint")


# fields the command line cannot set (shapes of lists, probabilities of rare knobs) still
# come from --config files; listed so the CLI help can point at them
FILE_ONLY = ("crop_scale", "crop_ratio", "flip", "color_jitter", "jitter_strength",
             "grayscale", "momentum", "keep_checkpoints", "decode_timeout")

__all__ = ["RECIPES", "CVRLConfig", "DistillConfig", "FinetuneConfig", "RSPNetConfig",
           "TrainConfig", "TrainError", "config_from_checkpoint", "make_config",
           "read_config_file", "save_config"]
