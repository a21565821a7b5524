"""``videolens library info|list|remove|export|check|optimize``: thin commands over
:mod:`videolens.pipelines.library`. Results on stdout (``--json``: JSON Lines), messages on
stderr; exit 1 when nothing matched (remove) or the library is damaged (check)."""

from __future__ import annotations

import argparse
import json
import time

from .options import EXIT_FAILED, EXIT_OK, add_library_option, clock, note


def add_library_command(commands) -> None:
    """Register ``library`` and its subcommands on the top-level subparsers."""
    library = commands.add_parser(
        "library",
        help="see and manage a library: info, list, remove, export, check, optimize",
        description="See what a library holds, remove videos from it, export its embeddings, "
        "and check (or repair) its files. Video files themselves are never touched.",
    )
    actions = library.add_subparsers(dest="library_command", metavar="ACTION", required=True)

    info = actions.add_parser("info", help="model, sampling, counts, size, failed files",
                              description="Model, sampling, counts, size on disk and the "
                              "files that failed to index.")
    add_library_option(info)
    info.add_argument("--json", action="store_true", help="one JSON object on stdout")

    listing = actions.add_parser("list", help="the videos, with duration and frame count",
                                 description="Every video in the library, by path.")
    add_library_option(listing)
    listing.add_argument("--json", action="store_true", help="JSON Lines on stdout")

    remove = actions.add_parser(
        "remove", help="drop videos (by path, folder or glob) from the library",
        description="Remove videos from the library (not from disk). A pattern is a path, a "
        "folder, or a glob matched against the stored absolute path and against the path "
        "relative to the current folder (quote it: 'sub/*').")
    remove.add_argument("patterns", nargs="+", metavar="PATH|GLOB")
    add_library_option(remove)
    remove.add_argument("--dry-run", "-n", action="store_true",
                        help="only list what would be removed")
    remove.add_argument("--json", action="store_true", help="JSON Lines on stdout")

    export = actions.add_parser(
        "export", help="embeddings + timestamps + paths to NumPy or Parquet",
        description="Write one row per stored frame: npy -> OUT/embeddings.npy + "
        "OUT/metadata.jsonl (+ library.json); parquet -> one file with path, video_id, "
        "timestamp, embedding columns (needs pyarrow: pip install 'videolens[export]').")
    export.add_argument("--format", choices=["npy", "parquet"], required=True)
    export.add_argument("--out", required=True, metavar="PATH",
                        help="a folder (npy) or a .parquet file")
    add_library_option(export)
    export.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    check = actions.add_parser(
        "check", help="integrity of library.sqlite and vectors/, and --repair",
        description="Check the database (SQLite integrity, metadata, every video's frames) "
        "and the vector cache. --repair copies every readable video into a fresh database "
        "(the damaged file is kept as library.sqlite.damaged-<time>) and rebuilds vectors/.")
    add_library_option(check)
    check.add_argument("--repair", action="store_true", help="rebuild what can be rebuilt")
    check.add_argument("--json", action="store_true", help="the report as JSON on stdout")

    optimize = actions.add_parser(
        "optimize", help="rebuild the vector cache in one piece and re-tune search",
        description="Index runs and removals update vectors/ incrementally (new rows appended "
        "to the ANN index's lists, removed videos tombstoned). optimize rebuilds it in one "
        "segment: removed rows dropped, the ANN index retrained on every row, and its search "
        "setting (nprobe) measured again for recall@10 >= 0.98 on image-like queries and on "
        "the library model's own embeddings of 320 action prompts (the model loads only when "
        "an ANN index is built). library.sqlite is only read.")
    add_library_option(optimize)
    optimize.add_argument(
        "--synthetic-text", action="store_true",
        help="measure text-query recall on synthetic queries instead of loading the model")
    optimize.add_argument("--json", action="store_true", help="the result as JSON on stdout")


def run_library(args: argparse.Namespace) -> int:
    handlers = {"info": _info, "list": _list, "remove": _remove, "export": _export,
                "check": _check, "optimize": _optimize}
    return handlers[args.library_command](args)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _info(args) -> int:
    from ..pipelines.library import library_info

    info = library_info(args.library)
    if args.json:
        print(json.dumps(info.to_json()))
        return EXIT_OK
    model, sampling = info.model, info.sampling
    fps = sampling.get("fps")
    rate = f"{fps:g} frame{'s' if fps != 1 else ''}/s" if isinstance(fps, (int, float)) else "?"
    side = f", frames resized to {sampling['max_side']} px" if sampling.get("max_side") else ""
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.created_at)) \
        if info.created_at else "?"
    cache = info.cache
    state = "up to date" if not cache["stale"] else \
        f"{cache['tail_frames']} frames not cached yet (searched from SQLite)"
    lines = [
        f"library   {info.library}",
        f"model     {model.get('name')} ({model.get('embed_dim')}-d, {model.get('kind')}, "
        f"fingerprint {model.get('fingerprint')})",
        f"sampling  {rate}{side}",
        f"videos    {info.videos} ({clock(info.video_seconds)} of video), "
        f"{info.frames} frame{'s' if info.frames != 1 else ''}",
        f"failures  {len(info.failures)}",
        f"size      {_megabytes(info.bytes)} on disk (library.sqlite "
        f"{_megabytes(info.sqlite_bytes)}, vectors/ {_megabytes(info.vectors_bytes)})",
        f"vectors   {state}{', with an ANN index' if cache['ann'] else ''}",
        f"created   {created} by videolens {info.videolens_version or '?'} "
        f"(schema {info.schema_version})",
    ]
    print("\n".join(lines))
    if info.failures:
        print("failed files (rerun index with --retry-failed once fixed):")
        for path, reason in info.failures.items():
            print(f"  {path}: {reason}")
    return EXIT_OK


def _list(args) -> int:
    from ..pipelines.library import list_videos

    videos = list_videos(args.library)
    if args.json:
        for video in videos:
            print(json.dumps({"id": video.id, "path": video.path,
                              "duration": round(video.duration, 3), "frames": video.num_frames,
                              "width": video.width, "height": video.height,
                              "fps": round(video.fps, 3), "indexed_at": round(video.indexed_at),
                              "warnings": list(video.warnings)}))
        return EXIT_OK
    if not videos:
        note(f"the library at {args.library} holds no videos — add some with `videolens index`")
        return EXIT_OK
    print(f"{'duration':>9}  {'frames':>6}  path")
    for video in videos:
        print(f"{clock(video.duration):>9}  {video.num_frames:>6}  {video.path}")
    total = sum(v.duration for v in videos)
    note(f"{len(videos)} video{'s' if len(videos) != 1 else ''}, {clock(total)} in all")
    return EXIT_OK


def _remove(args) -> int:
    from ..pipelines.library import remove_videos

    removed = remove_videos(args.patterns, args.library, dry_run=args.dry_run)
    if not removed:
        note(f"error: nothing in the library matches {' '.join(args.patterns)} — "
             "`videolens library list` shows the stored paths")
        return EXIT_FAILED
    for video in removed:
        if args.json:
            print(json.dumps({"id": video.id, "path": video.path, "removed": not args.dry_run}))
        else:
            print(video.path)
    count = f"{len(removed)} video{'s' if len(removed) != 1 else ''}"
    note(f"would remove {count} (dry run)" if args.dry_run else
         f"removed {count} from the library (the files are untouched)")
    return EXIT_OK


def _export(args) -> int:
    from ..pipelines.library import export_library

    done = export_library(args.out, library=args.library, format=args.format,
                          overwrite=args.overwrite)
    note(f"exported {done['rows']} frames of {done['videos']} videos ({done['dim']}-d) "
         f"-> {', '.join(done['files'])}")
    return EXIT_OK


def _check(args) -> int:
    from ..pipelines.library import check

    report = check(args.library, repair=args.repair)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print("\n".join(_report_lines(report)))
    if not report.ok:
        if not args.repair:
            note("error: the library is damaged — `videolens library check --repair` "
                 "rebuilds what can be rebuilt (it keeps a copy of the damaged file)")
        return EXIT_FAILED
    for problem in report.lost:
        note(f"warning: not kept: {problem.path or f'video {problem.id}'} ({problem.reason}) "
             "— `videolens index` it again")
    if report.lost_unreadable:
        note(f"warning: {report.lost_unreadable} damaged stretch(es) of video rows could not be "
             "read — `videolens index` your folders again to add back what is missing")
    return EXIT_OK


def _optimize(args) -> int:
    from ..pipelines.library import optimize

    note(f"rebuilding the vector cache of {args.library} ...")
    done = optimize(args.library,
                    text_queries="synthetic" if args.synthetic_text else "model")
    if args.json:
        print(json.dumps(done))
        return EXIT_OK
    before, after, ann = done["before"], done["after"], done["ann"]
    dropped = before["tombstoned_frames"] + before["dead_frames"]
    print(f"vectors/  {before['segments']} segment(s) -> {after['segments']}, "
          f"{after['cached_frames']} frames cached, {dropped} frames of removed videos "
          f"dropped, in {done['seconds']:.1f} s")
    if ann:
        tuning = ann.get("tuning") or {}
        nprobe = tuning.get("nprobe") or {}
        table = tuning.get("table") or []
        parts = []
        for kind, value in sorted(nprobe.items()):
            if value is None:
                best = max((row for row in table if kind in row),
                           key=lambda row, kind=kind: row[kind])
                parts.append(f"{kind} exact (IVF reached recall@10 {best[kind]} at nprobe "
                             f"{best['nprobe']}, below {tuning.get('target')})")
            else:
                measured = next(row[kind] for row in table if row["nprobe"] == value)
                parts.append(f"{kind} {value} (recall@10 {measured})")
        print(f"index     {ann['kind']}, {ann['nlist']} lists; nprobe " + ", ".join(parts))
        if tuning.get("image_source"):
            print(f"image     recall measured on {tuning['image_source']}")
        if tuning.get("text_source"):
            print(f"text      recall measured on {tuning['text_source']}")
    else:
        print("index     none: exact search (below the size where an ANN index pays off)")
    return EXIT_OK


def _report_lines(report) -> list[str]:
    lines = [f"library   {report.library}"]
    if report.model:
        lines.append(f"model     {report.model.get('name')}")
    state = "ok" if report.database_ok else "DAMAGED"
    lines.append(f"database  {state}: {report.videos} videos, {report.frames} frames, "
                 f"{report.failures} failures")
    lines += [f"  sqlite: {message}" for message in report.database[:5]]
    if report.meta:
        lines.append(f"  metadata: {report.meta}")
    if report.unreadable:
        lines.append(f"  {report.unreadable} stretch(es) of video rows cannot be read")
    lines += [f"  video {p.id} {p.path}: {p.reason}" for p in report.bad_videos[:20]]
    if len(report.bad_videos) > 20:
        lines.append(f"  ... and {len(report.bad_videos) - 20} more")
    lines.append(f"vectors/  {report.cache}")
    lines += [f"repaired  {action}" for action in report.actions]
    return lines
