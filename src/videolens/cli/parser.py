"""The ``videolens`` argument parser: every command, option and help text."""

from __future__ import annotations

import argparse

from .engine import add_engine_options
from .library import add_library_command
from .options import add_library_option, add_model_options
from .serve import add_serve_command
from .train import add_train_command


class _VersionAction(argparse.Action):
    """``--version``, reading the installed version only when asked (it costs an import)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="print the version and exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        import sys

        from .. import __version__

        print(f"videolens {__version__}", file=sys.stdout)  # stdout, as argparse's own
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videolens",
        description="Open-vocabulary understanding of human actions in video.",
    )
    parser.add_argument("--version", action=_VersionAction)
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
    add_model_options(classify)
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
    classify.add_argument("--csv", metavar="FILE", default=None,
                          help="also write video,rank,label,score rows to FILE ('-': stdout, "
                          "instead of the table)")
    classify.add_argument(
        "--workers", type=int, default=1, help="decoding processes (default 1)"
    )
    classify.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_engine_options(classify)

    index = commands.add_parser(
        "index",
        help="embed the frames of videos into a library, once, for search and localize",
        description="Embed video frames into a library (incremental: unchanged files are "
        "skipped). Safe to interrupt or kill: rerun to continue.",
    )
    index.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or globs")
    add_library_option(index)
    add_model_options(index, default=None)
    index.add_argument(
        "--fps", type=float, default=None,
        help="frames per second to embed (default 1; fixed when the library is created)",
    )
    index.add_argument("--prune", action="store_true",
                       help="drop library entries whose file is gone")
    index.add_argument("--retry-failed", action="store_true",
                       help="try again files that failed before and have not changed")
    index.add_argument("--max-frames", type=int, default=36_000, metavar="N",
                       help="frames kept per video at most, with a warning for longer videos "
                       "(default 36000: 10 hours at 1 frame/s)")
    index.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    index.add_argument("--preprocess", choices=["auto", "tensor", "processor"], default="auto",
                       help="model input made by the torch tensor path in the decode worker "
                       "(within 2 grey levels of the model's processor) or by the processor "
                       "itself (default auto: tensor where the processor config allows)")
    index.add_argument("--json", action="store_true", help="the summary as JSON on stdout")
    index.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_engine_options(index)

    search = commands.add_parser(
        "search",
        help="find moments in the library by text or by an example image",
        description="Find moments (video, start, end, score) in an indexed library.",
    )
    search.add_argument("query", nargs="?", help="what to look for, in words")
    search.add_argument("--image", metavar="FILE", help="query by an example picture instead")
    add_library_option(search)
    search.add_argument("--top", type=int, default=10, help="moments to show (default 10)")
    search.add_argument("--video", metavar="GLOB",
                        help="only videos whose path (absolute, or relative to the current "
                        "folder) or file name matches this glob")
    search.add_argument("--min-score", type=float, default=None, metavar="S",
                        help="drop moments whose cosine similarity is below S (-1..1)")
    search.add_argument("--exact", action="store_true",
                        help="exact vector search even when the library has an ANN index")
    search.add_argument("--recall", type=float, default=None, metavar="R",
                        help="approximate search at the smallest setting whose recall@10, "
                        "measured when the library was built, reaches R (0 < R <= 1); exact "
                        "where none does (default: the setting tuned for 0.98)")
    add_model_options(search, default=None)
    search.add_argument("--json", action="store_true", help="JSON Lines on stdout")
    search.add_argument("--csv", metavar="FILE", default=None,
                        help="also write rank,video,start,end,score rows to FILE ('-': stdout, "
                        "instead of the table)")

    localize = commands.add_parser(
        "localize",
        help="find when actions happen in a video (zero-shot temporal localization)",
        description="Segments (label, start, end, score) where each action happens.",
    )
    localize.add_argument("video", metavar="VIDEO")
    localize.add_argument("actions", nargs="+", metavar="ACTION",
                          help="one or more actions, e.g. 'chopping vegetables'")
    add_library_option(localize)
    add_model_options(localize, default=None)
    localize.add_argument(
        "--fps", type=float, default=None,
        help="frames per second when decoding (default 2; an indexed video uses the library's)",
    )
    localize.add_argument("--template", action="append", default=None, metavar="TEXT",
                          help="prompt template with {} (repeatable; default: built-in set)")
    localize.add_argument("--json", action="store_true", help="JSON Lines on stdout")

    protocols = ["zero-shot", "cross-dataset", "base-to-novel", "few-shot", "retrieval",
                 "counterfactual"]
    evaluate = commands.add_parser(
        "eval",
        help=f"research protocols on a dataset you have on disk ({', '.join(protocols)})",
        description="Evaluate a model with a published protocol. videolens never downloads "
        "datasets: point --root at your copy.",
    )
    evaluate.add_argument("protocol", choices=protocols)
    evaluate.add_argument("--dataset", default=None,
                          help="ucf101, hmdb51, kinetics400/600/700, ssv2, charades, msrvtt, "
                          "generic (required except for counterfactual)")
    evaluate.add_argument("--root", default=None, metavar="DIR",
                          help="the dataset folder (official layout); for counterfactual, "
                          "another folder to look for its videos in")
    evaluate.add_argument("--split", default=None,
                          help="a split (e.g. test1, val, all; HMDB51 'full' = split-1 videos "
                          "marked 1 or 2), or 'splits' for mean ± std over the three official "
                          "test splits (default: the dataset's)")
    add_model_options(evaluate)
    evaluate.add_argument("--recipe", default=None,
                          choices=["froster", "vificlip", "xclip", "openvclip"],
                          help="a paper's test recipe: frames, stride, views, crops, templates "
                          "and class texts as its test config sets them (options given "
                          "explicitly override it)")
    evaluate.add_argument("--frames", type=int, default=None,
                          help="frames per view (default: the recipe's, else the model's)")
    evaluate.add_argument("--stride", type=int, default=None,
                          help="dense clips: --frames frames this many apart at 30 fps "
                          "(slowfast style; default: segment sampling)")
    evaluate.add_argument("--views", type=int, default=None,
                          help="temporal views per video, scores averaged (default 1)")
    evaluate.add_argument("--crops", type=int, default=None, choices=[1, 3],
                          help="spatial crops per view: 1 (centre) or 3 (default 1)")
    evaluate.add_argument("--ensemble", default=None, choices=["logits", "probs", "frames"],
                          help="how views combine: mean logits, mean probabilities, or all "
                          "frames as one clip (default: logits, or the recipe's)")
    evaluate.add_argument("--template", action="append", default=None, metavar="TEXT",
                          help="prompt template with {} (repeatable; default: built-in set)")
    evaluate.add_argument("--class-texts", metavar="FILE", action="append", default=None,
                          help="YAML/JSON/TXT overriding class texts or adding descriptions, "
                          "or a FROSTER rephrased / index2cls JSON; repeat to apply several")
    evaluate.add_argument("--class-names", metavar="FILE", default=None,
                          help="class-name file fixing class ids (one per line or id,name CSV)")
    evaluate.add_argument("--split-file", action="append", default=[], metavar="PATH",
                          help="published split file or folder (cross-dataset subsets, "
                          "base-to-novel splits); repeat for several")
    evaluate.add_argument("--video-list", action="append", default=[], metavar="FILE",
                          help="cross-dataset: published video list per subset (ViFi-CLIP's "
                          "ZS_split<k>_K600_eval.txt); repeat in subset order")
    evaluate.add_argument("--k400-classes", metavar="PATH", default=None,
                          help="cross-dataset: Kinetics-400 root, CSV or class list")
    evaluate.add_argument("--subsets", type=int, default=3,
                          help="cross-dataset: number of class subsets (default 3)")
    evaluate.add_argument("--subset-size", type=int, default=160,
                          help="cross-dataset: classes per subset (default 160)")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="cross-dataset: seed of the default subsets (default 0)")
    evaluate.add_argument("--shots", default="2,4,8,16",
                          help="few-shot: training videos per class, comma list "
                          "(default 2,4,8,16)")
    evaluate.add_argument("--seeds", default="0,1,2",
                          help="few-shot: seeds, comma list (default 0,1,2)")
    evaluate.add_argument("--train-split", default=None,
                          help="few-shot: split to draw shots from (default: train<N> for "
                          "test<N>)")
    evaluate.add_argument("--v2t", default="clip4clip", choices=["clip4clip", "all-captions"],
                          help="retrieval with several captions per video: rank caption sets "
                          "by their best caption (CLIP4Clip, default) or every caption")
    evaluate.add_argument("--actionless", default="exclude", choices=["exclude", "negative"],
                          help="multi-label mAP: leave videos without any class out of the "
                          "ranking (Charades_v1_classify.m, default) or rank them as negatives")
    evaluate.add_argument("--data", metavar="FILE", default=None,
                          help="counterfactual: JSON Lines (video, caption, counterfactuals) "
                          "or a Feint6K CSV")
    evaluate.add_argument("--score", default="cosine", choices=["cosine", "softmax"],
                          help="counterfactual: rank captions by cosine, or by a softmax over "
                          "the videos per caption (the Feint6K release's example)")
    evaluate.add_argument("--workers", type=int, default=1, help="decoding processes")
    evaluate.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    evaluate.add_argument("--csv", metavar="FILE", default=None,
                          help="also write the metrics as CSV")
    evaluate.add_argument("--plot", metavar="DIR", default=None,
                          help="also write PNG figures (confusion matrix, per-class accuracy)")
    evaluate.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_engine_options(evaluate)

    probe = commands.add_parser(
        "probe", help="print what a video file holds",
        description="Codec, displayed size (after rotation), duration, fps, frame count, "
        "rotation and audio of each video, read from the container without decoding it all.")
    probe.add_argument("videos", nargs="+", metavar="VIDEO", help="files, folders or globs")
    probe.add_argument("--json", action="store_true", help="JSON Lines on stdout")

    commands.add_parser(
        "models", help="list the model presets",
        description="The named checkpoints --model accepts (* marks the default), with "
        "their hub id and frames per video. Any CLIP, SigLIP or X-CLIP hub id or local "
        "folder works too.")
    add_serve_command(commands)
    add_train_command(commands)
    add_library_command(commands)
    completion = commands.add_parser(
        "completion", help="print a shell completion script (bash, zsh, tcsh)",
        description="Print a completion script for your shell; needs "
        "pip install 'videolens[completion]'. Bash: "
        "videolens completion bash > ~/.local/share/bash-completion/completions/videolens")
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    return parser
