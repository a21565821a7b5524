"""Frames at a fixed rate for a whole video, shrunk as they are read (index, localize)."""

from __future__ import annotations

import math

import numpy as np

from .decode import Frames, read_frames
from .probe import VideoInfo, probe
from .sampling import Sampling

# Frames read per seek pass, bounding the full-resolution frames alive at once.
CHUNK = 64


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


def load_at_rate(path: str, sampling: Sampling, max_side: int) -> tuple[VideoInfo, Frames]:
    """Worker-side loader: frames at ``sampling``'s fixed rate, shrunk to ``max_side``, read
    in chunks of :data:`CHUNK`.

    Times that land on the same frame (a file with fewer frames per second than the
    sampling rate) are kept once, so each returned frame is a distinct one.
    """
    info = probe(path)
    times = sampling.times(info.duration)
    images, stamps, warnings = [], [], []
    decoded = 0
    for chunk in np.array_split(times, max(1, math.ceil(len(times) / CHUNK))):
        sampled = read_frames(path, chunk)
        images.append(shrink(sampled.frames, max_side))
        stamps.append(sampled.timestamps)
        warnings.extend(w for w in sampled.warnings if w not in warnings)
        decoded += sampled.decoded_frames
    frames, timestamps = np.concatenate(images), np.concatenate(stamps)
    _, first = np.unique(timestamps, return_index=True)
    keep = np.sort(first)
    return info, Frames(frames[keep], timestamps[keep], times, warnings, decoded)
