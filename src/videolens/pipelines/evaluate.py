"""``videolens eval``: a research protocol on a dataset read from disk (never downloaded).

Joins the dataset readers, the test sampling and recipes, the embedding cache and the
protocols of :mod:`videolens.eval`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..eval.cache import EmbeddingCache
from ..eval.counterfactual import counterfactual, read_counterfactuals
from ..eval.datasets import Dataset, apply_overrides, load_dataset
from ..eval.fewshot import few_shot
from ..eval.openvocab import base_to_novel, cross_dataset_k600
from ..eval.protocols import retrieval, zero_shot
from ..eval.recipes import Recipe, get_recipe, raw_class_texts
from ..eval.results import EvalResult, over_splits
from ..eval.views import ViewSampling
from ..models import VideoTextModel
from .common import get_model

if TYPE_CHECKING:
    from .ray_engine import RayEngine

PROTOCOLS = ("zero-shot", "cross-dataset", "base-to-novel", "few-shot", "retrieval",
             "counterfactual")
SPLIT_SETS = {"ucf101": ("test1", "test2", "test3"), "hmdb51": ("test1", "test2", "test3")}


def eval_sampling(model: VideoTextModel, *, frames: int | None = None,
                  stride: int | None = None, views: int | None = None,
                  crops: int | None = None, ensemble: str | None = None,
                  recipe: Recipe | None = None) -> ViewSampling:
    """The :class:`~videolens.eval.views.ViewSampling` of an evaluation: the recipe's values,
    overridden by every option given. ``stride`` switches to dense clips (``frames`` frames
    ``stride`` apart); without it and without a dense recipe, segment sampling. ``frames``
    goes through the model's rule (:meth:`VideoTextModel.frames_for`), so X-CLIP keeps its
    clip length. A pooled-frames ensemble with a fixed-clip model falls back to mean logits
    when it comes from a recipe (and is refused when asked for)."""
    fields: dict[str, Any] = dict(recipe.sampling) if recipe is not None else {}
    if stride is not None:
        fields["mode"], fields["stride"] = "dense", stride
    for name, value in (("views", views), ("crops", crops), ("ensemble", ensemble)):
        if value is not None:
            fields[name] = value
    wanted = frames if frames is not None else fields.get("frames")
    if recipe is not None and frames is None and model.num_frames is not None:
        wanted = None  # a fixed-clip model keeps its own length under a recipe
    fields["frames"] = model.frames_for(wanted)
    if (fields.get("ensemble") == "frames" and model.num_frames is not None
            and ensemble is None):
        fields["ensemble"] = "logits"
    return ViewSampling(**fields)


def evaluate(
    protocol: str,
    dataset: str | None = None,
    root: str | os.PathLike | None = None,
    *,
    model: VideoTextModel | str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    split: str | None = None,
    frames: int | None = None,
    stride: int | None = None,
    views: int | None = None,
    crops: int | None = None,
    ensemble: str | None = None,
    recipe: str | None = None,
    templates: Sequence[str] | None = None,
    overrides: str | Sequence[str] | None = None,
    class_names_file: str | None = None,
    split_files: Sequence[str] = (),
    video_lists: Sequence[str] = (),
    k400_classes: str | None = None,
    subsets: int = 3,
    subset_size: int = 160,
    seed: int = 0,
    shots: Sequence[int] = (2, 4, 8, 16),
    seeds: Sequence[int] = (0, 1, 2),
    train_split: str | None = None,
    v2t: str = "clip4clip",
    actionless: str = "exclude",
    data: str | os.PathLike | None = None,
    score: str = "cosine",
    workers: int = 1,
    engine: str | RayEngine = "local",
    progress: bool = False,
) -> EvalResult:
    """Run ``protocol`` on ``dataset`` read from ``root`` (never downloaded) with ``model`` (a
    loaded model, or a preset / hub id / folder; default ``clip-b32``).

    ``split="splits"`` runs the dataset's three official test splits and reports mean ± std
    (UCF101, HMDB51; population std, stated in ``record["std"]``); ``split="all"`` is every
    video ("UCF*"), ``split="full"`` for HMDB51 split 1's training and test videos (5,100,
    "HMDB*" as FROSTER and Open-VCLIP cut it).

    ``overrides``: one class-text file or several, applied in order (FROSTER's base and
    novel rephrased files of one split, for instance).

    Test sampling (:mod:`videolens.eval.views`): ``frames`` per view, segment sampling, or
    dense clips of ``frames`` frames ``stride`` apart; ``views`` temporal views x ``crops``
    spatial crops, combined by ``ensemble`` (``logits``, ``probs``, ``frames``). ``recipe``
    (``froster``, ``vificlip``, ``xclip``, ``openvclip``; :mod:`videolens.eval.recipes`) sets
    all of these plus templates and class texts as the paper's test code does; explicit
    options override it. Video embeddings are cached per (weights, full sampling, file), so
    a second run with other templates or overrides only encodes text; ``engine="ray"`` (or a
    :class:`~videolens.pipelines.ray_engine.RayEngine`) decodes and encodes the videos not
    cached yet on Ray Data, into the same cache.

    Protocol-specific options: ``cross-dataset`` (Kinetics-600 classes absent from
    Kinetics-400): ``k400_classes`` (required), ``split_files`` (published subsets),
    ``video_lists`` (one published video list per subset, e.g. ViFi-CLIP's), ``subsets``,
    ``subset_size``, ``seed``; ``base-to-novel``: ``split_files`` (several -> mean ± std);
    ``few-shot``: ``shots``, ``seeds``, ``train_split``; ``retrieval``: ``v2t``
    (``clip4clip`` or ``all-captions``); ``zero-shot`` on multi-label data: ``actionless``
    (``exclude``, as ``Charades_v1_classify.m``, or ``negative``); ``counterfactual``:
    ``data`` (a JSON Lines or Feint6K CSV file; ``dataset`` unused, ``root`` optional: where
    videos are looked for besides next to the file) and ``score`` (``cosine`` or
    ``softmax``).
    """
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}", hint=f"use one of {PROTOCOLS}")
    chosen = get_recipe(recipe) if recipe is not None else None
    model = get_model(model, device, dtype)
    sampling = eval_sampling(model, frames=frames, stride=stride, views=views, crops=crops,
                             ensemble=ensemble, recipe=chosen)
    if templates is None and chosen is not None:
        templates = list(chosen.templates)
    style = chosen.prompt_style if chosen is not None else "templates"
    video_engine = None
    if engine != "local":  # Ray decodes and encodes the videos the cache lacks
        from .ray_engine import cache_engine

        video_engine = cache_engine(engine)
    if protocol == "counterfactual":
        return _counterfactual(data, root, model, sampling, chosen, score, workers, progress,
                               video_engine)
    if dataset is None or root is None:
        raise UsageError(f"{protocol} needs a dataset and its folder",
                         hint="pass --dataset NAME --root DIR")
    root = os.path.expanduser(os.fspath(root))

    def load(name: str | None) -> Dataset:
        data_set = load_dataset(dataset, root, split=name, class_names_file=class_names_file)
        if chosen is not None and chosen.class_texts == "raw" and data_set.class_names:
            data_set = replace(data_set, class_texts=raw_class_texts(data_set.class_names))
        for override in [overrides] if isinstance(overrides, str) else (overrides or ()):
            data_set = apply_overrides(data_set, override)  # in order: a later file wins
        return data_set

    common: dict[str, Any] = {"workers": workers, "progress": progress}
    with EmbeddingCache(model, sampling, engine=video_engine) as cache:
        common["cache"] = cache
        if protocol == "cross-dataset":
            if k400_classes is None:
                raise UsageError("cross-dataset needs the Kinetics-400 classes",
                                 hint="pass --k400-classes (a K400 root, its CSV, or a list)")
            data_set = load(split)
            result = cross_dataset_k600(
                data_set, k400_classes, model, split_file=list(split_files) or None,
                subsets=subsets, subset_size=subset_size, seed=seed,
                video_lists=list(video_lists), templates=templates, prompt_style=style,
                **common)
            return _finish(result, data_set, chosen)
        if protocol == "base-to-novel":
            data_set = load(split)
            files = list(split_files)
            result = base_to_novel(data_set, model, split_file=files if len(files) > 1 else
                                   (files[0] if files else None), templates=templates,
                                   prompt_style=style, **common)
            return _finish(result, data_set, chosen)
        if protocol == "few-shot":
            test = load(split)
            train = load(train_split or _train_split_for(test.split))
            result = few_shot(train, test, model, shots=tuple(shots), seeds=tuple(seeds),
                              templates=templates, **common)
            return _finish(result, test, chosen)
        splits = SPLIT_SETS.get(dataset.strip().lower()) if split == "splits" else (split,)
        if splits is None:
            raise UsageError(f"--split splits is defined for {', '.join(SPLIT_SETS)} only")
        results = []
        for name in splits:
            data_set = load(name)
            if protocol == "retrieval":
                result = retrieval(data_set, model, v2t=v2t, **common)
            else:
                result = zero_shot(data_set, model, templates=templates, prompt_style=style,
                                   actionless=actionless, **common)
            results.append(_finish(result, data_set, chosen))
    return results[0] if len(results) == 1 else over_splits(results)


def _counterfactual(data, root, model: VideoTextModel, sampling: ViewSampling,
                    chosen: Recipe | None, score: str, workers: int, progress: bool,
                    video_engine=None) -> EvalResult:
    if data is None:
        raise UsageError("counterfactual needs its data file",
                         hint="pass --data FILE (JSON Lines: video, caption, counterfactuals)")
    items, missing = read_counterfactuals(data, root)
    with EmbeddingCache(model, sampling, engine=video_engine) as cache:
        result = counterfactual(items, model, name=Path(os.fspath(data)).stem, cache=cache,
                                score=score, workers=workers, progress=progress)
    result.split = Path(os.fspath(data)).name
    result.record["dataset_sources"] = [os.fspath(data)]
    result.record["missing_videos"] = len(missing)
    if chosen is not None:
        result.record["recipe"] = chosen.describe()
    return result


def _train_split_for(test_split: str) -> str:
    if test_split.startswith("test") and test_split[4:].isdigit():
        return f"train{test_split[4:]}"
    return "train"


def _finish(result: EvalResult, data, recipe: Recipe | None) -> EvalResult:
    result.record["dataset_sources"] = list(getattr(data, "sources", ()))
    result.record["missing_videos"] = len(getattr(data, "missing", ()))
    if recipe is not None:
        result.record["recipe"] = recipe.describe()
    return result
