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
    "index_videos": "index.ingest",
    "search": "index.query",
    "localize": "index.query",
    "Library": "index.store",
    "load_labels": "text",
}

if TYPE_CHECKING:
    from .index.ingest import index as index_videos
    from .index.query import localize_video as localize
    from .index.query import search
    from .index.store import Library
    from .io import probe, read_frames
    from .models import load_model
    from .tasks import LabelScore, VideoResult, classify, iter_classify
    from .text import LabelSet, load_labels


# `videolens.index` is the subpackage (importing videolens.index.store binds that name), so
# the indexing function is exported as index_videos
_RENAMED = {"localize": "localize_video", "index_videos": "index"}


def __getattr__(name: str):
    if name in _LAZY:
        module = import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, _RENAMED.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module 'videolens' has no attribute {name!r}")


__all__ = [
    "LabelError",
    "LabelScore",
    "LabelSet",
    "Library",
    "ModelLoadError",
    "UsageError",
    "VideoDecodeError",
    "VideoResult",
    "VideolensError",
    "__version__",
    "classify",
    "index_videos",
    "iter_classify",
    "load_labels",
    "load_model",
    "localize",
    "probe",
    "read_frames",
    "search",
]
