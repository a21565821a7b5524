"""videolens: open-vocabulary understanding of human actions in video.

Python API::

    import videolens
    results = videolens.classify(["clip.mp4"], "running, swimming, cooking")
    print(results[0].top)

Names are imported on first use, so ``import videolens`` (and ``videolens --help``) does
not pay for torch and transformers until they are needed.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from .errors import LabelError, ModelLoadError, UsageError, VideoDecodeError, VideolensError

try:
    __version__ = version("videolens")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

_LAZY = {
    "classify": "tasks",
    "iter_classify": "tasks",
    "LabelScore": "tasks",
    "VideoResult": "tasks",
    "load_model": "models",
    "probe": "io",
    "read_frames": "io",
    "LabelSet": "text",
    "load_labels": "text",
}

if TYPE_CHECKING:
    from .io import probe, read_frames
    from .models import load_model
    from .tasks import LabelScore, VideoResult, classify, iter_classify
    from .text import LabelSet, load_labels


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'videolens' has no attribute {name!r}")


__all__ = [
    "LabelError",
    "LabelScore",
    "LabelSet",
    "ModelLoadError",
    "UsageError",
    "VideoDecodeError",
    "VideoResult",
    "VideolensError",
    "__version__",
    "classify",
    "iter_classify",
    "load_labels",
    "load_model",
    "probe",
    "read_frames",
]
