"""Library search at 100k-10M vectors: build time, peak memory, disk, latency, recall, refresh.

Data: synthetic 512-d unit vectors shaped like frame embeddings of videos. 3000 random
centres on the sphere stand for kinds of scene; a video (600 frames, 1 frame/s) is a run of
scenes of 30-120 consecutive frames; a scene is ``unit(centre + 0.5 n / sqrt(D))`` and its
frames ``unit(scene + 0.3 n / sqrt(D))`` (n standard normal). Measured cosines are printed:
frames of one scene ~0.92, frames of one centre ~0.73, unrelated frames ~0. Videos are
generated one at a time (a 10M library is never in memory) and written through the real
``LibraryWriter.add_video`` (one transaction per video).

Two kinds of held-out query (never copies of stored rows): *image-like*, a frame of a new
scene (``unit(scene + 0.3 n)``), and *text-like*, ``unit(0.35 scene + 0.8 g + 0.45 n)`` with
``g`` one direction shared by all text queries: CLIP-family text embeddings sit apart from
frame embeddings (the modality gap), at cosine ~0.3 from their best frames and close to none.

Each phase runs in its own process so its peak RSS is its own (``ru_maxrss``):

* ``build``: ``refresh_vectors()`` from SQLite (the default path: exact below
  ``ANN_MIN_VECTORS``, IVF-SQ8 below ``PQ_MIN_VECTORS``, IVF-PQ above, nprobe tuned).
* ``truth``: exact top-10 of every query (batched).
* ``search``: each query alone, top-10, after 5 warm-up queries: p50 / p99 and recall@10 per
  kind against the truth; resident memory (VmRSS) after the queries.
* ``refresh``: 100 videos (60k frames) added, then ``refresh_vectors()`` (incremental).

``--before REV`` also runs the benchmark script and library of git revision REV (the code
before this change: float32 cache, full rebuild on every refresh) at 1M vectors in the same
run, for the before/after table. Writes benchmarks/results/search.json (or ``--out``).

    python benchmarks/bench_search.py [--sizes 100000 1000000 10000000] [--queries 200]
        [--before REV] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "src"))

from videolens.library import Library  # noqa: E402
from videolens.library import ann as library_ann  # noqa: E402
from videolens.library.vectors import ANN_MIN_VECTORS  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import machine_info  # noqa: E402

DIM = 512
CENTRES = 3000
FRAMES_PER_VIDEO = 600
SCENE_SPREAD, FRAME_SPREAD = 0.5, 0.3
ADDED_VIDEOS = 100
MODEL = {"name": "synthetic-512", "fingerprint": "synthetic", "embed_dim": DIM, "kind": "softmax"}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class Mixture:
    """Scene-structured clustered unit vectors (see the module docstring)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.centres = unit(np.random.default_rng(0).standard_normal((CENTRES, DIM),
                                                                      dtype=np.float32))
        self.gap = unit(np.random.default_rng(1).standard_normal(DIM, dtype=np.float32))

    def scene_centre(self, centre: int | None = None) -> np.ndarray:
        if centre is None:
            centre = int(self.rng.integers(CENTRES))
        noise = self.rng.standard_normal(DIM, dtype=np.float32)
        return unit(self.centres[centre] + SCENE_SPREAD * noise / np.sqrt(DIM))

    def scene(self, n: int, centre: int | None = None) -> np.ndarray:
        """(n, D) frames of one new scene."""
        scene = self.scene_centre(centre)
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

    def image_queries(self, n: int) -> np.ndarray:
        return np.concatenate([self.scene(1) for _ in range(n)])

    def text_queries(self, n: int, scenes: np.ndarray | None = None) -> np.ndarray:
        if scenes is None:
            scenes = np.stack([self.scene_centre() for _ in range(n)])
        noise = self.rng.standard_normal((n, DIM), dtype=np.float32) / np.sqrt(DIM)
        return unit(0.35 * scenes + 0.8 * self.gap + 0.45 * noise)

    def cosines(self) -> dict:
        same_scene = self.scene(2)
        same_centre = np.concatenate([self.scene(1, 7) for _ in range(200)])
        other = self.image_queries(400)
        pairs = same_centre @ same_centre.T
        scenes = np.stack([self.scene_centre() for _ in range(50)])
        text = self.text_queries(50, scenes)
        frames = unit(scenes + FRAME_SPREAD * self.rng.standard_normal(
            scenes.shape, dtype=np.float32) / np.sqrt(DIM))
        return {
            "same_scene": round(float(same_scene[0] @ same_scene[1]), 3),
            "same_cluster_mean": round(float((pairs.sum() - 200) / (200 * 199)), 3),
            "unrelated_mean": round(float((other[:200] * other[200:]).sum(1).mean()), 3),
            "text_to_a_frame_of_its_scene": round(float((text * frames).sum(1).mean()), 3),
            "text_to_text": round(float((text[:25] * text[25:]).sum(1).mean()), 3),
        }


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    return rss_parts()["rss"]


def rss_parts() -> dict:
    """This process's resident memory now: all, anonymous (heap: the process's own), and
    file-backed (mapped cache files: page cache the kernel can drop and re-read)."""
    fields = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file"}
    parts = dict.fromkeys(fields.values(), 0)
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0] + ":"
        if key in fields:
            parts[fields[key]] = int(line.split()[1]) * 1024
    return parts


def add_videos(library: Library, mixture: Mixture, frames: int, first: int) -> float:
    """Add videos of FRAMES_PER_VIDEO frames until ``frames`` are added; store seconds."""
    store_seconds, added, video = 0.0, 0, first
    with library.writer() as writer:
        while added < frames:
            n = min(FRAMES_PER_VIDEO, frames - added)
            vectors = mixture.video(n)
            started = time.perf_counter()
            writer.add_video(
                {"path": f"/bench/video_{video:06d}.mp4", "size": n, "mtime_ns": 0,
                 "fingerprint": "-", "duration": float(n), "fps": 30.0, "width": 640,
                 "height": 360, "num_frames": n, "indexed_at": time.time()},
                np.arange(n, dtype=np.float64) + 0.5, vectors)
            store_seconds += time.perf_counter() - started
            added += n
            video += 1
            if video % 1000 == 0:
                print(f"    {added:,} vectors stored", file=sys.stderr, flush=True)
    return store_seconds


def ms(seconds: np.ndarray, q: float) -> float:
    return round(float(np.percentile(seconds, q)) * 1e3, 2)


def as_keys(hits: list) -> list[set]:
    return [{(h.video_id, h.timestamp) for h in row} for row in hits]


# ------------------------------------------------------------------ phases (subprocesses)


def phase_build(root: Path, args) -> dict:
    with Library.open(root) as library:
        library.vectors.auto_refresh = False
        started = time.perf_counter()
        library.refresh_vectors()
        seconds = time.perf_counter() - started
        manifest = json.loads((root / "vectors" / "manifest.json").read_text())
    return {"seconds": round(seconds, 2), "peak_rss_bytes": peak_rss_bytes(),
            "ann": manifest["ann"], "segments": len(manifest["segments"])}


def phase_truth(root: Path, args) -> dict:
    queries = np.load(args.queries_file)
    with Library.open(root) as library:
        library.vectors.auto_refresh = False
        started = time.perf_counter()
        hits = []
        for start in range(0, len(queries), 100):
            hits += library.search(queries[start : start + 100], 10, exact=True)
        seconds = time.perf_counter() - started
    Path(args.truth_file).write_text(json.dumps(
        [[[h.video_id, h.timestamp] for h in row] for row in hits]))
    return {"seconds": round(seconds, 2), "ms_per_query": round(seconds * 1e3 / len(queries), 2),
            "peak_rss_bytes": peak_rss_bytes()}


def phase_search(root: Path, args) -> dict:
    queries = np.load(args.queries_file)
    kinds = json.loads(Path(args.kinds_file).read_text())
    truth = [{(v, t) for v, t in row} for row in json.loads(Path(args.truth_file).read_text())]
    result: dict = {}
    with Library.open(root) as library:
        library.vectors.auto_refresh = False
        started = time.perf_counter()
        library.vectors.load()
        result["open_and_load_ms"] = round((time.perf_counter() - started) * 1e3, 1)
        modes = [("default", {})]
        if args.exact_latency:
            modes.append(("exact", {"exact": True}))
        for mode, options in modes:
            for kind in ("image", "text"):
                picked = [i for i, k in enumerate(kinds) if k == kind]
                if mode == "exact":
                    picked = picked[:20]
                for i in picked[:5]:  # warm-up: page cache, faiss and BLAS thread pools
                    library.search(queries[i], 10, query_kind=kind, **options)
                seconds, found = [], []
                for i in picked:
                    begun = time.perf_counter()
                    found.append(library.search(queries[i], 10, query_kind=kind, **options)[0])
                    seconds.append(time.perf_counter() - begun)
                seconds = np.array(seconds)
                recall = np.mean([len(f & truth[i]) / 10
                                  for f, i in zip(as_keys(found), picked, strict=True)])
                # resident memory once this kind of query has run (image first, so its
                # figure is what an image-only workload holds)
                result[f"{mode}_{kind}"] = {"p50_ms": ms(seconds, 50), "p99_ms": ms(seconds, 99),
                                            "recall_at_10": round(float(recall), 4),
                                            "rss_after": rss_parts()}
        result["rss_bytes_after_queries"] = current_rss_bytes()
    result["peak_rss_bytes"] = peak_rss_bytes()
    return result


def phase_refresh(root: Path, args) -> dict:
    with Library.open(root) as library:
        library.vectors.auto_refresh = False
        library.vectors.load()  # a long-lived process (serve, index) has the cache open
        first = len(library.videos())
        store_seconds = add_videos(library, Mixture(seed=first + 7),
                                   ADDED_VIDEOS * FRAMES_PER_VIDEO, first)
        started = time.perf_counter()
        library.refresh_vectors()
        seconds = time.perf_counter() - started
        last = library.vectors.last_refresh
    return {"videos_added": ADDED_VIDEOS, "frames_added": ADDED_VIDEOS * FRAMES_PER_VIDEO,
            "store_seconds": round(store_seconds, 2), "refresh_seconds": round(seconds, 3),
            "kind": last["kind"] if last else None, "peak_rss_bytes": peak_rss_bytes()}


PHASES = {"build": phase_build, "truth": phase_truth, "search": phase_search,
          "refresh": phase_refresh}


def run_phase(name: str, root: Path, **files) -> dict:
    command = [sys.executable, __file__, "--phase", name, "--root", str(root)]
    for key, value in files.items():
        if value is True:
            command.append(f"--{key.replace('_', '-')}")
        elif value is not None and value is not False:
            command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"phase {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ one size


def run_size(size: int, num_queries: int, workdir: Path) -> dict:
    print(f"... {size:,} vectors", file=sys.stderr, flush=True)
    root = workdir / f"lib-{size}"
    shutil.rmtree(root, ignore_errors=True)
    mixture = Mixture(seed=size)
    library = Library.create(root, MODEL, {"kind": "rate", "fps": 1.0})
    library.vectors.auto_refresh = False
    started = time.perf_counter()
    store_seconds = add_videos(library, mixture, size, 0)
    ingest_seconds = time.perf_counter() - started
    library.close()
    sqlite_bytes = dir_bytes(root)

    queries = np.concatenate([mixture.image_queries(num_queries),
                              mixture.text_queries(num_queries)])
    kinds = ["image"] * num_queries + ["text"] * num_queries
    files = {"queries_file": workdir / "queries.npy", "kinds_file": workdir / "kinds.json",
             "truth_file": workdir / "truth.json"}
    np.save(files["queries_file"], queries)
    files["kinds_file"].write_text(json.dumps(kinds))

    print("    build", file=sys.stderr, flush=True)
    build = run_phase("build", root)
    cache_bytes = dir_bytes(root / "vectors")
    print("    truth", file=sys.stderr, flush=True)
    truth = run_phase("truth", root, **files)
    print("    search", file=sys.stderr, flush=True)
    search = run_phase("search", root, **files, exact_latency=size <= 1_000_000)
    print("    refresh (+100 videos)", file=sys.stderr, flush=True)
    refresh = run_phase("refresh", root)
    # after the incremental refresh: recall of the default path against the new truth
    truth_after = run_phase("truth", root, **files)
    search_after = run_phase("search", root, **files)
    float16_store = size * DIM * 2
    ann_meta = build["ann"] or {}
    tuning = ann_meta.get("tuning") or {}
    result = {
        "vectors": size,
        "ingest": {"seconds": round(ingest_seconds, 1), "store_seconds": round(store_seconds, 1)},
        "build": {"seconds": build["seconds"], "peak_rss_bytes": build["peak_rss_bytes"],
                  "ann_kind": ann_meta.get("kind"), "nlist": ann_meta.get("nlist"),
                  "nprobe": tuning.get("nprobe"), "tuning_seconds": tuning.get("seconds"),
                  "tuning_table": tuning.get("table")},
        "disk_bytes": {"sqlite": sqlite_bytes, "cache": cache_bytes,
                       "float16_store": float16_store,
                       "cache_over_float16_store": round(cache_bytes / float16_store, 3)},
        "exact_batched_ms_per_query": truth["ms_per_query"],
        "search": search,
        "refresh_100_videos": refresh,
        "after_refresh": {k: v for k, v in search_after.items() if k.startswith("default_")},
        "exact_batched_ms_per_query_after_refresh": truth_after["ms_per_query"],
    }
    print(json.dumps(result), file=sys.stderr, flush=True)
    shutil.rmtree(root, ignore_errors=True)
    return result


def run_before(revision: str, workdir: Path, num_queries: int) -> dict:
    """The old benchmark script with the old library, at 1M vectors, in a subprocess."""
    tree = workdir / "before"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src", "benchmarks"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    out = workdir / "before.json"
    started = time.perf_counter()
    subprocess.run([sys.executable, str(tree / "benchmarks" / "bench_search.py"), "--sizes",
                    "1000000", "--queries", str(num_queries), "--workdir", str(workdir / "b"),
                    "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    row = report["results"][0]
    return {"revision": revision, "vectors": row["vectors"],
            "full_refresh_seconds": row["ann"]["refresh_seconds_with_ann"],
            "cache_build_seconds": row["cache_build_seconds"],
            "ann": {k: row["ann"][k] for k in ("kind", "nlist", "nprobe")},
            "default_ms": row["auto_ms"], "recall_at_10": row["auto_recall_at_10"],
            "exact_ms": row["exact_ms"], "disk_bytes": row["disk_bytes"],
            "nprobe_sweep": row.get("nprobe_sweep"),
            "wall_seconds": round(time.perf_counter() - started, 1)}


def machine() -> dict:
    import faiss

    return machine_info(numpy=np.__version__, faiss=faiss.__version__,
                        sqlite=sqlite3.sqlite_version)


def gb(value: int) -> str:
    return f"{value / 1e9:.2f} GB"


def print_tables(report: dict) -> None:
    print("| vectors | build (kind, nlist, nprobe image/text) | build peak RSS | cache disk "
          "(x float16 store) | image p50 / p99, recall@10 | text p50 / p99, recall@10 | "
          "search RSS | +100 videos refresh |")
    print("|---|---|---|---|---|---|---|---|")
    for r in report["results"]:
        b, s, d = r["build"], r["search"], r["disk_bytes"]
        nprobe = b["nprobe"] or {}
        shown = {k: nprobe.get(k) or "exact" for k in ("image", "text")}
        kind = f"{b['ann_kind']}, {b['nlist']}, {shown['image']}/{shown['text']}" \
            if b["ann_kind"] else "exact"
        cells = []
        for k in ("image", "text"):
            q = s[f"default_{k}"]
            cells.append(f"{q['p50_ms']} / {q['p99_ms']} ms, {q['recall_at_10']:.3f}")
        refresh = r["refresh_100_videos"]
        rss = gb(s["rss_bytes_after_queries"])
        image, text = (s["default_image"].get("rss_after"), s["default_text"].get("rss_after"))
        if image and text:  # rows from before the split was recorded show the total alone
            rss = (f"{gb(image['rss'])} image only (anon {gb(image['anon'])}); "
                   f"{gb(text['rss'])} after text (anon {gb(text['anon'])})")
        print(f"| {r['vectors']:,} | {b['seconds']} s ({kind}) | {gb(b['peak_rss_bytes'])} "
              f"| {gb(d['cache'])} ({d['cache_over_float16_store']}x) | {cells[0]} | {cells[1]} "
              f"| {rss} | {refresh['refresh_seconds']} s ({refresh['kind']}) |")
    before = report.get("before")
    if before:
        print(f"\nbefore ({before['revision']}, 1M): full refresh {before['full_refresh_seconds']}"
              f" s, default p50 {before['default_ms']['p50']} ms at recall@10 "
              f"{before['recall_at_10']} (nprobe {before['ann']['nprobe']}), cache "
              f"{gb(before['disk_bytes']['vectors_npy'] + before['disk_bytes']['ann_index'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200, help="queries per kind")
    parser.add_argument("--before", metavar="REV", default=None,
                        help="also run git revision REV's benchmark at 1M (before/after)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the libraries are built (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=RESULTS / "search.json",
                        help="results JSON (default: benchmarks/results/search.json)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of --out for sizes not run now")
    # internal: one phase in a subprocess
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--queries-file", help=argparse.SUPPRESS)
    parser.add_argument("--kinds-file", help=argparse.SUPPRESS)
    parser.add_argument("--truth-file", help=argparse.SUPPRESS)
    parser.add_argument("--exact-latency", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args.root, args)))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="videolens-bench-search-"))
    workdir.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.merge and args.out.exists() else {}
    report = {
        "benchmark": "search",
        "data": {"dim": DIM, "centres": CENTRES, "frames_per_video": FRAMES_PER_VIDEO,
                 "scene_spread": SCENE_SPREAD, "frame_spread": FRAME_SPREAD,
                 "cosines": Mixture(1).cosines(), "queries_per_kind": args.queries, "k": 10},
        "thresholds": {"ann_min_vectors": ANN_MIN_VECTORS,
                       "pq_min_vectors": library_ann.PQ_MIN_VECTORS,
                       "tune_target": library_ann.TUNE_TARGET},
        "machine": machine(),
        "results": [],
    }
    if args.before:
        print(f"... before: {args.before} at 1M", file=sys.stderr, flush=True)
        report["before"] = run_before(args.before, workdir, args.queries)
        print(json.dumps(report["before"]), file=sys.stderr, flush=True)
    elif previous.get("before"):
        report["before"] = previous["before"]
    kept = [r for r in previous.get("results", []) if r.get("vectors") not in args.sizes
            and "build" in r]
    measured: list[dict] = []
    for size in args.sizes:
        measured.append(run_size(size, args.queries, workdir))
        # written after every size: a 10M row takes ~45 min, and a failure there keeps the rest
        report["results"] = sorted(kept + measured, key=lambda r: r["vectors"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report)
    print(f"\ndata cosines: {report['data']['cosines']}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
