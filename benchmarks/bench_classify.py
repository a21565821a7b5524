"""End-to-end `classify` throughput on CPU: videos/s, decode vs encode split.

Model: a randomly initialised CLIP ViT-B/32 with the real architecture (same FLOPs as
openai/clip-vit-base-patch32; weights cannot be downloaded on the benchmark machine),
saved to a folder and loaded through the same `load_model` path users hit.
Videos: generated 10-second 640x360 30 fps H.264 clips.

Compared in the same run:
  serial     decode in the main process, then encode (isolate=False, the naive loop)
  pipelined  decode in a worker process while the main process encodes (the default)

    python benchmarks/bench_classify.py [--videos 12] [--frames 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # reuse the test suite's tokenizer builder
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import machine_info  # noqa: E402


def make_random_clip(folder: Path, patch: int = 32) -> Path:
    """Random-init CLIP with OpenAI's ViT-B/{patch} shape (CLIPConfig's defaults are B/32):
    the real FLOPs without downloadable weights. Written once into ``folder``."""
    if (folder / "config.json").exists():
        return folder
    import torch
    from tiny_models import _clip_tokenizer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = _clip_tokenizer(folder)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(patch_size=patch),
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(
        folder)
    return folder


def make_clip_b32(folder: Path) -> Path:
    """Random-init CLIP ViT-B/32 (:func:`make_random_clip`)."""
    return make_random_clip(folder, 32)


def load_bench_model():
    """The random-init ViT-B/32 through `load_model`, with caches and load-time chatter off."""
    os.environ.setdefault("VIDEOLENS_CACHE_DIR", "off")
    from transformers.utils import logging as hf_logging

    from videolens.models import load_model

    hf_logging.set_verbosity_error()
    return load_model(str(make_clip_b32(DATA / "clip-b32-random")), device="cpu")


def make_videos(count: int, seconds: float = 10.0) -> list[str]:
    import av

    paths = []
    DATA.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        path = DATA / f"clip_{index:02d}_640x360.mp4"
        paths.append(str(path))
        if path.exists():
            continue
        rng = np.random.default_rng(index)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
            stream.options = {"preset": "ultrafast", "g": "60"}
            base = rng.integers(0, 256, size=(360, 640, 3), dtype=np.uint8)
            for i in range(int(seconds * 30)):
                frame = np.roll(base, shift=4 * i, axis=1)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return paths


def run(paths, model, frames, isolate) -> dict:
    from videolens.pipelines.classify import iter_classify

    start = time.perf_counter()
    results = list(
        iter_classify(paths, ["running", "cooking", "swimming"], model=model,
                      frames=frames, isolate=isolate)
    )
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return {"seconds": elapsed, "videos_per_s": len(paths) / elapsed}


def split(paths, model, frames) -> dict:
    """Time decode and encode separately, serially, for the split column."""
    from videolens.io import Sampling, load_video

    decode = encode = 0.0
    for path in paths:
        t0 = time.perf_counter()
        _, sampled = load_video(path, Sampling(kind="uniform", num_frames=frames))
        t1 = time.perf_counter()
        model.encode_video(sampled.frames)
        encode += time.perf_counter() - t1
        decode += t1 - t0
    return {"decode_s_per_video": decode / len(paths), "encode_s_per_video": encode / len(paths)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    import torch

    model = load_bench_model()
    paths = make_videos(args.videos)
    run(paths[:2], model, args.frames, isolate=True)  # warm-up: worker start, caches
    rows = {
        "serial": run(paths, model, args.frames, isolate=False),
        "pipelined": run(paths, model, args.frames, isolate=True),
    }
    rows["split"] = split(paths, model, args.frames)
    speedup = rows["pipelined"]["videos_per_s"] / rows["serial"]["videos_per_s"]
    print(f"\nclassify, {args.videos} videos (10 s, 640x360 H.264), {args.frames} frames each, "
          f"random-init CLIP ViT-B/32, CPU ({os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()})\n")
    print("| mode | seconds | videos/s | vs serial |")
    print("|---|---|---|---|")
    for mode in ("serial", "pipelined"):
        r = rows[mode]
        ratio = r["videos_per_s"] / rows["serial"]["videos_per_s"]
        print(f"| {mode} | {r['seconds']:.2f} | {r['videos_per_s']:.2f} | {ratio:.2f}x |")
    s = rows["split"]
    print(f"\nper video: decode {s['decode_s_per_video'] * 1000:.0f} ms, "
          f"encode {s['encode_s_per_video'] * 1000:.0f} ms")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "classify.json"
    out.write_text(json.dumps({
        "benchmark": "classify_end_to_end",
        "machine": {**machine_info(torch=torch.__version__),
                    "torch_threads": torch.get_num_threads()},
        "videos": args.videos, "frames": args.frames, "model": "clip-vit-b32 (random init)",
        "results": rows, "pipelined_vs_serial": speedup,
    }, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
