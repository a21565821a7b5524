"""Protocols end to end with a tiny model: numbers against an independent computation, the
embedding cache (reuse across prompts, resume), splits mean ± std, retrieval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from media import make_video

from videolens import classify
from videolens.eval.cache import EmbeddingCache
from videolens.eval.protocols import retrieval, zero_shot
from videolens.eval.results import over_splits, sampling_for
from videolens.models import load_model
from videolens.text import LabelSet


@dataclass(frozen=True)
class FakeSample:
    path: str
    labels: tuple[int, ...]
    video_id: str = ""
    captions: tuple[str, ...] = ()


@dataclass(frozen=True)
class FakeDataset:
    name: str
    split: str
    class_names: tuple[str, ...]
    class_texts: tuple[str, ...]
    samples: tuple[FakeSample, ...]
    multilabel: bool = False

    def label_set(self) -> LabelSet:
        return LabelSet(self.class_texts)


CLASSES = ("running", "cooking dinner", "swimming", "playing guitar", "jumping", "reading")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("eval-clips")
    paths = []
    for i in range(8):
        paths.append(str(make_video(
            folder / f"clip{i}.mp4", num_frames=12 + i, fps=10, size=(48, 40),
            content=lambda f, i=i: np.full((40, 48, 3), (30 * i, 200 - 20 * i, (f * 9) % 255),
                                           np.uint8))))
    return paths


def dataset(clips, split="test1", multilabel=False) -> FakeDataset:
    samples = tuple(
        FakeSample(p, (i % 6,) if not multilabel else (i % 6, (i + 1) % 6), f"v{i}",
                   (f"caption {i}", f"another caption {i}"))
        for i, p in enumerate(clips))
    return FakeDataset("fake", split, CLASSES, CLASSES, samples, multilabel)


def test_zero_shot_equals_classify(clips, tiny_clip, tmp_path):
    model = load_model(tiny_clip, device="cpu")
    data = dataset(clips)
    with EmbeddingCache(model, sampling_for(model, 4), root=tmp_path) as cache:
        result = zero_shot(data, model, frames=4, templates=["a video of {}."], cache=cache)
    independent = classify(clips, list(CLASSES), model=model, frames=4, top=0,
                           templates=["a video of {}."], device="cpu")
    labels = [s.labels[0] for s in data.samples]
    ranks = [[x.label for x in r.scores].index(CLASSES[y]) + 1
             for r, y in zip(independent, labels, strict=True)]
    assert result.metrics["top1"] == pytest.approx(np.mean([r <= 1 for r in ranks]))
    assert result.metrics["top5"] == pytest.approx(np.mean([r <= 5 for r in ranks]))
    assert result.num_videos == 8 and result.confusion.sum() == 8
    assert result.record["model"] == tiny_clip and result.record["templates"] == [
        "a video of {}."]


def test_cache_is_reused_across_prompts_and_resumes(clips, tiny_clip, tmp_path):
    model = load_model(tiny_clip, device="cpu")
    sampling = sampling_for(model, 4)
    with EmbeddingCache(model, sampling, root=tmp_path) as cache:
        partial = cache.embed(clips[:3])  # an "interrupted" first run
    assert (partial.computed, partial.from_cache) == (3, 0)
    with EmbeddingCache(model, sampling, root=tmp_path) as cache:
        first = zero_shot(dataset(clips), model, frames=4, cache=cache)
    assert (first.record["computed"], first.record["from_cache"]) == (5, 3)

    def refuse(*args, **kwargs):
        raise AssertionError("videos were encoded again")

    model.encode_video = refuse  # new prompts must reuse every stored video embedding
    with EmbeddingCache(model, sampling, root=tmp_path) as cache:
        second = zero_shot(dataset(clips), model, frames=4, templates=["{}"], cache=cache)
    assert second.record["from_cache"] == 8
    # a cached embedding is the computed one
    fresh = load_model(tiny_clip, device="cpu")
    with EmbeddingCache(fresh, sampling, root=tmp_path) as cache:
        stored = cache.embed(clips[:1]).embeddings[clips[0]].embedding
    direct = fresh.encode_video(classify_frames(clips[0], 4))
    torch.testing.assert_close(stored, direct.embedding)


def classify_frames(path: str, n: int) -> np.ndarray:
    from videolens.io import Sampling, load_video

    return load_video(path, Sampling(kind="uniform", num_frames=n))[1].frames


def test_over_splits_mean_and_std(clips, tiny_clip):
    model = load_model(tiny_clip, device="cpu")
    runs = [zero_shot(dataset(clips[:k], f"test{k}"), model, frames=4) for k in (4, 6, 8)]
    merged = over_splits(runs)
    top1 = [r.metrics["top1"] for r in runs]
    assert merged.metrics["top1"] == pytest.approx(np.mean(top1))
    assert merged.metrics["top1_std"] == pytest.approx(np.std(top1))
    assert set(merged.extra["splits"]) == {"test4", "test6", "test8"}


def test_multilabel_map(clips, tiny_clip):
    from videolens.eval.metrics import multilabel_map

    model = load_model(tiny_clip, device="cpu")
    data = dataset(clips, multilabel=True)
    result = zero_shot(data, model, frames=4, templates=["{}"])
    # logits, not per-video softmax probabilities: mAP ranks videos per class
    logits = torch.stack([
        torch.tensor([s.logit for s in sorted(r.scores, key=lambda s: CLASSES.index(s.label))])
        for r in classify(clips, list(CLASSES), model=model, frames=4, top=0, templates=["{}"])
    ])
    targets = np.zeros((8, 6), dtype=int)
    for row, sample in enumerate(data.samples):
        targets[row, list(sample.labels)] = 1
    assert result.metrics["mAP"] == pytest.approx(multilabel_map(logits.numpy(), targets)[0])


def test_retrieval(clips, tiny_clip):
    from videolens.eval.metrics import retrieval_metrics

    model = load_model(tiny_clip, device="cpu")
    data = dataset(clips)
    result = retrieval(data, model, frames=4)
    # independent: cosine of renormalised frame means against normalised caption embeddings
    videos = torch.stack([model.encode_video(classify_frames(p, 4)).embedding for p in clips])
    captions = [c for s in data.samples for c in s.captions]
    text = model.encode_text(captions)
    similarity = (videos @ text.T).numpy()
    expected = retrieval_metrics(similarity.T, [[i // 2] for i in range(16)])
    assert result.metrics["t2v_R@1"] == pytest.approx(expected.r1)
    assert result.metrics["t2v_MnR"] == pytest.approx(expected.mean_rank)
    # default: CLIP4Clip's multi-sentence v2t, a video ranks the 8 caption pairs by their best
    sets = np.maximum(similarity[:, 0::2], similarity[:, 1::2])  # (8 videos, 8 caption sets)
    v2t = retrieval_metrics(sets, [[v] for v in range(8)])
    assert result.metrics["v2t_MnR"] == pytest.approx(v2t.mean_rank)
    assert result.metrics["v2t_R@1"] == pytest.approx(v2t.r1)
    assert result.record["v2t"]["convention"] == "clip4clip"
    every = retrieval(data, model, frames=4, v2t="all-captions")
    v2t_all = retrieval_metrics(similarity, [[2 * v, 2 * v + 1] for v in range(8)])
    assert every.metrics["v2t_MnR"] == pytest.approx(v2t_all.mean_rank)
    assert every.record["v2t"]["convention"] == "all-captions"
    assert every.metrics["t2v_R@1"] == result.metrics["t2v_R@1"]  # t2v does not change


def test_multilabel_actionless_videos(clips, tiny_clip):
    from videolens.eval.metrics import multilabel_map

    model = load_model(tiny_clip, device="cpu")
    base = dataset(clips, multilabel=True)
    # two videos without any class, as 75 Charades test videos are
    samples = tuple(FakeSample(s.path, () if i in (1, 4) else s.labels, s.video_id)
                    for i, s in enumerate(base.samples))
    data = FakeDataset("fake", "test", CLASSES, CLASSES, samples, multilabel=True)
    official = zero_shot(data, model, frames=4, templates=["{}"])
    negative = zero_shot(data, model, frames=4, templates=["{}"], actionless="negative")
    logits = torch.stack([
        torch.tensor([s.logit for s in sorted(r.scores, key=lambda s: CLASSES.index(s.label))])
        for r in classify(clips, list(CLASSES), model=model, frames=4, top=0, templates=["{}"])
    ]).numpy()
    targets = np.zeros((8, 6), dtype=int)
    for row, sample in enumerate(samples):
        targets[row, list(sample.labels)] = 1
    keep = targets.sum(axis=1) > 0
    assert official.metrics["mAP"] == pytest.approx(multilabel_map(logits[keep],
                                                                   targets[keep])[0])
    assert negative.metrics["mAP"] == pytest.approx(
        multilabel_map(logits, targets, actionless="negative")[0])
    assert official.record["actionless_videos"]["count"] == 2
    assert official.record["actionless_videos"]["rule"] == "exclude"
