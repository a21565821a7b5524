"""What a video file holds: duration, frame rate, displayed size, rotation, codec.

Also the one place that opens a file with PyAV (:func:`open_video`), so every reader turns
missing, unreadable, truncated and non-video files into the same one-line
:class:`~videolens.errors.VideoDecodeError`.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import av

from ..errors import VideoDecodeError

# FFmpeg opens still images through these demuxers as one-frame "videos"; we refuse them (a
# still has no duration or frame rate, and a folder of thumbnails should not be classified as
# videos by accident). Animated GIF is accepted: it has real timing.
_IMAGE_FORMATS = ("image2", "image2pipe")
_ANIMATED_PIPES = ("gif_pipe",)


@dataclass(frozen=True)
class VideoInfo:
    """Facts about the first video stream of a file.

    Times are seconds. ``width``/``height`` are the DISPLAYED size in pixels (after rotation;
    sample aspect ratio is not applied). ``rotation`` is the display-matrix rotation in degrees
    counter-clockwise (FFmpeg's convention), normalised to 0/90/180/270: an upright phone clip
    tagged ``rotate=90`` (turn 90 degrees clockwise to show) reads 270. Timestamps elsewhere in
    videolens are relative to ``start_time``.
    """

    path: str
    duration: float
    fps: float
    frame_count: int
    width: int
    height: int
    rotation: int
    codec: str
    start_time: float
    has_audio: bool
    size_bytes: int


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a file's :class:`VideoInfo` (decodes only its first frame, for the rotation).

    Raises:
        VideoDecodeError: missing, unreadable, empty, truncated or not a video; no video stream.
    """
    with open_video(path) as (container, stream):
        return video_info(path, container, stream)


# One decoded frame of this size is ~100 MB in YUV and FFmpeg keeps several for reference:
# past it, a small malicious file could ask for gigabytes. 8K (33 Mpx) stays well inside.
MAX_PIXELS = 8192 * 8192


@contextmanager
def open_video(path: str | os.PathLike) -> Iterator[tuple[av.container.InputContainer,
                                                          av.video.stream.VideoStream]]:
    """Open ``path`` and yield ``(container, first video stream)``; closes it on exit.

    Every failure to open becomes a :class:`VideoDecodeError` naming the file and a next step.
    """
    name = os.fspath(path)
    check_file(name)
    try:
        container = av.open(name, metadata_errors="ignore")
    except av.error.PermissionError as err:
        raise _permission_error(name) from err
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise _open_error(name, err) from err
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            found = ", ".join(kinds) if kinds else "no streams"
            raise VideoDecodeError(
                f"has no video stream (found: {found})", path=name,
                hint="pass a video file; audio-only files cannot be analysed",
            )
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > MAX_PIXELS:
            raise VideoDecodeError(
                f"frames are {width}x{height} ({width * height / 1e6:.0f} megapixels), above "
                f"videolens' limit of {MAX_PIXELS / 1e6:.0f} megapixels (8192x8192)",
                path=name,
                hint="scale it down first, e.g. ffmpeg -i IN -vf scale=3840:-2 OUT.mp4",
            )
        fmt = container.format.name
        if fmt in _IMAGE_FORMATS or (fmt.endswith("_pipe") and fmt not in _ANIMATED_PIPES):
            raise VideoDecodeError(
                f"is a still image ({fmt.removesuffix('_pipe')}), not a video", path=name,
                hint="convert it to a video first if you want to analyse it",
            )
        yield container, container.streams.video[0]


def video_info(path: str | os.PathLike, container, stream) -> VideoInfo:
    """:class:`VideoInfo` of an open container's video ``stream`` (decodes the first frame)."""
    name = os.fspath(path)
    time_base = stream.time_base or Fraction(1, 1000)
    rotation = _first_frame_rotation(container, stream)
    # timestamps everywhere are relative to this; 0 when the container does not say
    start_pts = stream.start_time if stream.start_time is not None else 0
    rate = stream.average_rate or stream.guessed_rate
    duration = _duration(container, stream, time_base, start_pts, rate)
    fps = float(rate) if rate else 0.0
    if fps <= 0 and stream.frames > 0 and duration > 0:
        fps = stream.frames / duration
    frame_count = stream.frames if stream.frames > 0 else round(duration * fps)
    width, height = stream.codec_context.width, stream.codec_context.height
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        path=name,
        duration=duration,
        fps=fps,
        frame_count=int(frame_count),
        width=int(width),
        height=int(height),
        rotation=rotation,
        codec=stream.codec_context.name,
        start_time=float(start_pts * time_base),
        has_audio=bool(container.streams.audio),
        size_bytes=os.path.getsize(name),
    )


def normalise_rotation(degrees: float | None) -> int:
    """Counter-clockwise degrees (FFmpeg reports -180..180) -> 0, 90, 180 or 270."""
    if not degrees:
        return 0
    return int(round(degrees / 90.0)) % 4 * 90


def _first_frame_rotation(container, stream) -> int:
    """Rotation of the first decodable frame (normalised). The display matrix is only exposed on
    decoded frames in PyAV 18 (``VideoFrame.rotation``), hence the decode. Corrupt leading
    packets are skipped; a stream with no decodable frame in its first 64 packets reads as
    rotation 0 (read_frames reports it properly)."""
    try:
        for tries, packet in enumerate(container.demux(stream)):
            if tries >= 64:
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue
            for frame in frames:
                return normalise_rotation(frame.rotation)
    except av.error.FFmpegError:
        pass
    return 0


def declared_duration(container, stream) -> float | None:
    """Seconds the file claims for the video stream, or None: the stream's duration, else the
    container's. Matroska/WebM store the segment duration measured from timestamp 0, so a
    stream that starts later has its start subtracted there."""
    time_base = stream.time_base or Fraction(1, 1000)
    if stream.duration:
        return float(stream.duration * time_base)
    if container.duration:
        # container.duration is in AV_TIME_BASE units (microseconds) and spans all streams
        seconds = container.duration / av.time_base
        if container.format.name.startswith("matroska") and stream.start_time:
            seconds -= float(stream.start_time * time_base)
        return max(seconds, 0.0)
    return None


def _duration(container, stream, time_base: Fraction, start_pts: int, rate) -> float:
    """:func:`declared_duration`, else the last packet's pts plus one frame."""
    declared = declared_duration(container, stream)
    if declared:
        return declared
    last = None
    try:
        container.seek(0)
        for packet in container.demux(stream):
            if packet.pts is not None and (last is None or packet.pts > last):
                last = packet.pts
    except av.error.FFmpegError:
        pass
    if last is None:
        return 0.0
    frame = float(1 / rate) if rate else 0.0
    return float((last - start_pts) * time_base) + frame


_NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def check_file(name: str) -> None:
    """Refuse what is not a readable, non-empty regular file before FFmpeg opens it, with a
    clear error: a missing file, a broken symlink or a symlink loop, a folder, and anything
    that is not a regular file (a FIFO would block the reader forever, a device never ends).

    Raises:
        VideoDecodeError: naming the file and what to do.
    """
    try:
        info = os.stat(name)
    except FileNotFoundError:
        if os.path.islink(name):
            raise VideoDecodeError(
                f"is a broken symlink (its target {os.readlink(name)!r} does not exist)",
                path=name, hint="fix or remove the link") from None
        raise VideoDecodeError("file not found", path=name,
                               hint="check the path (relative paths start at the working dir)"
                               ) from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise VideoDecodeError("is a symlink loop (the link points back to itself)",
                                   path=name, hint="fix or remove the link") from None
        raise VideoDecodeError(f"cannot be read ({err.strerror or err})", path=name,
                               hint="check the disk or network share") from None
    if stat.S_ISDIR(info.st_mode):
        raise VideoDecodeError("is a directory, not a video file", path=name,
                               hint="pass the video files inside it")
    for test, kind in _NOT_REGULAR:
        if test(info.st_mode):
            raise VideoDecodeError(f"is not a regular file ({kind})", path=name,
                                   hint="pass a video file; pipes and devices are not read")
    try:
        with open(name, "rb") as handle:
            head = handle.read(16)
    except PermissionError as err:
        raise _permission_error(name) from err
    except OSError as err:
        raise VideoDecodeError(f"cannot be read ({err.strerror or err})", path=name,
                               hint="check the disk or network share") from err
    if not head:
        raise VideoDecodeError("is empty (0 bytes)", path=name,
                               hint="the download or copy did not finish; fetch it again")


def _permission_error(name: str) -> VideoDecodeError:
    return VideoDecodeError("permission denied", path=name,
                            hint="make the file readable for this user (chmod/chown)")


def _open_error(name: str, err: Exception) -> VideoDecodeError:
    if _is_mp4_without_index(name):
        return VideoDecodeError(
            "MP4/MOV file has no 'moov' index: it is truncated or was never finished", path=name,
            hint="re-download or re-export it; a recording that was cut off needs a repair tool",
        )
    reason = getattr(err, "strerror", None) or str(err).split(":")[0]
    return VideoDecodeError(
        f"is not a video file FFmpeg can read ({reason})", path=name,
        hint="check that it is a video (mp4, webm, mkv, mov, avi, ...) and not damaged",
    )


def _is_mp4_without_index(name: str) -> bool:
    """True for an ISO-BMFF file (starts with an ``ftyp`` box) whose top-level boxes, as far as
    the file goes, include no ``moov``: what a cut-off download of a non-faststart MP4 looks
    like. Reads only the 8-16 byte box headers."""
    try:
        size_total = os.path.getsize(name)
        with open(name, "rb") as handle:
            position, seen = 0, []
            while position + 8 <= size_total and len(seen) < 1000:
                handle.seek(position)
                header = handle.read(16)
                size, kind = struct.unpack(">I4s", header[:8])
                if size == 1 and len(header) == 16:
                    size = struct.unpack(">Q", header[8:16])[0]
                elif size == 0:
                    size = size_total - position
                if size < 8:
                    break
                seen.append(kind)
                position += size
    except (OSError, struct.error):
        return False
    return bool(seen) and seen[0] == b"ftyp" and b"moov" not in seen

