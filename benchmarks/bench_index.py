"""`videolens index` throughput on CPU: videos/s, video-hours per hour, decode vs encode.

Same model and clips as bench_classify.py (random-init CLIP ViT-B/32 with the real
architecture; generated 10 s 640x360 30 fps H.264 clips), indexed at 1 frame/s into a fresh
library through the public `index` function. The time is split into waiting for decoded
frames (decoding runs ahead in a worker process) and encoding + storing in the main process.
A second run over the same files measures the incremental no-op.

    python benchmarks/bench_index.py [--videos 24] [--fps 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_classify import DATA, load_bench_model, make_videos  # noqa: E402
from machine import machine_info  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--fps", type=float, default=1.0)
    args = parser.parse_args()
    import torch

    from videolens.pipelines.index import index

    model = load_bench_model()
    paths = make_videos(args.videos)
    library = DATA / "bench-library"
    shutil.rmtree(library, ignore_errors=True)
    index(paths[:1], library=library, model=model, fps=args.fps)  # warm-up, then start over
    shutil.rmtree(library)

    first = index(paths, library=library, model=model, fps=args.fps)
    assert not first.failed, first.failed
    started = time.perf_counter()
    again = index(paths, library=library, model=model)
    incremental = time.perf_counter() - started
    assert again.indexed == [] and len(again.unchanged) == len(paths)

    videos_per_s = len(first.indexed) / first.seconds
    realtime = first.video_seconds / first.seconds
    print(f"\nindex, {len(paths)} videos (10 s, 640x360 H.264), {args.fps:g} frame/s, "
          f"random-init CLIP ViT-B/32, CPU ({os.cpu_count()} cores)\n")
    print("| videos | frames | seconds | videos/s | video-hours per hour | waiting for decode "
          "| encode + store | rerun (all unchanged) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {len(first.indexed)} | {first.frames} | {first.seconds:.2f} | {videos_per_s:.2f} "
          f"| {realtime:.1f} | {first.decode_wait_seconds:.2f} s "
          f"| {first.encode_seconds:.2f} s | {incremental:.2f} s |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "index.json"
    out.write_text(json.dumps({
        "benchmark": "index_throughput",
        "machine": machine_info(torch=torch.__version__),
        "videos": len(paths), "fps": args.fps, "model": "clip-vit-b32 (random init)",
        "summary": first.to_json(), "videos_per_s": videos_per_s,
        "video_hours_per_hour": realtime, "rerun_unchanged_seconds": incremental,
    }, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
