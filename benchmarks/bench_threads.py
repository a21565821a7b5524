"""Thread count for `videolens serve`: one query's latency at 1 vs N threads, idle vs busy.

What a server does per text search, timed one request at a time: the text encode of one
query (random-init CLIP ViT-B/32 text tower, the real architecture, see bench_classify.py)
and an exact FAISS inner-product search of that row over ``--vectors`` 512-d vectors. Each
runs at every thread count in ``--threads`` (torch.set_num_threads,
faiss.omp_set_num_threads), first with the machine as it is ("idle"), then with
``--competitors`` busy-loop processes beside it ("busy": another job on the same machine),
interleaved round by round in the same run. Medians (p50) and p90 per cell.

The setting `videolens serve` uses (io/threads.py SERVE_THREADS) is the one whose worst
p50 over both conditions is lowest.

    python benchmarks/bench_threads.py [--threads 1,2] [--queries 30] [--rounds 3]
                                       [--competitors 1] [--vectors 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_classify import load_bench_model  # noqa: E402
from bench_serve import QUERIES  # noqa: E402
from machine import machine_info  # noqa: E402

BUSY = "while True: pass"


def timed(fn, items) -> list[float]:
    times = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--competitors", type=int, default=1)
    parser.add_argument("--vectors", type=int, default=100_000)
    args = parser.parse_args()
    import faiss
    import torch

    from videolens.io.threads import available_cpus

    counts = [int(t) for t in args.threads.split(",")]
    model = load_bench_model()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.vectors, model.embed_dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(model.embed_dim)
    index.add(vectors)
    queries = (QUERIES * (args.queries // len(QUERIES) + 1))[: args.queries]
    rows = {q: model.text_features([q]).numpy() for q in queries[:4]}  # warm-up
    row = next(iter(rows.values()))

    def encode(query: str) -> None:
        model.text_features([query])

    def search(_: int) -> None:
        index.search(row, 10)

    times: dict[tuple[str, str, int], list[float]] = {}
    load = os.getloadavg()
    for round_ in range(args.rounds):
        for condition in ("idle", "busy"):
            busy = [subprocess.Popen([sys.executable, "-c", BUSY])
                    for _ in range(args.competitors if condition == "busy" else 0)]
            try:
                time.sleep(0.5 if busy else 0.0)
                for count in counts:
                    torch.set_num_threads(count)
                    faiss.omp_set_num_threads(count)
                    times.setdefault(("encode", condition, count), []).extend(
                        timed(encode, queries))
                    times.setdefault(("search", condition, count), []).extend(
                        timed(search, range(args.queries)))
            finally:
                for process in busy:
                    process.kill()
                    process.wait()
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)

    def cell(step: str, condition: str, count: int) -> dict:
        values = sorted(times[(step, condition, count)])
        return {"p50_ms": statistics.median(values),
                "p90_ms": values[int(0.9 * (len(values) - 1))], "n": len(values)}

    table = {f"{step}/{condition}/{count}": cell(step, condition, count)
             for step in ("encode", "search") for condition in ("idle", "busy")
             for count in counts}

    def worst(count: int) -> float:
        return max(table[f"{step}/{condition}/{count}"]["p50_ms"]
                   for step in ("encode",) for condition in ("idle", "busy"))

    pick = min(counts, key=worst)
    print(f"\none query on a {os.cpu_count()}-CPU machine ({available_cpus()} available), "
          f"load average before {load[0]:.2f}; busy = {args.competitors} busy-loop "
          f"process(es); {args.rounds} interleaved rounds x {args.queries} queries\n")
    print("| step | threads | idle p50 | idle p90 | busy p50 | busy p90 |")
    print("|---|---|---|---|---|---|")
    for step in ("encode", "search"):
        for count in counts:
            idle, busy = table[f"{step}/idle/{count}"], table[f"{step}/busy/{count}"]
            print(f"| {step} | {count} | {idle['p50_ms']:.1f} ms | {idle['p90_ms']:.1f} ms "
                  f"| {busy['p50_ms']:.1f} ms | {busy['p90_ms']:.1f} ms |")
    print(f"\nlowest worst-case encode p50: {pick} thread(s)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "threads.json"
    out.write_text(json.dumps({
        "benchmark": "serve_threads",
        "machine": {**machine_info(torch=torch.__version__, faiss=faiss.__version__),
                    "available_cpus": available_cpus(), "load_average_before": load},
        "model": "clip-vit-b32 text tower (random init)", "vectors": args.vectors,
        "competitors": args.competitors, "rounds": args.rounds, "queries": args.queries,
        "results": table, "pick": pick,
    }, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
