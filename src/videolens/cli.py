"""The ``videolens`` command: thin argument parsing over the public Python API.

Output contract: results on stdout (a table, or JSON Lines with ``--json``); messages,
warnings and progress on stderr. Exit codes: 0 all inputs succeeded, 1 some input failed,
2 usage error (bad option, labels or model) before any input was processed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .cli_serve import add_serve_command, run_serve
from .errors import VideolensError
from .io.discover import expand_inputs

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

def _err(message: str) -> None:
    from tqdm import tqdm

    # tqdm.write prints above a running progress bar instead of through it
    tqdm.write(f"videolens: {message}", file=sys.stderr)


def _add_library_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--library", default=".videolens", metavar="DIR",
        help="library folder (default: ./.videolens)",
    )


def _add_model_options(parser: argparse.ArgumentParser, default: str | None = "") -> None:
    from .models import DEFAULT_MODEL, PRESETS

    if default == "":
        default = DEFAULT_MODEL
        said = f"default: {DEFAULT_MODEL}"
    else:
        said = f"default: the library's model, or {DEFAULT_MODEL} for a new library"
    parser.add_argument(
        "--model",
        default=default,
        help=f"preset ({', '.join(PRESETS)}), hub id or local folder ({said})",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda[:N], mps"
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "fp32", "fp16", "bf16"],
        help="weights and activations (auto: fp16 on CUDA, fp32 elsewhere)",
    )


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="videolens",
        description="Open-vocabulary understanding of human actions in video.",
    )
    parser.add_argument("--version", action="version", version=f"videolens {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    classify = commands.add_parser(
        "classify",
        help="rank labels from any list for each video (zero-shot)",
        description="Rank the labels for each video with a vision-language model, no training.",
    )
    classify.add_argument("videos", nargs="+", metavar="VIDEO", help="files, folders or globs")
    classify.add_argument(
        "--labels",
        "-l",
        required=True,
        help="comma list ('running, swimming') or a .txt/.json/.yaml label file",
    )
    _add_model_options(classify)
    classify.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames sampled per video, one per equal segment (default: the model's, 8 for CLIP)",
    )
    classify.add_argument(
        "--top", type=int, default=5, help="labels shown per video (0 = all; default 5)"
    )
    classify.add_argument(
        "--template",
        action="append",
        default=None,
        metavar="TEXT",
        help="prompt template with {} for the label; repeat for an ensemble "
        "(default: the built-in action templates)",
    )
    classify.add_argument("--json", action="store_true", help="JSON Lines on stdout")
    classify.add_argument(
        "--workers", type=int, default=1, help="decoding processes (default 1)"
    )
    classify.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    index = commands.add_parser(
        "index",
        help="embed the frames of videos into a library, once, for search and localize",
        description="Embed video frames into a library (incremental: unchanged files are "
        "skipped). Safe to interrupt or kill: rerun to continue.",
    )
    index.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or globs")
    _add_library_option(index)
    _add_model_options(index, default=None)
    index.add_argument(
        "--fps", type=float, default=None,
        help="frames per second to embed (default 1; fixed when the library is created)",
    )
    index.add_argument("--prune", action="store_true",
                       help="drop library entries whose file is gone")
    index.add_argument("--retry-failed", action="store_true",
                       help="try again files that failed before and have not changed")
    index.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    index.add_argument("--json", action="store_true", help="the summary as JSON on stdout")
    index.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    search = commands.add_parser(
        "search",
        help="find moments in the library by text or by an example image",
        description="Find moments (video, start, end, score) in an indexed library.",
    )
    search.add_argument("query", nargs="?", help="what to look for, in words")
    search.add_argument("--image", metavar="FILE", help="query by an example picture instead")
    _add_library_option(search)
    search.add_argument("--top", type=int, default=10, help="moments to show (default 10)")
    search.add_argument("--video", metavar="GLOB",
                        help="only videos whose path or file name matches this glob")
    search.add_argument("--exact", action="store_true",
                        help="exact vector search even when the library has an ANN index")
    _add_model_options(search, default=None)
    search.add_argument("--json", action="store_true", help="JSON Lines on stdout")

    localize = commands.add_parser(
        "localize",
        help="find when actions happen in a video (zero-shot temporal localization)",
        description="Segments (label, start, end, score) where each action happens.",
    )
    localize.add_argument("video", metavar="VIDEO")
    localize.add_argument("actions", nargs="+", metavar="ACTION",
                          help="one or more actions, e.g. 'chopping vegetables'")
    _add_library_option(localize)
    _add_model_options(localize, default=None)
    localize.add_argument(
        "--fps", type=float, default=None,
        help="frames per second when decoding (default 2; an indexed video uses the library's)",
    )
    localize.add_argument("--template", action="append", default=None, metavar="TEXT",
                          help="prompt template with {} (repeatable; default: built-in set)")
    localize.add_argument("--json", action="store_true", help="JSON Lines on stdout")

    evaluate = commands.add_parser(
        "eval",
        help="research protocols on a dataset you have on disk (zero-shot, retrieval)",
        description="Evaluate a model with a published protocol. videolens never downloads "
        "datasets: point --root at your copy.",
    )
    evaluate.add_argument(
        "protocol", choices=["zero-shot", "cross-dataset", "base-to-novel", "few-shot",
                             "retrieval"])
    evaluate.add_argument("--dataset", required=True,
                          help="ucf101, hmdb51, kinetics400/600/700, ssv2, charades, msrvtt, "
                          "generic")
    evaluate.add_argument("--root", required=True, metavar="DIR",
                          help="the dataset folder (official layout)")
    evaluate.add_argument("--split", default=None,
                          help="a split (e.g. test1, val, all), or 'splits' for mean ± std over "
                          "the three official test splits (default: the dataset's)")
    _add_model_options(evaluate)
    evaluate.add_argument("--frames", type=int, default=None,
                          help="frames per video (default: the model's)")
    evaluate.add_argument("--template", action="append", default=None, metavar="TEXT",
                          help="prompt template with {} (repeatable; default: built-in set)")
    evaluate.add_argument("--class-texts", metavar="FILE", default=None,
                          help="YAML/JSON/TXT overriding class texts or adding descriptions")
    evaluate.add_argument("--class-names", metavar="FILE", default=None,
                          help="class-name file fixing class ids (one per line or id,name CSV)")
    evaluate.add_argument("--split-file", action="append", default=[], metavar="PATH",
                          help="published split file or folder (cross-dataset subsets, "
                          "base-to-novel splits); repeat for several")
    evaluate.add_argument("--k400-classes", metavar="PATH", default=None,
                          help="cross-dataset: Kinetics-400 root, CSV or class list")
    evaluate.add_argument("--subsets", type=int, default=3,
                          help="cross-dataset: number of class subsets (default 3)")
    evaluate.add_argument("--subset-size", type=int, default=160,
                          help="cross-dataset: classes per subset (default 160)")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="cross-dataset: seed of the default subsets (default 0)")
    evaluate.add_argument("--shots", default="2,4,8,16",
                          help="few-shot: training videos per class, comma list")
    evaluate.add_argument("--seeds", default="0,1,2", help="few-shot: seeds, comma list")
    evaluate.add_argument("--train-split", default=None,
                          help="few-shot: split to draw shots from (default: train<N> for "
                          "test<N>)")
    evaluate.add_argument("--workers", type=int, default=1, help="decoding processes")
    evaluate.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    evaluate.add_argument("--csv", metavar="FILE", default=None,
                          help="also write the metrics as CSV")
    evaluate.add_argument("--plot", metavar="DIR", default=None,
                          help="also write PNG figures (confusion matrix, per-class accuracy)")
    evaluate.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    probe = commands.add_parser("probe", help="print what a video file holds")
    probe.add_argument("videos", nargs="+", metavar="VIDEO")
    probe.add_argument("--json", action="store_true", help="JSON Lines on stdout")

    commands.add_parser("models", help="list the model presets")
    add_serve_command(commands)
    return parser


def _quiet_libraries() -> None:
    # transformers' load-time notices (processor fallbacks, weight-loading bars) are noise
    # for a CLI user; real failures still reach us as exceptions.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _print_table(result, top: int) -> None:
    width = max((len(s.label) for s in result.scores), default=5)
    duration = f" · {result.duration:.1f} s" if result.duration is not None else ""
    print(f"{result.video}  ({result.frames} frames{duration})")
    for rank, item in enumerate(result.scores, 1):
        bar = "█" * round(item.score * 20)
        print(f"  {rank:>3}. {item.label:<{width}}  {item.score:6.3f}  {bar}")
    print()


def run_classify(args: argparse.Namespace) -> int:
    from .tasks import iter_classify

    _quiet_libraries()
    paths = expand_inputs(args.videos)
    if args.workers < 1:
        _err("error: --workers must be at least 1")
        return EXIT_USAGE
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
        # a bar redrawn with carriage returns only garbles a log file or a pipe
        progress=not args.quiet and sys.stderr.isatty(),
    )
    failed = 0
    try:
        for result in results:
            for warning in result.warnings:
                _err(f"warning: {result.video}: {warning}")
            if not result.ok:
                failed += 1
                _err(f"error: {result.error}")
            if args.json:
                print(json.dumps(result.to_json()), flush=True)
            elif result.ok:
                _print_table(result, args.top)
    except VideolensError as err:
        _err(f"error: {err.one_line()}")
        return EXIT_USAGE
    return EXIT_FAILED if failed else EXIT_OK


def run_index(args: argparse.Namespace) -> int:
    from .index.ingest import index

    _quiet_libraries()
    if args.workers < 1:
        _err("error: --workers must be at least 1")
        return EXIT_USAGE

    def report(kind: str, path: str, detail: str) -> None:
        if kind == "failed":
            _err(f"error: {detail}")
        elif kind == "warning":
            _err(f"warning: {path}: {detail}")

    summary = index(
        args.paths, library=args.library, model=args.model, fps=args.fps,
        device=args.device, dtype=args.dtype, workers=args.workers, prune=args.prune,
        retry_failed=args.retry_failed, on_event=report,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    if args.json:
        print(json.dumps(summary.to_json()), flush=True)
    else:
        rate = summary.video_seconds / summary.seconds if summary.seconds else 0.0
        _err(
            f"indexed {len(summary.indexed)} videos ({summary.frames} frames, "
            f"{summary.video_seconds / 60:.1f} min of video, {rate:.1f}x real time), "
            f"{len(summary.unchanged)} unchanged, {len(summary.failed)} failed, "
            f"{len(summary.pruned)} pruned in {summary.seconds:.1f} s "
            f"(waiting for decode {summary.decode_wait_seconds:.1f} s, "
            f"encode {summary.encode_seconds:.1f} s) -> {summary.library}"
        )
        for path, reason in summary.failed.items():
            _err(f"  failed: {reason if path in reason else f'{path}: {reason}'}")
    if summary.interrupted:
        _err("interrupted: what was indexed is kept; run the same command to continue")
        return 130
    return EXIT_FAILED if summary.failed else EXIT_OK


def run_search(args: argparse.Namespace) -> int:
    from .index.query import search

    _quiet_libraries()
    moments = search(
        args.query, image=args.image, library=args.library, model=args.model, top=args.top,
        video_glob=args.video, exact=True if args.exact else None, device=args.device,
        dtype=args.dtype,
    )
    if args.json:
        for moment in moments:
            print(json.dumps(moment.to_json()), flush=True)
        return EXIT_OK
    if not moments:
        _err("no matches")
        return EXIT_OK
    width = max(len(m.video) for m in moments)
    for rank, moment in enumerate(moments, 1):
        print(f"{rank:>3}. {moment.video:<{width}}  {_clock(moment.start)}–{_clock(moment.end)}"
              f"  {moment.score:.3f}")
    return EXIT_OK


def run_localize(args: argparse.Namespace) -> int:
    from .errors import VideoDecodeError
    from .index.query import localize_video

    _quiet_libraries()
    try:
        result = localize_video(
            args.video, args.actions, library=args.library, model=args.model, fps=args.fps,
            templates=args.template, device=args.device, dtype=args.dtype,
        )
    except VideoDecodeError as err:  # the input failed, not the usage: exit 1 as classify
        _err(f"error: {err.one_line()}")
        return EXIT_FAILED
    if args.json:
        for line in result.to_json_lines():
            print(json.dumps(line), flush=True)
        return EXIT_OK
    _err(f"{result.video}: frames from the {result.source} at {result.fps:g}/s")
    if not result.detections:
        _err("no segments found")
    width = max((len(d.label) for d in result.detections), default=0)
    for d in result.detections:
        print(f"{d.label:<{width}}  {_clock(d.start)}–{_clock(d.end)}  {d.score:.3f}")
    return EXIT_OK


def run_eval(args: argparse.Namespace) -> int:
    from .eval.protocols import evaluate
    from .eval.report import table, write_csv, write_plots
    from .models import load_model

    _quiet_libraries()
    try:
        shots = [int(x) for x in args.shots.split(",") if x.strip()]
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        _err("error: --shots and --seeds take comma-separated integers, e.g. 2,4,8,16")
        return EXIT_USAGE
    if not shots or min(shots) < 1 or not seeds:
        _err("error: --shots needs positive integers and --seeds at least one seed")
        return EXIT_USAGE
    model = load_model(args.model, args.device, args.dtype)
    result = evaluate(
        args.protocol, args.dataset, args.root, model=model, split=args.split,
        frames=args.frames, templates=args.template, overrides=args.class_texts,
        class_names_file=args.class_names, split_files=args.split_file,
        k400_classes=args.k400_classes, subsets=args.subsets, subset_size=args.subset_size,
        seed=args.seed, shots=shots, seeds=seeds, train_split=args.train_split,
        workers=args.workers, progress=not args.quiet and sys.stderr.isatty(),
    )
    for path, reason in list(result.failures.items())[:20]:
        _err(f"warning: left out: {reason if path in reason else f'{path}: {reason}'}")
    if len(result.failures) > 20:
        _err(f"warning: ... and {len(result.failures) - 20} more videos left out")
    if args.csv:
        write_csv([result], args.csv)
    if args.plot:
        for written in write_plots(result, args.plot):
            _err(f"wrote {written}")
    if args.json:
        print(json.dumps(result.to_json()), flush=True)
    else:
        print(table(result))
    return EXIT_OK


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}" if hours else f"{minutes}:{rest:04.1f}"


def run_probe(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .io import probe_many

    failed = 0
    for path, info in probe_many(expand_inputs(args.videos)):
        if isinstance(info, VideolensError):
            failed += 1
            _err(f"error: {info.one_line()}")
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
    from .models import DEFAULT_MODEL, PRESETS

    for preset in PRESETS.values():
        mark = "*" if preset.name == DEFAULT_MODEL else " "
        print(f"{mark} {preset.name:<13} {preset.hub_id:<40} {preset.frames:>2} frames  "
              f"{preset.summary}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handlers = {
        "classify": run_classify,
        "index": run_index,
        "search": run_search,
        "localize": run_localize,
        "eval": run_eval,
        "serve": run_serve,
        "probe": run_probe,
        "models": run_models,
    }
    try:
        return handlers[args.command](args)
    except VideolensError as err:
        _err(f"error: {err.one_line()}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # `videolens classify ... | head` closes stdout early; that is not an error
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
