"""Session-scoped synthetic videos (written once per test run into a temporary folder).

``tests/conftest.py`` does ``from fixtures_media import *``. Every fixture returns a ``str`` path
(or a dict of them); what each file holds is in its docstring and in the constants below.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from media import (
    frame_content,
    make_audio_only,
    make_corrupt_middle,
    make_rotated_video,
    make_truncated,
    make_vfr_video,
    make_video,
    make_video_with_segments,
)

# presentation times (seconds) of the frames of `video_vfr`; frame i shows frame_content(i)
VFR_PTS = [0.0, 0.04, 0.3, 0.31, 0.9, 1.5, 1.52, 2.0, 2.75]
# (start_s, end_s, RGB) of `video_segments`: 6 s at 10 fps, background (40, 40, 40)
SEGMENTS = [(1.0, 2.0, (255, 0, 0)), (3.5, 4.5, (0, 0, 255))]

__all__ = [
    "SEGMENTS",
    "VFR_PTS",
    "bad_videos",
    "media_dir",
    "video_h264",
    "video_long",
    "video_mp4",
    "video_rotated",
    "video_rotated_phone",
    "video_segments",
    "video_vfr",
    "video_webm",
]


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """A session-wide folder for synthetic media."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def video_mp4(media_dir) -> str:
    """Lossless H.264 (libx264rgb, crf 0) MP4, 64x48, 45 frames at 15 fps (3.0 s), keyframe
    every 15 frames, x264's default 3 B-frames; frame i is ``frame_content(i)``."""
    return str(make_video(media_dir / "lossless.mp4", num_frames=45, fps=15, gop=15))


@pytest.fixture(scope="session")
def video_h264(media_dir) -> str:
    """Lossy H.264 (libx264, yuv420p, crf 18) MP4, 96x64, 60 frames at 30 fps (2.0 s), keyframe
    every 10 frames, with an AAC audio track; ``frame_index`` reads the index back."""
    return str(make_video(media_dir / "lossy.mp4", num_frames=60, fps=30, size=(96, 64),
                          codec="h264", gop=10, audio=True))


@pytest.fixture(scope="session")
def video_webm(media_dir) -> str:
    """VP9 WebM, 64x48, 30 frames at 10 fps (3.0 s), keyframe every 10 frames."""
    return str(make_video(media_dir / "vp9.webm", num_frames=30, fps=10, codec="libvpx-vp9",
                          gop=10))


@pytest.fixture(scope="session")
def video_vfr(media_dir) -> str:
    """Lossless variable-frame-rate MP4: frame i at ``VFR_PTS[i]`` seconds."""
    return str(make_vfr_video(media_dir / "vfr.mp4", VFR_PTS))


@pytest.fixture(scope="session")
def video_rotated(media_dir) -> str:
    """Lossless MP4 whose display matrix (written by PyAV) turns the coded 48x64 frames 90
    degrees counter-clockwise; displayed, frame i is ``marked_content(i, (64, 48))``: 10 frames
    at 10 fps."""
    return str(make_rotated_video(media_dir / "rotated90.mp4", 90))


@pytest.fixture(scope="session")
def video_rotated_phone(media_dir) -> str:
    """Like ``video_rotated`` but with the upright-phone matrix (rotate=90 tag, display matrix
    -90 = 270 counter-clockwise) patched into ``tkhd`` by hand."""
    return str(make_rotated_video(media_dir / "phone270.mp4", 270, method="tkhd"))


@pytest.fixture(scope="session")
def video_long(media_dir) -> str:
    """Lossless MP4, 96x64, 600 frames at 30 fps (20.0 s), keyframe every 30 frames, 3
    B-frames: for sparse-seeking tests."""
    return str(make_video(media_dir / "long.mp4", num_frames=600, fps=30, size=(96, 64),
                          gop=30, bframes=3))


@pytest.fixture(scope="session")
def video_segments(media_dir) -> str:
    """Lossless MP4, 64x48, 60 frames at 10 fps (6.0 s): solid colors in ``SEGMENTS``, dark
    gray elsewhere."""
    return str(make_video_with_segments(media_dir / "segments.mp4", SEGMENTS, duration=6.0,
                                        fps=10))


@pytest.fixture(scope="session")
def bad_videos(media_dir, video_h264) -> dict[str, str]:
    """Files that are not decodable videos, by kind: ``missing``, ``directory``, ``empty``,
    ``text``, ``image`` (PNG), ``audio_only``, ``truncated`` (MP4 cut in half, no moov),
    plus two that open: ``truncated_faststart`` (index intact, second half gone) and
    ``corrupt_middle`` (10 % garbage in the middle of a 4 s H.264 file)."""
    from PIL import Image

    folder = media_dir / "bad"
    folder.mkdir(exist_ok=True)
    (folder / "a folder.mp4").mkdir(exist_ok=True)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("this is not a video\n" * 20)
    Image.fromarray(frame_content(5)).save(folder / "still.png")
    source = make_video(folder / "source.mp4", num_frames=120, fps=30, size=(96, 64),
                        codec="h264", gop=15)
    faststart = make_video(folder / "faststart.mp4", num_frames=120, fps=30, size=(96, 64),
                           codec="h264", gop=15, faststart=True)
    return {
        "missing": str(folder / "does-not-exist.mp4"),
        "directory": str(folder / "a folder.mp4"),
        "empty": str(folder / "empty.mp4"),
        "text": str(folder / "notes.mp4"),
        "image": str(folder / "still.png"),
        "audio_only": str(make_audio_only(folder / "sound.m4a")),
        "truncated": str(make_truncated(source, folder / "truncated.mp4", 0.5)),
        "truncated_faststart": str(make_truncated(faststart, folder / "truncated-fs.mp4", 0.5)),
        "corrupt_middle": str(make_corrupt_middle(source, folder / "corrupt.mp4")),
    }

