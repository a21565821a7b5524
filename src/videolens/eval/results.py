"""What every protocol returns and records: :class:`EvalResult`, the run record, the
sampling and the class logits shared by the zero-shot, open-vocabulary and few-shot
protocols (kept here so those modules never import each other)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..io import Sampling
from ..models import VideoEmbedding, VideoTextModel, build_zero_shot_classifier
from ..text import ACTION_TEMPLATES, build_prompts
from .views import ViewSampling


@dataclass
class EvalResult:
    """One evaluation: named metrics plus what is needed to reproduce and inspect them.

    ``metrics``: name -> value (accuracies in [0, 1]; ``*_std`` entries for mean ± std over
    splits or seeds). ``per_class``: class text -> top-1 accuracy. ``confusion``: (K, K)
    counts, rows = true class. ``failures``: video path -> one-line reason (left out of the
    metrics; reported so a partial dataset is never mistaken for a full one).
    """

    protocol: str
    dataset: str
    split: str
    metrics: dict[str, float]
    num_videos: int
    record: dict[str, Any]
    per_class: dict[str, float] = field(default_factory=dict)
    confusion: np.ndarray | None = None
    class_texts: tuple[str, ...] = ()
    failures: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol, "dataset": self.dataset, "split": self.split,
            "metrics": {k: round(v, 6) for k, v in self.metrics.items()},
            "num_videos": self.num_videos, "failed_videos": len(self.failures),
            "record": self.record, **({"per_class": self.per_class} if self.per_class else {}),
            **self.extra,
        }


def sampling_record(sampling: Sampling | ViewSampling) -> dict[str, Any]:
    """What a result records about the test sampling: ``kind`` and ``num_frames`` (as before
    multi-view existed) plus every field of the :class:`ViewSampling`."""
    if isinstance(sampling, Sampling):
        return {"kind": sampling.kind, "num_frames": sampling.num_frames}
    kind = "uniform" if sampling.mode == "segment" else "dense"
    return {"kind": kind, "num_frames": sampling.frames, **sampling.as_dict()}


def run_record(model: VideoTextModel, sampling: Sampling | ViewSampling,
               templates: Sequence[str] | None, **more: Any) -> dict[str, Any]:
    from .. import __version__

    return {
        "model": model.name, "model_fingerprint": model.fingerprint, "kind": model.kind,
        # device, dtype and why, backend, precision (and int8's agreement with fp32)
        "runtime": dict(model.runtime or {}),
        "videolens": __version__,
        "sampling": sampling_record(sampling),
        "templates": list(templates) if templates is not None else list(ACTION_TEMPLATES),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **more,
    }


def sampling_for(model: VideoTextModel, frames: int | None, **views: Any) -> ViewSampling:
    """The test sampling: the model's frames rule (:meth:`VideoTextModel.frames_for`) and the
    given :class:`ViewSampling` fields (``views``, ``crops``, ``mode``, ``stride``, ...);
    with none, one view of ``frames`` segment centres (``videolens classify``'s sampling)."""
    return ViewSampling(frames=model.frames_for(frames), **views)


PromptStyle = str  # "templates" | "froster"


def class_prompts(dataset, templates: Sequence[str] | None,
                  style: PromptStyle = "templates") -> list[list[str]]:
    """The texts embedded for each class of ``dataset``.

    ``"templates"``: every template filled with the class text, then the class's
    descriptions (:func:`~videolens.text.build_prompts`). ``"froster"``: FROSTER's rule
    (``Visual-AI/FROSTER``, ``slowfast/models/temporalclip_video_model.py``,
    ``TemporalClipVideo.text_prompt``): with ``entry`` the class's rephrased sentence
    (``"Brush hair: A person is using a brush ..."``, its first description; the class text
    when it has none), the prompts are ``template(text) + " " + entry`` for every template,
    then ``entry`` alone (FROSTER's last template is ``"{}"`` applied to the entry).
    """
    if style == "templates":
        return build_prompts(dataset.label_set(), templates)
    if style != "froster":
        raise ValueError(f"unknown prompt style {style!r}")
    label_set = dataset.label_set()
    checked = build_prompts(label_set, templates)  # validates the templates
    prompts = []
    for label, filled in zip(label_set.labels, checked, strict=True):
        described = label_set.descriptions.get(label, ())
        entry = described[0] if described else label
        count = len(filled) - len(described)
        prompts.append([f"{text} {entry}" for text in filled[:count]] + [entry])
    return prompts


def class_logits(model: VideoTextModel, embeddings: Sequence, dataset, templates,
                 *, ensemble: str = "logits", style: PromptStyle = "templates"
                 ) -> torch.Tensor:
    """(N, K) scores of N videos against the dataset's classes (prompt ensembles).

    ``embeddings[i]``: a :class:`VideoEmbedding`, or a list of them (the clips of a
    multi-view sampling), combined by ``ensemble`` (:mod:`~videolens.eval.views`): mean
    logits, or mean probabilities for ``"probs"``.
    """
    prompts = class_prompts(dataset, templates, style)
    classifier = build_zero_shot_classifier(model, prompts)
    return view_logits(model, embeddings, classifier, ensemble=ensemble)


def view_logits(model: VideoTextModel, embeddings: Sequence, text: torch.Tensor, *,
                ensemble: str = "logits") -> torch.Tensor:
    """(N, K) scores of N videos (each a :class:`VideoEmbedding` or a list of clips) against K
    text rows; several clips are combined by ``ensemble`` (``"logits"``: mean logit,
    ``"probs"``: mean of :meth:`~videolens.models.VideoTextModel.probabilities`)."""
    groups = [[e] if isinstance(e, VideoEmbedding) else list(e) for e in embeddings]
    counts = [len(g) for g in groups]
    flat = [e for g in groups for e in g]
    rows = []
    for start in range(0, len(flat), 1024):  # bounded memory for X-CLIP's (B, K, D)
        rows.append(model.logits(flat[start:start + 1024], text))
    logits = torch.cat(rows) if rows else torch.empty(0, text.shape[0])  # (sum clips, K)
    if all(count == 1 for count in counts):
        return logits
    if ensemble == "probs":
        logits = model.probabilities(logits)
    # (sum clips, K) -> one (clips, K) block per video -> (N, K)
    return torch.stack([block.mean(dim=0) for block in torch.split(logits, counts)])


STD_CONVENTION = ("population std (ddof=0) over the {n} runs; the sample std (ddof=1) is "
                  "sqrt({n}/{m}) = {factor:.4f} times larger and is in extra['std_sample']")


def over_splits(results: Sequence[EvalResult]) -> EvalResult:
    """Mean ± std (population std, ddof=0) of each metric over runs on several splits.

    The convention is stated in ``record["std"]``; ``extra["std_sample"]`` holds the sample
    std (ddof=1) of each metric, since papers rarely say which they report."""
    first = results[0]
    metrics: dict[str, float] = {}
    sample: dict[str, float] = {}
    for name in first.metrics:
        values = np.array([r.metrics[name] for r in results])
        metrics[name] = float(values.mean())
        metrics[f"{name}_std"] = float(values.std())
        sample[name] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    split = "+".join(r.split for r in results)
    count = len(results)
    record = dict(first.record)
    if count > 1:
        record["std"] = STD_CONVENTION.format(n=count, m=count - 1,
                                              factor=float(np.sqrt(count / (count - 1))))
    merged = EvalResult(first.protocol, first.dataset, split, metrics,
                        sum(r.num_videos for r in results), record,
                        class_texts=first.class_texts)
    merged.extra["splits"] = {r.split: r.metrics for r in results}
    merged.extra["std_sample"] = sample
    if all(r.confusion is not None for r in results):
        merged.confusion = sum(r.confusion for r in results)  # counts over all test videos
    per_class: dict[str, list[float]] = {}
    for r in results:
        for text, value in r.per_class.items():
            per_class.setdefault(text, []).append(value)
    merged.per_class = {text: float(np.mean(values)) for text, values in per_class.items()}
    for r in results:
        merged.failures.update(r.failures)
    return merged
