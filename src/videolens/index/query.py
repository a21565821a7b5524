"""Questions asked of a library: search by text or image, and temporal localization.

These join the layers: the store (:mod:`videolens.index.store`) provides frame vectors, the
model encodes the query, and the pure functions of :mod:`videolens.tasks` turn scores into
moments and segments.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import UsageError, VideoDecodeError
from ..io import FrameReader, Sampling
from ..models import DEFAULT_MODEL, VideoTextModel, load_model
from ..models.text_cache import encode_text_cached
from ..tasks.classify import build_zero_shot_classifier
from ..tasks.localize import Detection, localize
from ..tasks.search import Moment, load_image, merge_hits
from ..text import build_prompts, load_labels
from .ingest import MAX_SIDE, load_for_index, model_meta
from .store import Library

# frames fetched per moment asked for: adjacent hits merge, so K moments need more frames
FRAMES_PER_MOMENT = 20
MIN_FRAMES = 200
# localization wants finer steps than search: boundaries are only as good as the sampling
DEFAULT_LOCALIZE_FPS = 2.0


def library_model(library: Library, model: VideoTextModel | str | None, device: str,
                  dtype: str) -> VideoTextModel:
    """The model the library was built with (or ``model``, checked against it)."""
    if isinstance(model, VideoTextModel):
        encoder = model
    else:
        encoder = load_model(model or library.model["name"], device, dtype)
    library.check_model(model_meta(encoder))
    return encoder


def search(
    query: str | None = None,
    *,
    image: str | os.PathLike | np.ndarray | None = None,
    library: str | os.PathLike | Library = ".videolens",
    model: VideoTextModel | str | None = None,
    top: int = 10,
    video_glob: str | None = None,
    exact: bool | None = None,
    device: str = "auto",
    dtype: str = "auto",
) -> list[Moment]:
    """Moments matching a text ``query`` or an example ``image`` (a file, or an (H, W, 3)
    RGB uint8 array), best first.

    ``video_glob`` keeps videos whose path (or file name) matches it. ``exact``: force exact
    (True) or approximate (False) vector search; by default the store decides by size.
    """
    if (query is None) == (image is None):
        raise UsageError("give a text query or --image, not both and not neither")
    if query is not None and not query.strip():
        raise UsageError("the search text is empty", hint='e.g. videolens search "a dog running"')
    if top < 1:
        raise UsageError(f"--top must be at least 1, got {top}")
    store = library if isinstance(library, Library) else Library.open(library)
    try:
        encoder = library_model(store, model, device, dtype)
        if isinstance(image, np.ndarray):
            vector = encoder.encode_frames(image.reshape(1, *image.shape[-3:])).numpy()
        elif image is not None:
            vector = encoder.encode_frames(load_image(image)).numpy()
        else:
            vector = encode_text_cached(encoder, [query]).numpy()
            vector = vector / np.linalg.norm(vector, axis=1, keepdims=True)
        records = store.videos()
        allowed = None
        if video_glob:
            allowed = {v.id for v in records
                       if fnmatch.fnmatch(v.path, video_glob)
                       or fnmatch.fnmatch(Path(v.path).name, video_glob)}
            if not allowed:
                return []
        k = max(MIN_FRAMES, FRAMES_PER_MOMENT * top)
        [hits] = store.search(vector.astype(np.float32), k, video_ids=allowed, exact=exact)
        step = 1.0 / float(store.sampling.get("fps", 1.0))
        videos = {v.id: (v.path, v.duration) for v in records}
        return merge_hits(hits, videos, step)[:top]
    finally:
        if not isinstance(library, Library):
            store.close()


@dataclass(frozen=True)
class Localization:
    """Where actions happen in one video. ``source`` says where the frame embeddings came
    from: ``"library"`` (stored when indexed) or ``"decoded"`` (sampled now at ``fps``)."""

    video: str
    detections: list[Detection]
    source: str
    fps: float

    def to_json_lines(self) -> list[dict]:
        return [
            {"video": self.video, "label": d.label, "start": round(d.start, 3),
             "end": round(d.end, 3), "score": round(d.score, 6)}
            for d in self.detections
        ]


def localize_video(
    video: str | os.PathLike,
    actions: Sequence[str] | str,
    *,
    library: str | os.PathLike | None = ".videolens",
    model: VideoTextModel | str | None = None,
    fps: float | None = None,
    templates: Sequence[str] | None = None,
    device: str = "auto",
    dtype: str = "auto",
) -> Localization:
    """Zero-shot temporal localization of ``actions`` in one video.

    Frame embeddings come from the library when the video is indexed there, unchanged, with
    the same model (and no other ``fps`` is asked for); otherwise the video is decoded now at
    ``fps`` (default 2 frames/s) in a crash-isolated worker. Prompts are built as for
    classification (templates + descriptions, ensembled); the per-frame similarity curves go
    through :func:`videolens.tasks.localize.localize` (smoothing, per-video threshold,
    segments, NMS).
    """
    path = str(Path(video).resolve())
    label_set = load_labels(actions)
    store = _open_if_present(library)
    try:
        if isinstance(model, VideoTextModel):
            encoder = model
        else:
            default = store.model["name"] if store is not None else DEFAULT_MODEL
            encoder = load_model(model or default, device, dtype)
        stored = _stored_frames(store, path, encoder, fps)
    finally:
        if store is not None:
            store.close()
    if stored is not None:
        timestamps, vectors, used_fps = stored
        source = "library"
    else:
        used_fps = fps or DEFAULT_LOCALIZE_FPS
        if not used_fps > 0:
            raise UsageError(f"--fps must be positive, got {used_fps}")
        loader = partial(load_for_index, max_side=MAX_SIDE)
        with FrameReader(Sampling(kind="rate", fps=used_fps), loader=loader) as reader:
            [(_, loaded)] = list(reader.map([os.fspath(video)]))
        if isinstance(loaded, VideoDecodeError):
            raise loaded
        _, sampled = loaded
        timestamps = sampled.timestamps
        vectors = encoder.encode_frames(sampled.frames).numpy()
        source = "decoded"
    text = build_zero_shot_classifier(encoder, build_prompts(label_set, templates))
    text = text / text.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # X-CLIP rows are raw
    detections = localize(
        vectors.astype(np.float32), np.asarray(timestamps, np.float64),
        text.numpy().astype(np.float32), list(label_set.labels),
        logit_scale=encoder.logit_scale, logit_bias=encoder.logit_bias, kind=encoder.kind,
        frame_duration=1.0 / used_fps,
    )
    return Localization(os.fspath(video), detections, source, used_fps)


def _open_if_present(library) -> Library | None:
    if library is None or not (Path(library) / "library.sqlite").exists():
        return None
    return Library.open(library)


def _stored_frames(store: Library | None, path: str, encoder: VideoTextModel,
                   fps: float | None) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(timestamps, vectors, fps) stored for ``path`` when the library can serve them: the
    video is indexed and unchanged, by the same model weights, at the asked-for rate."""
    if store is None or store.model.get("fingerprint") != encoder.fingerprint:
        return None
    record = store.video_by_path(path)
    library_fps = float(store.sampling.get("fps", 1.0))
    if record is None or (fps is not None and not np.isclose(fps, library_fps)):
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    if (stat.st_size, stat.st_mtime_ns) != (record.size, record.mtime_ns):
        return None  # changed since it was indexed
    timestamps, vectors = store.frames(record.id)
    return timestamps, vectors, library_fps
