"""The single-dataset protocols on cached video embeddings: zero-shot and retrieval.

Each protocol is a function of (dataset, model, options) returning an :class:`EvalResult`
whose ``metrics`` name every number (``top1``, ``top5``, ``mAP``, ``t2v_R@1``, ...) and whose
``record`` says how to reproduce it (model id and weights fingerprint, videolens version,
the full test sampling, templates, seeds, and every convention that changes a number).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..errors import UsageError
from ..models import VideoTextModel
from .cache import CachedVideos, EmbeddingCache, embed_videos
from .metrics import (
    caption_set_similarity,
    confusion_matrix,
    mean_class_accuracy,
    multilabel_map,
    retrieval_metrics,
    topk_accuracy,
)
from .results import EvalResult, class_logits, run_record, sampling_for, view_logits
from .views import ViewSampling

V2T_CONVENTIONS = ("clip4clip", "all-captions")
V2T_DESCRIPTIONS = {
    "clip4clip": "video->text ranks the videos' caption sets, each scored by its best "
                 "caption (CLIP4Clip multi-sentence evaluation)",
    "all-captions": "video->text ranks every caption; a video's rank is that of its "
                    "best-ranked own caption",
}


def _embed(paths: Sequence[str], model: VideoTextModel, frames: int | None,
           cache: EmbeddingCache | None, sampling: ViewSampling | None, workers: int,
           progress: bool) -> tuple[CachedVideos, ViewSampling]:
    return embed_videos(paths, model, cache, sampling or sampling_for(model, frames),
                        workers=workers, progress=progress)


def zero_shot(dataset, model: VideoTextModel, *, frames: int | None = None,
              templates: Sequence[str] | None = None, cache: EmbeddingCache | None = None,
              sampling: ViewSampling | None = None, prompt_style: str = "templates",
              actionless: Literal["exclude", "negative"] = "exclude",
              workers: int = 1, progress: bool = False) -> EvalResult:
    """Zero-shot classification of every sample of ``dataset`` against all its classes.

    Single-label: ``top1``, ``top5`` (when there are at least 5 classes), ``mean_class_top1``
    (ties pessimistic, see :func:`~videolens.eval.metrics.true_class_ranks`). Multi-label
    (Charades): ``mAP`` over classes (:func:`~videolens.eval.metrics.multilabel_map`), ranking
    videos per class by their scores; ``actionless="exclude"`` leaves videos without any
    class out of the ranking, as ``Charades_v1_classify.m`` does. Videos that fail to decode
    are left out and listed. ``sampling``: the test sampling when no ``cache`` is given
    (views, crops, dense clips; :mod:`~videolens.eval.views`); several clips per video are
    combined by its ``ensemble``. ``prompt_style``:
    :func:`~videolens.eval.results.class_prompts`.
    """
    videos, sampling = _embed([s.path for s in dataset.samples], model, frames, cache,
                                    sampling, workers, progress)
    kept = [s for s in dataset.samples if s.path in videos.embeddings]
    if not kept:
        raise UsageError(f"no video of {dataset.name} ({dataset.split}) could be read",
                         hint="check --root; the first failure: "
                         + next(iter(videos.failures.values()), "none"))
    logits = class_logits(model, [videos.views[s.path] for s in kept], dataset, templates,
                          ensemble=sampling.ensemble, style=prompt_style)
    scores = logits.numpy()
    texts = tuple(dataset.class_texts)
    record = run_record(model, sampling, templates, from_cache=videos.from_cache,
                        computed=videos.computed, prompt_style=prompt_style)
    result = EvalResult("zero-shot", dataset.name, dataset.split, {}, len(kept), record,
                        class_texts=texts, failures=videos.failures)
    if dataset.multilabel:
        targets = np.zeros(scores.shape, dtype=np.int8)
        for row, sample in enumerate(kept):
            targets[row, list(sample.labels)] = 1
        mean_ap, per_class = multilabel_map(scores, targets, actionless=actionless)
        result.metrics["mAP"] = mean_ap
        result.per_class = {t: float(a) for t, a in zip(texts, per_class, strict=True)
                            if not np.isnan(a)}
        empty = int((targets.sum(axis=1) == 0).sum())
        record["actionless_videos"] = {
            "count": empty, "rule": actionless,
            "meaning": "left out of the ranking (Charades_v1_classify.m)" if actionless
            == "exclude" else "ranked as negatives of every class"}
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
              cache: EmbeddingCache | None = None, sampling: ViewSampling | None = None,
              v2t: str = "clip4clip", workers: int = 1, progress: bool = False) -> EvalResult:
    """Text->video and video->text retrieval (MSR-VTT style) with the model's scores.

    Every caption is a text->video query whose one relevant video is its own. Video->text
    with several captions per video (``1k-a-all``) follows ``v2t``: ``"clip4clip"``
    (default, comparable with CLIP4Clip and the papers that reuse its code): a video ranks
    the videos' caption *sets*, each scored by its best caption
    (:func:`~videolens.eval.metrics.caption_set_similarity`); ``"all-captions"``: a video
    ranks every caption and its rank is that of its best-ranked own caption. With one
    caption per video the two are the same. Captions are encoded as written (no template).
    The convention used is in ``record["v2t"]``; several clips per video average their
    scores (``sampling.ensemble``).
    """
    if v2t not in V2T_CONVENTIONS:
        raise UsageError(f"unknown video->text convention {v2t!r}",
                         hint=f"use one of {', '.join(V2T_CONVENTIONS)}")
    videos, sampling = _embed([s.path for s in dataset.samples], model, frames, cache,
                                    sampling, workers, progress)
    kept = [s for s in dataset.samples if s.path in videos.embeddings and s.captions]
    if not kept:
        raise UsageError(f"no captioned video of {dataset.name} could be read")
    captions, owner = [], []
    for index, sample in enumerate(kept):
        for caption in sample.captions:
            captions.append(caption)
            owner.append(index)
    text = model.encode_text(captions)
    similarity = view_logits(model, [videos.views[s.path] for s in kept], text,
                             ensemble=sampling.ensemble).numpy()  # (V, T)
    t2v = retrieval_metrics(similarity.T, [[o] for o in owner])
    if v2t == "clip4clip":
        v2t_result = retrieval_metrics(caption_set_similarity(similarity, owner),
                                       [[v] for v in range(len(kept))])
    else:
        by_video: list[list[int]] = [[] for _ in kept]
        for caption_index, o in enumerate(owner):
            by_video[o].append(caption_index)
        v2t_result = retrieval_metrics(similarity, by_video)
    metrics = {**t2v.as_dict("t2v_"), **v2t_result.as_dict("v2t_")}
    record = run_record(model, sampling, [], captions=len(captions), from_cache=videos.from_cache,
                        computed=videos.computed,
                        v2t={"convention": v2t, "meaning": V2T_DESCRIPTIONS[v2t],
                             "captions_per_video": max(len(s.captions) for s in kept)})
    return EvalResult("retrieval", dataset.name, dataset.split, metrics, len(kept), record,
                      failures=videos.failures)
