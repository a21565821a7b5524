"""Research protocols on cached video embeddings.

Each protocol is a function of (dataset, model, options) returning an :class:`EvalResult`
whose ``metrics`` name every number (``top1``, ``top5``, ``mAP``, ``t2v_R@1``, ...) and whose
``record`` says how to reproduce it (model id and weights fingerprint, videolens version,
sampling, templates, seeds).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import UsageError
from ..io import Sampling
from ..models import VideoTextModel
from ..tasks.classify import build_zero_shot_classifier
from ..text import ACTION_TEMPLATES, build_prompts
from .cache import EmbeddingCache
from .metrics import (
    confusion_matrix,
    mean_class_accuracy,
    multilabel_map,
    retrieval_metrics,
    topk_accuracy,
)


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
    if frames is not None and model.num_frames is not None and frames != model.num_frames:
        raise UsageError(f"{model.name} encodes exactly {model.num_frames} frames per video",
                         hint=f"leave --frames out or pass --frames {model.num_frames}")
    if frames is not None and frames < 1:
        raise UsageError(f"--frames must be at least 1, got {frames}")
    return Sampling(kind="uniform", num_frames=frames or model.default_frames)


def class_logits(model: VideoTextModel, embeddings: list, dataset, templates) -> torch.Tensor:
    """(N, K) logits of N videos against the dataset's classes (prompt ensembles)."""
    prompts = build_prompts(dataset.label_set(), templates)
    classifier = build_zero_shot_classifier(model, prompts)
    rows = []
    for start in range(0, len(embeddings), 1024):  # bounded memory for X-CLIP's (B, K, D)
        rows.append(model.logits(embeddings[start:start + 1024], classifier))
    return torch.cat(rows) if rows else torch.empty(0, len(prompts))


def zero_shot(dataset, model: VideoTextModel, *, frames: int | None = None,
              templates: Sequence[str] | None = None, cache: EmbeddingCache | None = None,
              workers: int = 1, progress: bool = False) -> EvalResult:
    """Zero-shot classification of every sample of ``dataset`` against all its classes.

    Single-label: ``top1``, ``top5`` (when there are at least 5 classes), ``mean_class_top1``
    (ties pessimistic, see :func:`~videolens.eval.metrics.true_class_ranks`). Multi-label
    (Charades): ``mAP`` over classes (:func:`~videolens.eval.metrics.multilabel_map`), ranking
    videos per class by their logits. Videos that fail to decode are left out and listed.
    """
    sampling = sampling_for(model, frames)
    own_cache = cache is None
    cache = cache or EmbeddingCache(model, sampling)
    try:
        paths = [s.path for s in dataset.samples]
        videos = cache.embed(paths, workers=workers, progress=progress)
    finally:
        if own_cache:
            cache.close()
    kept = [s for s in dataset.samples if s.path in videos.embeddings]
    if not kept:
        raise UsageError(f"no video of {dataset.name} ({dataset.split}) could be read",
                         hint="check --root; the first failure: "
                         + next(iter(videos.failures.values()), "none"))
    logits = class_logits(model, [videos.embeddings[s.path] for s in kept], dataset, templates)
    scores = logits.numpy()
    texts = tuple(dataset.class_texts)
    record = run_record(model, sampling, templates, from_cache=videos.from_cache,
                        computed=videos.computed)
    result = EvalResult("zero-shot", dataset.name, dataset.split, {}, len(kept), record,
                        class_texts=texts, failures=videos.failures)
    if dataset.multilabel:
        targets = np.zeros(scores.shape, dtype=np.int8)
        for row, sample in enumerate(kept):
            targets[row, list(sample.labels)] = 1
        mean_ap, per_class = multilabel_map(scores, targets)
        result.metrics["mAP"] = mean_ap
        result.per_class = {t: float(a) for t, a in zip(texts, per_class, strict=True)
                            if not np.isnan(a)}
        return result
    labels = np.array([s.labels[0] for s in kept])
    result.metrics["top1"] = topk_accuracy(scores, labels, 1)
    if scores.shape[1] >= 5:
        result.metrics["top5"] = topk_accuracy(scores, labels, 5)
    result.metrics["mean_class_top1"] = mean_class_accuracy(scores, labels, 1)
    predicted = scores.argmax(axis=1)
    result.confusion = confusion_matrix(predicted, labels, len(texts))
    present = np.unique(labels)
    result.per_class = {texts[c]: float((predicted[labels == c] == c).mean()) for c in present}
    return result


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


def retrieval(dataset, model: VideoTextModel, *, frames: int | None = None,
              cache: EmbeddingCache | None = None, workers: int = 1,
              progress: bool = False) -> EvalResult:
    """Text->video and video->text retrieval (MSR-VTT style) with cosine similarity.

    Every caption is a text->video query whose one relevant video is its own; for
    video->text each video's relevant items are all of its captions and its rank is that of
    the best-ranked one (:func:`~videolens.eval.metrics.retrieval_metrics`). Captions are
    encoded as written (no template).
    """
    sampling = sampling_for(model, frames)
    own_cache = cache is None
    cache = cache or EmbeddingCache(model, sampling)
    try:
        videos = cache.embed([s.path for s in dataset.samples], workers=workers,
                             progress=progress)
    finally:
        if own_cache:
            cache.close()
    kept = [s for s in dataset.samples if s.path in videos.embeddings and s.captions]
    if not kept:
        raise UsageError(f"no captioned video of {dataset.name} could be read")
    captions, owner = [], []
    for index, sample in enumerate(kept):
        for caption in sample.captions:
            captions.append(caption)
            owner.append(index)
    text = model.encode_text(captions)
    similarity = model.logits([videos.embeddings[s.path] for s in kept], text)  # (V, T)
    similarity = similarity.numpy()
    t2v = retrieval_metrics(similarity.T, [[o] for o in owner])
    by_video: list[list[int]] = [[] for _ in kept]
    for caption_index, o in enumerate(owner):
        by_video[o].append(caption_index)
    v2t = retrieval_metrics(similarity, by_video)
    metrics = {**t2v.as_dict("t2v_"), **v2t.as_dict("v2t_")}
    record = run_record(model, sampling, [], captions=len(captions))
    return EvalResult("retrieval", dataset.name, dataset.split, metrics, len(kept), record,
                      failures=videos.failures)


PROTOCOLS = ("zero-shot", "cross-dataset", "base-to-novel", "few-shot", "retrieval")
SPLIT_SETS = {"ucf101": ("test1", "test2", "test3"), "hmdb51": ("test1", "test2", "test3")}


def evaluate(
    protocol: str,
    dataset: str,
    root: str,
    *,
    model: VideoTextModel,
    split: str | None = None,
    frames: int | None = None,
    templates: Sequence[str] | None = None,
    overrides: str | None = None,
    class_names_file: str | None = None,
    split_files: Sequence[str] = (),
    k400_classes: str | None = None,
    subsets: int = 3,
    subset_size: int = 160,
    seed: int = 0,
    shots: Sequence[int] = (2, 4, 8, 16),
    seeds: Sequence[int] = (0, 1, 2),
    train_split: str | None = None,
    workers: int = 1,
    progress: bool = False,
) -> EvalResult:
    """Run ``protocol`` on ``dataset`` read from ``root`` (never downloaded).

    ``split="splits"`` runs the dataset's three official test splits and reports mean ± std
    (UCF101, HMDB51); ``split="all"`` is the full test set (every video, the "UCF*" of the
    papers). Video embeddings are cached per (weights, sampling, file), so a second run with
    other templates or overrides only encodes text. Protocol-specific options:
    ``cross-dataset`` (Kinetics-600 classes absent from Kinetics-400): ``k400_classes``
    (a K400 root, CSV or class list; required), ``split_files`` (published subset files),
    ``subsets``, ``subset_size``, ``seed``; ``base-to-novel``: ``split_files`` (published
    split folders/files; several -> mean ± std); ``few-shot``: ``shots``, ``seeds``,
    ``train_split`` (default: the train split matching ``split``).
    """
    from .datasets import load_dataset

    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}", hint=f"use one of {PROTOCOLS}")
    sampling = sampling_for(model, frames)

    def load(name: str | None):
        return load_dataset(dataset, root, split=name, overrides=overrides,
                            class_names_file=class_names_file)

    common = {"frames": frames, "workers": workers, "progress": progress}
    with EmbeddingCache(model, sampling) as cache:
        common["cache"] = cache
        if protocol == "cross-dataset":
            from .openvocab import cross_dataset_k600

            if k400_classes is None:
                raise UsageError("cross-dataset needs the Kinetics-400 classes",
                                 hint="pass --k400-classes (a K400 root, its CSV, or a list)")
            data = load(split)
            result = cross_dataset_k600(
                data, k400_classes, model, split_file=list(split_files) or None,
                subsets=subsets, subset_size=subset_size, seed=seed, templates=templates,
                **common)
            return _with_sources(result, data)
        if protocol == "base-to-novel":
            from .openvocab import base_to_novel

            data = load(split)
            files = list(split_files)
            result = base_to_novel(data, model, split_file=files if len(files) > 1 else
                                   (files[0] if files else None), templates=templates,
                                   **common)
            return _with_sources(result, data)
        if protocol == "few-shot":
            from .fewshot import few_shot

            test = load(split)
            train = load(train_split or _train_split_for(test.split))
            result = few_shot(train, test, model, shots=tuple(shots), seeds=tuple(seeds),
                              templates=templates, **common)
            return _with_sources(result, test)
        splits = SPLIT_SETS.get(dataset) if split == "splits" else (split,)
        if splits is None:
            raise UsageError(f"--split splits is defined for {', '.join(SPLIT_SETS)} only")
        results = []
        for name in splits:
            data = load(name)
            if protocol == "retrieval":
                result = retrieval(data, model, **common)
            else:
                result = zero_shot(data, model, templates=templates, **common)
            results.append(_with_sources(result, data))
    return results[0] if len(results) == 1 else over_splits(results)


def _train_split_for(test_split: str) -> str:
    if test_split.startswith("test") and test_split[4:].isdigit():
        return f"train{test_split[4:]}"
    return "train"


def _with_sources(result: EvalResult, data) -> EvalResult:
    result.record["dataset_sources"] = list(getattr(data, "sources", ()))
    result.record["missing_videos"] = len(getattr(data, "missing", ()))
    return result
