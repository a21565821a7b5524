"""videolens: open-vocabulary understanding of human actions in video.

Python API — the same verbs as the command line::

    import videolens
    results = videolens.classify("clips/", "running, swimming, cooking")
    print(results[0].top)
    videolens.index("~/Videos", library=".videolens")
    moments = videolens.search("a dog catching a frisbee", library=".videolens")
    where = videolens.localize("park.mp4", ["throwing a frisbee"], library=".videolens")
    result = videolens.evaluate("zero-shot", "ucf101", "~/data/UCF101", model="clip-b16")

Names are imported on first use, so ``import videolens`` (and ``videolens --help``) does
not pay for torch and transformers until they are needed.
"""

from __future__ import annotations

import os
import sys
import warnings
from importlib import import_module
from typing import TYPE_CHECKING

# GNU OpenMP (torch's on Linux) lets an idle thread spin ~300k times before it sleeps; while
# `index` decodes in another process on the same cores, the encoder's spinning threads took
# the decoder's CPU. 10k spins: index +19 % frames/s (bf16, 2 cores: 42.7 -> 50.8), the bare
# encoder unchanged (101.7 vs 107.7 frames/s); OMP_WAIT_POLICY=PASSIVE gained as much but cost
# the bare encoder 18 % (benchmarks/results/index-spin-bf16.json). libgomp reads it once, when
# torch loads, so it is set only if torch is not loaded yet, and never over a user's value.
if "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from .errors import (
    LabelError,
    LibraryError,
    ModelLoadError,
    UsageError,
    VideoDecodeError,
    VideolensError,
)

# public name -> (module, attribute)
_LAZY = {
    "classify": ("pipelines.classify", "classify"),
    "iter_classify": ("pipelines.classify", "iter_classify"),
    "VideoResult": ("pipelines.classify", "VideoResult"),
    "index": ("pipelines.index", "index"),
    "IndexSummary": ("pipelines.index", "IndexSummary"),
    "search": ("pipelines.search", "search"),
    "localize": ("pipelines.localize", "localize"),
    "Localization": ("pipelines.localize", "Localization"),
    "evaluate": ("pipelines.evaluate", "evaluate"),
    "EvalResult": ("eval.results", "EvalResult"),
    "LabelScore": ("tasks.classify", "LabelScore"),
    "Moment": ("tasks.search", "Moment"),
    "Detection": ("tasks.localize", "Detection"),
    "load_model": ("models", "load_model"),
    "VideoTextModel": ("models", "VideoTextModel"),
    "probe": ("io", "probe"),
    "read_frames": ("io", "read_frames"),
    "LabelSet": ("text", "LabelSet"),
    "load_labels": ("text", "load_labels"),
    "Library": ("library", "Library"),
}
# old name -> new name; kept for one release
_DEPRECATED = {"index_videos": "index"}

if TYPE_CHECKING:
    from .eval.results import EvalResult
    from .io import probe, read_frames
    from .library import Library
    from .models import VideoTextModel, load_model
    from .pipelines.classify import VideoResult, classify, iter_classify
    from .pipelines.evaluate import evaluate
    from .pipelines.index import IndexSummary, index
    from .pipelines.localize import Localization, localize
    from .pipelines.search import search
    from .tasks.classify import LabelScore
    from .tasks.localize import Detection
    from .tasks.search import Moment
    from .text import LabelSet, load_labels


def _version() -> str:
    # importlib.metadata costs a noticeable part of `videolens --help`: read it on first use
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("videolens")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0.0.0"


def __getattr__(name: str):
    if name == "__version__":
        value = globals()["__version__"] = _version()
        return value
    if name in _DEPRECATED:
        new = _DEPRECATED[name]
        warnings.warn(f"videolens.{name} is deprecated; use videolens.{new}",
                      DeprecationWarning, stacklevel=2)
        return __getattr__(new)
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(import_module(f".{module}", __name__), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'videolens' has no attribute {name!r}")


__all__ = [
    "Detection",
    "EvalResult",
    "IndexSummary",
    "LabelError",
    "LabelScore",
    "LabelSet",
    "Library",
    "LibraryError",
    "Localization",
    "ModelLoadError",
    "Moment",
    "UsageError",
    "VideoDecodeError",
    "VideoResult",
    "VideoTextModel",
    "VideolensError",
    "__version__",
    "classify",
    "evaluate",
    "index",
    "iter_classify",
    "load_labels",
    "load_model",
    "localize",
    "probe",
    "read_frames",
    "search",
]
