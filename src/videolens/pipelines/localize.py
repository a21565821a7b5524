"""``videolens localize``: when each action happens in one video.

Frame embeddings come from the library when it holds the video unchanged (same model),
otherwise the video is decoded now; the prompt-ensemble text rows and the model's
:class:`~videolens.models.ScoreRule` go to the pure :func:`videolens.tasks.localize`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import UsageError, VideoDecodeError
from ..io import FrameReader, Sampling, probe_many
from ..io.rate import load_rate_segment, rate_segments
from ..library import Library
from ..models import VideoTextModel, build_zero_shot_classifier
from ..tasks.localize import Detection
from ..tasks.localize import localize as localize_segments
from ..text import build_prompts, load_labels
from .common import DEFAULT_LIBRARY, get_model, resolved

# localization wants finer steps than search: boundaries are only as good as the sampling
DEFAULT_LOCALIZE_FPS = 2.0


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


def localize(
    video: str | os.PathLike,
    actions: Sequence[str] | str,
    *,
    library: str | os.PathLike | None = DEFAULT_LIBRARY,
    model: VideoTextModel | str | None = None,
    fps: float | None = None,
    templates: Sequence[str] | None = None,
    device: str = "auto",
    dtype: str = "auto",
    progress: bool = False,
) -> Localization:
    """Zero-shot temporal localization of ``actions`` in one video.

    ``progress``: a bar on stderr (seconds of video decoded and encoded) when the video is
    decoded now.

    Frame embeddings come from the library when the video is indexed there, unchanged, with
    the same model (and no other ``fps`` is asked for); otherwise the video is decoded now at
    ``fps`` (default 2 frames/s) in a crash-isolated worker. Prompts are built as for
    classification (templates + descriptions, ensembled); the per-frame similarity curves go
    through :func:`videolens.tasks.localize.localize` (smoothing, per-video threshold,
    segments, NMS).
    """
    path = resolved(video)
    label_set = load_labels(actions)
    store = _open_if_present(library)
    try:
        default = store.model["name"] if store is not None else None
        encoder = get_model(model or default, device, dtype)
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
        timestamps, vectors = _decode_and_encode(os.path.expanduser(os.fspath(video)), encoder,
                                                 used_fps, progress)
        source = "decoded"
    text = build_zero_shot_classifier(encoder, build_prompts(label_set, templates))
    detections = localize_segments(
        vectors.astype(np.float32), np.asarray(timestamps, np.float64),
        text.numpy().astype(np.float32), list(label_set.labels),
        rule=encoder.score_rule, frame_duration=1.0 / used_fps,
    )
    return Localization(os.fspath(video), detections, source, used_fps)


def _decode_and_encode(path: str, encoder: VideoTextModel, fps: float, progress: bool
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, vectors) of one video at ``fps``, read and encoded in segments as index
    reads them (bounded memory, and a bar that moves on a long video)."""
    sampling = Sampling(kind="rate", fps=fps)
    [(_, info)] = list(probe_many([path]))
    if isinstance(info, VideoDecodeError):
        raise info
    segments = rate_segments(info.duration, fps)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=round(info.duration, 1), unit="s", file=sys.stderr,
                   dynamic_ncols=True, desc="video read", leave=False,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                   "[{elapsed}<{remaining}]")
    loader = partial(load_rate_segment, max_side=encoder.frame_max_side,
                     max_short_side=encoder.decode_short_side)
    stamps, vectors, last = [], [], -np.inf
    try:
        with FrameReader(sampling, loader=loader) as reader:
            for (_, start, stop), loaded in reader.map([(path, a, b) for a, b in segments]):
                if isinstance(loaded, VideoDecodeError):
                    raise loaded
                _, sampled = loaded
                fresh = sampled.timestamps > last
                if fresh.any():
                    stamps.append(sampled.timestamps[fresh])
                    vectors.append(encoder.encode_frames(sampled.frames[fresh]).numpy())
                    last = float(stamps[-1][-1])
                if bar is not None:
                    bar.update(max(0.0, min(stop / fps, info.duration) - start / fps))
                if sampled.stream_end is not None:
                    break  # later segments would only repeat the last frame
    finally:
        if bar is not None:
            bar.close()
    return np.concatenate(stamps), np.concatenate(vectors)


def _open_if_present(library) -> Library | None:
    if library is None:
        return None
    root = Path(library).expanduser()
    if not (root / "library.sqlite").exists():
        return None
    return Library.open(root)


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
