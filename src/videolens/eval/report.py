"""Evaluation results for people (a terminal table), programs (JSON, CSV) and papers (PNGs)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .results import EvalResult

RANK_METRICS = ("MdR", "MnR")


def format_value(name: str, value: float) -> str:
    """Accuracies and recalls as percentages; ranks as they are."""
    if name.endswith(RANK_METRICS):
        return f"{value:.1f}"
    return f"{100 * value:.2f}"


def conventions(record: dict) -> list[str]:
    """One line per convention that changes a number and that a reader comparing with a paper
    must know: sampling, recipe, video->text rule, action-less videos, std, scores."""
    lines = []
    sampling = record.get("sampling", {})
    if "mode" in sampling:
        text = f"{sampling['mode']} sampling, {sampling['frames']} frames"
        if sampling["mode"] == "dense":
            text += f" {sampling['stride']} apart at {sampling['target_fps']:g} fps"
        text += f" x {sampling['views']} views x {sampling['crops']} crops"
        if sampling["views"] * sampling["crops"] > 1:
            text += f", views combined by {sampling['ensemble']}"
        lines.append(text)
    if "recipe" in record:
        lines.append(f"recipe: {record['recipe']['name']} ({record['recipe']['paper']})")
    if "v2t" in record:
        lines.append(f"v2t: {record['v2t']['convention']} — {record['v2t']['meaning']}")
    if "actionless_videos" in record:
        empty = record["actionless_videos"]
        lines.append(f"{empty['count']} videos without any class: {empty['meaning']}")
    if "std" in record:
        lines.append(f"±: {record['std'].split(';')[0]}")
    if "score" in record:
        lines.append(f"counterfactual score: {record['score']}, ties {record.get('ties', '')}")
    return lines


def table(result: EvalResult) -> str:
    """A plain-text table: one row per metric (mean ± std when there are several runs),
    after the conventions used (:func:`conventions`)."""
    lines = [f"{result.protocol} · {result.dataset} {result.split} · {result.num_videos} videos"
             f" · {result.record.get('model', '?')}"]
    lines += [f"  ({line})" for line in conventions(result.record)]
    if result.failures:
        lines.append(f"  ({len(result.failures)} videos could not be read and are left out)")
    for k, short in result.extra.get("short_classes", {}).items():
        # a K-shot number from classes that had fewer than K videos is not a K-shot number
        fewest = min(short.values())
        lines.append(f"  (warning: K={k}: {len(short)} classes have fewer than {k} training "
                     f"videos, as few as {fewest}; their *_k{k} rows use what there is)")
    names = [n for n in result.metrics if not n.endswith("_std")]
    width = max((len(n) for n in names), default=6)
    for name in names:
        value = format_value(name, result.metrics[name])
        std = result.metrics.get(f"{name}_std")
        spread = f" ± {format_value(name, std)}" if std is not None else ""
        unit = "" if name.endswith(RANK_METRICS) else " %"
        lines.append(f"  {name:<{width}}  {value}{spread}{unit}")
    return "\n".join(lines)


def write_csv(results: list[EvalResult], path: str | os.PathLike) -> None:
    """Long format: protocol, dataset, split, metric, value (fractions, not percent), model."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["protocol", "dataset", "split", "metric", "value", "model"])
        for result in results:
            for name, value in result.metrics.items():
                writer.writerow([result.protocol, result.dataset, result.split, name,
                                 f"{value:.6f}", result.record.get("model", "")])


def write_plots(result: EvalResult, folder: str | os.PathLike) -> list[Path]:
    """Confusion matrix and per-class accuracy PNGs (single-label zero-shot); per-class AP for
    multi-label; accuracy vs. shots for few-shot. Needs matplotlib
    (``pip install 'videolens[plot]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib",
                         hint="pip install 'videolens[plot]' (or matplotlib)") from None
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if result.protocol == "few-shot":
        from .fewshot import plot_shots

        return [plot_shots(result, out)]
    stem = f"{result.dataset}-{result.split}-{result.protocol}".replace("/", "_")
    written = []
    if result.confusion is not None:
        size = min(24, 4 + 0.15 * len(result.class_texts))
        fig, ax = plt.subplots(figsize=(size, size))
        rows = result.confusion.sum(axis=1, keepdims=True).clip(min=1)
        ax.imshow(result.confusion / rows, cmap="viridis", vmin=0, vmax=1)
        if len(result.class_texts) <= 60:
            ticks = np.arange(len(result.class_texts))
            ax.set_xticks(ticks, result.class_texts, rotation=90, fontsize=7)
            ax.set_yticks(ticks, result.class_texts, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{result.dataset} {result.split}: confusion, rows normalised", fontsize=9)
        fig.tight_layout()
        written.append(out / f"{stem}-confusion.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    if result.per_class:
        ordered = sorted(result.per_class.items(), key=lambda kv: kv[1])
        fig, ax = plt.subplots(figsize=(8, max(3, 0.22 * len(ordered))))
        ax.barh([k for k, _ in ordered], [100 * v for _, v in ordered], color="#4a78b5")
        ax.set_xlabel("AP (%)" if "mAP" in result.metrics else "top-1 accuracy (%)")
        ax.set_xlim(0, 100)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{result.dataset} {result.split}: per class")
        fig.tight_layout()
        written.append(out / f"{stem}-per-class.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written
