"""Option helpers and output conventions every ``videolens`` command shares.

Output contract: results on stdout (a table, or JSON Lines with ``--json``); messages,
warnings and progress on stderr. Exit codes: 0 all inputs succeeded, 1 some input failed,
2 usage error (bad option, labels or model) before any input was processed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence

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
        help="torch's weights and activations (auto: fp16 on CUDA; on a CPU bf16 where it "
             "computes bf16 natively, AMX or AVX512-BF16, else fp32)",
    )
    parser.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "openvino", "onnxruntime"],
        help="where CLIP/SigLIP encode: torch, or a copy exported once into the cache folder "
             "(CPU; pip install 'videolens[openvino]' or 'videolens[onnx]')",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "int8"],
        help="for openvino/onnxruntime: auto (the backend's default), fp32, or int8 "
             "(calibrated on the first 64 frames; reports its agreement with fp32)",
    )
    parser.add_argument(
        "--verbose", action="store_true",
        help="say how the model runs: device, dtype and why, backend, precision",
    )


@contextlib.contextmanager
def model_options_from(args: argparse.Namespace) -> Iterator[None]:
    """``--backend``, ``--precision`` and ``--verbose`` for every model the command loads.

    Raises:
        UsageError: an unknown backend or precision, int8 on torch, or a backend whose
            package is not installed.
    """
    from ..models.backends import model_options

    backend = getattr(args, "backend", "torch")
    if backend != "torch" and getattr(args, "engine", "local") == "ray":
        note(f"--backend {backend} applies to this process; the Ray actors encode with torch")
    with model_options(backend, getattr(args, "precision", "auto"),
                       verbose=getattr(args, "verbose", False), say=note):
        yield


def quiet_libraries() -> None:
    """Keep the model libraries' chatter off a CLI user's terminal, but not their downloads.

    transformers' load-time notices and weight-loading bars and huggingface_hub's retry
    warnings are noise (failures still reach us as exceptions, worded by videolens). The hub's
    download bars stay on: a first run fetches hundreds of MB, and tqdm hides them by itself
    when stderr is not a terminal. Nothing is imported from transformers here; it reads the
    progress-bar state when it is first imported.
    """
    import logging

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    if "HF_HUB_DISABLE_PROGRESS_BARS" in os.environ:
        return  # the user decided, and the hub refuses to be told otherwise
    try:
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return
    if "transformers.utils.logging" in sys.modules:  # already imported (Python API, tests)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    # transformers shows its bars when the hub's global switch is on; the hub's own bars
    # (named "huggingface_hub.http_get", "huggingface_hub.xet_get", ...) follow their group
    disable_progress_bars()
    enable_progress_bars("huggingface_hub")


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 video``, ``2 videos``, ``0 segments``."""
    return f"{count} {word if count == 1 else many or word + 's'}"


@contextlib.contextmanager
def warnings_as_notes() -> Iterator[None]:
    """Python warnings raised meanwhile (e.g. the one-label warning of classify) become one
    ``videolens: warning: ...`` line each, once per message, without a file and line."""
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if text not in shown:
            shown.add(text)
            note(f"warning: {text}")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def csv_rows(path: str | None, header: Sequence[str]
             ) -> Iterator[Callable[[Sequence[object]], None] | None]:
    """A function writing one CSV row (stdlib csv, header first, flushed per row) to ``path``,
    ``-`` for stdout; ``None`` when ``path`` is None.

    Raises:
        UsageError: the file cannot be written.
    """
    if path is None:
        yield None
        return
    if path == "-":
        file, owned = sys.stdout, False
    else:
        from ..errors import UsageError

        try:
            file, owned = open(path, "w", newline="", encoding="utf-8"), True  # noqa: SIM115
        except OSError as err:
            raise UsageError(f"cannot write the CSV file: {err.strerror or err}", path=path,
                             hint="check the folder exists and is writable") from None
    writer = csv.writer(file)

    def write(row: Sequence[object]) -> None:
        writer.writerow(row)
        file.flush()

    try:
        write(header)
        yield write
    finally:
        if owned:
            file.close()


def check_model(name: str | None) -> None:
    """Fail fast, before torch and transformers are imported, on a model that cannot be had:
    a typo, a missing folder, or a hub id not cached while the hub is unreachable."""
    if name:
        from ..models.load import locate

        locate(name)


def clock(seconds: float) -> str:
    """``M:SS.s`` / ``H:MM:SS.s``: the one rule the web pages use too."""
    from ..tasks.timefmt import clock as shared_clock

    return shared_clock(seconds)
