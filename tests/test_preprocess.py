"""The tensor preprocessing path against each checkpoint's own Hugging Face processor.

CLIP's processor resizes the shorter side and centre-crops (bicubic); SigLIP's resizes to a
square without cropping. Both are read from the saved processor config of the tiny models,
and the tensor path must stay within the documented MAX_GREY_LEVELS of them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, CLIPImageProcessor

from videolens.models import load_model
from videolens.models.preprocess import (
    MAX_GREY_LEVELS,
    PreprocessSpec,
    normalize,
    resize_crop,
    spec_from_processor,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)


def video_like(height: int, width: int, count: int = 3, seed: int = 0) -> np.ndarray:
    """(count, height, width, 3) uint8 frames with smooth areas, edges and noise, like decoded
    video (pure noise would exercise only the filter's extremes)."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        coarse = rng.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height),
                                                           Image.Resampling.BICUBIC))
        noise = rng.integers(-24, 25, size=smooth.shape)
        frame = np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8)
        frame[: height // 3, : width // 4] = 255  # a hard edge
        frames.append(frame)
    return np.stack(frames)


def grey_levels(fast: torch.Tensor, exact: torch.Tensor, spec: PreprocessSpec) -> float:
    """Largest difference of two model inputs, in grey levels of the uint8 frame."""
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    return float(((fast - exact) * std / spec.rescale).abs().max())


@pytest.fixture(scope="module")
def processors(tiny_clip, tiny_siglip):
    return {name: AutoProcessor.from_pretrained(folder).image_processor
            for name, folder in (("clip", tiny_clip), ("siglip", tiny_siglip))}


def test_spec_is_read_from_each_processor_config(processors):
    clip = spec_from_processor(processors["clip"])
    assert clip == PreprocessSpec(shortest_edge=32, size=None, crop=(32, 32),
                                  resample="bicubic", rescale=1 / 255, mean=CLIP_MEAN,
                                  std=(0.26862954, 0.26130258, 0.27577711))
    siglip = spec_from_processor(processors["siglip"])
    assert siglip == PreprocessSpec(shortest_edge=None, size=(32, 32), crop=None,
                                    resample="bicubic", rescale=1 / 255,
                                    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def test_resized_size_follows_the_processor_rule():
    spec = PreprocessSpec(224, None, (224, 224), "bicubic", 1 / 255, CLIP_MEAN, (1, 1, 1))
    # int(224 * 448 / 252) = int(398.2) = 398; portrait the other way round
    assert spec.resized_size(252, 448) == (224, 398)
    assert spec.resized_size(448, 252) == (398, 224)
    assert spec.resized_size(100, 100) == (224, 224)  # upscaling too


@pytest.mark.parametrize("name", ["clip", "siglip"])
@pytest.mark.parametrize("size", [(252, 448), (448, 252), (37, 91), (33, 32), (32, 32),
                                  (20, 27)])
def test_tensor_path_within_tolerance_of_processor(processors, name, size):
    processor = processors[name]
    spec = spec_from_processor(processor)
    frames = video_like(*size)
    exact = processor(images=list(frames), return_tensors="pt")["pixel_values"]
    fast = normalize(resize_crop(frames, spec), spec)
    assert fast.shape == exact.shape
    assert fast.dtype == torch.float32
    assert grey_levels(fast, exact, spec) <= MAX_GREY_LEVELS + 1e-3


def test_crop_offsets_match_processor_for_odd_margins():
    # a resize that changes nothing (same size) isolates the crop: 5 px margin -> top 2
    processor = CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 3,
                                                                         "width": 8})
    spec = spec_from_processor(processor)
    frames = video_like(8, 8, count=1)
    uint8 = resize_crop(frames, spec)
    assert uint8.shape == (1, 3, 3, 8)
    assert torch.equal(uint8[0].permute(1, 2, 0), torch.from_numpy(frames[0, 2:5]))


def test_unsupported_processors_keep_the_processor():
    base = dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    assert spec_from_processor(CLIPImageProcessor(**base)) is not None
    assert spec_from_processor(CLIPImageProcessor(**base, resample=0)) is None  # nearest
    assert spec_from_processor(CLIPImageProcessor(**base, do_pad=True)) is None
    assert spec_from_processor(CLIPImageProcessor(**base, do_resize=False)) is None
    assert spec_from_processor(CLIPImageProcessor(size={"shortest_edge": 32, "longest_edge": 64},
                                                  crop_size=base["crop_size"])) is None
    # a crop larger than the resized frame: the processor pads with zeros
    assert spec_from_processor(CLIPImageProcessor(size={"shortest_edge": 16},
                                                  crop_size=base["crop_size"])) is None
    assert spec_from_processor(None) is None


def test_bad_frames_are_a_clear_error():
    spec = PreprocessSpec(None, (8, 8), None, "bilinear", 1 / 255, (0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match=r"expected \(T, H, W, 3\) uint8"):
        resize_crop(np.zeros((2, 8, 8, 3), np.float32), spec)
    assert resize_crop(np.zeros((0, 8, 8, 3), np.uint8), spec).shape == (0, 3, 8, 8)


@pytest.mark.parametrize("which", ["clip", "siglip", "xclip"])
def test_encode_pixels_matches_encode_frames(request, which):
    model = load_model(request.getfixturevalue(f"tiny_{which}"), device="cpu")
    frames = video_like(90, 160, count=8, seed=3)
    reference = model.encode_frames(frames)
    # float model input from the processor: the same forward, the same numbers
    exact = model.image_processor(images=list(frames), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(model.encode_pixels(exact), reference, atol=1e-5, rtol=0)
    # uint8 from the tensor path: within tolerance of the pixels, so nearly the same rows
    fast = model.encode_pixels(resize_crop(frames, model.preprocess_spec))
    assert fast.shape == reference.shape
    cosine = (fast * reference).sum(dim=1)
    assert float(cosine.min()) > 0.999
    torch.testing.assert_close(fast.norm(dim=1), torch.ones(len(frames)))


def test_uint8_pixels_need_a_tensor_path(tiny_clip):
    model = load_model(tiny_clip, device="cpu")
    model._preprocess_spec = None  # as for a processor spec_from_processor cannot read
    with pytest.raises(ValueError, match="no tensor path"):
        model.encode_pixels(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


def _library_vectors(root) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from videolens.library import Library

    store = Library.open(root)
    try:
        return {record.path: store.frames(record.id) for record in store.videos()}
    finally:
        store.close()


@pytest.mark.parametrize("which", ["clip", "siglip"])
def test_index_tensor_path_stays_within_tolerance(request, which, video_h264, video_mp4,
                                                  tmp_path):
    from videolens.pipelines.index import index

    model = load_model(request.getfixturevalue(f"tiny_{which}"), device="cpu")
    calls = {"encode_frames": 0, "encode_pixels": 0}

    def counting(name, method):
        def counted(*args, **kwargs):
            calls[name] += 1
            return method(*args, **kwargs)
        return counted

    for name in calls:  # count which way frames reach the model (encoding runs here)
        setattr(model, name, counting(name, getattr(model, name)))
    runs = {}
    for mode in ("processor", "tensor"):
        summary = index([video_h264, video_mp4], library=tmp_path / mode, model=model,
                        fps=4, preprocess=mode)
        assert not summary.failed and len(summary.indexed) == 2
        runs[mode] = _library_vectors(tmp_path / mode)
        assert calls == ({"encode_frames": 2, "encode_pixels": 0} if mode == "processor"
                         else {"encode_frames": 2, "encode_pixels": 2})
    assert runs["tensor"].keys() == runs["processor"].keys()
    for path, (stamps, exact) in runs["processor"].items():
        fast_stamps, fast = runs["tensor"][path]
        np.testing.assert_array_equal(fast_stamps, stamps)
        assert (fast * exact).sum(axis=1).min() > 0.999


def test_index_preprocess_choice_is_checked(tiny_clip, video_mp4, tmp_path):
    from videolens.errors import UsageError
    from videolens.pipelines.index import index

    model = load_model(tiny_clip, device="cpu")
    with pytest.raises(UsageError, match="--preprocess must be one of auto, tensor, processor"):
        index([video_mp4], library=tmp_path / "a", model=model, preprocess="fast")
    model._preprocess_spec = None  # a processor without a tensor path
    with pytest.raises(UsageError, match="no tensor path"):
        index([video_mp4], library=tmp_path / "b", model=model, preprocess="tensor")
    summary = index([video_mp4], library=tmp_path / "c", model=model)  # auto: the processor
    assert len(summary.indexed) == 1 and not summary.failed
