"""Multi-view test sampling: which frames (temporal views) and which pixels (spatial crops) of
a test video a model sees, and how the views' scores are combined.

Papers test a video as several *views*: ``V`` temporal clips times ``C`` spatial crops, each
scored, the scores averaged ("3 views x 1 crop" in FROSTER's and Open-VCLIP's test scripts,
"4 x 3" in X-CLIP's multi-view inference). :class:`ViewSampling` says which, and
:func:`load_views` decodes and crops a file accordingly (a drop-in loader for
:class:`~videolens.io.FrameReader`, so decoding stays in crash-isolated workers).

Temporal sampling, in seconds relative to the stream start:

- ``"segment"`` (TSN style; what ``videolens classify`` does): the video is cut into ``T`` equal
  segments; view ``v`` of ``V`` takes the point at fraction ``(v + 0.5) / V`` of every segment,
  ``t_i = (i + (v + 0.5) / V) * duration / T``. With ``V = 1`` these are the segment centres,
  exactly :func:`~videolens.io.uniform_times`; with more views the views interleave. This is
  the test sampling of ViFi-CLIP and X-CLIP (``SampleFrames(clip_len=1, num_clips=T,
  test_mode=True)`` in their ``datasets/build.py``: frame ``int((i + 0.5) * N / T)`` of ``N``).
- ``"dense"`` (slowfast style, FROSTER and Open-VCLIP): a view is ``T`` frames ``S`` apart at
  ``target_fps`` (slowfast's ``DATA.TARGET_FPS``, 30), i.e. a clip of
  ``clip_size = S * T * fps / target_fps`` frames of the file, and views are spread over the
  video as slowfast's ``get_start_end_idx`` does (``slowfast/datasets/decoder.py`` in
  ``Visual-AI/FROSTER``): with ``delta = max(N - clip_size, 0)`` frames to spare, view ``v``
  starts at frame ``delta * v / V`` (``view_starts="uniform"``, ``USE_OFFSET_SAMPLING: False``)
  or ``v * floor(delta / (V - 1))`` (``"offset"``, ``USE_OFFSET_SAMPLING: True``; one view:
  ``floor(delta / 2)``, the centre). Within a view, frames are
  ``long(clamp(linspace(start, start + clip_size - 1, T)))`` in torch's float32, exactly
  ``temporal_sampling``, and frame ``k`` is requested at ``k / fps`` seconds. ``N`` is the
  container's frame count (``duration * fps`` when it does not say).

Spatial crops (on the decoded frames, before the model's own processor, which then resizes
the crop to its input size):

- ``crops=1``, ``crop_fraction=1``: nothing is cut; the processor's resize-shorter-side and
  centre crop are slowfast's test transform (``TRAIN_JITTER_SCALES[0] = TEST_CROP_SIZE = 224``
  in FROSTER's configs). This is the default and leaves frames untouched.
- ``crops=1``, ``crop_fraction=f < 1``: the centred square of side ``round(f * shorter side)``
  — mmaction's ``Resize(-1, 256)`` + ``CenterCrop(224)`` of ViFi-CLIP and X-CLIP is
  ``f = 224 / 256``.
- ``crops=3``: three squares of side = the shorter side along the longer one: left/top,
  centre (offset ``ceil((L - s) / 2)``), right/bottom — slowfast's ``uniform_crop`` and
  mmaction's ``ThreeCrop`` after resizing the shorter side to the crop size.

Combining views (``ensemble``), per video:

- ``"logits"``: mean of the views' logits — slowfast's ``TestMeter`` sums the per-view
  predictions (``ENSEMBLE_METHOD: sum``), which ranks the same.
- ``"probs"``: mean of the views' softmax (or sigmoid) probabilities — ViFi-CLIP's and
  X-CLIP's ``validate`` in ``main.py`` (``output.softmax(dim=-1)`` summed over views).
- ``"frames"``: all views' frames go through the model as one clip (frame-averaging models
  only). FROSTER and Open-VCLIP score a view as ``logit_scale * mean_t cos(frame_t, class)``
  without renormalising the frame mean, and sum views; for a CLIP that averages frames this is
  a positive per-video multiple of the cosine with the renormalised mean of all ``V * T``
  frames, so ``"frames"`` reproduces their top-k exactly (``"logits"`` weights each view by
  one over its mean's norm instead).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from ..errors import UsageError
from ..io import Frames, VideoInfo, probe, read_frames, uniform_times

__all__ = ["ViewSampling", "crop_boxes", "dense_frame_indices", "load_views",
           "segment_view_times", "view_times"]

Ensemble = Literal["logits", "probs", "frames"]
ENSEMBLES: tuple[str, ...] = ("logits", "probs", "frames")


@dataclass(frozen=True)
class ViewSampling:
    """The full test sampling of one evaluation (plain data: it pickles to decoding workers).

    ``mode``: ``"segment"`` or ``"dense"`` (module docstring). ``frames``: T per view.
    ``stride``: S, dense only (frames apart at ``target_fps``). ``views``: V temporal views.
    ``crops``: C spatial crops, 1 or 3. ``crop_fraction``: side of the single centre crop as a
    fraction of the shorter side (1 = the processor's own crop). ``view_starts``: dense view
    placement, ``"uniform"`` or ``"offset"``. ``target_fps``: dense only. ``ensemble``: how
    the views' scores are combined.
    """

    mode: Literal["segment", "dense"] = "segment"
    frames: int = 8
    stride: int = 1
    views: int = 1
    crops: int = 1
    crop_fraction: float = 1.0
    view_starts: Literal["uniform", "offset"] = "uniform"
    target_fps: float = 30.0
    ensemble: Ensemble = "logits"

    def __post_init__(self) -> None:
        if self.mode not in ("segment", "dense"):
            raise UsageError(f"sampling mode must be segment or dense, got {self.mode!r}")
        if self.frames < 1:
            raise UsageError(f"--frames must be at least 1, got {self.frames}")
        if self.stride < 1:
            raise UsageError(f"--stride must be at least 1, got {self.stride}")
        if self.views < 1:
            raise UsageError(f"--views must be at least 1, got {self.views}")
        if self.crops not in (1, 3):
            raise UsageError(f"--crops must be 1 or 3, got {self.crops}")
        if not 0 < self.crop_fraction <= 1:
            raise UsageError(f"crop fraction must be in (0, 1], got {self.crop_fraction}")
        if self.view_starts not in ("uniform", "offset"):
            raise UsageError(f"view starts must be uniform or offset, got {self.view_starts!r}")
        if not self.target_fps > 0:
            raise UsageError(f"target fps must be positive, got {self.target_fps}")
        if self.ensemble not in ENSEMBLES:
            raise UsageError(f"--ensemble must be one of {', '.join(ENSEMBLES)}, got "
                             f"{self.ensemble!r}")

    @property
    def is_single_segment(self) -> bool:
        """One view of T segment centres, frames untouched: ``videolens classify``'s sampling
        (cached under the same key as before multi-view existed)."""
        return (self.mode == "segment" and self.views == 1 and self.crops == 1
                and self.crop_fraction == 1.0)

    @property
    def clips(self) -> int:
        """Clips the model encodes per video: ``V * C``, or 1 when ``ensemble="frames"``."""
        return 1 if self.ensemble == "frames" else self.views * self.crops

    def key(self) -> str:
        """Cache key: every field that changes the stored embeddings (the ensemble only when
        it changes what is encoded, i.e. ``"frames"``)."""
        if self.is_single_segment:
            return f"n{self.frames}"
        parts = [self.mode, f"t{self.frames}"]
        if self.mode == "dense":
            parts += [f"s{self.stride}", f"fps{self.target_fps:g}", self.view_starts]
        parts += [f"v{self.views}", f"c{self.crops}"]
        if self.crop_fraction != 1.0:
            parts.append(f"f{self.crop_fraction:.6g}")
        if self.ensemble == "frames":
            parts.append("pooled")
        return "-".join(parts)

    def as_dict(self) -> dict:
        return asdict(self)


def segment_view_times(duration: float, frames: int, view: int, views: int) -> np.ndarray:
    """Times (seconds, ``(T,)`` float64) of view ``view`` (0-based) of ``views`` in segment
    sampling: ``(i + (view + 0.5) / views) * duration / frames`` (module docstring)."""
    if not 0 <= view < views:
        raise UsageError(f"view {view} outside 0..{views - 1}")
    if views == 1:
        return uniform_times(duration, frames)  # bit-identical to single-view sampling
    duration = max(float(duration), 0.0)
    return (np.arange(frames, dtype=np.float64) + (view + 0.5) / views) * (duration / frames)


def dense_frame_indices(num_frames: int, fps: float, frames: int, stride: int, view: int,
                        views: int, *, view_starts: str = "uniform",
                        target_fps: float = 30.0) -> np.ndarray:
    """Frame indices ``(T,)`` int64 of dense view ``view`` of ``views`` over a video of
    ``num_frames`` frames at ``fps`` (slowfast's ``get_start_end_idx`` + ``temporal_sampling``,
    module docstring)."""
    if not 0 <= view < views:
        raise UsageError(f"view {view} outside 0..{views - 1}")
    if num_frames < 1 or not fps > 0:
        raise UsageError(f"dense sampling needs a frame count and rate, got {num_frames} "
                         f"frames at {fps} fps")
    clip_size = max(1.0, stride * frames / target_fps * fps)
    delta = max(num_frames - clip_size, 0.0)
    if view_starts == "offset":
        start = math.floor(delta / 2) if views == 1 else view * math.floor(delta / (views - 1))
    else:
        start = delta * view / views
    # torch's float32 linspace, as slowfast's temporal_sampling: a float64 one picks another
    # frame in 69 of 20,000 random (frames, fps, T, S, view) cases, where a position lands
    # next to an integer
    positions = torch.linspace(start, start + clip_size - 1, frames)
    return torch.clamp(positions, 0, num_frames - 1).long().numpy()


def view_times(info: VideoInfo, sampling: ViewSampling) -> np.ndarray:
    """Requested times, seconds from the stream start, ``(V, T)`` float64."""
    rows = []
    for view in range(sampling.views):
        if sampling.mode == "segment":
            rows.append(segment_view_times(info.duration, sampling.frames, view, sampling.views))
        else:
            count = info.frame_count or max(1, round(info.duration * info.fps))
            indices = dense_frame_indices(count, info.fps, sampling.frames, sampling.stride,
                                          view, sampling.views,
                                          view_starts=sampling.view_starts,
                                          target_fps=sampling.target_fps)
            rows.append(indices / info.fps)
    return np.stack(rows)


def crop_boxes(height: int, width: int, crops: int, crop_fraction: float = 1.0
               ) -> list[tuple[int, int, int, int]]:
    """``(top, left, size_y, size_x)`` of each spatial crop of an ``height x width`` frame
    (module docstring); one full-frame box when nothing is cut."""
    short = min(height, width)
    if crops == 3:
        if width >= height:
            offsets = (0, (width - short + 1) // 2, width - short)
            return [(0, x, short, short) for x in offsets]
        offsets = (0, (height - short + 1) // 2, height - short)
        return [(y, 0, short, short) for y in offsets]
    if crop_fraction >= 1.0:
        return [(0, 0, height, width)]
    side = max(1, round(crop_fraction * short))
    return [((height - side) // 2, (width - side) // 2, side, side)]


def load_views(path: str | os.PathLike, sampling: ViewSampling) -> tuple[VideoInfo, Frames]:
    """Decode and crop one file for ``sampling``; a :class:`~videolens.io.FrameReader`
    ``loader`` (top-level, so it pickles to the workers).

    Returns ``(info, frames)`` with ``frames.frames`` ``(V * C, T, h, w, 3)`` uint8 RGB, clip
    ``v * C + c`` = view ``v``, crop ``c``, and ``frames.timestamps`` ``(V * C, T)`` seconds.

    Raises:
        VideoDecodeError: the file cannot be read (as :func:`~videolens.io.read_frames`).
    """
    info = probe(path)
    times = view_times(info, sampling)  # (V, T)
    decoded = read_frames(path, times.reshape(-1))
    frames = decoded.frames.reshape(sampling.views, sampling.frames, *decoded.frames.shape[1:])
    stamps = decoded.timestamps.reshape(sampling.views, sampling.frames)
    height, width = frames.shape[2], frames.shape[3]
    boxes = crop_boxes(height, width, sampling.crops, sampling.crop_fraction)
    clips, clip_times = [], []
    for view in range(sampling.views):
        for top, left, size_y, size_x in boxes:
            # (T, H, W, 3) -> (T, size_y, size_x, 3); contiguous so it pickles compactly
            clips.append(np.ascontiguousarray(
                frames[view, :, top:top + size_y, left:left + size_x]))
            clip_times.append(stamps[view])
    return info, Frames(frames=np.stack(clips), timestamps=np.stack(clip_times),
                        requested=times.repeat(len(boxes), axis=0),
                        warnings=list(decoded.warnings), decoded_frames=decoded.decoded_frames,
                        seeks=decoded.seeks)
