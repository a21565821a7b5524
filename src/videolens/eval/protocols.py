"""The single-dataset protocols on cached video embeddings: zero-shot and retrieval.

Each protocol is a function of (dataset, model, options) returning an :class:`EvalResult`
whose ``metrics`` name every number (``top1``, ``top5``, ``mAP``, ``t2v_R@1``, ...) and whose
``record`` says how to reproduce it (model id and weights fingerprint, videolens version,
sampling, templates, seeds).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import UsageError
from ..models import VideoTextModel
from .cache import EmbeddingCache
from .metrics import (
    confusion_matrix,
    mean_class_accuracy,
    multilabel_map,
    retrieval_metrics,
    topk_accuracy,
)
from .results import EvalResult, class_logits, run_record, sampling_for


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
