"""Frames at a fixed rate for a whole video, shrunk as they are read (index, localize)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError
from .decode import Frames, read_frames
from .probe import VideoInfo, probe
from .sampling import Sampling

# Frames requested per read_frames call: the times of a long video never exist all at once.
CHUNK = 64
# Frames one work item of `videolens index` holds: long videos are read and encoded in
# segments of this many frames, so memory does not grow with the length of a video.
SEGMENT = 128
# Frames one video may give a library at most (10 hours at 1 frame/s); --max-frames.
DEFAULT_MAX_FRAMES = 36_000


def shrink(frames: np.ndarray, max_side: int) -> np.ndarray:
    """(T, H, W, 3) -> the same frames with their longer side at most ``max_side`` pixels."""
    height, width = frames.shape[1:3]
    scale = max_side / max(height, width)
    if scale >= 1:
        return frames
    from PIL import Image

    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack(
        [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BICUBIC)) for f in frames]
    )


def rate_segments(duration: float, fps: float, max_frames: int = DEFAULT_MAX_FRAMES,
                  segment: int = SEGMENT) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` frame-index ranges (``t_k = k / fps``) covering a video of
    ``duration`` seconds in pieces of at most ``segment`` frames, capped at ``max_frames``."""
    count = min(max(1, math.ceil(max(duration, 0.0) * fps - 1e-9)), max_frames)
    return [(start, min(count, start + segment)) for start in range(0, count, segment)]


def load_rate_segment(path: str, sampling: Sampling, start: int, stop: int, max_side: int,
                      max_short_side: int | None = None) -> tuple[VideoInfo, Frames]:
    """Worker-side loader for one segment of a long video: the frames at ``k / fps`` for
    ``start <= k < stop`` (distinct frames only, in time order), shrunk as
    :func:`load_at_rate` shrinks them. ``Frames.stream_end`` is set when the stream ended
    inside the segment, so the caller can skip the segments after it."""
    info = probe(path)
    images, stamps, warnings = [], [], []
    decoded, last, end = 0, -math.inf, None
    for first in range(start, stop, CHUNK):
        chunk = np.arange(first, min(stop, first + CHUNK), dtype=np.float64) / sampling.fps
        sampled = read_frames(path, chunk, max_short_side=max_short_side)
        decoded += sampled.decoded_frames
        warnings.extend(w for w in sampled.warnings if w not in warnings)
        fresh = np.flatnonzero(sampled.timestamps > last)
        if fresh.size:
            _, unique = np.unique(sampled.timestamps[fresh], return_index=True)
            fresh = fresh[np.sort(unique)]
            images.append(shrink(sampled.frames[fresh], max_side))
            stamps.append(sampled.timestamps[fresh])
            last = float(stamps[-1][-1])
        if sampled.stream_end is not None and chunk[-1] > sampled.stream_end:
            end = sampled.stream_end
            break
    if not images:
        empty = np.zeros((0, 1, 1, 3), np.uint8)
        return info, Frames(empty, np.zeros(0), np.zeros(0), warnings, decoded, stream_end=end)
    requested = np.arange(start, stop, dtype=np.float64) / sampling.fps
    return info, Frames(np.concatenate(images), np.concatenate(stamps), requested, warnings,
                        decoded, stream_end=end)


def load_at_rate(path: str, sampling: Sampling, max_side: int,
                 max_short_side: int | None = None,
                 max_frames: int = DEFAULT_MAX_FRAMES) -> tuple[VideoInfo, Frames]:
    """Worker-side loader: frames at ``sampling``'s fixed rate, shrunk to ``max_side`` (longer
    side), read in chunks of :data:`CHUNK` frames, each converted at most
    ``max_short_side`` pixels on its shorter side as it is decoded.

    Memory follows the frames the file really has, not the duration it declares: the times
    are generated chunk by chunk, reading stops at the first chunk past the last frame, and
    at most ``max_frames`` frames are kept (a warning says so). Times that land on the same
    frame (a file with fewer frames per second than the sampling rate) are kept once, so each
    returned frame is a distinct one.
    """
    if max_frames < 1:
        raise UsageError(f"--max-frames must be at least 1, got {max_frames}")
    info = probe(path)
    rate = sampling.fps
    count = max(1, math.ceil(max(info.duration, 0.0) * rate - 1e-9))
    warnings: list[str] = []
    if count > max_frames:
        warnings.append(
            f"sampled only the first {max_frames} frames ({max_frames / rate:.0f} s at "
            f"{rate:g}/s) of {info.duration:.0f} s: raise --max-frames to keep more")
        count = max_frames
    images, stamps = [], []
    decoded, last = 0, -math.inf
    for start in range(0, count, CHUNK):
        chunk = np.arange(start, min(count, start + CHUNK), dtype=np.float64) / rate
        sampled = read_frames(path, chunk, max_short_side=max_short_side)
        decoded += sampled.decoded_frames
        warnings.extend(w for w in sampled.warnings if w not in warnings)
        fresh = sampled.timestamps > last  # frames not already kept from an earlier chunk
        if fresh.any():
            kept = np.flatnonzero(fresh)
            _, first = np.unique(sampled.timestamps[kept], return_index=True)
            kept = kept[np.sort(first)]
            images.append(shrink(sampled.frames[kept], max_side))
            stamps.append(sampled.timestamps[kept])
            last = float(stamps[-1][-1])
        if sampled.stream_end is not None and chunk[-1] > sampled.stream_end:
            # decoding reached the end of the stream: every later time repeats its last frame
            warnings = [w for w in warnings if not w.startswith("the video stream ends at")]
            if start + CHUNK < count or sampled.stream_end + 2.0 / rate < info.duration:
                warnings.append(
                    f"the file declares {info.duration:.2f} s but its last frame is at "
                    f"{sampled.stream_end:.2f} s; sampling stopped there")
            break
    frames, timestamps = np.concatenate(images), np.concatenate(stamps)
    requested = np.arange(min(count, start + CHUNK), dtype=np.float64) / rate
    return info, Frames(frames, timestamps, requested, warnings, decoded)
