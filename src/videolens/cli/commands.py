"""One function per command: parse nothing, call the public API, print the answer."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import UsageError, VideolensError
from .engine import engine_from_args
from .options import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    check_model,
    clock,
    csv_rows,
    note,
    plural,
    quiet_libraries,
    warnings_as_notes,
)

# Every module that needs torch, transformers or PyAV is imported inside the command that
# uses it: `videolens --help` and argument errors must answer at once (tests/test_startup.py).


def _print_table(result, top: int) -> None:
    from tqdm import tqdm

    width = max((len(s.label) for s in result.scores), default=5)
    duration = f" · {result.duration:.1f} s" if result.duration is not None else ""
    lines = [f"{result.video}  ({result.frames} frames{duration})"]
    for rank, item in enumerate(result.scores, 1):
        bar = "█" * round(item.score * 20)
        lines.append(f"  {rank:>3}. {item.label:<{width}}  {item.score:6.3f}  {bar}")
    # tqdm.write clears the progress bar (on stderr, often the same terminal), prints the
    # result above it and redraws it, instead of writing through the bar's line
    tqdm.write("\n".join(lines) + "\n", file=sys.stdout)


def run_classify(args: argparse.Namespace) -> int:
    quiet_libraries()
    if args.workers < 1:
        note("error: --workers must be at least 1")
        return EXIT_USAGE
    _stdout_once(args)
    check_model(args.model)  # a usage error (exit 2) comes before any input is looked at
    from ..io.discover import expand_inputs

    paths = expand_inputs(args.videos)
    if not paths:
        return _nothing_found(args.videos)
    from ..pipelines.classify import iter_classify

    results = iter_classify(
        paths,
        args.labels,
        model=args.model,
        frames=args.frames,
        top=args.top,
        templates=args.template,
        device=args.device,
        dtype=args.dtype,
        workers=args.workers,
        engine=engine_from_args(args),
        # a bar redrawn with carriage returns only garbles a log file or a pipe
        progress=not args.quiet and sys.stderr.isatty(),
    )
    failed = 0
    try:
        with warnings_as_notes(), csv_rows(args.csv, CLASSIFY_CSV) as write_row:
            for result in results:
                for warning in result.warnings:
                    note(f"warning: {result.video}: {warning}")
                if not result.ok:
                    failed += 1
                    note(f"error: {result.error}")
                if write_row is not None:
                    for row in _classify_rows(result):
                        write_row(row)
                if args.json:
                    print(json.dumps(result.to_json()), flush=True)
                elif result.ok and args.csv != "-":
                    _print_table(result, args.top)
    except VideolensError as err:
        note(f"error: {err.one_line()}")
        return EXIT_USAGE
    return EXIT_FAILED if failed else EXIT_OK


CLASSIFY_CSV = ("video", "rank", "label", "score", "error")
SEARCH_CSV = ("rank", "video", "start", "end", "score")


def _classify_rows(result) -> list[tuple]:
    """One row per (video, label) shown, best first; a failed video is one row with its error.
    Scores rounded as in ``--json`` (6 decimals)."""
    if not result.ok:
        return [(result.video, "", "", "", result.error)]
    return [(result.video, rank, item.label, round(item.score, 6), "")
            for rank, item in enumerate(result.scores, 1)]


def _stdout_once(args: argparse.Namespace) -> None:
    if getattr(args, "json", False) and getattr(args, "csv", None) == "-":
        raise UsageError("--json and --csv - would both write to stdout",
                         hint="give --csv a file name")


def _nothing_found(inputs) -> int:
    """An empty folder (or a folder named like a video) is a failed input, not a success."""
    note(f"error: no video files found in {', '.join(map(str, inputs))} — folders are searched "
         "recursively for files whose content is a video; name files to try them anyway")
    return EXIT_FAILED


def run_index(args: argparse.Namespace) -> int:
    quiet_libraries()
    if args.workers < 1:
        note("error: --workers must be at least 1")
        return EXIT_USAGE
    check_model(args.model)
    from ..pipelines.index import index

    def report(kind: str, path: str, detail: str) -> None:
        if kind == "failed":
            note(f"error: {detail}")
        elif kind == "warning":
            note(f"warning: {path}: {detail}")

    summary = index(
        args.paths, library=args.library, model=args.model, fps=args.fps,
        device=args.device, dtype=args.dtype, workers=args.workers, prune=args.prune,
        engine=engine_from_args(args),
        retry_failed=args.retry_failed, max_frames=args.max_frames, on_event=report,
        preprocess=args.preprocess, progress=not args.quiet and sys.stderr.isatty(),
    )
    if not (summary.indexed or summary.unchanged or summary.failed or args.prune
            or summary.interrupted):
        return _nothing_found(args.paths)
    if args.json:
        print(json.dumps(summary.to_json()), flush=True)
    else:
        rate = summary.video_seconds / summary.seconds if summary.seconds else 0.0
        note(
            f"indexed {plural(len(summary.indexed), 'video')} "
            f"({plural(summary.frames, 'frame')}, "
            f"{summary.video_seconds / 60:.1f} min of video, {rate:.1f}x real time), "
            f"{len(summary.unchanged)} unchanged, {len(summary.failed)} failed, "
            f"{len(summary.pruned)} pruned in {summary.seconds:.1f} s "
            f"(waiting for decode {summary.decode_wait_seconds:.1f} s, "
            f"encode {summary.encode_seconds:.1f} s) -> {summary.library}"
        )
        for path, reason in summary.failed.items():
            note(f"  failed: {reason if path in reason else f'{path}: {reason}'}")
    if summary.interrupted:
        note("interrupted: what was indexed is kept; run the same command to continue")
        return 130
    return EXIT_FAILED if summary.failed else EXIT_OK


def run_search(args: argparse.Namespace) -> int:
    quiet_libraries()
    _stdout_once(args)
    check_model(args.model)
    from ..pipelines.search import search

    moments = search(
        args.query, image=args.image, library=args.library, model=args.model, top=args.top,
        video_glob=args.video, exact=True if args.exact else None, recall=args.recall,
        min_score=args.min_score, device=args.device, dtype=args.dtype,
    )
    with csv_rows(args.csv, SEARCH_CSV) as write_row:
        if write_row is not None:
            for rank, moment in enumerate(moments, 1):
                write_row((rank, moment.video, round(moment.start, 3), round(moment.end, 3),
                           round(moment.score, 6)))
    if args.json:
        for moment in moments:
            print(json.dumps(moment.to_json()), flush=True)
        return EXIT_OK
    if not moments:
        floor = f" scoring at least {args.min_score:g}" if args.min_score is not None else ""
        note(f"no matches{floor}")
        return EXIT_OK
    if args.csv == "-":
        return EXIT_OK
    width = max(len(m.video) for m in moments)
    for rank, moment in enumerate(moments, 1):
        print(f"{rank:>3}. {moment.video:<{width}}  {clock(moment.start)}–{clock(moment.end)}"
              f"  {moment.score:.3f}")
    return EXIT_OK


def run_localize(args: argparse.Namespace) -> int:
    from ..errors import VideoDecodeError

    quiet_libraries()
    check_model(args.model)
    from ..pipelines.localize import localize

    try:
        result = localize(
            args.video, args.actions, library=args.library, model=args.model, fps=args.fps,
            templates=args.template, device=args.device, dtype=args.dtype,
            progress=sys.stderr.isatty(),
        )
    except VideoDecodeError as err:  # the input failed, not the usage: exit 1 as classify
        note(f"error: {err.one_line()}")
        return EXIT_FAILED
    if args.json:
        for line in result.to_json_lines():
            print(json.dumps(line), flush=True)
        return EXIT_OK
    frames = "frames from the library" if result.source == "library" else "frames decoded"
    note(f"{result.video}: {plural(len(result.detections), 'segment')} "
         f"({frames} at {result.fps:g}/s)")
    width = max((len(d.label) for d in result.detections), default=0)
    for d in result.detections:
        print(f"{d.label:<{width}}  {clock(d.start)}–{clock(d.end)}  {d.score:.3f}")
    return EXIT_OK


def run_eval(args: argparse.Namespace) -> int:
    quiet_libraries()
    try:
        shots = [int(x) for x in args.shots.split(",") if x.strip()]
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        note("error: --shots and --seeds take comma-separated integers, e.g. 2,4,8,16")
        return EXIT_USAGE
    if not shots or min(shots) < 1 or not seeds:
        note("error: --shots needs positive integers and --seeds at least one seed")
        return EXIT_USAGE
    if args.protocol == "counterfactual" and not args.data:
        note("error: counterfactual needs --data FILE (JSON Lines with video, caption, "
             "counterfactuals)")
        return EXIT_USAGE
    if args.protocol != "counterfactual" and (not args.dataset or not args.root):
        note(f"error: {args.protocol} needs --dataset NAME and --root DIR")
        return EXIT_USAGE
    # the heavy imports (torch, transformers: seconds) only once the arguments are checked
    from ..eval.report import table, write_csv, write_plots
    from ..models import load_model
    from ..pipelines.evaluate import evaluate

    engine = engine_from_args(args)  # before the model: a missing Ray is a quick error
    model = load_model(args.model, args.device, args.dtype)
    result = evaluate(
        args.protocol, args.dataset, args.root, model=model, split=args.split,
        frames=args.frames, stride=args.stride, views=args.views, crops=args.crops,
        ensemble=args.ensemble, recipe=args.recipe,
        templates=args.template, overrides=args.class_texts,
        class_names_file=args.class_names, split_files=args.split_file,
        video_lists=args.video_list,
        k400_classes=args.k400_classes, subsets=args.subsets, subset_size=args.subset_size,
        seed=args.seed, shots=shots, seeds=seeds, train_split=args.train_split,
        v2t=args.v2t, actionless=args.actionless, data=args.data, score=args.score,
        workers=args.workers, engine=engine, progress=not args.quiet and sys.stderr.isatty(),
    )
    for path, reason in list(result.failures.items())[:20]:
        note(f"warning: left out: {reason if path in reason else f'{path}: {reason}'}")
    if len(result.failures) > 20:
        note(f"warning: ... and {plural(len(result.failures) - 20, 'more video')} left out")
    if args.csv:
        write_csv([result], args.csv)
    if args.plot:
        for written in write_plots(result, args.plot):
            note(f"wrote {written}")
    if args.json:
        print(json.dumps(result.to_json()), flush=True)
    else:
        print(table(result))
    return EXIT_OK


def run_probe(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..io import expand_inputs, probe_many

    failed = 0
    paths = expand_inputs(args.videos)
    if not paths:
        return _nothing_found(args.videos)
    for path, info in probe_many(paths):
        if isinstance(info, VideolensError):
            failed += 1
            note(f"error: {info.one_line()}")
            if args.json:
                print(json.dumps({"video": path, "error": info.one_line()}), flush=True)
            continue
        if args.json:
            print(json.dumps({"video": path, **asdict(info)}), flush=True)
        else:
            print(
                f"{path}: {info.codec} {info.width}x{info.height}, {info.duration:.3f} s, "
                f"{info.fps:.3f} fps, {info.frame_count} frames, rotation {info.rotation}, "
                f"audio {'yes' if info.has_audio else 'no'}"
            )
    return EXIT_FAILED if failed else EXIT_OK


def run_models(args: argparse.Namespace) -> int:
    from ..models import DEFAULT_MODEL, PRESETS

    for preset in PRESETS.values():
        mark = "*" if preset.name == DEFAULT_MODEL else " "
        print(f"{mark} {preset.name:<13} {preset.hub_id:<40} {preset.frames:>2} frames  "
              f"{preset.summary}")
    return EXIT_OK


# argument metavars whose values are paths: the completion script offers files or folders
_FILE_METAVARS = {"VIDEO", "PATH", "FILE"}
_DIR_METAVARS = {"DIR"}


def run_completion(args: argparse.Namespace) -> int:
    """Print a completion script generated from the parser itself (shtab), so it never
    lags behind the options."""
    try:
        import shtab
    except ImportError:
        note("error: shell completion needs shtab — pip install 'videolens[completion]'")
        return EXIT_USAGE
    from .parser import build_parser

    parser = build_parser()
    _mark_paths(parser, shtab)
    sys.stdout.write(shtab.complete(parser, shell=args.shell))
    return EXIT_OK


def _mark_paths(parser: argparse.ArgumentParser, shtab) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _mark_paths(sub, shtab)
        elif action.metavar in _FILE_METAVARS:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        elif action.metavar in _DIR_METAVARS:
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
