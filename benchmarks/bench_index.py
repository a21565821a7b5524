"""`videolens index` throughput on CPU against the bare encoder, measured in the same run.

Same model and clips as bench_classify.py (random-init CLIP ViT-B/32 with the real
architecture; generated 10 s 640x360 30 fps H.264 clips), indexed at 1 frame/s into a fresh
library through the public `index` function.

The bar is the *bare encoder*: the vision tower's forward pass alone, on pixels prepared
beforehand, in the same batches index encodes (one batch per video segment). `index` at
100 % of it would mean decoding, preprocessing, storing and the vector cache cost nothing
on the critical path. Each variant runs in its own fresh process that measures the bare
encoder right before and after its index run, so the ratio is taken under the same load;
variants are interleaved round by round and the table shows medians.

Variants (``--variants``):
  processor   the model's own Hugging Face image processor, in the main process (what
              `index` did before; `index(..., preprocess="processor")`)
  tensor      the torch uint8 resize + normalise in the decode worker (the default)
  V@KEY=VAL   variant V with the environment variable KEY set to VAL in its process
              (repeat @KEY=VAL for more)
              (bare encoder and index alike), e.g. ``tensor@OMP_WAIT_POLICY=PASSIVE``
  src=PATH    `index` imported from another source tree (e.g. an export of the main branch:
              ``git archive HEAD src | tar -x -C /tmp/base``), with its own defaults

It also times the two preprocessing paths alone on the decoded frames (per frame) and
their largest difference in grey levels.

    python benchmarks/bench_index.py [--videos 12] [--fps 1] [--rounds 2]
                                     [--variants processor,tensor,src=/tmp/base/src]
                                     [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_classify import DATA, load_bench_model, make_videos  # noqa: E402
from machine import machine_info  # noqa: E402


def decoded_segments(model, paths: list[str], fps: float) -> list:
    """The frames index encodes, decoded once: one (T, H, W, 3) array per segment."""
    from videolens.io import Sampling, probe
    from videolens.io.rate import load_rate_segment, rate_segments

    sampling = Sampling(kind="rate", fps=fps)
    segments = []
    for path in paths:
        for start, stop in rate_segments(probe(path).duration, fps):
            _, frames = load_rate_segment(path, sampling, start, stop,
                                          max_side=model.frame_max_side,
                                          max_short_side=model.decode_short_side)
            segments.append(frames.frames)
    return segments


def bare_encoder(model, batches) -> float:
    """Seconds of the vision tower's forward pass alone over ``batches`` of ready pixels."""
    import torch

    from videolens.models.clip import pooled

    elapsed = 0.0
    with torch.inference_mode():
        for pixels in batches:
            started = time.perf_counter()
            pooled(model.model.get_image_features(pixel_values=pixels))
            elapsed += time.perf_counter() - started
    return elapsed


def preprocessing_paths(model, segments) -> dict:
    """Per-frame time of the HF processor and of the torch path, and their largest gap."""
    import torch

    frames = [f for segment in segments for f in segment]
    started = time.perf_counter()
    exact = torch.cat([model.image_processor(images=list(s), return_tensors="pt")
                       ["pixel_values"] for s in segments])
    processor_s = (time.perf_counter() - started) / len(frames)
    result = {"processor_ms_per_frame": processor_s * 1000}
    try:
        from videolens.models.preprocess import normalize, resize_crop, spec_from_processor
    except ImportError:
        return result  # an older source tree
    spec = spec_from_processor(model.image_processor)
    started = time.perf_counter()
    fast = torch.cat([normalize(resize_crop(s, spec), spec) for s in segments])
    tensor_s = (time.perf_counter() - started) / len(frames)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    grey = ((fast - exact) * std / spec.rescale).abs()
    result.update(tensor_ms_per_frame=tensor_s * 1000, speedup=processor_s / tensor_s,
                  max_grey_levels=float(grey.max()), mean_grey_levels=float(grey.mean()))
    return result


def child(args) -> None:
    """One variant in this fresh process: bare encoder, index, bare encoder again."""
    import importlib
    import inspect

    # before torch, as the CLI does: importing videolens sets OpenMP's spin count
    importlib.import_module("videolens")
    import torch

    from videolens.pipelines.index import index

    model = load_bench_model()
    paths = make_videos(args.videos)
    started = time.process_time()
    segments = decoded_segments(model, paths, args.fps)
    decode_cpu_s = time.process_time() - started  # one process decoding alone, CPU seconds
    batches = [model.image_processor(images=list(s), return_tensors="pt")["pixel_values"]
               for s in segments]
    frames = sum(len(s) for s in segments)
    kwargs = {}
    if args.child != "src" and "preprocess" in inspect.signature(index).parameters:
        kwargs["preprocess"] = args.child
    library = DATA / f"bench-library-{os.getpid()}"
    shutil.rmtree(library, ignore_errors=True)
    index(paths[:1], library=library, model=model, fps=args.fps, **kwargs)  # warm-up
    shutil.rmtree(library)
    bare_before = bare_encoder(model, batches)
    run = index(paths, library=library, model=model, fps=args.fps, **kwargs)
    bare_after = bare_encoder(model, batches)
    shutil.rmtree(library, ignore_errors=True)
    assert not run.failed and run.frames == frames, (run.failed, run.frames, frames)
    bare_s = (bare_before + bare_after) / 2
    print(json.dumps({
        "frames": frames, "index_seconds": run.seconds,
        "decode_wait_seconds": run.decode_wait_seconds, "encode_seconds": run.encode_seconds,
        "index_frames_per_s": frames / run.seconds, "bare_seconds": bare_s,
        "bare_frames_per_s": frames / bare_s, "ratio": bare_s / run.seconds,
        "decode_cpu_ms_per_frame": decode_cpu_s * 1e3 / frames,
        "bare_cpu_ms_per_frame": bare_s * torch.get_num_threads() * 1e3 / frames,
        "torch_threads": torch.get_num_threads(),
        "preprocessing": preprocessing_paths(model, segments),
    }))


def run_variant(variant: str, args) -> dict:
    env = dict(os.environ)
    # e.g. tensor@OMP_WAIT_POLICY=PASSIVE: the child runs with it set (several: @A=1@B=2)
    variant, *assignments = variant.split("@")
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        env[key] = value
    mode = variant
    if variant.startswith("src="):
        env["PYTHONPATH"] = variant[4:] + os.pathsep + env.get("PYTHONPATH", "")
        mode = "src"
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--videos", str(args.videos),
         "--fps", str(args.fps)], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"variant {variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="processor,tensor")
    parser.add_argument("--out", type=Path, default=RESULTS / "index.json",
                        help="results JSON (default: benchmarks/results/index.json)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    import torch

    variants = args.variants.split(",")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        for variant in variants:
            result = run_variant(variant, args)
            runs[variant].append(result)
            print(f"round {round_ + 1}: {variant}: {result['ratio']:.1%} of the bare encoder "
                  f"({result['index_frames_per_s']:.1f} vs {result['bare_frames_per_s']:.1f} "
                  "frames/s)", file=sys.stderr)

    def median(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[variant])

    print(f"\nindex, {args.videos} videos (10 s, 640x360 H.264), {args.fps:g} frame/s, "
          f"random-init CLIP ViT-B/32, CPU ({os.cpu_count()} cores), medians of "
          f"{args.rounds} interleaved rounds\n")
    # an environment variable can slow the bare encoder too (OMP_WAIT_POLICY=PASSIVE does),
    # which flatters its own ratio: index is also compared with the bare encoder of the
    # variants run in the default environment
    plain = [v for v in variants if "@" not in v]
    default_bare = statistics.median(r["bare_frames_per_s"] for v in plain for r in runs[v]) \
        if plain else None
    print("| variant | frames | index frames/s | bare encoder frames/s | index / bare "
          "| index / bare, default environment | waiting for decode | encode + store |")
    print("|---|---|---|---|---|---|---|---|")
    for v in variants:
        versus = f"{median(v, 'index_frames_per_s') / default_bare:.1%}" if default_bare \
            else "-"
        print(f"| {v} | {runs[v][0]['frames']} | {median(v, 'index_frames_per_s'):.1f} "
              f"| {median(v, 'bare_frames_per_s'):.1f} | {median(v, 'ratio'):.1%} | {versus} "
              f"| {median(v, 'decode_wait_seconds'):.2f} s "
              f"| {median(v, 'encode_seconds'):.2f} s |")
    decode = statistics.median(r["decode_cpu_ms_per_frame"] for v in variants for r in runs[v])
    encode = statistics.median(r["bare_cpu_ms_per_frame"] for v in plain or variants
                               for r in runs[v])
    # decoding runs on the cores the encoder's threads use: if nothing else were lost, index
    # could reach at most encode / (encode + decode) of the bare encoder
    print(f"\ndecoding alone: {decode:.1f} CPU ms a frame; the bare encoder: {encode:.1f} CPU ms "
          f"a frame ({torch.get_num_threads()} threads): with both on the same cores index can "
          f"reach at most {encode / (encode + decode):.1%} of the bare encoder")
    prep = next((r["preprocessing"] for v in variants for r in runs[v]
                 if "speedup" in r["preprocessing"]), None)
    if prep:
        print(f"\npreprocessing per frame: HF processor {prep['processor_ms_per_frame']:.2f} ms, "
              f"torch uint8 path {prep['tensor_ms_per_frame']:.2f} ms "
              f"({prep['speedup']:.1f}x), largest difference {prep['max_grey_levels']:.2f} "
              "grey levels")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "index_vs_bare_encoder",
        "machine": machine_info(torch=torch.__version__),
        "videos": args.videos, "fps": args.fps, "rounds": args.rounds,
        "model": "clip-vit-b32 (random init)",
        "median_ratio": {v: median(v, "ratio") for v in variants},
        "default_environment_bare_frames_per_s": default_bare,
        "median_index_frames_per_s": {v: median(v, "index_frames_per_s") for v in variants},
        "decode_cpu_ms_per_frame": decode, "bare_cpu_ms_per_frame": encode,
        "shared_core_bound": encode / (encode + decode),
        "runs": runs,
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
