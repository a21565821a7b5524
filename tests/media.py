"""Synthetic test videos, written with PyAV at test time (no binary fixtures in the repo).

Every frame's content identifies its index: :func:`frame_content` paints the index's bits as
black/white cells of a 4 x 3 grid, so a frame can be read back with :func:`frame_index` even
after lossy coding (blocks aligned to 16 px at 64x48 survive H.264/VP9 at default quality).
The default codec ``libx264rgb`` at crf 0 is lossless RGB, so decoded frames can be compared
to :func:`frame_content` exactly.

Sizes are ``(width, height)`` in pixels; arrays are ``(H, W, 3)`` uint8 RGB. Every writer returns
the path it wrote as a :class:`~pathlib.Path`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GRID_COLUMNS, GRID_ROWS = 4, 3  # 12 bits: indices 0..4095 are distinguishable
MARKER_COLOR = (255, 0, 0)

Content = Callable[[int], np.ndarray]


def frame_content(i: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 image of frame ``i``: bit ``b`` of ``i`` is cell ``b`` (row-major)
    of a 4 x 3 grid, white when set, black otherwise. Pixels past the grid stay black."""
    width, height = size
    cell_w, cell_h = width // GRID_COLUMNS, height // GRID_ROWS
    image = np.zeros((height, width, 3), np.uint8)
    for bit in range(GRID_COLUMNS * GRID_ROWS):
        if (i >> bit) & 1:
            row, col = divmod(bit, GRID_COLUMNS)
            image[row * cell_h:(row + 1) * cell_h, col * cell_w:(col + 1) * cell_w] = 255
    return image


def frame_index(image: np.ndarray) -> int:
    """Inverse of :func:`frame_content` for an upright ``(H, W, 3)`` image, robust to lossy coding
    (it reads the mean of the central half of each cell)."""
    height, width = image.shape[:2]
    cell_w, cell_h = width // GRID_COLUMNS, height // GRID_ROWS
    index = 0
    for bit in range(GRID_COLUMNS * GRID_ROWS):
        row, col = divmod(bit, GRID_COLUMNS)
        y0, x0 = row * cell_h + cell_h // 4, col * cell_w + cell_w // 4
        patch = image[y0:y0 + cell_h // 2, x0:x0 + cell_w // 2]
        if patch.mean() > 127:
            index |= 1 << bit
    return index


def marked_content(i: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """:func:`frame_content` with a red square in the top-left corner, so orientation is testable:
    in an upright image the red marker is at the top left. The square is a quarter of the smaller
    side (12 px at 64x48)."""
    image = frame_content(i, size)
    side = min(size) // 4
    image[:side, :side] = MARKER_COLOR
    return image


def marker_corner(image: np.ndarray) -> str:
    """Which corner of ``image`` holds the red marker: ``"top-left"``, ``"top-right"``,
    ``"bottom-left"`` or ``"bottom-right"``."""
    height, width = image.shape[:2]
    side = min(height, width) // 8
    corners = {
        "top-left": image[:side, :side],
        "top-right": image[:side, width - side:],
        "bottom-left": image[height - side:, :side],
        "bottom-right": image[height - side:, width - side:],
    }
    red = np.array(MARKER_COLOR, float)
    return min(corners, key=lambda name: np.abs(corners[name].reshape(-1, 3) - red).mean())


def _codec_settings(codec: str, crf: int | None) -> tuple[str, str, dict[str, str]]:
    """(encoder name, pixel format, encoder options) for a user-facing codec name."""
    if codec == "libx264rgb":
        return codec, "rgb24", {"crf": "0" if crf is None else str(crf), "preset": "veryfast"}
    if codec in ("h264", "libx264"):
        return "libx264", "yuv420p", {"crf": "18" if crf is None else str(crf),
                                      "preset": "veryfast"}
    if codec in ("vp9", "libvpx-vp9"):
        return "libvpx-vp9", "yuv420p", {"crf": "30" if crf is None else str(crf), "b": "0",
                                         "deadline": "realtime", "cpu-used": "8"}
    raise ValueError(f"unsupported test codec {codec!r}")


def _write(
    path: str | Path,
    images: Sequence[np.ndarray] | Callable[[int], np.ndarray],
    pts: Sequence[int],
    time_base: Fraction,
    rate: Fraction,
    *,
    codec: str = "libx264rgb",
    gop: int | None = None,
    bframes: int | None = None,
    crf: int | None = None,
    faststart: bool = False,
    audio: bool = False,
    rotation: int | None = None,
) -> Path:
    """Encode ``images[k]`` (or ``images(k)``) at ``pts[k]`` (in ``time_base`` units)."""
    path = Path(path)
    encoder, pix_fmt, options = _codec_settings(codec, crf)
    if gop is not None:
        # fixed GOP: also switch off scene-cut keyframes, which our changing content would trigger
        options.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
    if bframes is not None and encoder.startswith("libx264"):
        options["bf"] = str(bframes)
    container_options = {"movflags": "+faststart"} if faststart else {}
    first = images(0) if callable(images) else images[0]
    height, width = first.shape[:2]
    with av.open(str(path), "w", options=container_options) as container:
        stream = container.add_stream(encoder, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        audio_stream = None
        if audio:
            audio_stream = container.add_stream("aac" if path.suffix != ".webm" else "libopus",
                                                rate=48000)
            audio_stream.layout = "mono"
        for k, t in enumerate(pts):
            image = images(k) if callable(images) else images[k]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = int(t), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio_stream is not None:
            seconds = float(pts[-1] * time_base) + float(1 / rate)
            _write_tone(container, audio_stream, seconds)
    return path


def _write_tone(container, stream, seconds: float) -> None:
    """A 440 Hz mono tone of ``seconds`` at 48 kHz, in 1024-sample frames (the AAC frame size)."""
    samples = int(seconds * 48000)
    t = np.arange(samples) / 48000
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    chunk = 960 if stream.codec_context.name == "libopus" else 1024
    for start in range(0, samples - chunk + 1, chunk):
        frame = av.AudioFrame.from_ndarray(tone[None, start:start + chunk], format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = 48000, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def make_video(
    path: str | Path,
    *,
    num_frames: int,
    fps: float,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264rgb",
    gop: int | None = None,
    bframes: int | None = None,
    crf: int | None = None,
    content: Content | None = None,
    faststart: bool = False,
    audio: bool = False,
) -> Path:
    """A constant-frame-rate video: frame ``i`` shows ``content(i)`` (default
    :func:`frame_content` at ``size``) at ``pts = i / fps`` seconds.

    ``codec``: ``"libx264rgb"`` (lossless RGB, crf 0; exact comparisons), ``"h264"``/``"libx264"``
    (yuv420p, crf 18) or ``"libvpx-vp9"``; the container (MP4, WebM, MKV, MOV) follows the
    extension. ``gop``: keyframe interval in frames (scene-cut keyframes off); default: the
    encoder's. ``bframes``: x264 B-frames (default: x264's, 3). ``faststart``: MP4 index at the
    front. ``audio``: add a tone track.
    """
    rate = Fraction(fps).limit_denominator(100000)
    paint = content or (lambda i: frame_content(i, size))
    return _write(path, paint, list(range(num_frames)), 1 / rate, rate, codec=codec, gop=gop,
                  bframes=bframes, crf=crf, faststart=faststart, audio=audio)


def make_vfr_video(
    path: str | Path,
    pts_seconds: Sequence[float],
    *,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264rgb",
    time_base: Fraction = Fraction(1, 1000),
    gop: int | None = None,
) -> Path:
    """A variable-frame-rate video: frame ``i`` shows :func:`frame_content` ``(i)`` at
    ``pts_seconds[i]`` (rounded to ``time_base``; must increase strictly)."""
    pts = [round(t / time_base) for t in pts_seconds]
    if any(b <= a for a, b in zip(pts, pts[1:], strict=False)):
        raise ValueError("pts_seconds must increase strictly (after rounding to time_base)")
    span = (pts[-1] - pts[0]) * time_base
    rate = Fraction(len(pts) - 1, 1) / span if span > 0 else Fraction(25)
    return _write(path, lambda i: frame_content(i, size), pts, time_base,
                  rate.limit_denominator(1000), codec=codec, gop=gop)


def make_rotated_video(
    path: str | Path,
    rotation: int = 90,
    *,
    num_frames: int = 10,
    fps: float = 10,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264rgb",
    method: str = "display_matrix",
) -> Path:
    """A video whose display matrix rotates the coded frames by ``rotation`` degrees
    counter-clockwise (FFmpeg's convention, the value ``VideoFrame.rotation`` reads back;
    ``-90 == 270`` is the usual upright phone clip, tagged ``rotate=90``).

    Displayed correctly, frame ``i`` is :func:`marked_content` ``(i, size)`` — upright, ``size``
    = displayed ``(width, height)``, red marker top-left. The coded frames are that image turned
    the other way, so a reader that ignores the rotation sees the marker elsewhere.

    ``method``: ``"display_matrix"`` writes it with PyAV's ``set_display_rotation``;
    ``"tkhd"`` (MP4/MOV only) writes an unrotated file and then overwrites the 3x3 matrix in the
    track header box (``moov/trak/tkhd``) in place, the way cameras and phones store it. That
    path does not depend on PyAV's writer, so it checks the reader against the file format.
    """
    k = (rotation // 90) % 4
    if rotation % 90:
        raise ValueError("rotation must be a multiple of 90 degrees")
    rate = Fraction(fps).limit_denominator(100000)
    # display = rot90(coded, k) (np.rot90 turns counter-clockwise), so coded = rot90(upright, -k)
    def coded(i: int) -> np.ndarray:
        return np.rot90(marked_content(i, size), -k)
    path = _write(path, coded, list(range(num_frames)), 1 / rate, rate, codec=codec,
                  rotation=rotation if method == "display_matrix" else None)
    if method == "tkhd":
        _patch_tkhd_rotation(path, rotation)
    elif method != "display_matrix":
        raise ValueError(f"unknown method {method!r}")
    return path


def _patch_tkhd_rotation(path: Path, rotation: int) -> None:
    """Overwrite the video track's tkhd matrix with a counter-clockwise ``rotation``.

    The MP4 matrix ``[a b u; c d v; x y w]`` maps a pixel ``(x, y)`` (y down) to
    ``(a*x + c*y + tx, b*x + d*y + ty)``; ``a, b, c, d`` are 16.16 fixed point. The common phone
    matrix ``a=0, b=1, c=-1, d=0`` turns right into down: 90 degrees clockwise on screen, which
    FFmpeg reports as a rotation of -90 (counter-clockwise). Translation is left at 0; FFmpeg
    only uses the rotation part.
    """
    ccw = rotation % 360
    cos, sin = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[ccw]
    # a counter-clockwise turn by theta on a y-down screen: a=cos, b=-sin, c=sin, d=cos
    a, b, c, d = cos, -sin, sin, cos
    one = 1 << 16
    matrix = struct.pack(">9i", a * one, b * one, 0, c * one, d * one, 0, 0, 0, 1 << 30)
    data = bytearray(path.read_bytes())
    offset = _find_box(data, [b"moov", b"trak", b"tkhd"])
    version = data[offset + 8]
    # tkhd payload: version/flags (4), times and ids (20 in v0, 32 in v1), reserved (8),
    # layer, alternate group, volume, reserved (2 each), then the 36-byte matrix
    matrix_at = offset + 8 + 4 + (32 if version == 1 else 20) + 8 + 8
    data[matrix_at:matrix_at + 36] = matrix
    path.write_bytes(bytes(data))


def _find_box(data: bytes | bytearray, route: list[bytes], start: int = 0,
              end: int | None = None) -> int:
    """Offset of the box at ``route`` (e.g. moov/trak/tkhd; the first match at each level)."""
    end = len(data) if end is None else end
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack(">I4s", data[position:position + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[position + 8:position + 16])[0], 16
        elif size == 0:
            size = end - position
        if kind == route[0]:
            if len(route) == 1:
                return position
            return _find_box(data, route[1:], position + header, position + size)
        position += size
    raise ValueError(f"box {route[0]!r} not found")


def make_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """An audio-only file (AAC in MP4/M4A, Opus in WebM/Ogg): a 440 Hz tone."""
    path = Path(path)
    codec = "libopus" if path.suffix in (".webm", ".ogg", ".opus") else "aac"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=48000)
        stream.layout = "mono"
        _write_tone(container, stream, seconds)
    return path


def make_truncated(src: str | Path, dst: str | Path, fraction: float = 0.5) -> Path:
    """``dst`` = the first ``fraction`` of ``src``'s bytes, as a cut-off download leaves it. An MP4
    written without faststart then has no ``moov`` index; with faststart it opens and its later
    frames are missing."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def make_corrupt_middle(src: str | Path, dst: str | Path, *, fraction: float = 0.1,
                        seed: int = 0) -> Path:
    """``dst`` = ``src`` with ``fraction`` of its bytes, centred in the file, overwritten with
    random bytes (seeded). Headers and the MP4 index survive; the video data there does not."""
    data = bytearray(Path(src).read_bytes())
    length = max(1, int(len(data) * fraction))
    start = (len(data) - length) // 2
    data[start:start + length] = np.random.default_rng(seed).integers(
        0, 256, length, dtype=np.uint8).tobytes()
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


Color = tuple[int, int, int]


def make_video_with_segments(
    path: str | Path,
    segments: Sequence[tuple[float, float, Color | Callable[[tuple[int, int]], np.ndarray]]],
    *,
    duration: float,
    fps: float,
    size: tuple[int, int] = (64, 48),
    background: Color = (40, 40, 40),
    codec: str = "libx264rgb",
) -> Path:
    """A video with distinctive content in known time ranges, for search/localization tests.

    Frame ``i`` (at ``i / fps`` seconds, ``round(duration * fps)`` frames) shows the first
    segment with ``start_s <= i / fps < end_s``: a solid RGB color, or ``pattern(size)`` -> an
    ``(H, W, 3)`` uint8 image; frames in no segment show ``background``.
    """
    width, height = size
    num_frames = round(duration * fps)

    def paint(i: int) -> np.ndarray:
        t = i / fps
        for start, end, look in segments:
            if start <= t < end:
                if callable(look):
                    return np.asarray(look(size), np.uint8)
                return np.full((height, width, 3), look, np.uint8)
        return np.full((height, width, 3), background, np.uint8)

    return make_video(path, num_frames=num_frames, fps=fps, size=size, codec=codec,
                      content=paint)
