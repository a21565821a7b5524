"""A fast tensor path for the checkpoint's own image preprocessing.

The rules (input size, resize mode, centre crop, resample filter, rescale, mean/std) come
from the checkpoint's image processor config: preprocessing travels with the weights, this
module only reads it (:func:`spec_from_processor`). :func:`resize_crop` then does the resize
and crop on uint8 tensors with torch's antialiased resampling (the same filters as Pillow,
which the Hugging Face processor uses without torchvision), and :func:`normalize` rescales
and standardises, so ``normalize(resize_crop(frames, spec), spec)`` stands in for
``processor(images=frames)["pixel_values"]``.

Tolerance: every resized uint8 value is within :data:`MAX_GREY_LEVELS` grey levels (of 255)
of the processor's Pillow resize — torch and Pillow round the same filter taps differently
by at most that much — and crop, rescale and normalise are then the same arithmetic, so the
model inputs differ by at most ``MAX_GREY_LEVELS * rescale / std`` per value. Checked against
the processors of the CLIP (shortest side + centre crop, bicubic) and SigLIP (square
resize) checkpoints by ``tests/test_preprocess.py``.

The split matters for ``videolens index``: :func:`resize_crop` runs in the decode worker and
hands over ``(T, 3, h, w)`` uint8 (a quarter of the float32 bytes), :func:`normalize` runs in
the encoder's process and costs a few milliseconds per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Largest difference, in grey levels of 255, between resize_crop's uint8 output and the
# Hugging Face (Pillow) processor's resized image for the same frame.
MAX_GREY_LEVELS = 2

# Pillow's resample codes (PIL.Image.Resampling) that torch resamples the same way with
# antialias=True; others (nearest, lanczos, box, hamming) keep the processor.
_RESAMPLE = {2: "bilinear", 3: "bicubic"}


@dataclass(frozen=True)
class PreprocessSpec:
    """How a checkpoint turns an RGB frame into model input, read from its processor config.

    ``shortest_edge``: resize so the shorter side is this many pixels (the longer side
    ``int(shortest_edge * long / short)``, as the processor computes it), or ``None`` to
    resize to exactly ``size`` (height, width). ``crop``: centre crop (height, width) after
    the resize, or ``None``. ``resample``: ``"bicubic"`` or ``"bilinear"``. ``rescale``:
    factor from uint8 to the model's range (1/255), 1.0 when the processor does not rescale.
    ``mean``/``std``: per channel, applied after rescaling ((0, 0, 0)/(1, 1, 1) when the
    processor does not normalise). Plain data: it pickles into decode workers.
    """

    shortest_edge: int | None
    size: tuple[int, int] | None
    crop: tuple[int, int] | None
    resample: str
    rescale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def output_size(self) -> tuple[int, int] | None:
        """(height, width) of every model input, or ``None`` if it depends on the frame."""
        return self.crop or self.size

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) a ``height`` x ``width`` frame is resized to before cropping."""
        if self.shortest_edge is None:
            assert self.size is not None
            return self.size
        edge = self.shortest_edge
        if height <= width:
            return edge, int(edge * width / height)
        return int(edge * height / width), edge


def _value(processor, name: str, default=None):
    value = getattr(processor, name, default)
    return default if value is None else value


def _size_dict(value) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if v is not None}
    # transformers' SizeDict and similar: attribute access
    return {k: getattr(value, k) for k in ("shortest_edge", "longest_edge", "height", "width",
                                            "max_height", "max_width")
            if getattr(value, k, None) is not None}


def spec_from_processor(processor) -> PreprocessSpec | None:
    """The :class:`PreprocessSpec` of a Hugging Face image processor, or ``None`` when it does
    something the tensor path does not reproduce within :data:`MAX_GREY_LEVELS` (padding,
    aspect-limited resizes, a crop larger than the resized frame, another resample filter):
    callers then keep the processor itself."""
    if processor is None or _value(processor, "do_pad", False):
        return None
    resample = _RESAMPLE.get(int(_value(processor, "resample", 2)))
    if resample is None:
        return None
    shortest_edge = size = None
    if _value(processor, "do_resize", True):
        dims = _size_dict(_value(processor, "size"))
        if set(dims) == {"shortest_edge"}:
            shortest_edge = int(dims["shortest_edge"])
        elif set(dims) == {"height", "width"}:
            size = (int(dims["height"]), int(dims["width"]))
        else:
            return None
    else:
        return None  # model input would follow each frame's own size
    crop = None
    if _value(processor, "do_center_crop", False):
        dims = _size_dict(_value(processor, "crop_size"))
        if set(dims) != {"height", "width"}:
            return None
        crop = (int(dims["height"]), int(dims["width"]))
        smallest = shortest_edge if shortest_edge is not None else min(size)  # type: ignore[arg-type]
        if max(crop) > smallest:
            return None  # the processor pads with zeros here
    rescale = float(_value(processor, "rescale_factor", 1 / 255)) if _value(
        processor, "do_rescale", True) else 1.0
    if _value(processor, "do_normalize", True):
        mean, std = _value(processor, "image_mean"), _value(processor, "image_std")
        if mean is None or std is None:
            return None
        mean = tuple(float(m) for m in np.broadcast_to(np.asarray(mean, float), (3,)))
        std = tuple(float(s) for s in np.broadcast_to(np.asarray(std, float), (3,)))
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return PreprocessSpec(shortest_edge, size, crop, resample, rescale, mean, std)


def resize_crop(frames: np.ndarray | torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """(T, H, W, 3) RGB uint8 frames of one size -> (T, 3, h, w) uint8, resized and centre
    cropped as the checkpoint's processor does (within :data:`MAX_GREY_LEVELS`)."""
    pixels = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray)
                             else frames)
    if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {tuple(pixels.shape)} "
                         f"{pixels.dtype}")
    # (T, H, W, 3) -> (T, 3, H, W); channels-last memory, which the uint8 resize kernel wants
    pixels = pixels.permute(0, 3, 1, 2)
    if len(pixels) == 0:
        height, width = spec.output_size or (1, 1)
        return torch.empty(0, 3, height, width, dtype=torch.uint8)
    height, width = pixels.shape[-2:]
    new_h, new_w = spec.resized_size(height, width)
    pixels = F.interpolate(pixels, size=(new_h, new_w), mode=spec.resample, antialias=True,
                           align_corners=False)
    if spec.crop is not None:
        crop_h, crop_w = spec.crop
        # the processor's offsets: (size - crop) // 2, top-left biased for odd margins
        top, left = (new_h - crop_h) // 2, (new_w - crop_w) // 2
        pixels = pixels[:, :, top:top + crop_h, left:left + crop_w]
    return pixels.contiguous()


def normalize(pixels: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """(T, 3, h, w) uint8 from :func:`resize_crop` -> (T, 3, h, w) float32 model input."""
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (pixels.float() * spec.rescale - mean) / std
