"""Peak memory of `videolens classify` and `videolens index` on ordinary, 4K and 8K videos,
and of `videolens serve` under 16 concurrent 4096x4096 image uploads.

Each command runs as a child process; a sampler adds up the resident memory of the child
and all its descendants (decode workers, the forkserver) every 20 ms, and the table reports
the peak of that sum. The model is a randomly initialised CLIP ViT-B/32 (the real shape, so
the real weights' memory) saved with save_pretrained and loaded through --model FOLDER.

    python benchmarks/bench_memory.py            # all rows
    python benchmarks/bench_memory.py --quick    # skip 8K and the 16000x16000 file
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_classify import DATA, make_clip_b32  # noqa: E402
from machine import machine_info  # noqa: E402

RESULTS = HERE / "results" / "memory.json"
TARGET_GB = 1.5


def make_video(path: Path, width: int, height: int, seconds: float, fps: int) -> Path:
    """A moving gradient with a bouncing square (compresses well even at 8K)."""
    import av

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(1, width - 1)), (y * 255 // max(1, height - 1)),
                     np.full_like(x, 96)], axis=-1).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(2 * fps)}
        side = max(8, min(width, height) // 6)
        for i in range(max(1, int(seconds * fps))):
            frame = base.copy()
            top = (i * side // 3) % max(1, height - side)
            left = (i * side // 2) % max(1, width - side)
            frame[top:top + side, left:left + side] = (230, 40, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and every descendant (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            statm = Path(f"/proc/{entry}/statm").read_text().split()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = int(statm[1]) * page
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo.extend(children.get(current, ()))
    return total


def peak_of(command: list[str], env: dict, timeout: float = 1800) -> dict:
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(child.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child.communicate(timeout=timeout)
    done.set()
    sampler.join()
    last = (stderr.strip().splitlines() or [""])[-1]
    return {"peak_rss_gb": round(peak / 2**30, 3), "exit": child.returncode,
            "seconds": round(time.perf_counter() - started, 1), "stderr_tail": last[:300]}


def serve_uploads(model: str, env: dict, clients: int = 16) -> dict:
    """Index one small video, start `videolens serve`, send ``clients`` concurrent 4096x4096
    PNG uploads to POST /api/search, and report the server tree's peak RSS. (6000x6000 is
    refused from its header now, before any pixel is decoded; 4096x4096 is the largest size
    the server decodes, so it is the worst case.)"""
    import io
    import socket
    import urllib.request

    from PIL import Image

    work = Path(tempfile.mkdtemp(prefix="bench-memory-serve-"))
    small = make_video(DATA / "mem_640x360.mp4", 640, 360, 10, 10)
    library = work / "lib"
    subprocess.run([sys.executable, "-m", "videolens", "index", str(small), "--library",
                    str(library), "--model", model, "--device", "cpu", "--quiet"], env=env,
                   check=True, capture_output=True)
    buffer = io.BytesIO()
    Image.new("RGB", (4096, 4096), (120, 30, 200)).save(buffer, format="PNG")
    png = buffer.getvalue()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "videolens", "serve", "--library",
                               str(library), "--port", str(port), "--device", "cpu"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{base}/api/videos", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        idle = tree_rss(server.pid)
        peak = idle
        statuses: list[int] = []
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(server.pid))
                time.sleep(0.02)

        def upload() -> None:
            boundary = "benchmemoryboundary"
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                    f"filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
            body += png + f"\r\n--{boundary}--\r\n".encode()
            request = urllib.request.Request(
                f"{base}/api/search", data=body, method="POST",
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as err:
                statuses.append(err.code)
            except OSError:
                statuses.append(-1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        threads = [threading.Thread(target=upload) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(1.0)
        after = tree_rss(server.pid)
        done.set()
        sampler.join()
    finally:
        server.terminate()
        server.wait(30)
    counts = {str(code): statuses.count(code) for code in sorted(set(statuses))}
    return {"peak_rss_gb": round(peak / 2**30, 3), "idle_rss_gb": round(idle / 2**30, 3),
            "after_rss_gb": round(after / 2**30, 3), "statuses": counts,
            "png_bytes": len(png)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip 8K and 16000x16000")
    parser.add_argument("--no-serve", action="store_true", help="skip the serve row")
    parser.add_argument("--serve-only", action="store_true", help="only the serve row")
    parser.add_argument("--inputs", default="", help="only inputs whose name contains this")
    args = parser.parse_args()

    model = str(make_clip_b32(DATA / "clip-b32-random"))
    env = {**os.environ, "VIDEOLENS_CACHE_DIR": "off", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(HERE.parent / "src")}
    if args.serve_only:
        args.quick = True
    inputs = {"640x360, 60 s": make_video(DATA / "mem_640x360_60s.mp4", 640, 360, 60, 10),
              "4K, 70 s": make_video(DATA / "mem_3840x2160_70s.mp4", 3840, 2160, 70, 2)}
    if not args.quick:
        inputs["8K, 20 s"] = make_video(DATA / "mem_7680x4320_20s.mp4", 7680, 4320, 20, 1)
        inputs["16000x16000, 2 frames"] = make_video(DATA / "mem_16000.mp4", 16000, 16000, 2, 1)
    rows = []
    inputs = {name: path for name, path in inputs.items() if args.inputs in name}
    for name, path in ({} if args.serve_only else inputs).items():
        for verb, extra in (("classify", ["--labels", "a red square, a blue sky"]),
                            ("classify --frames 256", ["--labels", "a red square, a blue sky",
                                                       "--frames", "256"]),
                            ("index", ["--library", tempfile.mkdtemp(prefix="bench-mem-")])):
            command = [sys.executable, "-m", "videolens", verb.split()[0], str(path), *extra,
                       "--model", model, "--device", "cpu", "--quiet"]
            result = peak_of(command, env)
            rows.append({"input": name, "command": verb, **result})
            print(f"{name:<24} {verb:<22} peak {result['peak_rss_gb']:6.2f} GB  "
                  f"exit {result['exit']}  {result['seconds']:6.1f} s  "
                  f"{result['stderr_tail'][:80]}",
                  flush=True)
    serve = None if args.no_serve else serve_uploads(model, env)
    if serve:
        print(f"serve, 16 concurrent 4096x4096 PNG uploads: peak {serve['peak_rss_gb']} GB "
              f"(idle {serve['idle_rss_gb']} GB, after {serve['after_rss_gb']} GB), "
              f"statuses {serve['statuses']}")

    print(f"\n| input | command | peak RSS (process tree) | within {TARGET_GB} GB | exit |")
    print("|---|---|---|---|---|")
    for row in rows:
        ok = "yes" if row["peak_rss_gb"] <= TARGET_GB else "**no**"
        print(f"| {row['input']} | {row['command']} | {row['peak_rss_gb']:.2f} GB | {ok} | "
              f"{row['exit']} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if RESULTS.exists() and (args.inputs or args.serve_only or args.no_serve):
        # a partial rerun replaces its own rows and keeps the others
        earlier = json.loads(RESULTS.read_text())
        fresh = {(r["input"], r["command"]) for r in rows}
        rows = [r for r in earlier.get("rows", []) if (r["input"], r["command"]) not in fresh
                ] + rows
        serve = serve or earlier.get("serve")
    RESULTS.write_text(json.dumps({"machine": machine_info(), "model": "CLIP ViT-B/32 random",
                                   "target_gb": TARGET_GB, "rows": rows, "serve": serve},
                                  indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
