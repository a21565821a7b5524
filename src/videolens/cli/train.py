"""``videolens train RECIPE``: parse the options into a recipe config and call
:func:`videolens.train.train`.

Every option maps to a field of the recipe's config (``--batch-size`` -> ``batch_size``); an
option left out keeps the value from ``--config FILE``, else the recipe's paper default. With
``--resume`` and no ``--config``, the run's own ``OUT/run/train_config.json`` is the base.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import EXIT_OK, note, quiet_libraries

RECIPE_HELP = {
    "finetune": "ViFi-CLIP: fine-tune both towers on labelled videos",
    "distill": "FROSTER: fine-tune with residual-projector distillation to the frozen start",
    "cvrl": "CVRL: self-supervised pretraining of the vision tower (two clips, InfoNCE)",
    "rspnet": "RSPNet: self-supervised pretraining (relative playback speed + appearance)",
}
# options that are not config fields
_NOT_FIELDS = {"command", "recipe", "config", "resume", "print_config", "quiet"}


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def add_train_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to ``commands`` (the parser's subparsers)."""
    train = commands.add_parser(
        "train",
        help="fine-tune (ViFi-CLIP, FROSTER) or pretrain (CVRL, RSPNet) a CLIP-family model",
        description="Train a CLIP or SigLIP checkpoint on your videos. The output folder "
        "is a model for --model of classify, eval and index; OUT/run/ holds the config, "
        "metrics, checkpoints. Multi-GPU / multi-process: torchrun --standalone "
        "--nproc_per_node N --no-python videolens train ...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="recipes:\n" + "\n".join(f"  {k:<9} {v}" for k, v in RECIPE_HELP.items()),
    )
    s = argparse.SUPPRESS  # options left out keep the file's or the recipe's value
    train.add_argument("recipe", choices=list(RECIPE_HELP), help="what to train")
    train.add_argument("--config", metavar="FILE", default=None,
                       help="YAML/JSON file of settings (field names as the options, "
                       "e.g. 'lr: 1e-5'); options given here win")
    data = train.add_argument_group("data")
    data.add_argument("--dataset", default=s,
                      help="ucf101, hmdb51, kinetics400/600/700, ssv2 (an eval reader)")
    data.add_argument("--root", default=s, metavar="DIR", help="the dataset folder")
    data.add_argument("--split", default=s, metavar="N",
                      help="official split number: train on its training list, validate on "
                      "its test list (default 1)")
    data.add_argument("--data", default=s, metavar="LIST",
                      help="training list of 'path label' lines instead of --dataset")
    data.add_argument("--classes", default=s, metavar="FILE",
                      help="class names fixing class ids (one per line, or id,name CSV)")
    data.add_argument("--val-data", default=s, metavar="LIST",
                      help="validation list for --eval-every with --data")
    data.add_argument("--videos", nargs="+", default=s, metavar="PATH",
                      help="unlabelled videos (files, folders, globs) for cvrl/rspnet")
    data.add_argument("--class-texts", default=s, metavar="FILE",
                      help="class texts and descriptions (the label-file format classify "
                      "reads), e.g. FROSTER's rephrased classes")
    data.add_argument("--template", dest="templates", action="append", default=s,
                      metavar="TEXT", help="training prompt with {} (repeatable; default "
                      "ViFi-CLIP's 'a photo of a {}.')")

    model = train.add_argument_group("model and output")
    model.add_argument("--model", default=s,
                       help="start from a preset, hub id or folder (default clip-b16)")
    model.add_argument("--out", required=True, metavar="DIR",
                       help="output folder: the trained model, and OUT/run/ for the run")
    model.add_argument("--temporal", default=s, choices=["none", "expand"],
                       help="expand: Open-VCLIP neighbour-frame attention, saved with the "
                       "model (default: none; distill: expand)")
    model.add_argument("--freeze", default=s, choices=["none", "text", "vision"],
                       help="finetune/distill: keep one tower fixed")
    model.add_argument("--patch-ratio", type=float, default=s, metavar="R",
                       help="save R * original + (1 - R) * trained weights (Open-VCLIP/FROSTER "
                       "patching; default 0)")

    optim = train.add_argument_group("optimisation (defaults: the recipe's paper)")
    optim.add_argument("--epochs", type=int, default=s)
    optim.add_argument("--lr", type=float, default=s, help="peak learning rate")
    optim.add_argument("--min-lr", type=float, default=s, help="end of the cosine")
    optim.add_argument("--warmup", type=float, default=s, metavar="EPOCHS",
                       help="linear warm-up length in epochs")
    optim.add_argument("--warmup-start-lr", type=float, default=s)
    optim.add_argument("--batch-size", type=int, default=s,
                       help="clips per micro-step over all processes")
    optim.add_argument("--grad-accum", type=int, default=s, metavar="N",
                       help="micro-steps per optimizer step")
    optim.add_argument("--weight-decay", type=float, default=s)
    optim.add_argument("--optimizer", default=s, choices=["adamw", "sgd"])
    optim.add_argument("--grad-clip", type=float, default=s, metavar="NORM",
                       help="clip the gradient norm (0 = off)")
    optim.add_argument("--label-smoothing", type=float, default=s)
    optim.add_argument("--frames", type=int, default=s, help="frames per clip")
    optim.add_argument("--seed", type=int, default=s)
    optim.add_argument("--precision", default=s, choices=["auto", "fp32", "bf16", "fp16"],
                       help="autocast (auto: bf16/fp16 on CUDA, fp32 on CPU)")
    optim.add_argument("--grad-checkpointing", action="store_true", default=s,
                       help="recompute activations in backward (less memory, ~30%% slower)")
    recipe = train.add_argument_group("recipe settings")
    recipe.add_argument("--alpha", type=float, default=s, help="distill: projector residual")
    recipe.add_argument("--distill-weight", type=float, default=s,
                        help="distill: weight of the distillation loss (FROSTER 2.0)")
    recipe.add_argument("--temperature", type=float, default=s, help="cvrl/rspnet InfoNCE")
    recipe.add_argument("--clip-seconds", type=float, default=s, help="cvrl: clip length")
    recipe.add_argument("--frame-seconds", type=float, default=s,
                        help="rspnet: seconds between frames at 1x")
    recipe.add_argument("--speeds", type=_ints, default=s, metavar="S,..",
                        help="rspnet: fast playback speeds (default 2)")
    recipe.add_argument("--crop-scale", type=_floats, default=s, metavar="LO,HI",
                        help="random crop area fraction")

    run = train.add_argument_group("run")
    run.add_argument("--workers", type=int, default=s, help="decoding processes (default 2)")
    run.add_argument("--device", default=s, help="auto, cpu, cuda, cuda:N, mps")
    run.add_argument("--checkpoint-every", type=int, default=s, metavar="STEPS",
                     help="also checkpoint every STEPS optimizer steps (always: each epoch)")
    run.add_argument("--eval-every", type=int, default=s, metavar="EPOCHS",
                     help="run the validation protocol every EPOCHS epochs")
    run.add_argument("--eval-protocol", default=s, choices=["zero-shot", "base-to-novel"])
    run.add_argument("--max-steps", type=int, default=s,
                     help="stop (checkpointed, model saved) after this many steps")
    run.add_argument("--log-every", type=int, default=s, metavar="STEPS")
    run.add_argument("--tensorboard", action="store_true", default=s,
                     help="also log to OUT/run/tensorboard (pip install 'videolens[train]')")
    run.add_argument("--resume", nargs="?", const="last", default=None, metavar="CKPT",
                     help="continue the run in --out from its newest checkpoint (or CKPT)")
    run.add_argument("--print-config", action="store_true",
                     help="print the resolved settings as JSON and exit")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return train


def resolved_config(args: argparse.Namespace):
    """The recipe config from the defaults, the config file (or the resumed run's) and the
    options given."""
    from ..train import make_config, read_config_file

    values: dict = {}
    where = "options"
    base = None
    if args.config:
        base = Path(args.config)
    elif args.resume is not None:
        stored = Path(args.out).expanduser() / "run" / "train_config.json"
        base = stored if stored.is_file() else None
    if base is not None:
        values = read_config_file(base)
        where = str(base)
        if values.get("recipe", args.recipe) != args.recipe:
            from ..errors import UsageError

            raise UsageError(f"the config is for recipe {values['recipe']!r}, not "
                             f"{args.recipe!r}", path=base)
    given = {k: v for k, v in vars(args).items() if k not in _NOT_FIELDS}
    if "videos" in given:
        given["videos"] = tuple(given["videos"])
    if "templates" in given:
        given["templates"] = tuple(given["templates"])
    if args.quiet:
        given["progress"] = False
    values.update(given)
    return make_config(args.recipe, values, where=where)


def run_train(args: argparse.Namespace) -> int:
    quiet_libraries()
    config = resolved_config(args)
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return EXIT_OK
    from ..train import train

    result = train(config, resume=args.resume, message=note)
    if result.out is not None:
        print(json.dumps({"out": str(result.out), "steps": result.steps,
                          "total_steps": result.total_steps, "failures": result.failures,
                          "metrics": result.metrics, "evals": result.evals}))
    return EXIT_OK
