"""CPU backends side by side: images/s, prompts/s and agreement with torch fp32 per backend.

Models: randomly initialised CLIP ViT-B/32 and ViT-B/16 (the real architectures, so the same
FLOPs as the OpenAI checkpoints; weights cannot be downloaded here), saved and loaded through
``load_model``. Frames: 128 frames of a generated 640x360 video (moving shapes over moving
gradients), through the model's own processor; the first 64 calibrate int8 (as
``--precision int8`` calibrates on the first frames a command encodes), the last 64 measure
agreement.

For each shape, every backend x precision installed here: torch fp32 (what videolens ran
before), torch bf16, OpenVINO auto (its own choice for this CPU) and int8 (NNCF), ONNX Runtime
fp32 and int8 (dynamic). Measured interleaved, repetition by repetition, so machine load hits
every row alike:
  images/s   the vision tower on a batch of pre-processed frames
  prompts/s  the text tower on a batch of prompts (padded to the longest, as videolens does)
  cosine     mean / min over the 64 held-out frames against torch fp32 (prompts: the batch)
  export     seconds to export (and, for int8, quantize) once; later runs load the copy
Install size: the backend's packages and what they pull beyond videolens' own dependencies.
No GPU here: GPU rows (fp16/bf16 torch, torch.compile) are not measured.

    python benchmarks/bench_backends.py [--reps 3] [--batch 16] [--shapes b32,b16]
    python benchmarks/bench_backends.py --markdown    # the README table from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results"
OUTPUT = RESULTS / "backends.json"
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's tokenizer builder
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_classify import make_random_clip  # noqa: E402
from machine import machine_info  # noqa: E402

SHAPES = {"b32": ("ViT-B/32", 32), "b16": ("ViT-B/16", 16)}
PROMPTS = [f"a video of a person {action}." for action in (
    "running", "swimming", "cooking dinner", "playing guitar", "riding a bike", "dancing",
    "brushing hair", "doing push ups", "juggling three balls", "walking the dog",
    "climbing a wall", "playing basketball", "eating", "drinking coffee", "typing",
    "tying shoelaces")] * 2  # 32 prompts


def generated_frames(count: int, height: int = 360, width: int = 640) -> np.ndarray:
    """(count, H, W, 3) uint8: two gradients drifting under three moving squares."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((count, height, width, 3), np.uint8)
    for t in range(count):
        red = 127 + 120 * np.sin((x + 7 * t) / 90)
        green = 127 + 120 * np.cos((y - 5 * t) / 70)
        blue = 127 + 120 * np.sin((x + y + 11 * t) / 130)
        frame = np.stack([red, green, blue], axis=-1)
        for k, color in enumerate(((250, 30, 30), (30, 250, 30), (240, 240, 20))):
            top = int((height - 80) * (0.5 + 0.45 * np.sin(t / (6 + 3 * k) + k)))
            left = int((width - 80) * (0.5 + 0.45 * np.cos(t / (9 + 2 * k) + 2 * k)))
            frame[top:top + 80, left:left + 80] = color
        frames[t] = frame.clip(0, 255).astype(np.uint8)
    return frames


def _dist_size(name: str) -> int:
    try:
        files = metadata.distribution(name).files or []
    except metadata.PackageNotFoundError:
        return 0
    return sum(f.size or 0 for f in files)


def _closure(names: list[str]) -> set[str]:
    """The distributions ``names`` need, recursively (installed ones only)."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def install_sizes() -> dict:
    """MB on disk of each backend's extra beyond what videolens itself already installs."""
    base = _closure(["videolens"])
    sizes = {}
    for extra, packages in (("openvino", ["openvino", "nncf", "onnx"]),
                            ("onnx", ["onnxruntime", "onnx"])):
        extra_dists = sorted(_closure(packages) - base)
        sizes[extra] = {"mb": round(sum(_dist_size(d) for d in extra_dists) / 1e6, 1),
                        "packages": extra_dists}
    return sizes


def available_backends() -> list[tuple[str, str]]:
    """(backend, precision) rows that can run here, torch fp32 first."""
    import importlib.util

    rows = [("torch", "fp32"), ("torch", "bf16")]
    if importlib.util.find_spec("openvino"):
        rows += [("openvino", "auto")]
        if importlib.util.find_spec("nncf"):
            rows += [("openvino", "int8")]
    if importlib.util.find_spec("onnxruntime"):
        rows += [("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    return rows


class Row:
    """One backend x precision on one model: how to run each tower, and what it cost."""

    def __init__(self, model, backend: str, precision: str, calibration, say):
        import torch

        from videolens.models.backends.common import BackendEncoder, backend_module
        from videolens.models.clip import pooled

        self.backend, self.precision = backend, precision
        self.export_s = 0.0
        self.model = model
        if backend == "torch":
            dtype = torch.float32 if precision == "fp32" else torch.bfloat16
            self.hf = model.model if precision == "fp32" else _copy_as(model.model, dtype)
            self.dtype = dtype

            def vision(pixels):
                with torch.inference_mode():
                    return pooled(self.hf.get_image_features(
                        pixel_values=pixels.to(dtype))).float()

            def text(tokens):
                with torch.inference_mode():
                    return pooled(self.hf.get_text_features(**tokens)).float()

            self.vision, self.text, self.actual = vision, text, precision
            return
        start = time.perf_counter()
        encoder = BackendEncoder(model, backend_module(backend), precision, say)
        if precision == "int8":  # calibrate as a user's run would: on its first 64 frames
            for i in range(0, len(calibration), 16):
                encoder.image_features(calibration[i:i + 16])
        self.export_s = time.perf_counter() - start
        if precision == "int8":  # the quantizing alone, not the 64 frames encoded meanwhile
            from videolens.models.backends.common import read_info

            self.export_s = sum(read_info(encoder.int8_folder / tower).get("quantize_seconds", 0)
                                for tower in ("vision", "text"))
        self.vision = encoder.image_features
        self.text = lambda tokens: encoder.text_features(**tokens)
        self.actual = encoder.precision


def _copy_as(hf_model, dtype):
    import copy

    return copy.deepcopy(hf_model).to(dtype).eval()


def bench_shape(key: str, reps: int, batch: int, text_batch: int, frames: np.ndarray,
                say) -> list[dict]:
    import torch

    from videolens.models import load_model
    from videolens.models.backends.common import cosine_agreement, tokens

    name, patch = SHAPES[key]
    model = load_model(str(make_random_clip(DATA / f"clip-{key}-random", patch)), device="cpu",
                       dtype="fp32", backend="torch")
    pixels = model.image_processor(images=list(frames), return_tensors="pt")["pixel_values"]
    calibration, held_out = pixels[:64], pixels[64:]
    prompts = tokens(model, PROMPTS[:text_batch])
    rows = []
    for backend, precision in available_backends():
        if backend == "torch" and precision == "bf16" and key != "b32" and not _native_bf16():
            say(f"{name}: torch bf16 skipped (emulated on this CPU: 5-8x slower than fp32)")
            continue
        say(f"{name}: preparing {backend} {precision}")
        rows.append(Row(model, backend, precision, calibration, say))
    # agreement first (also warms every row up), then the interleaved timings
    reference = rows[0].vision(held_out).numpy()
    text_reference = rows[0].text(prompts).numpy()
    results = []
    for row in rows:
        features = np.concatenate([row.vision(held_out[i:i + batch]).numpy()
                                   for i in range(0, len(held_out), batch)])
        agree = cosine_agreement(reference, features)
        text_agree = cosine_agreement(text_reference, row.text(prompts).numpy())
        results.append({"shape": name, "backend": row.backend, "precision": row.precision,
                        "computes": row.actual, "batch": batch, "text_batch": text_batch,
                        "cosine_mean": agree["mean"], "cosine_min": agree["min"],
                        "text_cosine_mean": text_agree["mean"],
                        "text_cosine_min": text_agree["min"],
                        "export_s": round(row.export_s, 2), "images_s_runs": [],
                        "prompts_s_runs": []})
    images = held_out[:batch]
    for rep in range(reps):
        for row, result in zip(rows, results, strict=True):
            start = time.perf_counter()
            row.vision(images)
            result["images_s_runs"].append(round(batch / (time.perf_counter() - start), 2))
            start = time.perf_counter()
            row.text(prompts)
            result["prompts_s_runs"].append(
                round(text_batch / (time.perf_counter() - start), 2))
        say(f"{name}: repetition {rep + 1}/{reps} done")
    base_images = statistics.median(results[0]["images_s_runs"])
    base_prompts = statistics.median(results[0]["prompts_s_runs"])
    for result in results:
        result["images_per_s"] = statistics.median(result["images_s_runs"])
        result["prompts_per_s"] = statistics.median(result["prompts_s_runs"])
        result["images_vs_torch_fp32"] = round(result["images_per_s"] / base_images, 2)
        result["prompts_vs_torch_fp32"] = round(result["prompts_per_s"] / base_prompts, 2)
    del torch
    return results


def _native_bf16() -> bool:
    from videolens.models.load import BF16_CPU_FLAGS, cpu_flags

    return bool(set(BF16_CPU_FLAGS) & cpu_flags())


LABELS = {("torch", "fp32"): "PyTorch fp32 (before)", ("torch", "bf16"): "PyTorch bf16",
          ("openvino", "auto"): "OpenVINO, default precision",
          ("openvino", "int8"): "OpenVINO int8 (NNCF, 64 calibration frames)",
          ("onnxruntime", "fp32"): "ONNX Runtime fp32",
          ("onnxruntime", "int8"): "ONNX Runtime int8 (dynamic)"}


def markdown(report: dict) -> str:
    """The README's table, from the JSON."""
    lines = [
        "| model | backend, precision (computes) | images/s | vs torch fp32 | prompts/s | vs "
        "torch fp32 | cosine to fp32, mean / min | export once |",
        "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        label = LABELS.get((r["backend"], r["precision"]), f"{r['backend']} {r['precision']}")
        cosine = ("1 (reference)" if (r["backend"], r["precision"]) == ("torch", "fp32")
                  else f"{r['cosine_mean']:.5f} / {r['cosine_min']:.5f}")
        export = f"{r['export_s']:.0f} s" if r["export_s"] else "–"
        lines.append(
            f"| {r['shape']} | {label} ({r['computes']}) | {r['images_per_s']:.1f} | "
            f"{r['images_vs_torch_fp32']:.2f}x | {r['prompts_per_s']:.0f} | "
            f"{r['prompts_vs_torch_fp32']:.2f}x | {cosine} | {export} |")
    sizes = report["install_mb"]
    lines.append("")
    lines.append(f"Install size beyond videolens' own dependencies: `[openvino]` "
                 f"{sizes['openvino']['mb']:.0f} MB, `[onnx]` {sizes['onnx']['mb']:.0f} MB. "
                 f"{report['settings']['reps']} interleaved repetitions, medians; vision batch "
                 f"{report['settings']['batch']}, text batch {report['settings']['text_batch']}; "
                 f"{report['machine']['cpu']}, {report['machine']['cores']} cores "
                 f"(load average {report['settings']['load_average']}).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16, help="frames per vision call")
    parser.add_argument("--text-batch", type=int, default=32, help="prompts per text call")
    parser.add_argument("--shapes", default="b32,b16")
    parser.add_argument("--markdown", action="store_true",
                        help="print the README table from benchmarks/results/backends.json")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(OUTPUT.read_text())))
        return

    def say(message: str) -> None:
        print(f"[bench_backends] {message}", file=sys.stderr, flush=True)

    # a fresh export cache: the export times are first-run times
    os.environ["VIDEOLENS_CACHE_DIR"] = tempfile.mkdtemp(prefix="videolens-bench-backends-")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    import torch
    import transformers

    started = time.perf_counter()
    frames = generated_frames(128)
    results = []
    for key in args.shapes.split(","):
        results += bench_shape(key, args.reps, args.batch, args.text_batch, frames, say)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    for package in ("openvino", "nncf", "onnxruntime", "onnx"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    report = {
        "machine": machine_info(**versions),
        "settings": {"reps": args.reps, "batch": args.batch, "text_batch": args.text_batch,
                     "calibration_frames": 64, "agreement_frames": 64,
                     "threads": torch.get_num_threads(),
                     "native_bf16": _native_bf16(),
                     "load_average": round(os.getloadavg()[0], 1),
                     "wall_s": round(time.perf_counter() - started, 1)},
        "install_mb": install_sizes(),
        "gpu": "no GPU on this machine: fp16/bf16 torch and torch.compile on a GPU not measured",
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\nwrote {OUTPUT.relative_to(ROOT)} in {report['settings']['wall_s']:.0f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
