"""Multi-view test sampling: times and frame indices against slowfast's definitions, crops,
decoding the right frames, cache keys, and multi-view protocols against an independent
computation with a tiny model."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from media import frame_index, make_video

from videolens.errors import UsageError
from videolens.eval.cache import EmbeddingCache
from videolens.eval.protocols import zero_shot
from videolens.eval.views import (
    ViewSampling,
    crop_boxes,
    dense_frame_indices,
    load_views,
    segment_view_times,
)
from videolens.io import read_frames, uniform_times
from videolens.models import load_model
from videolens.text import LabelSet

# --- times and indices ------------------------------------------------------------------------


def test_one_segment_view_is_uniform_sampling_bit_for_bit():
    for duration, frames in ((10.0, 8), (3.3333, 32), (0.0, 4)):
        assert segment_view_times(duration, frames, 0, 1).tobytes() == \
            uniform_times(duration, frames).tobytes()


def test_segment_views_interleave():
    # 2 segments of 5 s, 3 views: points at 1/6, 3/6, 5/6 of each segment
    times = np.stack([segment_view_times(10.0, 2, v, 3) for v in range(3)])
    np.testing.assert_allclose(times, [[5 / 6, 5 + 5 / 6], [2.5, 7.5], [25 / 6, 5 + 25 / 6]])


def slowfast_indices(video_size: int, fps: float, num_frames: int, sampling_rate: int,
                     clip_idx: int, num_clips: int, use_offset: bool,
                     target_fps: float = 30) -> np.ndarray:
    """slowfast (``Visual-AI/FROSTER`` ``slowfast/datasets/decoder.py``): ``decode``'s
    ``clip_size``, ``get_start_end_idx`` and ``temporal_sampling`` on a fully decoded video."""
    clip_size = np.maximum(1.0, sampling_rate * num_frames / target_fps * fps)
    delta = max(video_size - clip_size, 0)
    if use_offset:
        if num_clips == 1:
            start_idx = math.floor(delta / 2)
        else:
            start_idx = clip_idx * math.floor(delta / (num_clips - 1))
    else:
        start_idx = delta * clip_idx / num_clips
    end_idx = start_idx + clip_size - 1
    index = torch.linspace(start_idx, end_idx, num_frames)
    return torch.clamp(index, 0, video_size - 1).long().numpy()


def test_dense_indices_equal_slowfast_on_random_videos():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        size = int(rng.integers(1, 1500))
        fps = float(rng.choice([8, 15, 24, 25, 29.97, 30, 60]))
        frames, stride = int(rng.choice([4, 8, 16, 32])), int(rng.choice([1, 2, 4, 8, 16]))
        views = int(rng.integers(1, 11))
        view = int(rng.integers(0, views))
        offset = bool(rng.integers(0, 2))
        ours = dense_frame_indices(size, fps, frames, stride, view, views,
                                   view_starts="offset" if offset else "uniform")
        assert ours.tolist() == slowfast_indices(size, fps, frames, stride, view, views,
                                                 offset).tolist()


def test_dense_views_by_hand():
    # 300 frames at 30 fps, 8 frames 16 apart: clip_size 128, delta 172
    uniform = [dense_frame_indices(300, 30.0, 8, 16, v, 3)[0] for v in range(3)]
    offset = [dense_frame_indices(300, 30.0, 8, 16, v, 3, view_starts="offset")[0]
              for v in range(3)]
    assert uniform == [0, 57, 114]  # 172 * v / 3, truncated
    assert offset == [0, 86, 172]  # v * floor(172 / 2)
    assert dense_frame_indices(300, 30.0, 8, 16, 0, 1, view_starts="offset")[0] == 86
    # 127 / 7 apart: linspace(0, 127, 8)
    assert dense_frame_indices(300, 30.0, 8, 16, 0, 3).tolist() == [
        0, 18, 36, 54, 72, 90, 108, 127]


def slowfast_uniform_crop(height: int, width: int, size: int, spatial_idx: int
                          ) -> tuple[int, int]:
    """``uniform_crop`` offsets (slowfast/datasets/transform.py): (y, x)."""
    y_offset = int(math.ceil((height - size) / 2))
    x_offset = int(math.ceil((width - size) / 2))
    if height > width:
        if spatial_idx == 0:
            y_offset = 0
        elif spatial_idx == 2:
            y_offset = height - size
    else:
        if spatial_idx == 0:
            x_offset = 0
        elif spatial_idx == 2:
            x_offset = width - size
    return y_offset, x_offset


@pytest.mark.parametrize("height,width", [(240, 320), (320, 240), (224, 224), (101, 350)])
def test_three_crops_are_slowfast_uniform_crops(height, width):
    short = min(height, width)
    boxes = crop_boxes(height, width, 3)
    assert [(top, left) for top, left, _, _ in boxes] == [
        slowfast_uniform_crop(height, width, short, i) for i in range(3)]
    assert all(size_y == size_x == short for _, _, size_y, size_x in boxes)


def test_centre_crop_fraction_is_resize_256_crop_224():
    assert crop_boxes(240, 320, 1) == [(0, 0, 240, 320)]  # untouched
    # shorter side 240 -> square of 240 * 224 / 256 = 210, centred
    assert crop_boxes(240, 320, 1, 224 / 256) == [(15, 55, 210, 210)]


def test_sampling_validation_and_keys():
    assert ViewSampling(frames=8).key() == "n8"
    keys = {ViewSampling(frames=8, views=3).key(), ViewSampling(frames=8, crops=3).key(),
            ViewSampling(mode="dense", frames=8, stride=16).key(),
            ViewSampling(mode="dense", frames=8, stride=8).key(),
            ViewSampling(mode="dense", frames=8, stride=16, view_starts="offset").key(),
            ViewSampling(frames=8, crop_fraction=0.875).key(),
            ViewSampling(frames=8, views=3, ensemble="frames").key()}
    assert len(keys) == 7 and "n8" not in keys
    # the ensemble only enters the key when it changes what is stored
    assert ViewSampling(frames=8, views=3, ensemble="probs").key() == \
        ViewSampling(frames=8, views=3).key()
    for bad in ({"crops": 2}, {"views": 0}, {"stride": 0}, {"ensemble": "max"},
                {"crop_fraction": 1.5}):
        with pytest.raises(UsageError):
            ViewSampling(**bad)


# --- decoding ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """60 frames at 30 fps, 64x48, frame i showing media.frame_content(i) (lossless)."""
    return str(make_video(tmp_path_factory.mktemp("views") / "count.mp4", num_frames=60,
                          fps=30))


def test_load_views_decodes_the_dense_frames_and_crops(counted):
    sampling = ViewSampling(mode="dense", frames=4, stride=4, views=3, crops=3)
    info, loaded = load_views(counted, sampling)
    assert loaded.frames.shape == (9, 4, 48, 48, 3)  # 3 views x 3 crops, squares of 48
    for view in range(3):
        wanted = dense_frame_indices(info.frame_count, info.fps, 4, 4, view, 3)
        # the centre crop (x 8..56) still shows the frame's cells well enough to read the index
        centre = loaded.frames[3 * view + 1]
        full = read_frames(counted, wanted / info.fps).frames
        np.testing.assert_array_equal(centre, full[:, :, 8:56])
        assert [frame_index(f) for f in full] == wanted.tolist()
    np.testing.assert_array_equal(loaded.frames[6], full[:, :, 0:48])  # left crop of view 2
    np.testing.assert_array_equal(loaded.frames[8], full[:, :, 16:64])  # right crop
    assert loaded.timestamps.shape == (9, 4)


def test_load_views_segments_match_read_frames(counted):
    sampling = ViewSampling(frames=5, views=2)
    info, loaded = load_views(counted, sampling)
    for view in range(2):
        times = segment_view_times(info.duration, 5, view, 2)
        np.testing.assert_array_equal(loaded.frames[view], read_frames(counted, times).frames)


# --- cache and protocols ----------------------------------------------------------------------


@dataclass(frozen=True)
class FakeSample:
    path: str
    labels: tuple[int, ...]
    video_id: str = ""


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


CLASSES = ("running", "cooking dinner", "swimming", "playing guitar", "jumping")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("views-clips")
    paths = []
    for i in range(5):
        paths.append(str(make_video(
            folder / f"clip{i}.mp4", num_frames=20 + 3 * i, fps=10, size=(64, 48),
            content=lambda f, i=i: np.full((48, 64, 3), ((40 * i + 7 * f) % 255, 90 + 9 * f,
                                                         30 * i), np.uint8))))
    return paths


def dataset(clips) -> FakeDataset:
    samples = tuple(FakeSample(p, (i % 5,), f"v{i}") for i, p in enumerate(clips))
    return FakeDataset("fake", "test", CLASSES, CLASSES, samples)


def independent_logits(model, clips, sampling: ViewSampling) -> np.ndarray:
    """Per video: encode each view's frames (from load_views), score, combine."""
    text = model.encode_text([f"a video of {c}." for c in CLASSES])
    rows = []
    for path in clips:
        _, loaded = load_views(path, sampling)
        if sampling.ensemble == "frames":
            flat = loaded.frames.reshape(-1, *loaded.frames.shape[2:])
            rows.append(model.logits([model.encode_video(flat)], text)[0].numpy())
            continue
        per_view = torch.stack([model.logits([model.encode_video(c)], text)[0]
                                for c in loaded.frames])  # (clips, K)
        if sampling.ensemble == "probs":
            per_view = torch.softmax(per_view, dim=-1)
        rows.append(per_view.mean(dim=0).numpy())
    return np.stack(rows)


@pytest.mark.parametrize("sampling", [
    ViewSampling(frames=4, views=3),
    ViewSampling(mode="dense", frames=4, stride=9, views=2, crops=3, ensemble="probs"),
    ViewSampling(mode="dense", frames=3, stride=12, views=3, view_starts="offset",
                 ensemble="frames"),
], ids=["segment-3x1", "dense-2x3-probs", "dense-3x1-frames"])
def test_multi_view_zero_shot_equals_independent_scoring(clips, tiny_clip, tmp_path, sampling):
    from videolens.eval.metrics import topk_accuracy

    model = load_model(tiny_clip, device="cpu")
    data = dataset(clips)
    with EmbeddingCache(model, sampling, root=tmp_path) as cache:
        result = zero_shot(data, model, templates=["a video of {}."], cache=cache)
        assert cache.path.name.endswith(f"-views-{sampling.key()}.sqlite")
    expected = independent_logits(model, clips, sampling)
    labels = np.array([s.labels[0] for s in data.samples])
    assert result.metrics["top1"] == pytest.approx(topk_accuracy(expected, labels, 1))
    assert result.metrics["top5"] == pytest.approx(topk_accuracy(expected, labels, 5))
    assert result.record["sampling"]["views"] == sampling.views
    assert result.record["sampling"]["ensemble"] == sampling.ensemble

    # a second run with other prompts reads every clip from the cache, for the same sampling
    def refuse(*args, **kwargs):
        raise AssertionError("videos were encoded again")

    model.encode_videos = refuse
    model.encode_video = refuse
    with EmbeddingCache(model, sampling, root=tmp_path) as cache:
        again = zero_shot(data, model, templates=["{}"], cache=cache)
    assert again.record["from_cache"] == len(clips)


def test_cache_entries_are_kept_apart_by_sampling(clips, tiny_clip, tmp_path):
    model = load_model(tiny_clip, device="cpu")
    one = ViewSampling(frames=4)
    three = ViewSampling(frames=4, views=3)
    with EmbeddingCache(model, one, root=tmp_path) as cache:
        single = cache.embed(clips[:1]).views[clips[0]]
        assert cache.path.name.endswith("-uniform-n4.sqlite")  # the pre-multi-view name
    with EmbeddingCache(model, three, root=tmp_path) as cache:
        multi = cache.embed(clips[:1])
    assert (multi.computed, multi.from_cache) == (1, 0)  # not served from the 1-view file
    assert len(single) == 1 and len(multi.views[clips[0]]) == 3
    # the single-view entry is the middle view (segment centres)
    torch.testing.assert_close(single[0].embedding, multi.views[clips[0]][1].embedding)


def test_pooled_frames_need_a_frame_averaging_model(tiny_xclip):
    model = load_model(tiny_xclip, device="cpu")
    with pytest.raises(UsageError, match="cannot be pooled"):
        EmbeddingCache(model, ViewSampling(frames=model.num_frames, views=3, ensemble="frames"),
                       root=None)


def test_xclip_views_keep_their_contexts_through_the_cache(clips, tiny_xclip, tmp_path):
    model = load_model(tiny_xclip, device="cpu")
    sampling = ViewSampling(frames=model.num_frames, views=2, crops=3)
    data = dataset(clips)
    with EmbeddingCache(model, sampling, root=tmp_path) as cache:
        fresh = cache.embed(clips[:2])
        first = zero_shot(data, model, templates=["{}"], cache=cache)
    with EmbeddingCache(model, sampling, root=tmp_path) as cache:
        stored = cache.embed(clips[:2])  # read back from SQLite: (6 clips * L, D) contexts
        second = zero_shot(data, model, templates=["{}"], cache=cache)
    assert stored.from_cache == 2
    for path in clips[:2]:
        assert len(stored.views[path]) == 6
        for a, b in zip(fresh.views[path], stored.views[path], strict=True):
            torch.testing.assert_close(a.context, b.context)
            torch.testing.assert_close(a.embedding, b.embedding)
    assert second.metrics == first.metrics
    expected = independent_logits_xclip(model, clips, sampling)
    assert first.confusion.tolist() == confusion_of(expected, data).tolist()


def independent_logits_xclip(model, clips, sampling):
    text = model.encode_text(list(CLASSES))
    rows = []
    for path in clips:
        _, loaded = load_views(path, sampling)
        embeddings = model.encode_videos(list(loaded.frames))  # 6 clips
        rows.append(model.logits(embeddings, text).mean(dim=0).numpy())
    return np.stack(rows)


def confusion_of(logits, data):
    matrix = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    for row, sample in zip(logits, data.samples, strict=True):
        matrix[sample.labels[0], int(row.argmax())] += 1
    return matrix
