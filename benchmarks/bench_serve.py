"""`videolens serve` under load: 50 concurrent clients sending text searches for 30 s.

The server runs in its own process (the same ``run_serve`` as ``videolens serve``) on a free
loopback port; the clients are one asyncio loop in this process with an ``httpx.AsyncClient``
(one connection per client), each sending ``GET /api/search?q=...&top=10`` back to back,
cycling through 40 different queries (the server remembers the rows of recent queries, so
after the first round this measures everything but the text encoder; ``--scenario batching``
sends a new query every request). The run stops at ``--seconds`` or ``--max-requests``, whichever
comes first. Latency is measured per request from send to full body, in the client.

Models (``--model``):

* ``clip-b32-random``: a randomly initialised CLIP ViT-B/32 with the real architecture
  (same FLOPs as the pretrained one; see bench_classify.py), library of ``--videos`` 10 s
  clips from bench_classify.py indexed at 1 frame/s.
* ``tiny``: the test suite's tiny CLIP (16-d): measures the server's own overhead.

On a 2-core machine the clients share the CPU with the server; the numbers are a lower
bound for a server with the machine to itself.

    python benchmarks/bench_serve.py [--model clip-b32-random|tiny] [--clients 50]
                                     [--seconds 30] [--videos 8]

``--scenario uploads`` measures the server's memory instead (issue 12 item 1). Four bursts,
each on a fresh server after one small warm-up upload, of ``--uploads`` (16) concurrent
``POST /api/search``: a solid-colour ``--side`` x ``--side`` PNG (6000: ~105 KB on the wire,
108 MB of pixels); a 4096 x 4096 PNG (the largest the server decodes at full size); a
``--side`` x ``--side`` baseline JPEG; then ``--junk`` (50) non-image bodies of 10 MB - 64 KB,
16 at a time. Memory is the server process's own, from ``/proc/<pid>/status``: VmRSS before
the burst, VmHWM (peak, reset with ``clear_refs`` after the warm-up) and VmRSS after.
Writes results/serve_uploads.json.

    python benchmarks/bench_serve.py --scenario uploads [--model tiny] [--uploads 16]
                                     [--side 6000] [--junk 50]

``--scenario batching`` measures text-query batching (issue 14 item 4): one server per mode
on the random ViT-B/32, all started at once and measured interleaved in the same run, each
client level (``--levels``, default 1, 8, 50) for ``--cell-seconds`` per mode per repetition
(``--reps``). Every request sends a query never sent before (the query text plus a counter),
so no cache answers it. Modes: ``one-at-a-time`` (``TEXT_BATCH = 1``: each query encoded
alone under the model lock, the code before batching), ``batched`` (queries waiting for the
model encoded in one pass, no window), ``batched+window`` (the same, and while queries arrive
concurrently a pass waits ``--window-ms`` for more). The batch sizes each server formed come
from its own counters. Also checks that a batch padded to its longest prompt gives each
prompt's row within float tolerance of encoding it alone, and times the bare text encoder at
batch 1, 8 and 32. Writes results/serve_batching.json.

    python benchmarks/bench_serve.py --scenario batching [--reps 2] [--cell-seconds 8]
                                     [--levels 1,8,50] [--window-ms 5]

Other scripts reuse the pieces: ``build_library``, ``free_port``, ``start_server``,
``solid_png``, ``fire_uploads``, ``server_memory``, ``reset_peak``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_classify import DATA, make_clip_b32, make_videos  # noqa: E402
from machine import machine_info  # noqa: E402

QUERIES = [f"{verb} {thing}" for verb in ("a person", "someone", "two people", "a child")
           for thing in ("running", "jumping over a fence", "cooking pasta", "playing guitar",
                         "riding a bike", "swimming laps", "dancing", "eating", "walking the dog",
                         "brushing hair")]
SERVER = ("import sys, argparse; from videolens.cli.serve import add_serve_command, run_serve; "
          "p = argparse.ArgumentParser(); add_serve_command(p.add_subparsers(dest='c')); "
          "sys.exit(run_serve(p.parse_args(sys.argv[1:])))")
# SERVER with the service's batching settings from the environment, writing the text
# batcher's counters to $BENCH_STATS every 0.2 s (benchmark-only instrumentation)
BATCHING_SERVER = """
import json, os, threading, time
from videolens.web import service
service.TEXT_BATCH = int(os.environ["BENCH_TEXT_BATCH"])
service.TEXT_WINDOW_S = float(os.environ["BENCH_TEXT_WINDOW_S"])
made = []
init = service.LibraryService.__init__
def remember(self, *args, **kwargs):
    init(self, *args, **kwargs)
    made.append(self)
service.LibraryService.__init__ = remember
def report():
    path = os.environ["BENCH_STATS"]
    while True:
        time.sleep(0.2)
        for served in made:
            if served.text_batcher is not None:
                stats = served.text_batcher.stats
                with open(path + ".tmp", "w") as out:
                    json.dump({"batches": stats.batches, "items": stats.items}, out)
                os.replace(path + ".tmp", path)
threading.Thread(target=report, daemon=True).start()
""" + SERVER.replace("; ", "\n")


def build_library(model: str, videos: int) -> Path:
    """A library for ``model``, rebuilt each run (indexing is not what is measured)."""
    from videolens.pipelines.index import index

    library = DATA / f"serve-library-{model}"
    shutil.rmtree(library, ignore_errors=True)
    if model == "tiny":
        from tiny_models import make_tiny_clip

        folder = DATA / "tiny-clip"
        if not (folder / "config.json").exists():
            make_tiny_clip(folder)
    else:
        folder = make_clip_b32(DATA / "clip-b32-random")
    summary = index(make_videos(videos), library=library, model=str(folder), fps=1.0,
                    device="cpu")
    assert not summary.failed, summary.failed
    return library


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(library: Path, port: int, *extra: str, code: str = SERVER,
                 env: dict[str, str] | None = None, wait: bool = True) -> subprocess.Popen:
    """``videolens serve`` (the real ``run_serve``) on ``port`` in a child process, returned
    once ``/api/videos`` answers 200 (at once with ``wait=False``; then call
    :func:`wait_ready`). ``extra``: more serve arguments; ``code``: the Python that runs it;
    ``env``: more environment variables."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VIDEOLENS_CACHE_DIR": "off", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--library", str(library), "--host",
         "127.0.0.1", "--port", str(port), "--device", "cpu", *extra], env=env, cwd=ROOT)
    if wait:
        wait_ready(process, port)
    return process


def wait_ready(process: subprocess.Popen, port: int) -> None:
    import httpx

    deadline = time.monotonic() + 300  # several servers may be loading B/32 at once
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/videos", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.25)
    process.kill()
    raise RuntimeError("the server did not start in 300 s")


async def load(base: str, clients: int, seconds: float, max_requests: int, *,
               unique: str | None = None) -> dict:
    """``clients`` clients searching back to back; ``unique``: append it and a counter to
    every query, so that no query repeats (no cache can answer). The result's
    ``latencies_ms`` lists every successful request."""
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as http:
        # warm-up: first requests load lazy state (tokenizer paths, vector cache mmap)
        for query in QUERIES[:3]:
            (await http.get("/api/search", params={"q": query, "top": 10})).raise_for_status()
        started = time.perf_counter()
        stop_at = started + seconds

        async def client(number: int) -> None:
            nonlocal sent
            turn = number
            while time.perf_counter() < stop_at and sent < max_requests:
                sent += 1
                query = QUERIES[turn % len(QUERIES)]
                if unique is not None:
                    query = f"{query} {unique}{sent}"
                turn += clients
                begin = time.perf_counter()
                try:
                    response = await http.get("/api/search", params={"q": query, "top": 10})
                    ok = response.status_code == 200 and response.json()["results"]
                    key = None if ok else f"HTTP {response.status_code}"
                except httpx.HTTPError as err:
                    key = type(err).__name__
                if key is None:
                    latencies.append(time.perf_counter() - begin)
                else:
                    errors[key] = errors.get(key, 0) + 1

        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies) + sum(errors.values()), "ok": len(latencies),
        "errors": sum(errors.values()), "error_kinds": errors, "seconds": elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "max_ms": float(ms.max()) if len(ms) else None, "latencies_ms": ms.tolist(),
    }


def solid_png(side: int, format: str = "PNG", color: tuple[int, int, int] = (200, 30, 30)
              ) -> bytes:
    """A ``side`` x ``side`` RGB picture of one colour (PNG, or ``format``): deflate shrinks a
    PNG ~1000x (6000 px: ~105 KB for 108 MB of pixels), the cheapest way to make a server
    decode a huge picture."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (side, side), color).save(out, format=format)
    return out.getvalue()


def server_memory(pid: int) -> dict[str, int]:
    """``rss`` (resident now) and ``peak`` (VmHWM) of process ``pid``, in bytes (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields["rss" if key == "VmRSS" else "peak"] = int(value.split()[0]) * 1024
    return fields


def reset_peak(pid: int) -> bool:
    """Reset VmHWM of ``pid`` to its current RSS (``clear_refs`` 5, Linux >= 4.0)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


async def fire_uploads(base: str, body: bytes, count: int, *, concurrency: int | None = None,
                       filename: str = "query.png", timeout: float = 600) -> dict[str, int]:
    """POST ``body`` as the ``image`` of ``/api/search`` ``count`` times, ``concurrency`` at
    once (default: all at once). Returns how many answers had each status (or error)."""
    import httpx

    statuses: dict[str, int] = {}
    gate = asyncio.Semaphore(concurrency or count)
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as http:
        async def one() -> None:
            async with gate:
                try:
                    response = await http.post(
                        "/api/search", files={"image": (filename, body, "image/png")},
                        data={"top": "3"})
                    key = str(response.status_code)
                except httpx.HTTPError as err:
                    key = type(err).__name__
            statuses[key] = statuses.get(key, 0) + 1

        await asyncio.gather(*(one() for _ in range(count)))
    return dict(sorted(statuses.items()))


def upload_storm(library: Path, uploads: int, side: int, junk: int) -> list[dict]:
    """The memory scenario: each burst on a fresh server, after one small warm-up upload
    (see the module doc). One row per burst."""
    import httpx

    side_ok = 4096  # the largest PNG the server decodes at full size (MAX_UPLOAD_PIXELS)
    bursts = [(f"{uploads} x {side}x{side} PNG at once", solid_png(side), uploads, None),
              (f"{uploads} x {side_ok}x{side_ok} PNG at once", solid_png(side_ok), uploads,
               None),
              (f"{uploads} x {side}x{side} JPEG at once", solid_png(side, "JPEG"), uploads,
               None),
              (f"{junk} x 10 MB non-image, 16 at once",
               os.urandom(10 * 1024 * 1024 - 64 * 1024), junk, 16)]
    rows = []
    for name, body, count, concurrency in bursts:
        port = free_port()
        server = start_server(library, port)
        base = f"http://127.0.0.1:{port}"
        try:
            warm = httpx.post(f"{base}/api/search", files={"image": ("w.png", solid_png(64))},
                              timeout=60)
            warm.raise_for_status()
            before = server_memory(server.pid)["rss"]
            reset_peak(server.pid)
            began = time.perf_counter()
            statuses = asyncio.run(fire_uploads(base, body, count, concurrency=concurrency))
            rows.append({"burst": name, "requests": count, "body_bytes": len(body),
                         "statuses": statuses, "seconds": time.perf_counter() - began,
                         **_memory_row(server.pid, before)})
        finally:
            server.terminate()
            server.wait(30)
    return rows


def _memory_row(pid: int, before: int) -> dict:
    now = server_memory(pid)
    return {"rss_before_bytes": before, "peak_bytes": now["peak"], "rss_after_bytes": now["rss"]}


def main_uploads(args: argparse.Namespace) -> None:
    import fastapi
    import PIL
    import torch
    import uvicorn

    library = build_library(args.model, args.videos)
    rows = upload_storm(library, args.uploads, args.side, args.junk)
    mb = 1024 * 1024
    print(f"\nserve memory: model {args.model}, CPU ({os.cpu_count()} cores); the server's "
          "own VmRSS / VmHWM\n")
    print("| burst | statuses | s | RSS before MB | peak MB | RSS after MB |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        statuses = ", ".join(f"{k}: {v}" for k, v in row["statuses"].items())
        seconds = f"{row['seconds']:.1f}"
        before = f"{row['rss_before_bytes'] / mb:.0f}"
        print(f"| {row['burst']} | {statuses} | {seconds} | {before} "
              f"| {row['peak_bytes'] / mb:.0f} | {row['rss_after_bytes'] / mb:.0f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "serve_uploads.json"
    out.write_text(json.dumps({
        "benchmark": "serve_upload_memory",
        "machine": machine_info(torch=torch.__version__, fastapi=fastapi.__version__,
                                uvicorn=uvicorn.__version__, pillow=PIL.__version__),
        "model": args.model, "uploads": args.uploads, "side": args.side, "junk": args.junk,
        "rows": rows,
    }, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


MODES = {  # name: (TEXT_BATCH, TEXT_WINDOW_S)
    "one-at-a-time": (1, 0.0),
    "batched": (32, 0.0),
    "batched+window": (32, None),  # None: --window-ms
}


def padding_check(model, prompts: list[str]) -> dict:
    """Each prompt's row from one batch padded to its longest vs encoded alone."""
    import torch

    from videolens.web.service import encode_queries

    batched = np.concatenate(encode_queries(model, prompts))
    alone = np.concatenate([model.encode_text([p]).numpy() for p in prompts])
    lengths = [len(model.tokenizer(p)["input_ids"]) for p in prompts]
    cosine = (torch.from_numpy(batched) * torch.from_numpy(alone)).sum(-1)
    return {"prompts": len(prompts), "tokens_min": min(lengths), "tokens_max": max(lengths),
            "max_abs_diff": float(np.abs(batched - alone).max()),
            "min_cosine": float(cosine.min())}


def text_encoder_rates(model, repeats: int = 3) -> dict[str, float]:
    """Bare text encoder, prompts/s at batch 1, 8 and 32 (best of ``repeats``)."""
    from videolens.web.service import encode_queries

    rates = {}
    for batch in (1, 8, 32):
        best = float("inf")
        for r in range(repeats):
            prompts = [f"{QUERIES[i % len(QUERIES)]} t{r}x{i}" for i in range(batch)]
            began = time.perf_counter()
            for _ in range(max(1, 32 // batch)):
                encode_queries(model, prompts)
            best = min(best, (time.perf_counter() - began) / max(1, 32 // batch))
        rates[str(batch)] = batch / best
    return rates


def read_stats(path: Path) -> dict[str, int]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"batches": 0, "items": 0}


def main_batching(args: argparse.Namespace) -> None:
    import tempfile

    import fastapi
    import torch
    import uvicorn
    from bench_classify import load_bench_model

    levels = [int(level) for level in args.levels.split(",")]
    model = load_bench_model()
    prompts = [f"{q} {i}" for i, q in enumerate(QUERIES[:31])] + [
        "a person slowly walking a large brown dog along a very long beach at sunset while "
        "the waves roll in"]
    padding = padding_check(model, prompts)
    rates = text_encoder_rates(model)
    del model
    print(f"padding: {padding}\nbare text encoder prompts/s by batch: "
          f"{ {k: round(v, 1) for k, v in rates.items()} }", file=sys.stderr)

    library = build_library(args.model, args.videos)
    stats_dir = Path(tempfile.mkdtemp(prefix="bench-serve-stats-"))
    servers: dict[str, tuple[subprocess.Popen, int, Path]] = {}
    try:
        for mode, (batch, window) in MODES.items():
            port = free_port()
            stats = stats_dir / f"{mode}.json"
            window_s = args.window_ms / 1000 if window is None else window
            servers[mode] = (start_server(
                library, port, code=BATCHING_SERVER, wait=False,
                env={"BENCH_TEXT_BATCH": str(batch), "BENCH_TEXT_WINDOW_S": str(window_s),
                     "BENCH_STATS": str(stats)}), port, stats)
        for process, port, _ in servers.values():
            wait_ready(process, port)
        cells: dict[tuple[str, int], list[dict]] = {}
        order = list(MODES)
        for rep in range(args.reps):
            for clients in levels:
                # each repetition starts the rotation at another mode: no mode always runs
                # first (or last) after a level change
                for mode in order[rep % len(order):] + order[:rep % len(order)]:
                    process, port, stats = servers[mode]
                    before = read_stats(stats)
                    result = asyncio.run(load(f"http://127.0.0.1:{port}", clients,
                                              args.cell_seconds, args.max_requests,
                                              unique=f"r{rep}c{clients}#"))
                    time.sleep(0.5)  # the server's counters are written every 0.2 s
                    after = read_stats(stats)
                    result["batches"] = after["batches"] - before["batches"]
                    result["batched_items"] = after["items"] - before["items"]
                    cells.setdefault((mode, clients), []).append(result)
                    print(f"rep {rep} {mode:>15} {clients:>3} clients: "
                          f"{result['requests_per_s']:.1f} q/s", file=sys.stderr)
    finally:
        for process, _, _ in servers.values():
            process.terminate()
        for process, _, _ in servers.values():
            process.wait(30)
        shutil.rmtree(stats_dir, ignore_errors=True)

    rows = []
    for clients in levels:
        for mode in MODES:
            runs = cells[(mode, clients)]
            ms = np.concatenate([run["latencies_ms"] for run in runs])
            seconds = sum(run["seconds"] for run in runs)
            ok = sum(run["ok"] for run in runs)
            batches = sum(run["batches"] for run in runs)
            items = sum(run["batched_items"] for run in runs)
            rows.append({
                "mode": mode, "clients": clients, "requests": ok,
                "errors": sum(run["errors"] for run in runs), "seconds": seconds,
                "queries_per_s": ok / seconds,
                "per_rep_queries_per_s": [run["requests_per_s"] for run in runs],
                "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                "mean_batch": items / batches if batches else 1.0,
            })
    base = {row["clients"]: row for row in rows if row["mode"] == "one-at-a-time"}
    for row in rows:
        row["vs_one_at_a_time"] = row["queries_per_s"] / base[row["clients"]]["queries_per_s"]

    print(f"\nserve, text queries batched: {args.model}, GET /api/search (a new query each "
          f"request, top 10), {args.reps} x {args.cell_seconds:.0f} s per cell, interleaved, "
          f"CPU ({os.cpu_count()} cores, clients on the same machine); window "
          f"{args.window_ms:g} ms\n")
    print("| clients | mode | queries/s | vs one at a time | p50 ms | p99 ms | mean batch "
          "| errors |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['clients']} | {row['mode']} | {row['queries_per_s']:.1f} "
              f"| {row['vs_one_at_a_time']:.2f}x | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} "
              f"| {row['mean_batch']:.1f} | {row['errors']} |")
    print(f"\nbatch padded to its longest prompt vs alone ({padding['prompts']} prompts, "
          f"{padding['tokens_min']}-{padding['tokens_max']} tokens): max |diff| "
          f"{padding['max_abs_diff']:.2e}, min cosine {padding['min_cosine']:.7f}")
    print("bare text encoder, prompts/s: " + ", ".join(
        f"batch {k}: {v:.1f}" for k, v in rates.items()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "serve_batching.json"
    out.write_text(json.dumps({
        "benchmark": "serve_text_batching",
        "machine": machine_info(torch=torch.__version__, fastapi=fastapi.__version__,
                                uvicorn=uvicorn.__version__),
        "model": args.model, "videos": args.videos, "reps": args.reps,
        "cell_seconds": args.cell_seconds, "window_ms": args.window_ms,
        "modes": {mode: {"text_batch": batch,
                         "window_s": args.window_ms / 1000 if window is None else window}
                  for mode, (batch, window) in MODES.items()},
        "rows": rows, "padding": padding, "text_encoder_prompts_per_s": rates,
    }, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["clip-b32-random", "tiny"], default="clip-b32-random")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--scenario", choices=["search", "uploads", "batching"],
                        default="search")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--cell-seconds", type=float, default=8.0)
    parser.add_argument("--levels", default="1,8,50")
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--uploads", type=int, default=16)
    parser.add_argument("--side", type=int, default=6000)
    parser.add_argument("--junk", type=int, default=50)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VIDEOLENS_CACHE_DIR", "off")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if args.scenario == "uploads":
        main_uploads(args)
        return
    if args.scenario == "batching":
        main_batching(args)
        return
    import fastapi
    import torch
    import uvicorn

    library = build_library(args.model, args.videos)
    from videolens.library import Library

    with Library.open(library) as store:
        frames = sum(v.num_frames for v in store.videos())
    port = free_port()
    server = start_server(library, port)
    try:
        result = asyncio.run(load(f"http://127.0.0.1:{port}", args.clients, args.seconds,
                                  args.max_requests))
    finally:
        server.terminate()
        server.wait(30)

    print(f"\nserve: {args.clients} concurrent clients, GET /api/search (text, top 10) for "
          f"{result['seconds']:.0f} s, model {args.model}, library of {args.videos} videos / "
          f"{frames} frames, CPU ({os.cpu_count()} cores, clients on the same machine)\n")
    print("| model | clients | requests | errors | requests/s | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.model} | {args.clients} | {result['requests']} | {result['errors']} "
          f"| {result['requests_per_s']:.1f} | {result['p50_ms']:.0f} | {result['p99_ms']:.0f} "
          f"| {result['max_ms']:.0f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "serve.json"
    runs = {}
    if out.exists():
        try:
            runs = json.loads(out.read_text()).get("runs", {})
        except (OSError, ValueError):
            runs = {}
    result.pop("latencies_ms")
    runs[args.model] = {
        "clients": args.clients, "videos": args.videos, "frames": frames,
        "endpoint": "GET /api/search?q=...&top=10", "queries": len(QUERIES), **result,
    }
    out.write_text(json.dumps({
        "benchmark": "serve_search_load",
        "machine": machine_info(torch=torch.__version__, fastapi=fastapi.__version__,
                                uvicorn=uvicorn.__version__),
        "runs": runs,
    }, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
