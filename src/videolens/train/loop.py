"""The one training loop every recipe runs on.

``train(config)`` reads the data, loads the model, builds the recipe's module, and steps:
``batch = next(loader)``, ``loss = module(batch)``, ``backward``, and every ``grad_accum``
micro-batches one optimizer step at the learning rate of :func:`~.schedule.lr_at`. Under
torchrun the module is wrapped in DDP and each process takes its share of every global
batch. Process 0 writes the run folder::

    OUT/                      the trained model (save_pretrained), at the end
    OUT/run/train_config.json the resolved config (a --config file for a repeat)
    OUT/run/metrics.csv       step, epoch, lr, losses, clips/s, seconds
    OUT/run/eval.csv          --eval-every results (zero-shot / base-to-novel)
    OUT/run/failures.csv      videos that failed to decode (skipped, replaced)
    OUT/run/checkpoints/      step-<N>.pt, every --checkpoint-every steps and each epoch
    OUT/run/tensorboard/      with --tensorboard (the ``train`` extra)

Ctrl-C, SIGTERM or an error leave a checkpoint of the last finished step; ``--resume``
continues from it exactly (same batches, optimizer, scaler and RNG state).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError
from ..io.isolate import main_module_hidden
from ..models import load_model, pick_device
from ..models.clip import FrameAveragingModel
from ..models.temporal import set_temporal
from ..text import LabelSet, build_prompts
from . import ddp
from .checkpoint import (
    checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    save_model,
    set_rng_state,
)
from .config import (
    CVRLConfig,
    DistillConfig,
    FinetuneConfig,
    RSPNetConfig,
    TrainConfig,
    TrainError,
    save_config,
)
from .data import (
    Augment,
    ClipDataset,
    EpochBatches,
    PairDataset,
    SpeedDataset,
    collate,
    worker_init,
)
from .recipes import ClassifyRecipe, CVRLRecipe, PromptBank, RSPNetRecipe
from .schedule import lr_at
from .sources import TrainingData, training_data

# settings that may change when a run is resumed: how it runs, not what it computes
RUN_FIELDS = {"workers", "device", "progress", "max_steps", "log_every", "eval_every",
              "checkpoint_every", "keep_checkpoints", "tensorboard", "decode_timeout",
              "eval_protocol"}


@dataclass
class TrainResult:
    """What a run did. ``out``: the saved model folder (``None`` on processes other than 0);
    ``steps``: optimizer steps done in total; ``metrics``: the last logged values;
    ``evals``: one dict per ``--eval-every`` evaluation; ``failures``: videos skipped."""

    out: Path | None
    run_dir: Path
    steps: int
    total_steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    evals: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0
    resumed_from: Path | None = None


def _stderr(message: str) -> None:
    print(f"videolens: {message}", file=sys.stderr, flush=True)


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: plain fp32). ``auto``: bf16 on a CUDA GPU that has it, fp16
    on older ones (FROSTER/ViFi-CLIP train with mixed precision), fp32 on CPU, where bf16 is
    several times slower (shared/MEASURED.md)."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def resolve_resume(out: Path, resume: str | None) -> Path | None:
    """The checkpoint ``--resume`` means: a file, or the newest in a run's ``OUT/run/
    checkpoints`` (``"last"`` or a folder)."""
    if resume is None:
        return None
    given = out if resume in ("", "last") else Path(resume).expanduser()
    if given.is_file():
        return given
    for folder in (given / "run" / "checkpoints", given / "checkpoints", given):
        found = checkpoints(folder)
        if found:
            return found[-1]
    raise TrainError("no checkpoint to resume from", path=given,
                     hint="start without --resume, or pass the --out folder of a run")


def _check_same_run(config: TrainConfig, stored: dict[str, Any], path: Path) -> None:
    mine = config.to_dict()
    differ = sorted(k for k in set(mine) | set(stored)
                    if k not in RUN_FIELDS and mine.get(k) != stored.get(k))
    if differ:
        shown = ", ".join(f"{k} ({stored.get(k)!r} -> {mine.get(k)!r})" for k in differ[:6])
        raise TrainError(f"the checkpoint was made with other settings: {shown}", path=path,
                         hint="resume with the run's own settings (they are in "
                         "run/train_config.json), or start a new --out")


def _load_start_model(config: TrainConfig, device: torch.device) -> FrameAveragingModel:
    wrapper = load_model(config.model, device=str(device), dtype="fp32")
    if not isinstance(wrapper, FrameAveragingModel):
        raise UsageError(f"{config.model} is a {type(wrapper).__name__}; videolens train "
                         "supports CLIP and SigLIP checkpoints",
                         hint="start from a CLIP or SigLIP model (e.g. clip-b16)")
    wrapper.model.train()
    return wrapper


def _prompts(data: TrainingData, templates: tuple[str, ...]) -> list[list[str]]:
    label_set: LabelSet = data.train.label_set()
    return build_prompts(label_set, templates or None)


def _build_recipe(config: TrainConfig, wrapper: FrameAveragingModel, data: TrainingData):
    hf_model = wrapper.model
    if isinstance(config, FinetuneConfig):
        bank = PromptBank(wrapper.tokenizer, _prompts(data, config.templates),
                          pad_to_max=wrapper.kind == "sigmoid",
                          max_length=wrapper.context_length)
        teacher = None
        if isinstance(config, DistillConfig):
            teacher = copy.deepcopy(hf_model)
            set_temporal(teacher, "none")
            teacher.eval().requires_grad_(False)
        return ClassifyRecipe(
            hf_model, bank, kind=wrapper.kind, label_smoothing=config.label_smoothing,
            freeze_part=config.freeze, teacher=teacher,
            alpha=getattr(config, "alpha", 0.1),
            distill_weight=getattr(config, "distill_weight", 2.0))
    if isinstance(config, CVRLConfig):
        return CVRLRecipe(hf_model, hidden=config.head_hidden, out=config.head_dim,
                          temperature=config.temperature)
    if isinstance(config, RSPNetConfig):
        return RSPNetRecipe(hf_model, out=config.head_dim, temperature=config.temperature,
                            margin=config.margin, weight_appearance=config.weight_appearance,
                            weight_speed=config.weight_speed)
    raise UsageError(f"no recipe for {type(config).__name__}")  # pragma: no cover


def _dataset(config: TrainConfig, data: TrainingData, augment: Augment):
    common = {"seed": config.seed, "timeout": config.decode_timeout}
    if isinstance(config, CVRLConfig):
        return PairDataset(data.items, augment, frames=config.frames,
                           clip_seconds=config.clip_seconds, **common)
    if isinstance(config, RSPNetConfig):
        return SpeedDataset(data.items, augment, frames=config.frames,
                            frame_seconds=config.frame_seconds, speeds=config.speeds,
                            **common)
    return ClipDataset(data.items, augment, frames=config.frames, **common)


def _optimizer(config: TrainConfig, module: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD over the trainable parameters; no weight decay on gains, biases and the
    temperature (every parameter with fewer than 2 dimensions), as CLIP-family recipes do."""
    decay, plain = [], []
    for _, parameter in module.named_parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else plain).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": plain, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.lr)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


class _RunFiles:
    """The CSV files of a run (process 0 only)."""

    def __init__(self, run_dir: Path, log_keys: tuple[str, ...], resume_step: int | None,
                 tensorboard: bool) -> None:
        self.run_dir = run_dir
        self.columns = ["step", "epoch", "lr", *log_keys, "clips_per_s", "seconds"]
        self.metrics = run_dir / "metrics.csv"
        if resume_step is not None and self.metrics.is_file():
            # drop rows logged after the checkpoint: the resumed run logs them again
            with self.metrics.open(newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
            self._rewrite(rows)
        elif not self.metrics.is_file() or resume_step is None:
            self._rewrite([])
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UsageError("--tensorboard needs the tensorboard package",
                                 hint="pip install 'videolens[train]'") from None
            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def _rewrite(self, rows: list[dict]) -> None:
        with self.metrics.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(rows)

    def log(self, row: dict[str, float]) -> None:
        with self.metrics.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore").writerow(
                {k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("step", "epoch"):
                    self.writer.add_scalar(f"train/{key}", value, row["step"])

    def failures(self, items: list[tuple[str, str]]) -> None:
        path = self.run_dir / "failures.csv"
        new = not path.is_file()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["path", "reason"])
            writer.writerows(items)

    def evaluation(self, step: int, epoch: int, metrics: dict[str, float]) -> None:
        path = self.run_dir / "eval.csv"
        new = not path.is_file()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", "epoch", "metric", "value"])
            writer.writerows([step, epoch, k, f"{v:.6g}"] for k, v in metrics.items())
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"eval/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _evaluate(config: TrainConfig, wrapper: FrameAveragingModel, data: TrainingData
              ) -> dict[str, float]:
    """The validation protocol on the current weights (process 0)."""
    from ..eval.openvocab import base_to_novel
    from ..eval.protocols import zero_shot

    hf_model = wrapper.model
    # the wrapper's caches are keyed by the weights' fingerprint: these weights have none
    wrapper.fingerprint = ""
    wrapper.__dict__.pop("_text_cache", None)
    wrapper.default_frames = config.frames
    templates = list(config.templates) or None
    hf_model.eval()
    try:
        if config.eval_protocol == "base-to-novel":
            result = base_to_novel(data.val, wrapper, frames=config.frames,
                                   templates=templates, workers=max(1, config.workers))
        else:
            result = zero_shot(data.val, wrapper, frames=config.frames, templates=templates,
                               workers=max(1, config.workers))
    finally:
        hf_model.train()
    return dict(result.metrics)


def _oom_error(config: TrainConfig, world: int) -> TrainError:
    per_process = config.batch_size // world
    per_step = config.batch_size * config.grad_accum
    return TrainError(
        f"out of memory with {per_process} clips of {config.frames} frames per process",
        hint=f"lower --batch-size (and raise --grad-accum to keep {per_step} clips per "
        "step), add --grad-checkpointing, use --precision bf16 or fp16 on a GPU, or fewer "
        "--frames; the last finished step is checkpointed")


def train(config: TrainConfig, *, resume: str | None = None,
          message: Callable[[str], None] = _stderr) -> TrainResult:
    """Run a recipe; see the module docstring for the run folder.

    Args:
        config: a :class:`~.config.TrainConfig` subclass (:func:`~.config.make_config`).
        resume: a checkpoint file, a run's ``--out`` folder, or ``"last"`` for the newest
            checkpoint under ``config.out``.
        message: where one-line notices go (process 0 only).

    Raises:
        UsageError, DatasetError: bad settings or data (before any step).
        TrainError: out of memory, a non-finite loss, a checkpoint from other settings.
        KeyboardInterrupt: after checkpointing the last finished step.
    """
    config.validate()
    rank, local_rank, world = ddp.env_world()
    device = pick_device(config.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if config.batch_size % world:
        raise UsageError(f"--batch-size {config.batch_size} does not split over {world} "
                         "processes", hint=f"use a multiple of {world}")
    ddp.setup(device)
    main = rank == 0
    say = message if main else (lambda text: None)
    try:
        return _run(config, resume, device, rank, world, main, say)
    finally:
        ddp.cleanup()


def _run(config: TrainConfig, resume: str | None, device: torch.device, rank: int,
         world: int, main: bool, say: Callable[[str], None]) -> TrainResult:
    out = Path(config.out).expanduser()
    run_dir = out / "run"
    checkpoint_path = resolve_resume(out, resume)
    state = load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
    if state is not None:
        _check_same_run(config, state["config"], checkpoint_path)
    elif (out / "config.json").exists() or checkpoints(run_dir / "checkpoints"):
        raise UsageError("the output folder already holds a run", path=out,
                         hint="pass --resume to continue it, or choose another --out")

    labelled = isinstance(config, FinetuneConfig)
    data = training_data(config, labelled=labelled)
    if data.val is not None and config.eval_every and main:
        say(f"validating on {data.val.summary()}")
    wrapper = _load_start_model(config, device)
    hf_model = wrapper.model
    set_temporal(hf_model, config.temporal)
    original = None
    if config.patch_ratio > 0:
        original = {k: v.detach().cpu().clone() for k, v in hf_model.state_dict().items()}
    if config.grad_checkpointing:
        # transformers 5 renamed it; 4.x only has the gradient_ name
        enable = getattr(hf_model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            hf_model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})

    image_processor = wrapper.image_processor
    augment = Augment(
        size=int(hf_model.config.vision_config.image_size),
        mean=tuple(float(m) for m in image_processor.image_mean),
        std=tuple(float(s) for s in image_processor.image_std),
        crop_scale=tuple(config.crop_scale), crop_ratio=tuple(config.crop_ratio),
        flip=config.flip, color_jitter=config.color_jitter, strength=config.jitter_strength,
        grayscale=config.grayscale)
    dataset = _dataset(config, data, augment)
    micro_per_epoch = len(dataset) // config.batch_size
    steps_per_epoch = micro_per_epoch // config.grad_accum
    if steps_per_epoch < 1:
        raise UsageError(
            f"{len(dataset)} training videos are fewer than one optimizer step takes "
            f"({config.batch_size} x {config.grad_accum} accumulation)",
            hint="lower --batch-size or --grad-accum")
    total_steps = config.epochs * steps_per_epoch
    limit = min(total_steps, config.max_steps) if config.max_steps else total_steps
    warmup_steps = round(config.warmup * steps_per_epoch)
    sampler = EpochBatches(len(dataset), config.batch_size, steps_per_epoch * config.grad_accum,
                           seed=config.seed, rank=rank, world=world)

    torch.manual_seed(config.seed)  # recipe heads initialise from the run's seed
    recipe = _build_recipe(config, wrapper, data).to(device)
    teacher = recipe.__dict__.get("teacher")
    if teacher is not None:
        teacher.to(device)
    optimizer = _optimizer(config, recipe)
    autocast = _autocast_dtype(config.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast is torch.float16)
    step = 0
    if state is not None:
        recipe.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        if main:
            say(f"resuming {checkpoint_path} at step {step} of {total_steps}")
    model = recipe
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            recipe, device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False)

    files = None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "train_config.json")
        files = _RunFiles(run_dir, tuple(recipe.log_keys),
                          step if state is not None else None, config.tensorboard)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=config.workers, collate_fn=collate,
        worker_init_fn=worker_init, persistent_workers=config.workers > 0,
        pin_memory=device.type == "cuda",
        multiprocessing_context="forkserver" if config.workers > 0 else None)

    result = TrainResult(out=None, run_dir=run_dir, steps=step, total_steps=total_steps,
                         resumed_from=checkpoint_path)
    saved_step = step

    def checkpoint(epoch: int) -> None:
        nonlocal saved_step
        if main and step > saved_step:
            save_checkpoint(run_dir / "checkpoints", step, {
                "recipe": config.recipe, "config": config.to_dict(), "step": step,
                "epoch": epoch, "steps_per_epoch": steps_per_epoch, "world": world,
                "module": recipe.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "rng": rng_state()}, config.keep_checkpoints)
        saved_step = step

    bar = None
    if main and config.progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=limit, initial=step, unit="step", file=sys.stderr,
                   dynamic_ncols=True, desc=config.recipe)
    sums: dict[str, float] = {}
    window_clips, window_start, started = 0, time.perf_counter(), time.perf_counter()
    epoch = step // steps_per_epoch
    try:
        with main_module_hidden() if config.workers > 0 else contextlib.nullcontext():
            while step < limit:
                epoch = step // steps_per_epoch
                sampler.set_epoch(epoch, (step % steps_per_epoch) * config.grad_accum)
                for micro, batch in enumerate(loader):
                    if batch["failures"]:
                        result.failures += len(batch["failures"])
                        if files is not None:
                            files.failures(batch["failures"])
                        for path, reason in batch["failures"]:
                            say(f"warning: skipped {path}: {reason}")
                    last_micro = (micro + 1) % config.grad_accum == 0
                    sync = (contextlib.nullcontext() if last_micro or world == 1
                            else model.no_sync())
                    # DDP skips the gradient all-reduce on all but the last micro-step
                    with sync:
                        with torch.autocast(device.type, dtype=autocast or torch.float32,
                                            enabled=autocast is not None):
                            loss, parts = model(_to_device(batch, device))
                        scaler.scale(loss / config.grad_accum).backward()
                    for key, value in parts.items():
                        sums[key] = sums.get(key, 0.0) + float(value) / config.grad_accum
                    window_clips += len(batch.get("label", ())) * world
                    if not last_micro:
                        continue
                    # every process decides together (one NaN would stall the others' DDP)
                    diverged = ddp.broadcast_flag(not math.isfinite(sums.get("loss", 0.0)),
                                                  device)
                    if diverged and autocast is not torch.float16:
                        raise TrainError(
                            f"the loss is no longer finite at step {step + 1}",
                            hint="lower --lr, raise --warmup, or train in --precision fp32")
                    lr = lr_at(step, total_steps=total_steps, warmup_steps=warmup_steps,
                               lr=config.lr, warmup_start_lr=config.warmup_start_lr,
                               min_lr=config.min_lr)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    if config.grad_clip > 0:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(
                            [p for g in optimizer.param_groups for p in g["params"]],
                            config.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    recipe.after_step()
                    step += 1
                    result.steps = step
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{sums.get('loss', math.nan) / 1:.4f}",
                                        lr=f"{lr:.2e}", refresh=False)
                    if step % config.log_every == 0 or step == limit \
                            or step % steps_per_epoch == 0:
                        logged = ddp.mean_over_processes(sums, device)
                        now = time.perf_counter()
                        row = {"step": step, "epoch": round(step / steps_per_epoch, 4),
                               "lr": lr, **logged,
                               "clips_per_s": window_clips / max(now - window_start, 1e-9),
                               "seconds": now - started}
                        result.metrics = {k: float(v) for k, v in row.items()}
                        if files is not None:
                            files.log(row)
                        window_clips, window_start = 0, now
                    sums = {}
                    if config.checkpoint_every and step % config.checkpoint_every == 0:
                        checkpoint(epoch)
                    if step >= limit:
                        break
                if step % steps_per_epoch == 0:
                    finished_epoch = step // steps_per_epoch
                    checkpoint(finished_epoch)
                    if config.eval_every and data.val is not None \
                            and finished_epoch % config.eval_every == 0:
                        if main:
                            metrics = _evaluate(config, wrapper, data)
                            result.evals.append({"step": step, "epoch": finished_epoch,
                                                 **metrics})
                            files.evaluation(step, finished_epoch, metrics)
                            say(f"epoch {finished_epoch}: " + ", ".join(
                                f"{k} {v:.4f}" for k, v in metrics.items()))
                        ddp.barrier()
    except torch.OutOfMemoryError:
        checkpoint(epoch)
        raise _oom_error(config, world) from None
    except BaseException:
        # Ctrl-C, SIGTERM (raised as KeyboardInterrupt by the CLI) or a crash: keep the
        # last finished step, so --resume continues from it
        checkpoint(epoch)
        if main and step > 0:
            say(f"stopped at step {step}; continue with --resume "
                f"(checkpoint in {run_dir / 'checkpoints'})")
        raise
    finally:
        if bar is not None:
            bar.close()
        if files is not None:
            files.close()
    checkpoint(epoch)
    if main:
        save_model(hf_model, image_processor, wrapper.tokenizer, out,
                   temporal=config.temporal, frames=config.frames, original=original,
                   patch_ratio=config.patch_ratio)
        result.out = out
        say(f"saved the trained model to {out} ({step} steps); "
            f"try: videolens classify VIDEO --labels ... --model {out}")
    ddp.barrier()
    return result

