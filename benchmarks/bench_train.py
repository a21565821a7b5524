"""`videolens train` throughput and peak memory per recipe, for the real CLIP ViT-B/16 shape.

Model: a randomly initialised CLIPModel with ViT-B/16's configuration (224 px, patch 16,
12 x 768 vision layers, 12 x 512 text layers, 512-d projection; the same FLOPs as
openai/clip-vit-base-patch16, whose weights cannot be downloaded here), built from a
CLIPConfig with the test suite's small tokenizer. Data: generated 4-second 320x240 H.264
clips, decoded by the training pipeline itself (PyAV in a DataLoader worker).

Each recipe runs in its own process (so its peak RSS is its own): one warm-up optimizer
step, then ``--steps`` timed steps. clips/s counts training clips (a CVRL sample is one video
with two clips, RSPNet's has three; the table counts videos). On CUDA the runs use bf16
autocast and report ``torch.cuda.max_memory_allocated``; on CPU each recipe runs in fp32 and
with bf16 autocast (``--precisions``), reporting the process's peak RSS and bf16's speed as a
ratio to fp32 measured in the same run (bf16 pays only on CPUs with AMX/AVX512-BF16; elsewhere
it is slower).

    python benchmarks/bench_train.py [--steps 2] [--batch 2] [--frames 8]
                                     [--recipes finetune,distill,expand,cvrl,rspnet]
                                     [--precisions fp32,bf16] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's tokenizer builder and videos
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_classify import make_random_clip  # noqa: E402
from machine import machine_info  # noqa: E402

CLASSES = ("running", "swimming", "cooking", "dancing")
# name -> (recipe, extra settings)
RUNS = {
    "finetune": ("finetune", {"temporal": "none"}),
    "expand": ("finetune", {"temporal": "expand"}),
    "distill": ("distill", {"temporal": "expand"}),
    "cvrl": ("cvrl", {"clip_seconds": 1.28}),
    "rspnet": ("rspnet", {"frame_seconds": 1 / 15}),
}


def make_videos(folder: Path, count: int) -> Path:
    """``count`` 4-second 320x240 30 fps H.264 clips and a ``path label`` list."""
    import numpy as np
    from media import make_video

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        path = folder / f"clip{i:02d}.mp4"
        if not path.exists():
            rng = np.random.default_rng(i)
            # 8x8 px blocks scrolling sideways: compressible, and every frame differs
            blocks = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
            base = blocks.repeat(8, axis=0).repeat(8, axis=1)
            make_video(path, num_frames=120, fps=30, size=(320, 240), codec="h264",
                       content=lambda k, base=base: np.roll(base, 3 * k, axis=1))
        lines.append(f"{path} {CLASSES[i % len(CLASSES)]}")
    listing = folder / "train.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def child(name: str, model: str, listing: str, steps: int, batch: int, frames: int,
          precision: str) -> None:
    """Train one recipe for ``1 + steps`` steps; print a JSON line with the numbers."""
    import torch

    from videolens.train import make_config, train

    recipe, extra = RUNS[name]
    cuda = torch.cuda.is_available()
    values = dict(model=model, out=tempfile.mkdtemp(prefix=f"bench-{name}-"), epochs=1,
                  batch_size=batch, grad_accum=1, frames=frames, warmup=0.0, workers=1,
                  max_steps=1 + steps, log_every=1, progress=False,
                  precision=precision, device="cuda" if cuda else "cpu",
                  **extra)
    if recipe in ("cvrl", "rspnet"):
        values["videos"] = tuple(line.split()[0] for line in Path(listing).read_text()
                                 .splitlines() if line)
        values.update(optimizer="adamw", lr=1e-5)
    else:
        values["data"] = listing
    config = make_config(recipe, values)
    started = time.perf_counter()
    result = train(config, message=lambda text: None)
    total = time.perf_counter() - started
    with (Path(values["out"]) / "run" / "metrics.csv").open() as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    timed = seconds[-1] - seconds[0]  # steps 2 .. 1 + steps, after the warm-up step
    peak = (torch.cuda.max_memory_allocated() if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps({"run": name, "recipe": recipe, "temporal": config.temporal,
                      "steps": result.steps, "batch": batch, "frames": frames,
                      "clips_per_s": steps * batch / timed, "seconds_per_step": timed / steps,
                      "peak_memory_bytes": peak, "memory_kind": "cuda" if cuda else "rss",
                      "precision": values["precision"], "wall_seconds": total}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up")
    parser.add_argument("--batch", type=int, default=2, help="videos per step")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (FROSTER: 8)")
    parser.add_argument("--recipes", default=",".join(RUNS))
    parser.add_argument("--precisions", default=None,
                        help="autocast per run, comma-separated (default: fp32,bf16 on CPU, "
                             "bf16 on CUDA)")
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "train.json",
                        help="results JSON (default: benchmarks/results/train.json)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--list", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.list, args.steps, args.batch, args.frames,
              args.precision)
        return

    import torch
    import transformers

    model = make_random_clip(DATA / "clip-b16-random", 16)
    listing = make_videos(DATA / "train-clips", max(8, 2 * args.batch * (1 + args.steps)))
    rows = []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    load_before = os.getloadavg()[0]
    precisions = (args.precisions or ("bf16" if torch.cuda.is_available() else "fp32,bf16")
                  ).split(",")
    print(f"{'run':<9} {'recipe':<9} {'temporal':<8} {'precision':<9} {'clips/s':>8} "
          f"{'s/step':>7} {'vs fp32':>7} {'peak GiB':>8}", flush=True)
    for name in args.recipes.split(","):
        for precision in precisions:  # back to back, so a ratio compares like load with like
            done = subprocess.run(
                [sys.executable, __file__, "--child", name, "--model", str(model), "--list",
                 str(listing), "--steps", str(args.steps), "--batch", str(args.batch),
                 "--frames", str(args.frames), "--precision", precision],
                capture_output=True, text=True, env=env)
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"{name} ({precision}) failed")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            base = next((r for r in rows if r["run"] == name and r["precision"] == "fp32"),
                        None)
            row["speed_vs_fp32"] = (row["clips_per_s"] / base["clips_per_s"]
                                    if base is not None else None)
            ratio = f"{row['speed_vs_fp32']:6.2f}x" if base is not None else f"{'-':>7}"
            print(f"{row['run']:<9} {row['recipe']:<9} {row['temporal']:<8} "
                  f"{row['precision']:<9} {row['clips_per_s']:8.3f} "
                  f"{row['seconds_per_step']:7.1f} {ratio} "
                  f"{row['peak_memory_bytes'] / 2**30:8.2f} ({row['memory_kind']})",
                  flush=True)
    result = {
        "benchmark": "train",
        "model": "CLIP ViT-B/16 shape, random weights",
        "settings": {"steps": args.steps, "batch": args.batch, "frames": args.frames,
                     "image_size": 224, "threads": torch.get_num_threads(),
                     "precisions": precisions},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "runs": rows,
        "machine": machine_info(torch=torch.__version__, transformers=transformers.__version__),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
