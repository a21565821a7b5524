"""``videolens search``: moments of a library matching a text or an example image.

The model encodes the query, the library's vector search returns frame hits, and
:func:`videolens.tasks.merge_hits` turns them into moments.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..io import load_image
from ..library import Library
from ..models import VideoTextModel
from ..tasks.search import Moment, merge_hits
from .common import DEFAULT_LIBRARY, library_model

# frames fetched per moment asked for: adjacent hits merge, so K moments need more frames
FRAMES_PER_MOMENT = 20
MIN_FRAMES = 200


def search(
    query: str | None = None,
    *,
    image: str | os.PathLike | np.ndarray | None = None,
    library: str | os.PathLike | Library = DEFAULT_LIBRARY,
    model: VideoTextModel | str | None = None,
    top: int = 10,
    video_glob: str | None = None,
    exact: bool | None = None,
    recall: float | None = None,
    min_score: float | None = None,
    device: str = "auto",
    dtype: str = "auto",
) -> list[Moment]:
    """Moments matching a text ``query`` or an example ``image`` (a file, or an (H, W, 3)
    RGB uint8 array), best first.

    ``video_glob`` keeps videos whose absolute path, path relative to the current folder, or
    file name matches it (``"sub/*"``, ``"*.mp4"``, ``"/data/clips/*"``). ``min_score`` drops
    moments whose score (the best frame's cosine similarity, -1..1) is below it, so fewer
    than ``top`` may come back. ``exact``: force exact (True) or approximate (False) vector
    search; by default the store decides by size. ``recall`` (0 < R <= 1): approximate search
    at the smallest nprobe whose recall@10 for this kind of query (text or image), measured
    when the library's index was built, reaches R; exact where none does. By default the
    nprobe tuned at build time (recall@10 >= 0.98 on held-out queries of the same kind).
    """
    check_search(query, image, top)
    check_recall(exact, recall)
    store = library if isinstance(library, Library) else Library.open(Path(library).expanduser())
    try:
        encoder = library_model(store, model, device, dtype)
        if isinstance(image, np.ndarray):
            vector = encoder.encode_frames(image.reshape(1, *image.shape[-3:])).numpy()
        elif image is not None:
            vector = encoder.encode_frames(load_image(image)).numpy()
        else:
            vector = encoder.encode_text([query]).numpy()
        return moments_near(store, vector, top=top, video_glob=video_glob, exact=exact,
                            recall=recall, min_score=min_score,
                            query_kind="text" if query is not None else "image")
    finally:
        if not isinstance(library, Library):
            store.close()


def check_search(query: str | None, image: object | None, top: int) -> None:
    """UsageError unless exactly one of ``query`` (not blank) and ``image`` is given and
    ``top`` is at least 1."""
    if (query is None) == (image is None):
        raise UsageError("give a text query or --image, not both and not neither")
    if query is not None and not query.strip():
        raise UsageError("the search text is empty", hint='e.g. videolens search "a dog running"')
    if top < 1:
        raise UsageError(f"--top must be at least 1, got {top}")


def check_recall(exact: bool | None, recall: float | None) -> None:
    """UsageError unless ``recall`` is None or in (0, 1], and not given with ``exact``."""
    if recall is None:
        return
    if exact:
        raise UsageError("give --exact or --recall, not both",
                         hint="--exact is what --recall 1 does")
    if not 0.0 < recall <= 1.0:
        raise UsageError(f"--recall must be above 0 and at most 1, got {recall:g}",
                         hint="e.g. --recall 0.99")


def moments_near(store: Library, vector: np.ndarray, *, top: int = 10,
                 video_glob: str | None = None, exact: bool | None = None,
                 recall: float | None = None, min_score: float | None = None,
                 query_kind: str | None = None) -> list[Moment]:
    """The moments of ``store`` nearest one query ``vector`` ((1, D) or (D,), L2-normalised,
    from the library's model), best first: what :func:`search` returns once it has encoded
    its query (the web app encodes concurrent queries together and calls this per query).
    ``query_kind`` ("text" | "image") picks the nprobe tuned for that kind (None: the larger
    of both)."""
    records = store.videos()
    allowed = None
    if video_glob:
        allowed = {v.id for v in records if _glob_matches(v.path, video_glob)}
        if not allowed:
            return []
    k = max(MIN_FRAMES, FRAMES_PER_MOMENT * top)
    [hits] = store.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), k,
                          video_ids=allowed, exact=exact, recall=recall, query_kind=query_kind)
    step = 1.0 / float(store.sampling.get("fps", 1.0))
    videos = {v.id: (v.path, v.duration) for v in records}
    moments = merge_hits(hits, videos, step)
    if min_score is not None:
        moments = [m for m in moments if m.score >= min_score]
    return moments[:top]


def _glob_matches(path: str, pattern: str) -> bool:
    """Whether a stored (absolute) video path matches a user's glob.

    The library stores absolute paths, but people type globs relative to where they are
    (``"sub/*"``), so the path relative to the current folder is tried too, and the file name.
    """
    pattern = os.path.expanduser(pattern)
    if pattern.startswith("./"):
        pattern = pattern[2:]
    candidates = [path, Path(path).name]
    try:
        candidates.append(os.path.relpath(path))
    except ValueError:  # another drive on Windows: no relative form
        pass
    return any(fnmatch.fnmatch(candidate, pattern) for candidate in candidates)
