"""`--engine ray` against the local engine on this machine, and what it means for N nodes.

Measured here, on the clips and model of bench_index.py (random-init CLIP ViT-B/32, 10 s
640x360 H.264 clips, `videolens index` at 1 frame/s):

1. `index` with the local engine and with `--engine ray` on a local Ray runtime with this
   machine's CPUs, each run on 2 videos and on all of them so that the fixed start-up cost
   and the cost per frame come apart: wall time, time to the first commit, and the CPU time
   of every process involved (the driver, decoders, Ray's daemons and workers). On a shared
   machine wall time follows the other users' load; CPU time per frame does not, and it is
   the overhead that matters at scale: Ray's overhead is the ratio of the two engines';
2. the cost of each stage per frame, one process, no overlap: decoding at 1 frame/s
   (`load_at_rate`), the image preprocessing (`image_processor`, on the actor's CPU even when
   the forward pass is on a GPU) and the forward pass;
3. the driver's commit rate: what `index` does per video on the driver (the file's content
   fingerprint, then `writer.add_video`, one SQLite transaction) for 10- and 60-frame videos.

Then a scaling model for N nodes of `--gpus-per-node` GPUs and `--cpus-per-node` CPUs, from
the measured decode, preprocessing and commit costs and an *assumed* GPU forward rate
(`--gpu-frames-per-s`; nothing here has a GPU): which stage binds, and at how many GPUs the
single driver's commit rate does.

    python benchmarks/bench_ray.py [--videos 16] [--rounds 1] [--threads N] [--fps 1]
        [--gpus-per-node 8] [--cpus-per-node 64] [--gpu-frames-per-s 2000]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_classify import DATA, load_bench_model, make_videos  # noqa: E402
from machine import machine_info  # noqa: E402


class CpuMeter:
    """CPU time (user + system, all threads) of every process in this session — this one,
    its decoder processes and, with a local Ray runtime, Ray's daemons and workers (they
    keep the session of the process that started them) — between ``start`` and ``stop``.

    Processes are polled every ``interval`` seconds, each counted from its first sample (0
    for one born meanwhile) to its last, so a process that exits loses at most one interval
    of its time. Children's times (``cutime``) are left out: they would count twice."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.session = os.getsid(0)
        self.tick = os.sysconf("SC_CLK_TCK")

    def _sample(self) -> dict[int, float]:
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
            if int(fields[3]) == self.session:
                found[int(entry)] = (int(fields[11]) + int(fields[12])) / self.tick
        return found

    def start(self) -> None:
        self.first = self._sample()
        self.last = dict(self.first)
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while self.running:
            time.sleep(self.interval)
            self.last.update(self._sample())

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        self.last.update(self._sample())
        return sum(t - self.first.get(pid, 0.0) for pid, t in self.last.items())


def timed_index(paths, model, fps: float, engine) -> dict:
    """One `index` run into a fresh library: wall time, time to the first commit, and the CPU
    time of every process involved."""
    from videolens.pipelines.index import index

    library = DATA / f"bench-ray-library-{'local' if engine == 'local' else 'ray'}"
    shutil.rmtree(library, ignore_errors=True)
    commits: list[float] = []

    def on_event(kind: str, path: str, detail: str) -> None:
        if kind == "indexed":
            commits.append(time.perf_counter())

    meter = CpuMeter()
    meter.start()
    started = time.perf_counter()
    summary = index(paths, library=library, model=model, fps=fps, engine=engine,
                    on_event=on_event)
    seconds = time.perf_counter() - started
    cpu = meter.stop()
    assert not summary.failed, summary.failed
    shutil.rmtree(library)
    return {"videos": len(paths), "frames": summary.frames, "seconds": seconds,
            "frames_per_s": summary.frames / seconds, "first_commit_s": commits[0] - started,
            "cpu_seconds": cpu}


def marginal(small: dict, large: dict) -> dict:
    """Per-frame cost from two runs of different sizes, with the fixed cost (start-up)
    separated: ``cpu = fixed + per_frame * frames``."""
    frames = large["frames"] - small["frames"]
    per_frame = (large["cpu_seconds"] - small["cpu_seconds"]) / frames
    wall = (large["seconds"] - small["seconds"]) / frames
    return {"cpu_ms_per_frame": 1e3 * per_frame,
            "fixed_cpu_s": small["cpu_seconds"] - per_frame * small["frames"],
            "wall_ms_per_frame": 1e3 * wall,
            "fixed_wall_s": small["seconds"] - wall * small["frames"]}


def stage_costs(paths, model, fps: float) -> dict:
    """CPU seconds per frame of decoding, preprocessing and the forward pass, serially.

    CPU time (``process_time``, all threads), not wall time: it is what a node's cores must
    supply per frame, and other load on this shared machine does not inflate it."""
    import torch

    from videolens.io import Sampling, load_at_rate

    sampling = Sampling(kind="rate", fps=fps)
    decode_s, frames = 0.0, []
    for path in paths:
        started = time.process_time()
        _, sampled = load_at_rate(path, sampling, max_side=model.frame_max_side)
        decode_s += time.process_time() - started
        frames.extend(sampled.frames)
    batches = [frames[i:i + 32] for i in range(0, len(frames), 32)]
    processor = model.image_processor
    started = time.process_time()
    pixels = [processor(images=list(batch), return_tensors="pt")["pixel_values"]
              for batch in batches]
    preprocess_s = time.process_time() - started
    started = time.process_time()
    with torch.inference_mode():
        for batch in pixels:
            model.model.get_image_features(pixel_values=batch.to(model.device, model.dtype))
    forward_s = time.process_time() - started
    count = len(frames)
    return {"frames": count, "decode_s_per_frame": decode_s / count,
            "preprocess_s_per_frame": preprocess_s / count,
            "cpu_forward_s_per_frame": forward_s / count,
            "torch_threads": torch.get_num_threads()}


def commit_rate(model, sample_path: str, frames_per_video: int, videos: int = 300) -> dict:
    """Videos/s and frames/s of what the driver does per video: fingerprint + add_video."""
    from videolens.io import file_fingerprint
    from videolens.library import Library

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((frames_per_video, model.embed_dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    timestamps = np.arange(frames_per_video, dtype=np.float64)
    size = os.path.getsize(sample_path)
    with tempfile.TemporaryDirectory(dir=DATA) as folder:
        store = Library.create(Path(folder) / "lib", model.meta,
                               {"kind": "rate", "fps": 1.0, "max_side": model.frame_max_side})
        with store.writer() as writer:
            started = time.perf_counter()
            for i in range(videos):
                writer.add_video({
                    "path": f"/archive/video_{i:07d}.mp4", "size": size, "mtime_ns": i,
                    "fingerprint": file_fingerprint(sample_path, size),
                    "duration": float(frames_per_video), "fps": 30.0, "width": 640,
                    "height": 360, "num_frames": frames_per_video, "indexed_at": time.time(),
                    "warnings": ()}, timestamps, vectors)
            seconds = time.perf_counter() - started
        store.close()
    return {"frames_per_video": frames_per_video, "videos_per_s": videos / seconds,
            "frames_per_s": videos * frames_per_video / seconds}


def scaling(costs: dict, commit_frames_per_s: float, nodes: list[int], gpus_per_node: int,
            cpus_per_node: int, gpu_frames_per_s: float) -> dict:
    """Frames/s of N nodes: the least of their CPUs' rate (every frame costs a decode and a
    preprocessing, on some CPU of the node), their GPUs' forward rate, and the one driver's
    commit rate; and the actors per GPU whose preprocessing keeps up with the node's rate."""
    cpu_per_frame = costs["decode_s_per_frame"] + costs["preprocess_s_per_frame"]
    cpu_rate = cpus_per_node / cpu_per_frame
    gpu_rate = gpus_per_node * gpu_frames_per_s
    node_rate = min(cpu_rate, gpu_rate)
    # each actor preprocesses on its own CPU, serially: enough of them to feed the GPU
    actors_per_gpu = max(1, math.ceil(node_rate / gpus_per_node
                                      * costs["preprocess_s_per_frame"]))
    rows = []
    for n in nodes:
        total = min(n * node_rate, commit_frames_per_s)
        bound = ("commit" if total == commit_frames_per_s
                 else "CPU (decode + preprocess)" if cpu_rate < gpu_rate else "GPU")
        rows.append({"nodes": n, "gpus": n * gpus_per_node, "cpu_frames_per_s": n * cpu_rate,
                     "gpu_frames_per_s": n * gpu_rate, "commit_frames_per_s": commit_frames_per_s,
                     "frames_per_s": total, "bound": bound})
    return {"cpu_s_per_frame": cpu_per_frame, "node_frames_per_s": node_rate,
            "cpu_bound_per_node": cpu_rate < gpu_rate, "actors_per_gpu": actors_per_gpu,
            "ray_gpus_per_actor": 1 / actors_per_gpu,
            "commit_binds_at_gpus": commit_frames_per_s / (node_rate / gpus_per_node),
            "commit_binds_at_nodes": commit_frames_per_s / node_rate, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for encoding, in both engines (default: all "
                        "cores); 1 keeps a busy shared machine from skewing the comparison")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--nodes", default="1,2,4,8,16,32,64")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--cpus-per-node", type=int, default=64)
    parser.add_argument("--gpu-frames-per-s", type=float, default=2000.0,
                        help="assumed ViT-B/32 fp16 forward rate of one GPU (not measured "
                        "here: no GPU); measure it on yours and pass it")
    args = parser.parse_args()
    import ray
    import torch

    from videolens.pipelines.ray_engine import RayEngine, cluster_plan

    model = load_bench_model()
    paths = make_videos(args.videos)
    # the Ray runtime first, so that its idle daemons run during both engines' rounds
    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    ray_start_s = time.perf_counter() - started
    if args.threads:
        torch.set_num_threads(args.threads)
    engines = {"local": "local", "ray": RayEngine(cpu_threads=args.threads)}
    plan = cluster_plan(ray, engines["ray"])
    meter = CpuMeter()
    meter.start()
    time.sleep(10)
    idle_cores = meter.stop() / 10  # what Ray's daemons (and this process) use when idle
    timed_index(paths[:2], model, args.fps, "local")  # warm-up: decoder start, caches
    # alternate the engines (this machine is shared); a small and a full run of each, so
    # that the fixed start-up cost and the cost per frame come apart
    rounds: dict[str, list[dict]] = {"local": [], "ray": []}
    for _ in range(args.rounds):
        for engine in ("local", "ray"):
            small = timed_index(paths[:2], model, args.fps, engines[engine])
            large = timed_index(paths, model, args.fps, engines[engine])
            rounds[engine].append({"small": small, "full": large, **marginal(small, large)})
            print(json.dumps({engine: rounds[engine][-1]}), flush=True)
    ray.shutdown()
    local = min(rounds["local"], key=lambda r: r["cpu_ms_per_frame"])
    on_ray = min(rounds["ray"], key=lambda r: r["cpu_ms_per_frame"])

    costs = stage_costs(paths[:8], model, args.fps)
    commits = [commit_rate(model, paths[0], n) for n in (10, 60)]
    model_rows = scaling(costs, commits[0]["frames_per_s"],
                         [int(n) for n in args.nodes.split(",")], args.gpus_per_node,
                         args.cpus_per_node, args.gpu_frames_per_s)

    overhead_cpu = on_ray["cpu_ms_per_frame"] / local["cpu_ms_per_frame"] - 1
    overhead_wall = on_ray["full"]["seconds"] / local["full"]["seconds"] - 1
    print(f"\nindex, {args.videos} videos (10 s, 640x360 H.264) at {args.fps:g} frame/s, "
          f"random-init CLIP ViT-B/32, CPU ({os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}); Ray {ray.__version__} runtime with "
          f"{os.cpu_count()} CPUs: {plan.decoders} decoder, {plan.encoders} encoder "
          f"({plan.encoder_threads} torch threads)\n")
    print("| engine | round | frames | seconds | frames/s | first commit | CPU s "
          "| CPU ms per frame (marginal) | fixed CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("local", "ray"):
        for i, row in enumerate(rounds[name], 1):
            full = row["full"]
            print(f"| {name} | {i} | {full['frames']} | {full['seconds']:.1f} "
                  f"| {full['frames_per_s']:.2f} | {full['first_commit_s']:.1f} s "
                  f"| {full['cpu_seconds']:.1f} | {row['cpu_ms_per_frame']:.0f} "
                  f"| {row['fixed_cpu_s']:.1f} |")
    print(f"\nRay overhead (best rounds): {overhead_cpu:+.1%} CPU time per frame (goal "
          f"<= 10 %), fixed start-up {on_ray['fixed_cpu_s'] - local['fixed_cpu_s']:+.1f} CPU s; "
          f"wall time of the full run {overhead_wall:+.1%} (a shared machine: see the CPU "
          f"column); {ray_start_s:.1f} s to start the runtime, idle {idle_cores:.2f} cores")
    print(f"\nCPU time per frame, serially: decode {costs['decode_s_per_frame'] * 1e3:.1f} ms, "
          f"preprocess {costs['preprocess_s_per_frame'] * 1e3:.1f} ms, CPU forward "
          f"{costs['cpu_forward_s_per_frame'] * 1e3:.1f} ms ({costs['torch_threads']} threads)")
    for row in commits:
        print(f"driver commits ({row['frames_per_video']} frames a video): "
              f"{row['videos_per_s']:.0f} videos/s = {row['frames_per_s']:.0f} frames/s")
    m = model_rows
    print(f"\nscaling model: nodes of {args.gpus_per_node} GPUs + {args.cpus_per_node} CPUs; "
          f"assumed {args.gpu_frames_per_s:.0f} frames/s per GPU forward; "
          f"{m['cpu_s_per_frame'] * 1e3:.1f} CPU-ms per frame (decode + preprocess); "
          f"{m['actors_per_gpu']} actors per GPU (--ray-gpus-per-actor "
          f"{m['ray_gpus_per_actor']:.3g}) keep up; 10-frame videos\n")
    print("| nodes | GPUs | CPUs can | GPUs can | driver can commit | frames/s | bound by |")
    print("|---|---|---|---|---|---|---|")
    for row in m["rows"]:
        print(f"| {row['nodes']} | {row['gpus']} | {row['cpu_frames_per_s']:.0f} "
              f"| {row['gpu_frames_per_s']:.0f} | {row['commit_frames_per_s']:.0f} "
              f"| {row['frames_per_s']:.0f} | {row['bound']} |")
    print(f"\nper node {m['node_frames_per_s']:.0f} frames/s "
          f"({'CPU' if m['cpu_bound_per_node'] else 'GPU'}-bound); the driver's commits bind "
          f"at {m['commit_binds_at_nodes']:.1f} nodes = {m['commit_binds_at_gpus']:.0f} GPUs")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "ray.json"
    out.write_text(json.dumps({
        "benchmark": "ray_engine",
        "machine": machine_info(torch=torch.__version__, ray=ray.__version__),
        "videos": args.videos, "fps": args.fps, "model": "clip-vit-b32 (random init)",
        "torch_threads": torch.get_num_threads(),
        "plan_here": plan.__dict__, "local": local, "ray": on_ray,
        "rounds": rounds, "ray_runtime_start_s": ray_start_s,
        "idle_cores_with_ray_runtime": idle_cores,
        "ray_overhead_cpu_per_frame": overhead_cpu, "ray_overhead_wall_full_run": overhead_wall,
        "stage_costs": costs, "commits": commits,
        "scaling": {"assumptions": {
            "gpus_per_node": args.gpus_per_node, "cpus_per_node": args.cpus_per_node,
            "gpu_frames_per_s": args.gpu_frames_per_s, "gpu_frames_per_s_measured": False,
            "decode_s_per_frame": costs["decode_s_per_frame"],
            "preprocess_s_per_frame": costs["preprocess_s_per_frame"],
            "commit_frames_per_s": commits[0]["frames_per_s"],
            "frames_per_video": 10}, **model_rows},
    }, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
