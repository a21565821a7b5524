"""PyAV decoding: frames at requested times, full sequential decode, dense clips.

Every answer is a frame the file actually presents, with its own presentation time
(``frame.pts * time_base``, relative to the stream start), never ``index / fps``, so variable
frame rate files come out right. Frames are RGB uint8 ``(H, W, 3)`` with the file's display
rotation applied (upright as a player shows them).

Sparse requests seek to the keyframe before a target and decode forward; the next target is
reached by decoding on when no keyframe lies between (seeking would land at or before where
the decoder already is). Dense requests decode the whole stream once with frame threading.
A damaged stream switches to one tolerant sequential pass that uses the nearest frames that
decoded cleanly and says so in :attr:`Frames.warnings`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from ..errors import UsageError, VideoDecodeError
from .probe import VideoInfo, declared_duration, normalise_rotation, open_video, video_info
from .sampling import Sampling, dense_windows

# A frame counts as "at or before t" up to this many seconds after t: requested times are
# computed in float64 from durations and may miss an exact pts by rounding.
EPS = 1e-6
# Without a seek index, decode forward (instead of seeking) across gaps up to this many seconds.
FORWARD_SECONDS = 1.0
# Go sequential (frame threading, no seeks) when sparse decoding would cover this share of the
# stream: frame threading decodes ~10 % faster here and seeks cost a decoder flush each.
SEQUENTIAL_SHARE = 0.8


@dataclass
class Frames:
    """Decoded frames and when the file presents them.

    ``frames``: ``(T, H, W, 3)`` uint8 RGB, rotation applied (``(num_clips, clip_len, H, W, 3)``
    from :func:`read_clips`). ``timestamps``: float64 seconds, relative to the stream start, of
    each returned frame (same leading shape). ``requested``: the times asked for (for clips: the
    frames' own times). ``warnings``: one line per problem worked around (damaged data, a
    stream shorter than declared). ``decoded_frames`` / ``seeks``: what the decoder did, for
    tests and benchmarks. ``stream_end``: seconds of the stream's last frame when decoding
    reached the end of the stream, else ``None`` (a time past it repeats that frame).
    """

    frames: np.ndarray
    timestamps: np.ndarray
    requested: np.ndarray
    warnings: list[str] = field(default_factory=list)
    decoded_frames: int = 0
    seeks: int = 0
    stream_end: float | None = None


@dataclass
class _Decoded:
    time: float  # seconds, relative to the stream start
    frame: av.VideoFrame | None  # dropped once the frame is chosen and converted
    clean: bool  # decoded without errors, not predicted from a damaged frame
    image: np.ndarray | None = None  # (h, w, 3) uint8 RGB upright, once chosen


class _Damaged(Exception):
    """Raised inside the sparse path at the first decode error: redo the request sequentially."""


class _StreamDecoder:
    """Decoding state for one open stream: positions, counters and error bookkeeping."""

    def __init__(self, path: str, container, stream, max_short_side: int | None = None
                 ) -> None:
        self.path = path
        self.max_short_side = max_short_side
        self.out_size: tuple[int, int] | None = None  # coded (w, h) every frame converts to
        self.container = container
        self.stream = stream
        self.time_base: Fraction = stream.time_base or Fraction(1, 1000)
        self.start_pts: int = stream_start_pts(stream)
        self.decoded = 0
        self.seeks = 0
        self.failed_packets = 0
        self.damaged_frames = 0
        self.error_times: list[float] = []
        self.last_time: float | None = None  # latest frame time seen (for truncation warnings)
        self.reached_end = False

    def seconds(self, pts: int) -> float:
        return float((pts - self.start_pts) * self.time_base)

    def take(self, decoded: _Decoded) -> _Decoded:
        """Convert a chosen frame to RGB now, at the size it is kept at, and let go of the
        decoder's full-size picture: only small RGB frames are ever held, so memory follows
        the number of frames and ``max_short_side``, not the video's resolution."""
        if decoded.image is None:
            frame = decoded.frame
            if self.out_size is None:
                self.out_size = output_size(frame.width, frame.height, self.max_short_side)
            decoded.image = to_rgb(frame, self.out_size)
            decoded.frame = None
        return decoded

    def to_pts(self, seconds: float) -> int:
        return self.start_pts + math.floor(seconds / self.time_base)

    def frames(self, seek_pts: int | None, strict: bool) -> Iterator[_Decoded]:
        """Decoded frames in presentation order from ``seek_pts`` (the keyframe at or before it;
        ``None``: from where the demuxer is). ``strict``: raise :class:`_Damaged` at the first
        decode error, else skip the bad packet and mark frames unclean until the next
        keyframe (they are predicted from missing data)."""
        if seek_pts is not None:
            # backward=True: land on the keyframe at or before; PyAV flushes the decoder
            self.container.seek(seek_pts, stream=self.stream, backward=True)
            self.seeks += 1
        self.reached_end = False
        tainted = False
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                self.reached_end = True
                return
            except av.error.FFmpegError:
                # the container structure itself is damaged here (typically a truncated file)
                self._note_error(None, strict)
                self.reached_end = True
                return
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                self._note_error(packet, strict)
                tainted = True
                continue
            for frame in decoded:
                self.decoded += 1
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is None:
                    continue
                if frame.key_frame:
                    tainted = False
                if frame.is_corrupt:
                    self.damaged_frames += 1
                    if strict:
                        raise _Damaged
                time = self.seconds(pts)
                self.last_time = time if self.last_time is None else max(self.last_time, time)
                yield _Decoded(time, frame, clean=not tainted and not frame.is_corrupt)

    def _note_error(self, packet, strict: bool) -> None:
        self.failed_packets += 1
        if packet is not None and packet.pts is not None:
            self.error_times.append(self.seconds(packet.pts))
        elif self.last_time is not None:
            self.error_times.append(self.last_time)
        if strict:
            raise _Damaged

    def seek_points(self) -> np.ndarray | None:
        """Seconds of the index's keyframe entries (sorted), or None when the index is too
        sparse to guide seeking. MP4 indexes every sample (timestamps are decode times, a few
        frames before presentation with B-frames: good enough to decide whether to seek);
        Matroska/WebM lists its cue points, which are exactly where a seek can land."""
        entries = self.stream.index_entries
        if entries is None or len(entries) < 2:
            return None
        points = [entry.timestamp for entry in entries if entry.is_keyframe]
        if len(points) < 2:
            return None
        return np.sort((np.asarray(points, np.float64) - self.start_pts) * float(self.time_base))

    def damage_warning(self) -> str | None:
        if not (self.failed_packets or self.damaged_frames):
            return None
        parts = []
        if self.failed_packets:
            parts.append(f"{self.failed_packets} packets could not be decoded")
        if self.damaged_frames:
            parts.append(f"{self.damaged_frames} frames decoded with errors")
        near = f" near {min(self.error_times):.1f} s" if self.error_times else ""
        return f"{' and '.join(parts)} (corrupt data{near}); used the nearest decodable frames"


# Frame threading keeps a picture in flight per thread on top of the reference frames: at 8K
# (50 MB a picture) that is most of a decode worker's memory, so big frames keep slice threads.
FRAME_THREADS_MAX_PIXELS = 3840 * 2160


def _frame_threads_if_small(stream) -> None:
    """Frame threading (fastest for a sequential pass) unless frames are above 4K."""
    context = stream.codec_context
    if context.width * context.height <= FRAME_THREADS_MAX_PIXELS:
        context.thread_type = "AUTO"


def stream_start_pts(stream) -> int:
    """The stream's first pts in its time base; 0 when the container does not say."""
    return stream.start_time if stream.start_time is not None else 0


def read_frames(path: str | os.PathLike, times: Sequence[float], *,
                max_short_side: int | None = None) -> Frames:
    """For each requested time ``t`` (seconds from the stream start, any order, repeats
    allowed): the LAST frame whose presentation time is ``<= t`` (the first frame when ``t``
    precedes it, the last when ``t`` is past the end).

    Returns :class:`Frames` with ``frames`` ``(T, H, W, 3)`` uint8 RGB (rotation applied),
    ``timestamps`` ``(T,)`` the chosen frames' presentation times, in request order.
    ``max_short_side``: frames whose shorter side is larger are scaled down (area
    interpolation, aspect kept) as they are converted, so no full-size RGB frame is held.

    Raises:
        VideoDecodeError: the file cannot be opened or no frame of it decodes. Damaged data
        inside a stream does not raise: nearby good frames are used and a warning is added.
        UsageError: no times, or a time that is not finite.
    """
    requested = np.asarray(times, dtype=np.float64).reshape(-1)
    if requested.size == 0:
        raise UsageError("read_frames needs at least one time (seconds)")
    if not np.all(np.isfinite(requested)):
        raise UsageError(f"read_frames times must be finite numbers, got {requested.tolist()}")
    name = os.fspath(path)
    targets, inverse = np.unique(requested, return_inverse=True)  # sorted, deduplicated
    inverse = inverse.reshape(-1)
    with open_video(name) as (container, stream):
        decoder = _StreamDecoder(name, container, stream, max_short_side)
        seek_points = decoder.seek_points()
        duration = declared_duration(container, stream)
        if _prefer_sequential(targets, seek_points, duration):
            # frame threading decodes whole streams faster; it must be set before the codec
            # opens (first decode), and it adds latency after every seek, hence only here
            _frame_threads_if_small(stream)
            return _finish(decoder, _select_sequential(decoder, targets), targets, inverse,
                           requested)
        try:
            return _finish(decoder, _select_sparse(decoder, targets, seek_points), targets,
                           inverse, requested)
        except _Damaged:
            pass  # damaged data or a container that cannot seek: one tolerant pass instead
    with open_video(name) as (container, stream):
        _frame_threads_if_small(stream)
        retry = _StreamDecoder(name, container, stream, max_short_side)
        retry.decoded, retry.seeks = decoder.decoded, decoder.seeks  # report the total work
        return _finish(retry, _select_sequential(retry, targets), targets, inverse, requested)


def _finish(decoder: _StreamDecoder, chosen: list[_Decoded], targets: np.ndarray,
            inverse: np.ndarray, requested: np.ndarray) -> Frames:
    """Frames in request order from one chosen frame per sorted unique target."""
    frames, timestamps = _to_arrays([chosen[j] for j in inverse])
    warnings = _warnings(decoder, targets)
    return Frames(frames=frames, timestamps=timestamps, requested=requested, warnings=warnings,
                  decoded_frames=decoder.decoded, seeks=decoder.seeks,
                  stream_end=decoder.last_time if decoder.reached_end else None)


def _prefer_sequential(targets: np.ndarray, seek_points: np.ndarray | None,
                       duration: float | None) -> bool:
    """True when the sparse path would decode most of the stream anyway: its estimated decode
    span (keyframe -> target after each seek, gap -> target when decoding on) reaches
    SEQUENTIAL_SHARE of the duration. Sequential then wins through frame threading."""
    if not duration or duration <= 0:
        return False
    span, frontier = 0.0, -math.inf
    for t in targets:
        if _should_seek(frontier, t, seek_points):
            if seek_points is None:
                span += FORWARD_SECONDS  # unknown GOP: assume a keyframe about this far back
            else:
                last = np.searchsorted(seek_points, t + EPS, side="right") - 1
                span += t - (seek_points[last] if last >= 0 else 0.0)
        else:
            span += t - frontier
        frontier = t
    return span >= SEQUENTIAL_SHARE * duration


def _select_sparse(decoder: _StreamDecoder, targets: np.ndarray,
                   seek_points: np.ndarray | None) -> list[_Decoded]:
    """One frame per sorted target, seeking only when a keyframe lies between the decoder's
    position and the target. Raises :class:`_Damaged` at the first decode error."""
    answers: list[_Decoded] = []
    frames: Iterator[_Decoded] | None = None
    previous: _Decoded | None = None  # last frame at or before the current target
    pending: _Decoded | None = None  # first frame after the previous target (already decoded)
    for t in targets:
        if pending is not None and pending.time > t + EPS:
            answers.append(decoder.take(previous or pending))
            continue
        frontier = pending.time if pending else previous.time if previous else -math.inf
        if frames is None or _should_seek(frontier, t, seek_points):
            frames, pending = _seek_before(decoder, t, seek_points)
            previous = None
        while pending is not None and pending.time <= t + EPS:
            previous, pending = pending, next(frames, None)
        answer = previous or pending
        if answer is None:
            raise _Damaged  # nothing decoded around here: let the tolerant pass decide
        answers.append(decoder.take(answer))
    return answers


def _should_seek(frontier: float, t: float, seek_points: np.ndarray | None) -> bool:
    if frontier == -math.inf:
        return True
    if seek_points is None:
        return t - frontier > FORWARD_SECONDS
    last = np.searchsorted(seek_points, t + EPS, side="right") - 1
    return bool(last >= 0 and seek_points[last] > frontier + EPS)


def _seek_before(decoder: _StreamDecoder, t: float, seek_points: np.ndarray | None
                 ) -> tuple[Iterator[_Decoded], _Decoded | None]:
    """Seek so that the first decoded frame is at or before ``t`` (or is the stream's first
    frame). Some seeks land after the target (an MP4 seeks by decode time, so a keyframe whose
    decode time is <= t may present after t); then seek earlier and retry."""
    backoff = 0.0
    while True:
        at_start = t - backoff <= (seek_points[0] if seek_points is not None else 0.0)
        if at_start:
            seek_pts = decoder.start_pts
            if seek_points is not None:
                seek_pts = min(seek_pts, decoder.to_pts(seek_points[0]) + 1)
        else:
            seek_pts = decoder.to_pts(t - backoff)
        try:
            frames = decoder.frames(seek_pts, strict=True)
            first = next(frames, None)
        except av.error.FFmpegError as err:  # e.g. a container that cannot seek
            raise _Damaged from err
        if at_start or (first is not None and first.time <= t + EPS):
            return frames, first
        backoff = max(1.0, 2 * backoff)


def _select_sequential(decoder: _StreamDecoder, targets: np.ndarray) -> list[_Decoded]:
    """One tolerant pass over the whole stream. Picks from clean frames when any decoded
    cleanly (else from whatever decoded); a target before the first usable frame gets that
    frame. Raises VideoDecodeError when nothing decodes."""
    clean, anything = _Picker(targets, decoder.take), _Picker(targets, decoder.take)
    try:
        for decoded in decoder.frames(None, strict=False):
            anything.offer(decoded)
            if decoded.clean:
                clean.offer(decoded)
    except av.error.FFmpegError as err:
        raise VideoDecodeError(
            f"decoding failed ({err.strerror or type(err).__name__})", path=decoder.path,
            hint="the file is damaged; re-encode or re-download it",
        ) from err
    for picker in (clean, anything):
        answers = picker.finish()
        if answers is not None:
            return answers
    raise VideoDecodeError("no video frame could be decoded", path=decoder.path,
                           hint="the file is damaged or uses an unsupported codec")


class _Picker:
    """Streaming 'last frame at or before t' over frames offered in presentation order."""

    def __init__(self, targets: np.ndarray, take: Callable[[_Decoded], _Decoded]) -> None:
        self.targets = targets
        self.take = take  # converts a frame the moment it becomes an answer
        self.answers: list[_Decoded | None] = [None] * len(targets)
        self.next = 0  # first target not yet settled
        self.waiting: list[int] = []  # targets before the first offered frame
        self.previous: _Decoded | None = None

    def offer(self, decoded: _Decoded) -> None:
        while self.next < len(self.targets) and decoded.time > self.targets[self.next] + EPS:
            if self.previous is None:
                self.waiting.append(self.next)
            else:
                self.answers[self.next] = self.take(self.previous)
            self.next += 1
        for index in self.waiting:
            self.answers[index] = self.take(decoded)
        self.waiting.clear()
        self.previous = decoded

    def finish(self) -> list[_Decoded] | None:
        if self.previous is None:
            return None
        for index in range(self.next, len(self.targets)):
            self.answers[index] = self.take(self.previous)
        return self.answers  # type: ignore[return-value]


def _warnings(decoder: _StreamDecoder, targets: np.ndarray) -> list[str]:
    warnings = []
    damage = decoder.damage_warning()
    if damage:
        warnings.append(damage)
    declared = declared_duration(decoder.container, decoder.stream)
    rate = decoder.stream.average_rate or decoder.stream.guessed_rate
    frame = float(1 / rate) if rate else 0.1
    last = decoder.last_time
    if (decoder.reached_end and declared and last is not None
            and last + 2 * frame < declared and targets[-1] > last + 2 * frame):
        late = int(np.sum(targets > last + 2 * frame))
        warnings.append(
            f"the video stream ends at {last:.2f} s but the file declares {declared:.2f} s "
            f"(truncated?); {late} requested times after that use the last decodable frame"
        )
    return warnings


def output_size(width: int, height: int, max_short_side: int | None) -> tuple[int, int]:
    """Coded ``(width, height)`` scaled so the shorter side is at most ``max_short_side``
    (unchanged when it already is, or when ``max_short_side`` is None)."""
    short = min(width, height)
    if not max_short_side or short <= max_short_side:
        return width, height
    scale = max_short_side / short
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_rgb(frame: av.VideoFrame, size: tuple[int, int] | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a decoded frame, turned upright by its display rotation.
    ``size``: coded ``(width, height)`` to scale to (streams that change size mid-way, or a
    smaller size to keep); scaling down uses area averaging, which does not alias."""
    if size is not None and (frame.width, frame.height) != size:
        shrinking = size[0] * size[1] < frame.width * frame.height
        image = frame.to_ndarray(format="rgb24", width=size[0], height=size[1],
                                 interpolation="AREA" if shrinking else None)
    else:
        image = frame.to_ndarray(format="rgb24")
    # the display matrix rotates counter-clockwise by `rotation`; np.rot90 with k > 0 turns
    # counter-clockwise too (FFmpeg's autorotate agrees: rotation -90 -> transpose=clock)
    quarter_turns = normalise_rotation(frame.rotation) // 90
    return np.rot90(image, quarter_turns) if quarter_turns else image


def _to_arrays(chosen: list[_Decoded]) -> tuple[np.ndarray, np.ndarray]:
    """Stack chosen frames (each converted once, by :meth:`_StreamDecoder.take`) ->
    (T, H, W, 3), (T,)."""
    images = [decoded.image for decoded in chosen]
    timestamps = np.array([decoded.time for decoded in chosen], dtype=np.float64)
    return np.stack(images), timestamps


def iter_frames(path: str | os.PathLike) -> Iterator[tuple[np.ndarray, float]]:
    """Every frame in presentation order: ``((H, W, 3) uint8 RGB upright, seconds from the
    stream start)``. Packets that fail to decode are skipped (frames predicted from them may be
    damaged); raises VideoDecodeError if the file cannot be opened or nothing decodes."""
    name = os.fspath(path)
    with open_video(name) as (container, stream):
        stream.codec_context.thread_type = "AUTO"  # sequential: frame threading is fastest
        decoder = _StreamDecoder(name, container, stream)
        count = 0
        for decoded in decoder.frames(None, strict=False):
            count += 1
            yield np.ascontiguousarray(to_rgb(decoded.frame)), decoded.time
        if count == 0:
            raise VideoDecodeError("no video frame could be decoded", path=name,
                                   hint="the file is damaged or uses an unsupported codec")


def read_clips(path: str | os.PathLike, clip_len: int, stride: int,
               frame_step: int = 1) -> Frames:
    """Dense windows (:func:`~videolens.io.sampling.dense_windows`) over the decoded frames.

    Window ``k`` is decoded frames ``k * stride + j * frame_step``, ``j < clip_len``. Returns
    :class:`Frames` with ``frames`` ``(num_clips, clip_len, H, W, 3)`` uint8 RGB and
    ``timestamps`` ``(num_clips, clip_len)`` seconds. One sequential pass; only frames inside
    some window are converted and kept.
    """
    name = os.fspath(path)
    with open_video(name) as (container, stream):
        stream.codec_context.thread_type = "AUTO"
        decoder = _StreamDecoder(name, container, stream)
        span = (clip_len - 1) * frame_step
        kept: dict[int, tuple[np.ndarray, float]] = {}
        size = None
        count = 0
        for index, decoded in enumerate(decoder.frames(None, strict=False)):
            count = index + 1
            # index is in window k when index - k*stride is a multiple of frame_step in [0, span]
            first_k = max(0, math.ceil((index - span) / stride))
            in_window = any((index - k * stride) % frame_step == 0
                            for k in range(first_k, index // stride + 1))
            # a stream shorter than one window is padded with its last frame: keep all of those
            if in_window or index <= span:
                size = size or (decoded.frame.width, decoded.frame.height)
                kept[index] = (to_rgb(decoded.frame, size), decoded.time)
        if count == 0:
            raise VideoDecodeError("no video frame could be decoded", path=name,
                                   hint="the file is damaged or uses an unsupported codec")
        windows = dense_windows(count, clip_len, stride, frame_step)  # (num_clips, clip_len)
        frames = np.stack([np.stack([kept[i][0] for i in row]) for row in windows])
        timestamps = np.array([[kept[i][1] for i in row] for row in windows], np.float64)
        warnings = [w for w in [decoder.damage_warning()] if w]
    return Frames(frames=frames, timestamps=timestamps, requested=timestamps.copy(),
                  warnings=warnings, decoded_frames=decoder.decoded, seeks=decoder.seeks)


def load_video(path: str | os.PathLike, sampling: Sampling, *,
               max_short_side: int | None = None) -> tuple[VideoInfo, Frames]:
    """Probe a file and sample it: the unit of work the pipeline runs per video.
    ``max_short_side``: as for :func:`read_frames` (uniform and rate sampling)."""
    name = os.fspath(path)
    with open_video(name) as (container, stream):
        info = video_info(name, container, stream)
    if sampling.kind == "dense":
        return info, read_clips(name, sampling.clip_len, sampling.stride, sampling.frame_step)
    return info, read_frames(name, sampling.times(info.duration), max_short_side=max_short_side)
