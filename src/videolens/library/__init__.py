"""Storage only: a library of videos on disk — video metadata and frame vectors in SQLite
(the source of truth), a derived memory-mapped vector cache with an approximate index for
large libraries, and thumbnails. Nothing here loads a model or decodes a video for
embedding; :mod:`videolens.pipelines` does that and hands vectors in.
"""

from .db import DamagedLibraryError
from .locks import WriteLock
from .store import FrameHit, Library, LibraryWriter, VideoRecord

__all__ = ["DamagedLibraryError", "FrameHit", "Library", "LibraryWriter", "VideoRecord",
           "WriteLock"]
