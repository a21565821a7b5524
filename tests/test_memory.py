"""Memory is bounded by design: frames shrink as they are decoded, huge frames are refused,
a bogus declared duration does not allocate, and long videos are indexed in segments."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from videolens.errors import VideoDecodeError
from videolens.io import Sampling, load_at_rate, read_frames

SRC = str(Path(__file__).resolve().parent.parent / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _gradient_video(path: Path, width: int, height: int, frames: int, fps: int = 4) -> Path:
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 90)],
                    axis=-1).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(fps)}
        for i in range(frames):
            frame = np.roll(base, 37 * i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_frames_shrink_as_they_are_decoded(tmp_path):
    video = _gradient_video(tmp_path / "wide.mp4", 1280, 720, 8)
    full = read_frames(video, [0.3, 1.1])
    small = read_frames(video, [0.3, 1.1], max_short_side=180)
    assert full.frames.shape == (2, 720, 1280, 3)
    assert small.frames.shape == (2, 180, 320, 3)
    np.testing.assert_array_equal(small.timestamps, full.timestamps)
    # area interpolation: each small pixel is the mean of a 4x4 block of the full frame
    blocks = full.frames.reshape(2, 180, 4, 320, 4, 3).astype(np.float64).mean(axis=(2, 4))
    assert np.abs(small.frames.astype(np.float64) - blocks).mean() < 3.0
    # frames already small enough are untouched
    same = read_frames(video, [0.3, 1.1], max_short_side=720)
    np.testing.assert_array_equal(same.frames, full.frames)


def test_frames_above_the_pixel_limit_are_refused(tmp_path, monkeypatch):
    video = _gradient_video(tmp_path / "big.mp4", 320, 240, 2)
    # `videolens.io.probe` is the function; the module is in sys.modules
    monkeypatch.setattr(sys.modules["videolens.io.probe"], "MAX_PIXELS", 320 * 239)
    with pytest.raises(VideoDecodeError, match=r"frames are 320x240 .*above videolens' limit"):
        read_frames(video, [0.0])


def _bogus_duration(path: Path) -> Path:
    """Two frames; the second claims to be presented 10^7 s after the first."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"bf": "0"}
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, pts in enumerate([0, 10**10]):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 80 * (i + 1), np.uint8),
                                               format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_a_bogus_duration_does_not_allocate(tmp_path):
    video = _bogus_duration(tmp_path / "bogus.mkv")
    info, frames = load_at_rate(str(video), Sampling(kind="rate", fps=1.0), max_side=448,
                                max_frames=500)
    assert info.duration > 9e6
    assert frames.frames.shape[0] == 1  # one distinct frame in the first 500 s
    assert any("sampled only the first 500 frames" in w for w in frames.warnings)
    assert len(frames.requested) == 500


def test_index_reads_a_long_video_in_segments(tmp_path, tiny_clip):
    from videolens.io.rate import SEGMENT
    from videolens.library import Library
    from videolens.models import load_model
    from videolens.pipelines.index import index

    fps = 16.0
    video = _gradient_video(tmp_path / "long.mp4", 96, 64, int(2.5 * SEGMENT), fps=int(fps))
    summary = index([video], library=tmp_path / "lib", model=tiny_clip, fps=fps, device="cpu")
    assert summary.indexed == [str(video.resolve())] and not summary.failed
    model = load_model(tiny_clip, device="cpu")
    _, whole = load_at_rate(str(video), Sampling(kind="rate", fps=fps), max_side=448)
    expected = model.encode_frames(whole.frames).numpy()
    with Library.open(tmp_path / "lib") as library:
        [record] = library.videos()
        timestamps, vectors = library.frames(record.id)
    assert len(timestamps) > SEGMENT  # more than one segment was read
    np.testing.assert_array_equal(timestamps, whole.timestamps)
    np.testing.assert_allclose(vectors, expected, atol=2e-3)  # the store keeps float16


PEAK = """
import resource, sys
import videolens
r = videolens.classify({video!r}, "red, green", model={model!r}, device="cpu", frames=64)
assert r[0].ok, r[0].error
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_kb(video: Path, model: str) -> tuple[int, int]:
    run = subprocess.run([sys.executable, "-c", PEAK.format(video=str(video), model=model)],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    own_kb, workers_kb = map(int, run.stdout.split()[-2:])
    return own_kb, workers_kb


def test_classify_peak_memory_does_not_follow_resolution(tmp_path, tiny_clip):
    """64 frames of a 4K video against the same frames at 320x180, each in a fresh process.

    Full-size 4K frames would cost 64 x 3840 x 2160 x 3 B = 1.6 GB more than the small video
    (the previous code peaked at 3.5 GB here); frames shrunk as they are decoded cost a few
    decoder pictures more. The process baseline (torch, transformers, shared libraries, thread
    arenas) is measured rather than assumed: it ranged from 0.49 to 1.56 GB on different
    machines and page-cache states, so an absolute ceiling tested the machine, not the code."""
    small = _gradient_video(tmp_path / "small.mp4", 320, 180, 8, fps=2)
    uhd = _gradient_video(tmp_path / "uhd.mp4", 3840, 2160, 8, fps=2)
    small_kb, small_workers_kb = _peak_kb(small, tiny_clip)
    own_kb, workers_kb = _peak_kb(uhd, tiny_clip)
    full_frames_kb = 64 * 3840 * 2160 * 3 // 1024
    assert own_kb - small_kb < full_frames_kb // 4, (own_kb, small_kb)
    assert workers_kb - small_workers_kb < full_frames_kb // 4, (workers_kb, small_workers_kb)
