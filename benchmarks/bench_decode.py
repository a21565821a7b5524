"""Sparse sampling with videolens `read_frames` against decoding every frame.

File: generated once into benchmarks/data/ (git-ignored): 60 s, 1280x720, 30 fps H.264
(libx264, yuv420p, crf 23, preset veryfast, a keyframe every 60 frames = 2 s, scene-cut
keyframes off, x264's default 3 B-frames), with moving texture so it decodes like real footage.

Measured, best of 3 runs each (wall clock, one process, 2 threads available):
  videolens    read_frames at N uniform segment centres, N = 8, 16, 32 (seek + decode forward)
  PyAV all     every frame, sequential, to an RGB ndarray (frame threading, and FFmpeg's default)
  OpenCV all   cv2.VideoCapture.read() of every frame + cvtColor BGR -> RGB

Checks that each sampled frame equals the full PyAV decode's frame at the same timestamp.
Prints a markdown table and writes benchmarks/results/decode.json.

    python benchmarks/bench_decode.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "src"))

from videolens.io import probe, read_frames, uniform_times  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import machine_info  # noqa: E402

WIDTH, HEIGHT, FPS, SECONDS, GOP = 1280, 720, 30, 60, 60
COUNTS = (8, 16, 32)
TARGET_RATIO = 5.0  # PyAV-all / videolens-16 must be at least this


def make_bench_video(path: Path) -> Path:
    """Write the benchmark file (about a minute of encoding on 2 cores) unless it exists."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    # a smooth random texture twice the frame size, panned over time, plus a moving block and
    # a little per-frame noise: motion + detail, so inter frames are not trivially cheap
    coarse = rng.integers(0, 256, (HEIGHT // 8, WIDTH // 4, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(coarse, 16, axis=0), 8, axis=1)[: 2 * HEIGHT, : 2 * WIDTH]
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={
            "crf": "23", "preset": "veryfast", "g": str(GOP), "keyint_min": str(GOP),
            "sc_threshold": "0"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(SECONDS * FPS):
            x, y = (3 * i) % WIDTH, (2 * i) % HEIGHT
            image = texture[y:y + HEIGHT, x:x + WIDTH].copy()
            bx, by = (11 * i) % (WIDTH - 200), (7 * i) % (HEIGHT - 200)
            image[by:by + 200, bx:bx + 200] = (i * 5 % 256, 255 - i % 256, 128)
            image ^= rng.integers(0, 8, image.shape, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    partial.rename(path)
    return path


def pyav_all(path: Path, keep: set[float], thread_type: str | None) -> tuple[int, dict]:
    """Decode every frame to RGB; return (count, {timestamp: frame} for timestamps in keep)."""
    kept, count = {}, 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if thread_type:
            stream.codec_context.thread_type = thread_type
        start = stream.start_time or 0
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="rgb24")
            count += 1
            t = float((frame.pts - start) * stream.time_base)
            if t in keep:
                kept[t] = image
    return count, kept


def opencv_all(path: Path) -> int:
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = 0
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            count += 1
    finally:
        capture.release()
    return count


def best_of(runs: int, function) -> tuple[float, list[float], object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), times, result


def machine() -> dict:
    versions: dict[str, object] = {
        "av": av.__version__, "numpy": np.__version__,
        "ffmpeg_libs": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()}}
    try:
        import cv2

        versions["opencv"] = cv2.__version__
    except ImportError:
        versions["opencv"] = None
    return machine_info(**versions)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    path = make_bench_video(DATA / f"bench_{WIDTH}x{HEIGHT}_{FPS}fps_{SECONDS}s_gop{GOP}.mp4")
    info = probe(path)
    rows, checks = {}, {}
    sampled = {}
    for count in COUNTS:
        times = uniform_times(info.duration, count)
        best, runs, frames = best_of(args.runs, lambda times=times: read_frames(path, times))
        sampled[count] = frames
        rows[f"videolens {count}"] = {"best_s": best, "runs_s": runs,
                                      "decoded_frames": frames.decoded_frames,
                                      "seeks": frames.seeks}
    keep = {float(t) for frames in sampled.values() for t in frames.timestamps}
    for label, thread_type in [("PyAV all (AUTO threads)", "AUTO"),
                               ("PyAV all (default SLICE)", None)]:
        best, runs, (count, kept) = best_of(
            args.runs, lambda thread_type=thread_type: pyav_all(path, keep, thread_type))
        rows[label] = {"best_s": best, "runs_s": runs, "decoded_frames": count}
    for count, frames in sampled.items():
        checks[count] = all(
            float(t) in kept and np.array_equal(image, kept[float(t)])
            for image, t in zip(frames.frames, frames.timestamps, strict=True))
    try:
        best, runs, count = best_of(args.runs, lambda: opencv_all(path))
        rows["OpenCV all"] = {"best_s": best, "runs_s": runs, "decoded_frames": count}
    except ImportError:
        pass

    reference = rows["PyAV all (AUTO threads)"]["best_s"]
    ratios = {name: reference / row["best_s"] for name, row in rows.items()}
    ratio16 = ratios["videolens 16"]
    print(f"\nfile: {path.name} ({info.width}x{info.height}, {info.fps:g} fps, "
          f"{info.duration:g} s, {info.frame_count} frames, {info.codec}, keyframe every "
          f"{GOP / FPS:g} s, {os.path.getsize(path) / 1e6:.1f} MB); best of {args.runs}\n")
    print("| method | frames decoded | best time | PyAV-all (AUTO) / this |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['decoded_frames']} | {row['best_s']:.3f} s | "
              f"{ratios[name]:.1f}x |")
    print(f"\nsampled frames equal the full PyAV decode at the same timestamps: {checks}")
    print(f"target: videolens-16 >= {TARGET_RATIO:g}x faster than PyAV-all: "
          f"{'met' if ratio16 >= TARGET_RATIO else 'MISSED'} ({ratio16:.1f}x)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "decode",
        "file": {"name": path.name, "width": info.width, "height": info.height,
                 "fps": info.fps, "duration_s": info.duration, "frames": info.frame_count,
                 "codec": info.codec, "gop_frames": GOP, "encoder": "libx264 crf 23 veryfast",
                 "size_bytes": os.path.getsize(path)},
        "machine": machine(),
        "runs": args.runs,
        "results": rows,
        "ratio_vs_pyav_all_auto": ratios,
        "ratio_pyav_all_over_videolens_16": ratio16,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio16 >= TARGET_RATIO,
        "sampled_equal_full_decode": {str(k): v for k, v in checks.items()},
    }
    (RESULTS / "decode.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
