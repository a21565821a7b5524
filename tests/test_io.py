"""Video input: probe, sampling, read_frames against a full sequential decode, rotation, bad
files, crash isolation. Expected values come from how the synthetic files were written
(``media.py``) or from an independent plain-PyAV decode, never from the code under test."""

from __future__ import annotations

import importlib
import os
import pickle
import shutil
import signal
import sys
import time

import av
import numpy as np
import pytest
from fixtures_media import SEGMENTS, VFR_PTS
from media import frame_content, frame_index, make_vfr_video, marked_content, marker_corner

from videolens.errors import UsageError, VideoDecodeError
from videolens.io import (
    FrameReader,
    Sampling,
    dense_windows,
    fixed_rate_times,
    iter_frames,
    load_video,
    probe,
    read_clips,
    read_frames,
    uniform_times,
)


def plain_decode(path: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Independent reference: every frame via container.decode, seconds = pts * time_base."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        pairs = [(float((f.pts - start) * stream.time_base), f.to_ndarray(format="rgb24"))
                 for f in container.decode(stream)]
    pairs.sort(key=lambda pair: pair[0])
    return [image for _, image in pairs], np.array([t for t, _ in pairs])


def last_at_or_before(timestamps: np.ndarray, times) -> list[int]:
    """Reference selection: the last frame with pts <= t, the first when t precedes it."""
    return [max(int(np.searchsorted(timestamps, t + 1e-9, side="right")) - 1, 0) for t in times]


# ---------------------------------------------------------------------------- sampling


def test_uniform_times_are_segment_centres():
    assert uniform_times(10.0, 4).tolist() == [1.25, 3.75, 6.25, 8.75]
    assert uniform_times(3.0, 1).tolist() == [1.5]
    assert uniform_times(2.0, 3).dtype == np.float64
    with pytest.raises(UsageError):
        uniform_times(2.0, 0)


def test_fixed_rate_times_start_of_each_interval_never_past_the_end():
    assert fixed_rate_times(3.0, 1.0).tolist() == [0.0, 1.0, 2.0]
    assert fixed_rate_times(2.5, 2.0).tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert fixed_rate_times(0.0, 5.0).tolist() == [0.0]
    times = fixed_rate_times(9.99, 3.0)
    assert times.max() < 9.99 and len(times) == 30
    with pytest.raises(UsageError):
        fixed_rate_times(1.0, 0.0)


def test_dense_windows():
    assert dense_windows(10, 4, 3).tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert dense_windows(10, 3, 4, frame_step=2).tolist() == [[0, 2, 4], [4, 6, 8]]
    assert dense_windows(3, 4, 2).tolist() == [[0, 1, 2, 2]]  # short stream: padded
    assert dense_windows(0, 4, 2).shape == (0, 4)


def test_sampling_validates_and_pickles():
    sampling = Sampling("rate", fps=2.0)
    assert pickle.loads(pickle.dumps(sampling)) == sampling
    assert sampling.times(2.0).tolist() == [0.0, 0.5, 1.0, 1.5]
    for bad in [dict(kind="uniform", num_frames=0), dict(kind="rate", fps=-1.0),
                dict(kind="dense", stride=0), dict(kind="everything")]:
        with pytest.raises(UsageError):
            Sampling(**bad)


# ---------------------------------------------------------------------------- probe


def test_probe_h264_mp4(video_h264):
    info = probe(video_h264)
    assert (info.width, info.height, info.rotation, info.codec) == (96, 64, 0, "h264")
    assert info.duration == pytest.approx(2.0)
    assert info.fps == pytest.approx(30.0)
    assert info.frame_count == 60
    assert info.start_time == 0.0
    assert info.has_audio is True
    assert info.size_bytes == os.path.getsize(video_h264)
    assert info.path == video_h264


def test_probe_vp9_webm(video_webm):
    info = probe(video_webm)
    assert (info.width, info.height, info.codec, info.has_audio) == (64, 48, "vp9", False)
    assert info.fps == pytest.approx(10.0)
    assert info.duration == pytest.approx(3.0, abs=0.02)  # WebM: container duration
    assert info.frame_count == 30  # not stored in WebM: round(duration * fps)


def test_probe_rotated_reports_displayed_size(video_rotated, video_rotated_phone):
    info = probe(video_rotated)
    assert (info.width, info.height, info.rotation) == (64, 48, 90)
    phone = probe(video_rotated_phone)
    assert (phone.width, phone.height, phone.rotation) == (64, 48, 270)


def test_probe_vfr(video_vfr):
    info = probe(video_vfr)
    assert info.frame_count == len(VFR_PTS)
    assert VFR_PTS[-1] <= info.duration <= VFR_PTS[-1] + 0.5
    assert info.fps == pytest.approx(len(VFR_PTS) / info.duration, rel=1e-3)


# ---------------------------------------------------------------------------- read_frames


@pytest.mark.parametrize("video", ["video_mp4", "video_long", "video_webm", "video_h264"])
@pytest.mark.parametrize("num_frames", [1, 8, 16])
def test_uniform_read_equals_full_decode(video, num_frames, request):
    path = request.getfixturevalue(video)
    images, timestamps = plain_decode(path)
    times = uniform_times(probe(path).duration, num_frames)
    sampled = read_frames(path, times)
    expected = last_at_or_before(timestamps, times)
    assert sampled.frames.shape == (num_frames, *images[0].shape)
    assert sampled.frames.dtype == np.uint8
    np.testing.assert_array_equal(sampled.timestamps, timestamps[expected])
    for got, index in zip(sampled.frames, expected, strict=True):
        np.testing.assert_array_equal(got, images[index])
    np.testing.assert_array_equal(sampled.requested, times)
    assert sampled.warnings == []


def test_iter_frames_matches_plain_decode(video_mp4):
    images, timestamps = plain_decode(video_mp4)
    ours = list(iter_frames(video_mp4))
    assert [t for _, t in ours] == pytest.approx(timestamps.tolist(), abs=0)
    for (image, _), reference in zip(ours, images, strict=True):
        np.testing.assert_array_equal(image, reference)


def test_lossless_frames_are_exactly_what_was_written(video_long):
    times = np.random.default_rng(0).uniform(0, 20, 12)
    sampled = read_frames(video_long, times)
    for image, t, stamp in zip(sampled.frames, times, sampled.timestamps, strict=True):
        index = int(np.floor(t * 30 + 1e-9))
        assert stamp == pytest.approx(index / 30, abs=1e-9)
        np.testing.assert_array_equal(image, frame_content(index, (96, 64)))


def test_targets_just_before_keyframes_with_b_frames(video_long):
    # with B-frames an MP4 keyframe's decode time precedes its presentation time: a seek to
    # just before a keyframe lands on it and must be redone earlier
    keyframes = np.array([30, 60, 90, 300]) / 30
    sampled = read_frames(video_long, keyframes - 1e-3)
    assert [round(t * 30) for t in sampled.timestamps] == [29, 59, 89, 299]
    sampled = read_frames(video_long, keyframes)
    assert [round(t * 30) for t in sampled.timestamps] == [30, 60, 90, 300]


def test_vfr_timestamps_are_the_written_pts(video_vfr):
    assert [t for _, t in iter_frames(video_vfr)] == pytest.approx(VFR_PTS, abs=1e-9)
    times = [0.0, 0.2, 0.305, 0.31, 1.0, 1.51, 2.5, 9.0]
    expected = last_at_or_before(np.array(VFR_PTS), times)  # [0, 1, 2, 3, 4, 5, 7, 8]
    sampled = read_frames(video_vfr, times)
    np.testing.assert_allclose(sampled.timestamps, np.array(VFR_PTS)[expected], atol=1e-9)
    for image, index in zip(sampled.frames, expected, strict=True):
        np.testing.assert_array_equal(image, frame_content(index))


@pytest.mark.parametrize("extension", ["mkv", "ts", "mp4"])
def test_timestamps_are_relative_to_a_late_stream_start(tmp_path, extension):
    pts = [1.0 + 0.1 * i for i in range(20)]  # the stream starts at 1.0 s
    path = str(make_vfr_video(tmp_path / f"late.{extension}", pts))
    info = probe(path)
    assert info.start_time == pytest.approx(1.0)
    assert info.duration == pytest.approx(2.0)  # Matroska stores 3.0 counted from 0
    sampled = read_frames(path, [0.0, 0.25, 1.0, 5.0])
    np.testing.assert_allclose(sampled.timestamps, [0.0, 0.2, 1.0, 1.9], atol=1e-9)
    assert [frame_index(image) for image in sampled.frames] == [0, 2, 10, 19]
    assert sampled.warnings == []


@pytest.mark.parametrize(
    "times,indices",
    [
        ([0.0], [0]),
        ([-5.0], [0]),  # before the first frame: the first frame
        ([100.0], [44]),  # past the end: the last frame
        ([1.0], [15]),  # exactly on a frame's pts: that frame
        ([1.0 - 1e-3], [14]),
        ([0.5, 0.5, 0.5], [7, 7, 7]),  # repeated
        ([2.0, 0.1, 1.0, -1.0], [30, 1, 15, 0]),  # unsorted: returned in request order
    ],
)
def test_boundaries(video_mp4, times, indices):
    sampled = read_frames(video_mp4, times)
    assert [round(t * 15) for t in sampled.timestamps] == indices
    assert [frame_index(image) for image in sampled.frames] == indices
    np.testing.assert_array_equal(sampled.requested, times)


def test_no_times_is_a_usage_error(video_mp4):
    with pytest.raises(UsageError):
        read_frames(video_mp4, [])
    with pytest.raises(UsageError):
        read_frames(video_mp4, [float("nan")])


def test_sparse_reading_decodes_fewer_frames(video_long):
    sampled = read_frames(video_long, uniform_times(20.0, 4))
    assert sum(1 for _ in iter_frames(video_long)) == 600
    assert sampled.seeks >= 1
    # 4 targets, keyframe every 30 frames: at most ~4 GOPs, far fewer than 600 frames
    assert sampled.decoded_frames <= 4 * 31


def test_close_targets_decode_forward_without_reseeking(video_long):
    # all in one GOP (frames 60..89): one seek, then decode on
    sampled = read_frames(video_long, [2.05, 2.3, 2.6, 2.9])
    assert sampled.seeks == 1
    assert [round(t * 30) for t in sampled.timestamps] == [61, 69, 78, 87]


# ---------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("video", ["video_rotated", "video_rotated_phone"])
def test_rotated_video_comes_out_upright(video, request):
    path = request.getfixturevalue(video)
    with av.open(path) as container:  # coded frames are portrait 48x64, marker not top-left
        coded = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert coded.shape == (64, 48, 3) and marker_corner(coded) != "top-left"
    sampled = read_frames(path, uniform_times(1.0, 4))
    assert sampled.frames.shape == (4, 48, 64, 3)
    for image, t in zip(sampled.frames, sampled.timestamps, strict=True):
        assert marker_corner(image) == "top-left"
        np.testing.assert_array_equal(image, marked_content(round(t * 10), (64, 48)))
    image, _ = next(iter_frames(path))
    np.testing.assert_array_equal(image, marked_content(0, (64, 48)))


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kind,words",
    [
        ("missing", "not found"),
        ("directory", "directory"),
        ("empty", "empty"),
        ("text", "not a video"),
        ("image", "still image"),
        ("audio_only", "no video stream"),
        ("truncated", "moov"),
    ],
)
@pytest.mark.parametrize("call", ["probe", "read_frames", "load_video", "iter_frames"])
def test_bad_input_raises_one_clear_line(bad_videos, kind, words, call):
    path = bad_videos[kind]
    run = {
        "probe": lambda: probe(path),
        "read_frames": lambda: read_frames(path, [0.5]),
        "load_video": lambda: load_video(path, Sampling()),
        "iter_frames": lambda: list(iter_frames(path)),
    }[call]
    with pytest.raises(VideoDecodeError) as caught:
        run()
    line = caught.value.one_line()
    assert path in line and words in line and "\n" not in line
    assert caught.value.path == path and caught.value.hint


def test_permission_denied_is_clear(bad_videos, video_mp4, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # the package re-exports the function `probe`, which shadows the submodule attribute
    probe_module = importlib.import_module("videolens.io.probe")
    monkeypatch.setattr(probe_module, "open", refuse, raising=False)
    with pytest.raises(VideoDecodeError, match="permission denied"):
        probe(video_mp4)


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0,
                    reason="root reads any file; the monkeypatched test covers the mapping")
def test_permission_denied_on_disk(tmp_path, video_mp4):
    locked = tmp_path / "locked.mp4"
    shutil.copy(video_mp4, locked)
    locked.chmod(0)
    with pytest.raises(VideoDecodeError, match="permission denied"):
        read_frames(locked, [0.0])


def test_corrupt_middle_returns_good_frames_and_a_warning(bad_videos):
    path = bad_videos["corrupt_middle"]
    times = uniform_times(4.0, 16)
    sampled = read_frames(path, times)
    assert sampled.frames.shape[0] == 16
    assert any("could not be decoded" in w for w in sampled.warnings), sampled.warnings
    assert np.all(sampled.timestamps <= times + 1e-6)  # the last good frame at or before
    # frames predicted from the damaged data are not used: every returned frame shows the
    # content written at its own timestamp (the lossy grid survives intact frames)
    for image, stamp in zip(sampled.frames, sampled.timestamps, strict=True):
        assert frame_index(image) == round(stamp * 30)
    info, loaded = load_video(path, Sampling("uniform", num_frames=8))
    assert loaded.frames.shape[0] == 8 and loaded.warnings


def test_truncated_faststart_uses_what_decodes_and_warns(bad_videos):
    sampled = read_frames(bad_videos["truncated_faststart"], [0.1, 1.0, 3.5])
    assert sampled.frames.shape[0] == 3
    assert sampled.timestamps[0] == pytest.approx(3 / 30)
    assert any("truncated" in w for w in sampled.warnings), sampled.warnings


# ---------------------------------------------------------------------------- dense, load_video


def test_read_clips_dense_windows(video_mp4):
    clips = read_clips(video_mp4, clip_len=8, stride=8)
    windows = dense_windows(45, 8, 8)  # 5 windows: starts 0, 8, ..., 32
    assert clips.frames.shape == (5, 8, 48, 64, 3)
    np.testing.assert_allclose(clips.timestamps, windows / 15, atol=1e-9)
    for clip, rows in zip(clips.frames, windows, strict=True):
        assert [frame_index(image) for image in clip] == rows.tolist()
    _, loaded = load_video(video_mp4, Sampling("dense", clip_len=4, stride=10, frame_step=2))
    assert loaded.frames.shape == (4, 4, 48, 64, 3)  # starts 0, 10, 20, 30; span 6
    assert [frame_index(image) for image in loaded.frames[1]] == [10, 12, 14, 16]


def test_load_video_uniform_and_rate(video_segments):
    info, sampled = load_video(video_segments, Sampling("rate", fps=2.0))
    assert info.duration == pytest.approx(6.0)
    np.testing.assert_allclose(sampled.timestamps, np.arange(12) / 2)
    colors = [tuple(int(c) for c in image[24, 32]) for image in sampled.frames]
    expected = []
    for t in np.arange(12) / 2:
        inside = [color for start, end, color in SEGMENTS if start <= t < end]
        expected.append(inside[0] if inside else (40, 40, 40))
    assert colors == expected


# ---------------------------------------------------------------------------- FrameReader


def crash_or_hang_loader(path: str, sampling: Sampling):
    """Test-only worker loader: files named crash* segfault the worker, hang* never return."""
    name = os.path.basename(path)
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("hang"):
        time.sleep(600)
    return load_video(path, sampling)


def test_a_dead_worker_is_described_by_its_signal_first():
    from videolens.io.isolate import _describe_exit

    assert _describe_exit([255, -11]) == "worker killed by SIGSEGV"
    assert _describe_exit([1, -9]) == "worker killed by SIGKILL"
    assert _describe_exit([255]) == "worker died; its exit status was lost"
    assert _describe_exit([3]) == "worker exited with status 3"
    assert _describe_exit([]) == "worker process died"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL via os.kill is POSIX")
def test_frame_reader_takes_files_after_its_pool_broke_while_idle(video_mp4):
    """CI once saw map() raise BrokenProcessPool: a worker died between two results, and
    the next submit() to the dead pool raised instead of the file being retried."""
    with FrameReader(Sampling(num_frames=2), workers=1, timeout=10.0) as reader:
        reader.start()
        pool = reader._pool
        deadline = time.monotonic() + 20
        while not pool._processes and time.monotonic() < deadline:
            time.sleep(0.05)
        for process in list(pool._processes.values()):
            os.kill(process.pid, signal.SIGKILL)
        while not pool._broken and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool._broken, "the killed worker did not break the pool"
        results = list(reader.map([video_mp4, video_mp4]))
        restarts = reader.restarts
    assert [path for path, _ in results] == [video_mp4, video_mp4]
    assert all(loaded[1].frames.shape == (2, 48, 64, 3) for _, loaded in results)
    assert restarts == 1


def test_frame_reader_in_order_with_a_bad_file(video_mp4, video_webm, video_h264, bad_videos):
    paths = [video_mp4, bad_videos["missing"], video_webm, bad_videos["text"], video_h264]
    sampling = Sampling("uniform", num_frames=4)
    with FrameReader(sampling, workers=2) as reader:
        results = list(reader.map(paths))
    assert [path for path, _ in results] == paths
    failed = [isinstance(loaded, VideoDecodeError) for _, loaded in results]
    assert failed == [False, True, False, True, False]
    info, frames = results[2][1]
    assert info.codec == "vp9" and frames.frames.shape == (4, 48, 64, 3)
    _, direct = load_video(video_mp4, sampling)
    np.testing.assert_array_equal(results[0][1][1].frames, direct.frames)
    with FrameReader(sampling, isolate=False) as reader:
        inline = list(reader.map(paths))
    assert [isinstance(loaded, VideoDecodeError) for _, loaded in inline] == failed


@pytest.mark.skipif(sys.platform == "win32", reason="SIGSEGV via os.kill is POSIX")
def test_frame_reader_survives_a_worker_crash_and_a_hang(tmp_path, video_mp4, video_webm):
    crash, hang = tmp_path / "crash.mp4", tmp_path / "hang.mp4"
    shutil.copy(video_mp4, crash)
    shutil.copy(video_mp4, hang)
    paths = [video_mp4, str(crash), video_webm, str(hang), video_mp4]
    started = time.monotonic()
    with FrameReader(Sampling(num_frames=2), workers=1, timeout=3.0,
                     loader=crash_or_hang_loader) as reader:
        results = list(reader.map(paths))
        restarts = reader.restarts
    assert time.monotonic() - started < 25
    assert [path for path, _ in results] == paths
    errors = {i: loaded for i, (_, loaded) in enumerate(results)
              if isinstance(loaded, VideoDecodeError)}
    assert sorted(errors) == [1, 3]
    # the signal's name, unless multiprocessing lost the status (CI saw that under load)
    assert "crashed" in errors[1].one_line()
    assert ("killed by SIGSEGV" in errors[1].one_line()
            or "its exit status was lost" in errors[1].one_line())
    assert str(crash) in errors[1].one_line()
    assert "longer than 3 s" in errors[3].one_line()
    assert restarts >= 2
    assert results[4][1][1].frames.shape == (2, 48, 64, 3)
