"""Pure answers from embeddings: embeddings (+ timestamps in seconds) in, scores, moments and
segments out. Nothing here decodes video, loads a model or touches a library.

- :mod:`.classify`: rank labels from one video's logits and scores.
- :mod:`.search`: merge frame hits into moments.
- :mod:`.localize`: per-frame similarity curves -> temporal segments.
"""

from __future__ import annotations

from importlib import import_module

# name -> submodule, imported on first use so that one verb loads only the task it needs.
# `localize` (the function) stays in `videolens.tasks.localize`: exporting it here would
# shadow the submodule of the same name.
_EXPORTS = {
    "LabelScore": "classify",
    "rank_labels": "classify",
    "Detection": "localize",
    "label_curves": "localize",
    "Moment": "search",
    "merge_hits": "search",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'videolens.tasks' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
