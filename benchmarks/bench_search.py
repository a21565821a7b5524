"""Library search: exact vs approximate latency, recall, build time and disk size.

Data: synthetic 512-d unit vectors shaped like frame embeddings of videos. 3000 random
centres on the sphere stand for kinds of scene; a video (600 frames, 1 frame/s) is a run of
scenes of 30-120 consecutive frames; a scene is ``unit(centre + 0.5 n / sqrt(D))`` and its
frames ``unit(scene + 0.3 n / sqrt(D))`` (n standard normal). Measured cosines are printed:
frames of one scene ~0.92, frames of one centre (cluster) ~0.73, unrelated frames ~0.
Queries are held-out frames of new scenes drawn the same way (never copies of stored rows).

Libraries of 10k, 100k and 1M vectors are filled through the real ``LibraryWriter.add_video``
(one transaction per 600-frame video), then ``refresh_vectors()`` builds the cache (and, at
or above ``ANN_MIN_VECTORS``, the IVF-SQ8 index; below it one is forced so both paths are
measured at every size). Each query is searched alone, top-10, after 5 warm-up queries.
recall@10 = overlap of the approximate top-10 with the exact top-10 (frames identified by
video id and timestamp). Then the cost of the library's safety checks on the closed
library: ``Library.open`` (with ``PRAGMA quick_check`` when the file is at most
``QUICK_CHECK_OPEN_MAX_BYTES``), the raw quick_check, loading and validating the vector cache
(checksums of ids/offsets/timestamps, sampled rows against SQLite), and a full
``videolens library check``; medians of 5 (check: one run). Prints markdown tables; writes
benchmarks/results/search.json (or ``--out``).

    python benchmarks/bench_search.py [--sizes 10000 100000 1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "src"))

from videolens.library import Library  # noqa: E402
from videolens.library import store as library_store  # noqa: E402
from videolens.library.repair import check_library  # noqa: E402
from videolens.library.vectors import ANN_MIN_VECTORS  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import machine_info  # noqa: E402

DIM = 512
CENTRES = 3000
FRAMES_PER_VIDEO = 600
SCENE_SPREAD, FRAME_SPREAD = 0.5, 0.3
TARGET_P50_MS, TARGET_RECALL = 50.0, 0.95
MODEL = {"name": "synthetic-512", "fingerprint": "synthetic", "embed_dim": DIM, "kind": "softmax"}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class Mixture:
    """Scene-structured clustered unit vectors (see the module docstring)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.centres = unit(self.rng.standard_normal((CENTRES, DIM), dtype=np.float32))

    def scene(self, n: int, centre: int | None = None) -> np.ndarray:
        """(n, D) frames of one new scene."""
        if centre is None:
            centre = int(self.rng.integers(CENTRES))
        noise = self.rng.standard_normal(DIM, dtype=np.float32)
        scene = unit(self.centres[centre] + SCENE_SPREAD * noise / np.sqrt(DIM))
        noise = self.rng.standard_normal((n, DIM), dtype=np.float32)
        return unit(scene + FRAME_SPREAD * noise / np.sqrt(DIM))

    def video(self, n: int) -> np.ndarray:
        """(n, D) frames: consecutive scenes of 30-120 frames."""
        parts, total = [], 0
        while total < n:
            length = int(min(n - total, self.rng.integers(30, 121)))
            parts.append(self.scene(length))
            total += length
        return np.concatenate(parts)

    def queries(self, n: int) -> np.ndarray:
        return np.concatenate([self.scene(1) for _ in range(n)])

    def cosines(self) -> dict:
        same_scene = self.scene(2)
        same_centre = np.concatenate([self.scene(1, 7) for _ in range(200)])
        other = self.queries(400)
        pairs = same_centre @ same_centre.T
        return {
            "same_scene": round(float(same_scene[0] @ same_scene[1]), 3),
            "same_cluster_mean": round(float((pairs.sum() - 200) / (200 * 199)), 3),
            "unrelated_mean": round(float((other[:200] * other[200:]).sum(1).mean()), 3),
        }


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed_queries(library: Library, queries: np.ndarray, **kwargs) -> tuple[list, np.ndarray]:
    """Search each query alone; returns (hits per query, seconds per query)."""
    for q in queries[:5]:  # warm-up: page cache, faiss and BLAS thread pools
        library.search(q, 10, **kwargs)
    hits, seconds = [], []
    for q in queries:
        started = time.perf_counter()
        hits.append(library.search(q, 10, **kwargs)[0])
        seconds.append(time.perf_counter() - started)
    return hits, np.array(seconds)


def recall_at_10(approx: list, exact: list) -> float:
    return float(np.mean([
        len({(h.video_id, h.timestamp) for h in a} & {(h.video_id, h.timestamp) for h in e}) / 10
        for a, e in zip(approx, exact, strict=True)]))


def ms(seconds: np.ndarray, q: float) -> float:
    return round(float(np.percentile(seconds, q)) * 1e3, 2)


def run_size(size: int, num_queries: int, workdir: Path, nprobe_sweep: bool) -> dict:
    mixture = Mixture(seed=size)
    root = workdir / f"lib-{size}"
    shutil.rmtree(root, ignore_errors=True)
    library = Library.create(root, MODEL, {"kind": "rate", "fps": 1.0})
    library.vectors.auto_refresh = False

    # ingest: generation is timed apart from the store's own work
    store_seconds, generate_seconds, added = 0.0, 0.0, 0
    with library.writer() as writer:
        video = 0
        while added < size:
            n = min(FRAMES_PER_VIDEO, size - added)
            started = time.perf_counter()
            vectors = mixture.video(n)
            generate_seconds += time.perf_counter() - started
            started = time.perf_counter()
            writer.add_video(
                {"path": f"/bench/{size}/video_{video:05d}.mp4", "size": n, "mtime_ns": 0,
                 "fingerprint": "-", "duration": float(n), "fps": 30.0, "width": 640,
                 "height": 360, "num_frames": n, "indexed_at": time.time()},
                np.arange(n, dtype=np.float64) + 0.5, vectors)
            store_seconds += time.perf_counter() - started
            added += n
            video += 1
    sqlite_bytes = dir_bytes(root)  # before any cache: library.sqlite (+ WAL)
    started = time.perf_counter()
    library.refresh_vectors(force_ann=False)  # the float32 cache alone
    cache_seconds = time.perf_counter() - started
    queries = mixture.queries(num_queries)
    exact_hits, exact_s = timed_queries(library, queries, exact=True)

    started = time.perf_counter()
    library.refresh_vectors(force_ann=True)
    refresh_ann_seconds = time.perf_counter() - started
    manifest = json.loads((root / "vectors" / "manifest.json").read_text())
    approx_hits, approx_s = timed_queries(library, queries, exact=False)
    auto_hits, auto_s = timed_queries(library, queries)
    generation = root / "vectors" / manifest["generation"]
    result = {
        "vectors": size,
        "videos": video,
        "ingest": {"store_seconds": round(store_seconds, 2),
                   "vectors_per_s": round(size / store_seconds),
                   "generate_seconds_excluded": round(generate_seconds, 2)},
        "cache_build_seconds": round(cache_seconds, 2),
        "ann": {**manifest["ann"], "refresh_seconds_with_ann": round(refresh_ann_seconds, 2)},
        "auto_uses_ann": size >= ANN_MIN_VECTORS,
        "exact_ms": {"p50": ms(exact_s, 50), "p99": ms(exact_s, 99)},
        "approx_ms": {"p50": ms(approx_s, 50), "p99": ms(approx_s, 99)},
        "auto_ms": {"p50": ms(auto_s, 50), "p99": ms(auto_s, 99)},
        "recall_at_10": round(recall_at_10(approx_hits, exact_hits), 4),
        "auto_recall_at_10": round(recall_at_10(auto_hits, exact_hits), 4),
        "disk_bytes": {
            "sqlite": sqlite_bytes,
            "vectors_npy": (generation / "vectors.npy").stat().st_size,
            "ann_index": (generation / "ann.faiss").stat().st_size,
            "total": dir_bytes(root),
        },
    }
    if nprobe_sweep:
        sweep = []
        cache = library.vectors.load()
        original = cache.manifest["ann"]["nprobe"]
        for nprobe in sorted({8, 16, 32, 64, original, 128, 256}):
            cache.manifest["ann"]["nprobe"] = nprobe
            hits, seconds = timed_queries(library, queries, exact=False)
            sweep.append({"nprobe": nprobe, "p50_ms": ms(seconds, 50), "p99_ms": ms(seconds, 99),
                          "recall_at_10": round(recall_at_10(hits, exact_hits), 4)})
        cache.manifest["ann"]["nprobe"] = original
        result["nprobe_sweep"] = sweep
    library.close()
    # a one-shot process (the CLI) pays for opening: measure open + first query, warm cache
    started = time.perf_counter()
    with Library.open(root) as reopened:
        reopened.vectors.auto_refresh = False
        reopened.search(queries[0], 10)
    result["open_and_first_query_ms"] = round((time.perf_counter() - started) * 1e3, 1)
    result["safety"] = safety_costs(root)
    shutil.rmtree(root, ignore_errors=True)
    return result


def _median_ms(action, repeats: int = 5) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return round(float(np.median(seconds)) * 1e3, 2)


def safety_costs(root: Path) -> dict:
    """What the damage checks cost on a closed library (warm page cache)."""
    db_path = root / "library.sqlite"

    def quick_check() -> None:
        conn = sqlite3.connect(db_path)
        conn.execute("PRAGMA quick_check").fetchall()
        conn.close()

    def load_cache() -> None:
        with Library.open(root) as library:
            assert library.vectors.load() is not None

    started = time.perf_counter()
    report = check_library(root)
    check_seconds = time.perf_counter() - started
    assert report.ok, report.to_json()
    return {
        "db_bytes": db_path.stat().st_size,
        "open_quick_checks": db_path.stat().st_size <= library_store.QUICK_CHECK_OPEN_MAX_BYTES,
        "open_ms": _median_ms(lambda: Library.open(root).close()),
        "quick_check_ms": _median_ms(quick_check),
        "open_and_load_cache_ms": _median_ms(load_cache),
        "check_seconds": round(check_seconds, 2),
    }


def machine() -> dict:
    import faiss

    return machine_info(numpy=np.__version__, faiss=faiss.__version__,
                        sqlite=sqlite3.sqlite_version)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the libraries are built (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=RESULTS / "search.json",
                        help="results JSON (default: benchmarks/results/search.json)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="videolens-bench-search-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        print(f"... {size} vectors", file=sys.stderr, flush=True)
        results.append(run_size(size, args.queries, workdir, nprobe_sweep=size == max(args.sizes)))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    report = {
        "benchmark": "search",
        "data": {"dim": DIM, "centres": CENTRES, "frames_per_video": FRAMES_PER_VIDEO,
                 "scene_spread": SCENE_SPREAD, "frame_spread": FRAME_SPREAD,
                 "cosines": Mixture(1).cosines(), "queries": args.queries, "k": 10},
        "thresholds": {"ann_min_vectors": ANN_MIN_VECTORS},
        "target": {"p50_ms_at_1M": TARGET_P50_MS, "recall_at_10": TARGET_RECALL},
        "machine": machine(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print("| vectors | exact p50 / p99 | approx p50 / p99 | recall@10 | default path | "
          "cache build | ANN build (nlist, nprobe) | disk: sqlite + npy + index |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        gb = {k: v / 1e9 for k, v in r["disk_bytes"].items()}
        print(f"| {r['vectors']:,} | {r['exact_ms']['p50']} / {r['exact_ms']['p99']} ms "
              f"| {r['approx_ms']['p50']} / {r['approx_ms']['p99']} ms | {r['recall_at_10']:.3f} "
              f"| {'ANN' if r['auto_uses_ann'] else 'exact'} {r['auto_ms']['p50']} ms "
              f"| {r['cache_build_seconds']} s "
              f"| {r['ann']['build_seconds']} s ({r['ann']['nlist']}, {r['ann']['nprobe']}) "
              f"| {gb['sqlite']:.3f} + {gb['vectors_npy']:.3f} + {gb['ann_index']:.3f} GB |")
    if results and "nprobe_sweep" in results[-1]:
        print(f"\nnprobe sweep at {results[-1]['vectors']:,} vectors:")
        print("| nprobe | p50 | p99 | recall@10 |\n|---|---|---|---|")
        for row in results[-1]["nprobe_sweep"]:
            print(f"| {row['nprobe']} | {row['p50_ms']} ms | {row['p99_ms']} ms "
                  f"| {row['recall_at_10']:.3f} |")
    print("\n| vectors | library.sqlite | open (quick_check?) | quick_check | open + load and "
          "validate cache | library check |\n|---|---|---|---|---|---|")
    for r in results:
        c = r["safety"]
        print(f"| {r['vectors']:,} | {c['db_bytes'] / 1e6:.0f} MB | {c['open_ms']} ms "
              f"({'yes' if c['open_quick_checks'] else 'no'}) | {c['quick_check_ms']} ms "
              f"| {c['open_and_load_cache_ms']} ms | {c['check_seconds']} s |")
    print(f"\ndata cosines: {report['data']['cosines']}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
