"""A library of videos on disk: stored frame vectors (SQLite) and search over them.

``Library``, ``LibraryWriter``, ``VideoRecord`` and ``FrameHit`` come from
:mod:`videolens.index.store` (numpy, sqlite3; faiss only for large libraries). ``index`` and
``IndexSummary`` (the ingest pipeline, which needs the models) are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .store import FrameHit, Library, LibraryWriter, VideoRecord

if TYPE_CHECKING:
    from .ingest import IndexSummary, index

_LAZY = {"index": "ingest", "IndexSummary": "ingest"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'videolens.index' has no attribute {name!r}")


__all__ = ["FrameHit", "IndexSummary", "Library", "LibraryWriter", "VideoRecord", "index"]
