"""Where to look in a video: pure functions from a duration (or a frame count) to times.

Times are float64 seconds relative to the video stream's start; the decoder then returns, for
each time, the last frame presented at or before it. Nothing here opens a file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import UsageError


def uniform_times(duration: float, num_frames: int) -> np.ndarray:
    """Centres of ``num_frames`` equal segments of ``[0, duration]``:
    ``t_i = (i + 0.5) * duration / num_frames`` for ``i = 0..N-1`` (TSN-style segment sampling,
    the reference definition used across videolens). Returns ``(N,)`` float64 seconds."""
    if num_frames < 1:
        raise UsageError(f"num_frames must be at least 1, got {num_frames}")
    duration = max(float(duration), 0.0)
    return (np.arange(num_frames, dtype=np.float64) + 0.5) * (duration / num_frames)


def fixed_rate_times(duration: float, fps: float) -> np.ndarray:
    """One time per ``1 / fps`` seconds at the START of each interval: ``t_k = k / fps`` for every
    ``k >= 0`` with ``t_k < duration`` (never at or past the end). A zero-length video gives
    ``[0.0]``. Returns ``(K,)`` float64 seconds, ``K = ceil(duration * fps)``."""
    if not fps > 0:
        raise UsageError(f"sampling fps must be positive, got {fps}")
    duration = max(float(duration), 0.0)
    # ceil with a tolerance, so 3.0 s at 1 fps gives 0, 1, 2 and not a 4th time at 3.0 - eps
    count = max(1, math.ceil(duration * fps - 1e-9))
    return np.arange(count, dtype=np.float64) / fps


def dense_windows(num_frames: int, clip_len: int, stride: int, frame_step: int = 1) -> np.ndarray:
    """Frame-index windows over a stream of ``num_frames`` decoded frames.

    Window ``k`` holds indices ``k * stride + j * frame_step`` for ``j = 0..clip_len-1``; only
    windows that fit entirely are kept. A stream shorter than one window gives a single window
    over what exists, padded by repeating the last frame (so every video yields one clip).
    Returns ``(num_clips, clip_len)`` int64; ``(0, clip_len)`` for an empty stream.
    """
    _check_dense(clip_len, stride, frame_step)
    if num_frames <= 0:
        return np.zeros((0, clip_len), np.int64)
    span = (clip_len - 1) * frame_step  # index distance from a window's first to its last frame
    offsets = np.arange(clip_len, dtype=np.int64) * frame_step
    if num_frames <= span:
        return np.minimum(offsets, num_frames - 1)[None]
    starts = np.arange(0, num_frames - span, stride, dtype=np.int64)
    return starts[:, None] + offsets[None, :]


def _check_dense(clip_len: int, stride: int, frame_step: int) -> None:
    if clip_len < 1 or stride < 1 or frame_step < 1:
        raise UsageError(
            f"dense sampling needs clip_len, stride and frame_step >= 1, got {clip_len}, "
            f"{stride}, {frame_step}"
        )


@dataclass(frozen=True)
class Sampling:
    """How to sample a video; plain data, so it pickles to decoding workers.

    - ``"uniform"``: ``num_frames`` segment centres (:func:`uniform_times`).
    - ``"rate"``: ``fps`` frames per second at ``k / fps`` (:func:`fixed_rate_times`).
    - ``"dense"``: every window of ``clip_len`` frames, ``frame_step`` apart, starting every
      ``stride`` decoded frames (:func:`dense_windows`); frame indices, not seconds, because a
      clip model wants consecutive frames as the file has them.
    """

    kind: Literal["uniform", "rate", "dense"] = "uniform"
    num_frames: int = 8
    fps: float = 1.0
    clip_len: int = 8
    stride: int = 8
    frame_step: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("uniform", "rate", "dense"):
            raise UsageError(f"sampling kind must be uniform, rate or dense, got {self.kind!r}")
        if self.kind == "uniform" and self.num_frames < 1:
            raise UsageError(f"num_frames must be at least 1, got {self.num_frames}")
        if self.kind == "rate" and not self.fps > 0:
            raise UsageError(f"sampling fps must be positive, got {self.fps}")
        if self.kind == "dense":
            _check_dense(self.clip_len, self.stride, self.frame_step)

    def times(self, duration: float) -> np.ndarray:
        """Requested times in seconds for a video of ``duration`` seconds (uniform and rate)."""
        if self.kind == "uniform":
            return uniform_times(duration, self.num_frames)
        if self.kind == "rate":
            return fixed_rate_times(duration, self.fps)
        raise UsageError("dense sampling picks frame windows, not times; use read_clips")
