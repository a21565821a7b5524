"""``videolens eval``: a research protocol on a dataset read from disk (never downloaded).

Joins the dataset readers, the embedding cache and the protocols of :mod:`videolens.eval`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..eval.cache import EmbeddingCache
from ..eval.datasets import load_dataset
from ..eval.fewshot import few_shot
from ..eval.openvocab import base_to_novel, cross_dataset_k600
from ..eval.protocols import retrieval, zero_shot
from ..eval.results import EvalResult, over_splits, sampling_for
from ..models import VideoTextModel
from .common import get_model

if TYPE_CHECKING:
    from .ray_engine import RayEngine

PROTOCOLS = ("zero-shot", "cross-dataset", "base-to-novel", "few-shot", "retrieval")
SPLIT_SETS = {"ucf101": ("test1", "test2", "test3"), "hmdb51": ("test1", "test2", "test3")}


def evaluate(
    protocol: str,
    dataset: str,
    root: str | os.PathLike,
    *,
    model: VideoTextModel | str | None = None,
    device: str = "auto",
    dtype: str = "auto",
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
    engine: str | RayEngine = "local",
    progress: bool = False,
) -> EvalResult:
    """Run ``protocol`` on ``dataset`` read from ``root`` (never downloaded) with ``model`` (a
    loaded model, or a preset / hub id / folder; default ``clip-b32``).

    ``split="splits"`` runs the dataset's three official test splits and reports mean ± std
    (UCF101, HMDB51); ``split="all"`` is the full test set (every video, the "UCF*" of the
    papers). Video embeddings are cached per (weights, sampling, file), so a second run with
    other templates or overrides only encodes text; ``engine="ray"`` (or a
    :class:`~videolens.pipelines.ray_engine.RayEngine`) decodes and encodes the videos
    not cached yet on Ray Data, into the same cache. Protocol-specific options:
    ``cross-dataset`` (Kinetics-600 classes absent from Kinetics-400): ``k400_classes``
    (a K400 root, CSV or class list; required), ``split_files`` (published subset files),
    ``subsets``, ``subset_size``, ``seed``; ``base-to-novel``: ``split_files`` (published
    split folders/files; several -> mean ± std); ``few-shot``: ``shots``, ``seeds``,
    ``train_split`` (default: the train split matching ``split``).
    """
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}", hint=f"use one of {PROTOCOLS}")
    model = get_model(model, device, dtype)
    root = os.path.expanduser(os.fspath(root))
    sampling = sampling_for(model, frames)

    def load(name: str | None):
        return load_dataset(dataset, root, split=name, overrides=overrides,
                            class_names_file=class_names_file)

    common = {"frames": frames, "workers": workers, "progress": progress}
    video_engine = None
    if engine != "local":  # Ray decodes and encodes the videos the cache lacks
        from .ray_engine import cache_engine

        video_engine = cache_engine(engine)
    with EmbeddingCache(model, sampling, engine=video_engine) as cache:
        common["cache"] = cache
        if protocol == "cross-dataset":
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
            data = load(split)
            files = list(split_files)
            result = base_to_novel(data, model, split_file=files if len(files) > 1 else
                                   (files[0] if files else None), templates=templates,
                                   **common)
            return _with_sources(result, data)
        if protocol == "few-shot":
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
