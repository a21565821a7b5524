"""The ``videolens`` command: thin argument parsing over the public Python API.

Output contract: results on stdout (a table, or JSON Lines with ``--json``); messages,
warnings and progress on stderr. Exit codes: 0 all inputs succeeded, 1 some input failed,
2 usage error (bad option, labels or model) before any input was processed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import VideolensError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Used only to pick files out of a folder given as input; a file named explicitly is
# always tried, whatever its extension (the decoder decides whether it is a video).
VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv",
    ".3gp", ".ts", ".mts", ".m2ts", ".ogv",
}


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Files as given; folders -> their video files (recursive, sorted); globs -> matches.

    A pattern that matches nothing is kept as given, so it fails as a missing file with
    its own error line instead of vanishing.
    """
    paths: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                str(p) for p in Path(item).rglob("*")
                if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
            )
            paths.extend(found)
        elif not os.path.exists(item) and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            paths.extend(m for m in matches if os.path.isfile(m)) if matches else paths.append(item)
        else:
            paths.append(item)
    return paths


def _err(message: str) -> None:
    from tqdm import tqdm

    # tqdm.write prints above a running progress bar instead of through it
    tqdm.write(f"videolens: {message}", file=sys.stderr)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    from .models import DEFAULT_MODEL, PRESETS

    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"preset ({', '.join(PRESETS)}), hub id or local folder (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda[:N], mps"
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "fp32", "fp16", "bf16"],
        help="weights and activations (auto: fp16 on CUDA, fp32 elsewhere)",
    )


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="videolens",
        description="Open-vocabulary understanding of human actions in video.",
    )
    parser.add_argument("--version", action="version", version=f"videolens {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    classify = commands.add_parser(
        "classify",
        help="rank labels from any list for each video (zero-shot)",
        description="Rank the labels for each video with a vision-language model, no training.",
    )
    classify.add_argument("videos", nargs="+", metavar="VIDEO", help="files, folders or globs")
    classify.add_argument(
        "--labels",
        "-l",
        required=True,
        help="comma list ('running, swimming') or a .txt/.json/.yaml label file",
    )
    _add_model_options(classify)
    classify.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames sampled per video, one per equal segment (default: the model's, 8 for CLIP)",
    )
    classify.add_argument(
        "--top", type=int, default=5, help="labels shown per video (0 = all; default 5)"
    )
    classify.add_argument(
        "--template",
        action="append",
        default=None,
        metavar="TEXT",
        help="prompt template with {} for the label; repeat for an ensemble "
        "(default: the built-in action templates)",
    )
    classify.add_argument("--json", action="store_true", help="JSON Lines on stdout")
    classify.add_argument(
        "--workers", type=int, default=1, help="decoding processes (default 1)"
    )
    classify.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    probe = commands.add_parser("probe", help="print what a video file holds")
    probe.add_argument("videos", nargs="+", metavar="VIDEO")
    probe.add_argument("--json", action="store_true", help="JSON Lines on stdout")

    commands.add_parser("models", help="list the model presets")
    return parser


def _quiet_libraries() -> None:
    # transformers' load-time notices (processor fallbacks, weight-loading bars) are noise
    # for a CLI user; real failures still reach us as exceptions.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _print_table(result, top: int) -> None:
    width = max((len(s.label) for s in result.scores), default=5)
    duration = f" · {result.duration:.1f} s" if result.duration is not None else ""
    print(f"{result.video}  ({result.frames} frames{duration})")
    for rank, item in enumerate(result.scores, 1):
        bar = "█" * round(item.score * 20)
        print(f"  {rank:>3}. {item.label:<{width}}  {item.score:6.3f}  {bar}")
    print()


def run_classify(args: argparse.Namespace) -> int:
    from .tasks import iter_classify

    _quiet_libraries()
    paths = expand_inputs(args.videos)
    if args.workers < 1:
        _err("error: --workers must be at least 1")
        return EXIT_USAGE
    results = iter_classify(
        paths,
        args.labels,
        model=args.model,
        frames=args.frames,
        top=args.top,
        templates=args.template,
        device=args.device,
        dtype=args.dtype,
        workers=args.workers,
        # a bar redrawn with carriage returns only garbles a log file or a pipe
        progress=not args.quiet and sys.stderr.isatty(),
    )
    failed = 0
    try:
        for result in results:
            for warning in result.warnings:
                _err(f"warning: {result.video}: {warning}")
            if not result.ok:
                failed += 1
                _err(f"error: {result.error}")
            if args.json:
                print(json.dumps(result.to_json()), flush=True)
            elif result.ok:
                _print_table(result, args.top)
    except VideolensError as err:
        _err(f"error: {err.one_line()}")
        return EXIT_USAGE
    return EXIT_FAILED if failed else EXIT_OK


def run_probe(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .io import probe_many

    failed = 0
    for path, info in probe_many(expand_inputs(args.videos)):
        if isinstance(info, VideolensError):
            failed += 1
            _err(f"error: {info.one_line()}")
            if args.json:
                print(json.dumps({"video": path, "error": info.one_line()}), flush=True)
            continue
        if args.json:
            print(json.dumps({"video": path, **asdict(info)}), flush=True)
        else:
            print(
                f"{path}: {info.codec} {info.width}x{info.height}, {info.duration:.3f} s, "
                f"{info.fps:.3f} fps, {info.frame_count} frames, rotation {info.rotation}, "
                f"audio {'yes' if info.has_audio else 'no'}"
            )
    return EXIT_FAILED if failed else EXIT_OK


def run_models(args: argparse.Namespace) -> int:
    from .models import DEFAULT_MODEL, PRESETS

    for preset in PRESETS.values():
        mark = "*" if preset.name == DEFAULT_MODEL else " "
        print(f"{mark} {preset.name:<13} {preset.hub_id:<40} {preset.frames:>2} frames  "
              f"{preset.summary}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handlers = {"classify": run_classify, "probe": run_probe, "models": run_models}
    try:
        return handlers[args.command](args)
    except VideolensError as err:
        _err(f"error: {err.one_line()}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # `videolens classify ... | head` closes stdout early; that is not an error
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
