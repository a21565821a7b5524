"""Option helpers and output conventions every ``videolens`` command shares.

Output contract: results on stdout (a table, or JSON Lines with ``--json``); messages,
warnings and progress on stderr. Exit codes: 0 all inputs succeeded, 1 some input failed,
2 usage error (bad option, labels or model) before any input was processed.
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def note(message: str) -> None:
    from tqdm import tqdm

    # tqdm.write prints above a running progress bar instead of through it
    tqdm.write(f"videolens: {message}", file=sys.stderr)


def add_library_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--library", default=".videolens", metavar="DIR",
        help="library folder (default: ./.videolens)",
    )


def add_model_options(parser: argparse.ArgumentParser, default: str | None = "") -> None:
    from ..models import DEFAULT_MODEL, PRESETS

    if default == "":
        default = DEFAULT_MODEL
        said = f"default: {DEFAULT_MODEL}"
    else:
        said = f"default: the library's model, or {DEFAULT_MODEL} for a new library"
    parser.add_argument(
        "--model",
        default=default,
        help=f"preset ({', '.join(PRESETS)}), hub id or local folder ({said})",
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


def quiet_libraries() -> None:
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


def clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}" if hours else f"{minutes}:{rest:04.1f}"
