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
from ..models import VideoTextModel, build_zero_shot_classifier
from ..text import ACTION_TEMPLATES, build_prompts


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


def run_record(model: VideoTextModel, sampling: Sampling, templates: Sequence[str] | None,
               **more: Any) -> dict[str, Any]:
    from .. import __version__

    return {
        "model": model.name, "model_fingerprint": model.fingerprint, "kind": model.kind,
        "videolens": __version__,
        "sampling": {"kind": sampling.kind, "num_frames": sampling.num_frames},
        "templates": list(templates) if templates is not None else list(ACTION_TEMPLATES),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **more,
    }


def sampling_for(model: VideoTextModel, frames: int | None) -> Sampling:
    """Segment sampling with the model's frames rule (:meth:`VideoTextModel.frames_for`)."""
    return Sampling(kind="uniform", num_frames=model.frames_for(frames))


def class_logits(model: VideoTextModel, embeddings: list, dataset, templates) -> torch.Tensor:
    """(N, K) logits of N videos against the dataset's classes (prompt ensembles)."""
    prompts = build_prompts(dataset.label_set(), templates)
    classifier = build_zero_shot_classifier(model, prompts)
    rows = []
    for start in range(0, len(embeddings), 1024):  # bounded memory for X-CLIP's (B, K, D)
        rows.append(model.logits(embeddings[start:start + 1024], classifier))
    return torch.cat(rows) if rows else torch.empty(0, len(prompts))


def over_splits(results: Sequence[EvalResult]) -> EvalResult:
    """Mean ± std (population std, ddof=0) of each metric over runs on several splits."""
    first = results[0]
    metrics: dict[str, float] = {}
    for name in first.metrics:
        values = np.array([r.metrics[name] for r in results])
        metrics[name] = float(values.mean())
        metrics[f"{name}_std"] = float(values.std())
    split = "+".join(r.split for r in results)
    merged = EvalResult(first.protocol, first.dataset, split, metrics,
                        sum(r.num_videos for r in results), first.record,
                        class_texts=first.class_texts)
    merged.extra["splits"] = {r.split: r.metrics for r in results}
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
