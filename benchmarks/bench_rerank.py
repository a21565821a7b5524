"""IVF-PQ recall@10 against how many candidates are re-scored exactly, and nprobe.

The data and the image-like queries (a frame of a scene no video holds) of
bench_search.py; the library built through the real writer and ``refresh_vectors`` (IVF-PQ
from ``PQ_MIN_VECTORS`` rows on), then each query batch searched with
``ann.RERANK_MIN_EXTRA["IVF-PQ"]`` set to each value. Answers why PQ re-scores the number of
candidates it does. Writes benchmarks/results/rerank.json.

    python benchmarks/bench_rerank.py [--size 10000000] [--extras 320 1000 3000]
        [--nprobes 32 128] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_search  # noqa: E402

from videolens.library import Library, ann  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--extras", type=int, nargs="+", default=[320, 1000, 3000])
    parser.add_argument("--nprobes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=bench_search.RESULTS / "rerank.json")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="videolens-bench-rerank-"))
    root = workdir / f"lib-{args.size}"
    shutil.rmtree(root, ignore_errors=True)
    mixture = bench_search.Mixture(seed=args.size)
    library = Library.create(root, bench_search.MODEL, {"kind": "rate", "fps": 1.0})
    library.vectors.auto_refresh = False
    started = time.perf_counter()
    bench_search.add_videos(library, mixture, args.size, 0)
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    library.refresh_vectors()
    build_s = time.perf_counter() - started
    cache = library.vectors.load()
    meta = cache.manifest["ann"]
    queries = mixture.image_queries(args.queries)
    truth = ann.exact_search_cache(cache, queries, None, 10)[1]
    shipped = ann.RERANK_MIN_EXTRA["IVF-PQ"]
    rows = []
    try:
        for extra in args.extras:
            ann.RERANK_MIN_EXTRA["IVF-PQ"] = extra
            for nprobe in args.nprobes:
                started = time.perf_counter()
                _, found = ann.ann_search(cache, queries, 10, nprobe)
                ms = (time.perf_counter() - started) * 1e3 / len(queries)
                rows.append({"extra": extra, "candidates": 10 + extra, "nprobe": nprobe,
                             "recall_at_10": round(ann.recall_at(found, truth), 4),
                             "ms_per_query_batched": round(ms, 2)})
                print(rows[-1], file=sys.stderr, flush=True)
    finally:
        ann.RERANK_MIN_EXTRA["IVF-PQ"] = shipped
        library.close()
        shutil.rmtree(root, ignore_errors=True)
    report = {"benchmark": "rerank", "vectors": args.size, "queries": args.queries,
              "index": {k: meta.get(k) for k in ("kind", "nlist")},
              "tuned_nprobe": (meta.get("tuning") or {}).get("nprobe"),
              "shipped_extra": shipped, "ingest_seconds": round(ingest_s, 1),
              "build_seconds": round(build_s, 1), "machine": bench_search.machine(),
              "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("| candidates re-scored | nprobe | recall@10 | ms a query (batched) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['candidates']} | {r['nprobe']} | {r['recall_at_10']:.4f} | "
              f"{r['ms_per_query_batched']} |")
    print(f"\n{args.size:,} vectors, {meta.get('kind')} with {meta.get('nlist')} lists; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
