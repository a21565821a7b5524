"""Training clips: PyAV decoding in DataLoader workers, sampling, clip-consistent augmentation.

Every random choice for a clip (segment offsets, crop, flip, colour) comes from a generator
seeded by ``(seed, epoch, index, attempt)``, never from a worker's global state: the same
clip comes out whatever the number of workers or processes, and a resumed run sees exactly
the batches the interrupted one would have seen. :class:`EpochBatches` fixes the order of
each epoch from ``(seed, epoch)`` and splits every global batch among the DDP processes.

A file that fails to decode (or takes longer than ``timeout`` seconds) is reported in the
item's ``failures`` and replaced by another file of the dataset, chosen deterministically, so
batches keep their size and DDP processes stay in step.

Pixels leave as float32 ``(T, 3, S, S)`` normalised with the checkpoint's own mean and std
(``S`` = the vision tower's input size).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from ..io import probe, read_frames
from ..io.sampling import uniform_times

# a run of this many bad files in a row means the data, not a file, is broken
MAX_TRIES = 10
# step between the replacement candidates of a bad file (a prime, so it visits every index)
_RETRY_STRIDE = 7919


@dataclass(frozen=True)
class VideoItem:
    """One training video: absolute ``path`` and class ``label`` (-1 when unlabelled)."""

    path: str
    label: int = -1


def segment_times(duration: float, frames: int, rng: np.random.Generator | None) -> np.ndarray:
    """TSN segment sampling: one time in each of ``frames`` equal segments of
    ``[0, duration]`` seconds, at a uniformly random offset inside it (training), or at its
    centre when ``rng`` is None (testing: :func:`~videolens.io.sampling.uniform_times`).
    Returns ``(frames,)`` float64 seconds, increasing."""
    if rng is None:
        return uniform_times(duration, frames)
    offsets = rng.random(frames)  # in [0, 1): never the segment's end
    return (np.arange(frames) + offsets) * (max(duration, 0.0) / frames)


def cvrl_offset(max_offset: float, rng: np.random.Generator) -> float:
    """A gap in ``[0, max_offset]`` seconds with density ``P(t) ∝ max_offset - t`` (CVRL's
    linearly decreasing temporal interval), by inverting its CDF ``1 - (1 - t/m)^2``."""
    return max_offset * (1.0 - math.sqrt(1.0 - rng.random())) if max_offset > 0 else 0.0


# --- augmentation -------------------------------------------------------------------------

@dataclass(frozen=True)
class Augment:
    """Spatial and colour augmentation drawn once per clip and applied to all its frames.

    ``size``: output side in pixels; ``mean``/``std``: the checkpoint's normalisation (RGB,
    0-1 scale). ``crop_scale``/``crop_ratio``: random resized crop (area fraction, aspect
    w/h), as torchvision's. ``color_jitter``: probability of SimCLR's colour distortion with
    brightness, contrast, saturation ``0.8 * strength`` and hue ``0.2 * strength`` in random
    order; ``grayscale``: probability of a grey clip. ``train=False``: the centred square of
    the full frame, nothing random.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    color_jitter: float = 0.0
    strength: float = 0.5
    grayscale: float = 0.0
    train: bool = True

    def params(self, rng: np.random.Generator | None, height: int, width: int) -> dict:
        """The random choices for one clip of ``height`` x ``width`` frames."""
        if rng is None or not self.train:
            side = min(height, width)
            return {"box": ((height - side) // 2, (width - side) // 2, side, side),
                    "flip": False, "jitter": None, "gray": False}
        box = _crop_box(rng, height, width, self.crop_scale, self.crop_ratio)
        flip = bool(self.flip and rng.random() < 0.5)
        jitter = None
        if rng.random() < self.color_jitter:
            s = self.strength
            jitter = {
                "order": rng.permutation(4).tolist(),
                "brightness": float(rng.uniform(max(0.0, 1 - 0.8 * s), 1 + 0.8 * s)),
                "contrast": float(rng.uniform(max(0.0, 1 - 0.8 * s), 1 + 0.8 * s)),
                "saturation": float(rng.uniform(max(0.0, 1 - 0.8 * s), 1 + 0.8 * s)),
                "hue": float(rng.uniform(-0.2 * s, 0.2 * s)),
            }
        gray = bool(rng.random() < self.grayscale)
        return {"box": box, "flip": flip, "jitter": jitter, "gray": gray}

    def __call__(self, frames: np.ndarray, params: dict) -> torch.Tensor:
        """``(T, H, W, 3)`` uint8 RGB -> ``(T, 3, size, size)`` float32, normalised."""
        top, left, height, width = params["box"]
        crop = np.ascontiguousarray(frames[:, top:top + height, left:left + width])
        # (T, h, w, 3) uint8 -> (T, 3, h, w) float in [0, 1] -> (T, 3, S, S)
        x = torch.from_numpy(crop).permute(0, 3, 1, 2).float().div_(255.0)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True,
                          align_corners=False).clamp_(0.0, 1.0)
        if params["flip"]:
            x = x.flip(-1)
        if params["jitter"] is not None:
            x = color_jitter(x, **params["jitter"])
        if params["gray"]:
            x = luminance(x).expand_as(x).contiguous()
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std


def _crop_box(rng: np.random.Generator, height: int, width: int,
              scale: tuple[float, float], ratio: tuple[float, float]
              ) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random resized crop (torchvision's rule: 10 tries, then the
    largest centred crop within the ratio range)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def luminance(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 grey of ``(T, 3, H, W)`` RGB in [0, 1] -> ``(T, 1, H, W)``."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def color_jitter(x: torch.Tensor, order: Sequence[int], brightness: float, contrast: float,
                 saturation: float, hue: float) -> torch.Tensor:
    """Brightness, contrast, saturation (factors, 1 = unchanged) and hue (a turn fraction in
    [-0.5, 0.5]) applied in ``order`` to ``(T, 3, H, W)`` RGB in [0, 1]; the same for every
    frame. Hue turns the chroma in YIQ space (a linear stand-in for torchvision's HSV)."""
    for step in order:
        if step == 0:
            x = (x * brightness).clamp(0, 1)
        elif step == 1:
            mean = luminance(x).mean(dim=(1, 2, 3), keepdim=True)
            x = (mean + contrast * (x - mean)).clamp(0, 1)
        elif step == 2:
            gray = luminance(x)
            x = (gray + saturation * (x - gray)).clamp(0, 1)
        elif hue:
            x = _rotate_hue(x, hue)
    return x


_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.596, -0.274, -0.322],
                            [0.211, -0.523, 0.312]])


def _rotate_hue(x: torch.Tensor, turn: float) -> torch.Tensor:
    angle = 2 * math.pi * turn
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = torch.tensor([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    matrix = torch.linalg.inv(_RGB_TO_YIQ) @ rotation @ _RGB_TO_YIQ
    # (T, 3, H, W) -> per-pixel 3x3 colour transform
    return torch.einsum("ij,tjhw->tihw", matrix, x).clamp(0, 1)


# --- decoding with a time limit -------------------------------------------------------------

class DecodeTimeout(Exception):
    """A file took longer than the decode time limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`DecodeTimeout` in this thread after ``seconds`` (only where signal
    handlers can be set: the main thread of a process, as in DataLoader workers).
    A decoder stuck inside C code is interrupted when it next returns to Python."""
    usable = (seconds > 0 and hasattr(signal, "pthread_kill")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    live = [True]
    fired = [False]
    sending = threading.Lock()

    def expire(signum, frame):
        # only this block's own timer counts: a SIGALRM still pending from an earlier block
        # (CI saw one arrive right after this handler was installed, before the try below
        # existed, so the handler was never restored) is dropped, as is one sent just as
        # the block ended
        if live[0] and fired[0]:
            raise DecodeTimeout(f"decoding took longer than {seconds:g} s")

    # The timer thread signals the main thread alone: a process-wide SIGALRM (setitimer) is
    # taken by whichever thread the kernel picks, often a native pool's (OpenMP, oneDNN), and
    # then a decode blocked in a system call on the main thread is not interrupted.
    target = threading.main_thread().ident

    def fire() -> None:
        with sending:
            if live[0]:
                fired[0] = True
                signal.pthread_kill(target, signal.SIGALRM)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    previous = signal.getsignal(signal.SIGALRM)
    try:
        signal.signal(signal.SIGALRM, expire)
        timer.start()
        yield
    finally:
        try:
            live[0] = False
            with sending:  # a signal in flight reaches `expire` (which now ignores it) first
                timer.cancel()
        finally:  # even when the timer fired as the block ended
            signal.signal(signal.SIGALRM, previous)


def _reason(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    one_line = getattr(err, "one_line", None)
    if callable(one_line):
        text = one_line()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# --- datasets -----------------------------------------------------------------------------

class _RobustClips(Dataset):
    """Map-style dataset indexed by ``(epoch, index)``; :meth:`make` builds one item."""

    def __init__(self, items: Sequence[VideoItem], augment: Augment, *, seed: int,
                 timeout: float) -> None:
        if not items:
            raise ValueError("no training videos")
        self.items = list(items)
        self.augment = augment
        self.seed = int(seed)
        self.timeout = float(timeout)

    def __len__(self) -> int:
        return len(self.items)

    def make(self, item: VideoItem, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        failures: list[tuple[str, str]] = []
        for attempt in range(MAX_TRIES):
            item = self.items[(index + attempt * _RETRY_STRIDE) % len(self.items)]
            rng = np.random.default_rng([self.seed, epoch, index, attempt])
            try:
                with time_limit(self.timeout):
                    built = self.make(item, rng)
            except Exception as err:  # noqa: BLE001 - one bad file must not stop training
                failures.append((item.path, _reason(err)))
                continue
            built["label"] = item.label
            built["failures"] = failures
            return built
        raise RuntimeError(f"{MAX_TRIES} videos in a row failed to decode; the first: "
                           f"{failures[0][0]}: {failures[0][1]}")

    def _clip(self, frames: np.ndarray, rng: np.random.Generator | None) -> torch.Tensor:
        return self.augment(frames, self.augment.params(rng, *frames.shape[1:3]))


class ClipDataset(_RobustClips):
    """Labelled clips (finetune, distill): ``frames`` segment-sampled frames per video.

    Item: ``{"pixels": (T, 3, S, S), "label": int, "failures": [(path, reason)]}``."""

    def __init__(self, items: Sequence[VideoItem], augment: Augment, *, frames: int,
                 seed: int, timeout: float = 60.0) -> None:
        super().__init__(items, augment, seed=seed, timeout=timeout)
        self.frames = frames

    def make(self, item: VideoItem, rng: np.random.Generator) -> dict:
        duration = probe(item.path).duration
        random = rng if self.augment.train else None
        sampled = read_frames(item.path, segment_times(duration, self.frames, random))
        return {"pixels": self._clip(sampled.frames, random)}


class PairDataset(_RobustClips):
    """CVRL: two clips of ``frames`` evenly spaced frames over ``clip_seconds`` each, their
    starts a :func:`cvrl_offset` apart, each with its own augmentation.

    Item: ``{"views": (2, T, 3, S, S), ...}``."""

    def __init__(self, items: Sequence[VideoItem], augment: Augment, *, frames: int,
                 clip_seconds: float, seed: int, timeout: float = 60.0) -> None:
        super().__init__(items, augment, seed=seed, timeout=timeout)
        self.frames = frames
        self.clip_seconds = clip_seconds

    def make(self, item: VideoItem, rng: np.random.Generator) -> dict:
        duration = probe(item.path).duration
        length = min(self.clip_seconds, duration)
        gap = cvrl_offset(max(0.0, duration - length), rng)
        first = rng.uniform(0.0, max(0.0, duration - length - gap))
        starts = [first, first + gap]
        if rng.random() < 0.5:
            starts.reverse()
        inside = (np.arange(self.frames) + 0.5) * (length / self.frames)
        times = np.concatenate([start + inside for start in starts])
        frames = read_frames(item.path, times).frames
        views = [self._clip(frames[i * self.frames:(i + 1) * self.frames], rng)
                 for i in range(2)]
        return {"views": torch.stack(views)}


class SpeedDataset(_RobustClips):
    """RSPNet: a query clip and a key clip of one video at the same playback speed (1x or a
    speed of ``speeds``, half the time each) and the key's window at the other speed. A clip
    at speed ``s`` takes ``frames`` frames ``s * frame_seconds`` apart.

    Item: ``{"query", "key", "other": (T, 3, S, S), "query_speed": int}``; ``key`` and
    ``other`` share one augmentation (they are the same raw window), ``query`` has its own."""

    def __init__(self, items: Sequence[VideoItem], augment: Augment, *, frames: int,
                 frame_seconds: float, speeds: Sequence[int], seed: int,
                 timeout: float = 60.0) -> None:
        super().__init__(items, augment, seed=seed, timeout=timeout)
        self.frames = frames
        self.frame_seconds = frame_seconds
        self.speeds = tuple(int(s) for s in speeds)

    def make(self, item: VideoItem, rng: np.random.Generator) -> dict:
        duration = probe(item.path).duration
        fast = int(rng.choice(self.speeds))
        query_speed, other_speed = (1, fast) if rng.random() < 0.5 else (fast, 1)
        window = fast * self.frames * self.frame_seconds
        latest = max(0.0, duration - window)
        query_start, key_start = rng.uniform(0.0, latest, size=2)
        steps = np.arange(self.frames) * self.frame_seconds
        times = np.concatenate([query_start + query_speed * steps,
                                key_start + query_speed * steps,
                                key_start + other_speed * steps])
        frames = read_frames(item.path, times).frames
        t = self.frames
        query = self._clip(frames[:t], rng)
        key_params = self.augment.params(rng, *frames.shape[1:3])
        return {"query": query, "key": self.augment(frames[t:2 * t], key_params),
                "other": self.augment(frames[2 * t:], key_params), "query_speed": query_speed}


def collate(items: list[dict]) -> dict:
    """Stack tensors, gather labels as a LongTensor, concatenate the failure lists."""
    batch: dict = {"failures": [f for item in items for f in item["failures"]]}
    for key, value in items[0].items():
        if key == "failures":
            continue
        if isinstance(value, torch.Tensor):
            batch[key] = torch.stack([item[key] for item in items])
        else:
            batch[key] = torch.tensor([item[key] for item in items])
    return batch


# --- order --------------------------------------------------------------------------------

class EpochBatches(Sampler):
    """Batch sampler: each epoch a permutation of the dataset from ``(seed, epoch)``, cut into
    ``steps`` global batches of ``batch_size``; process ``rank`` of ``world`` takes its
    contiguous share of each. Items are ``(epoch, index)`` keys. :meth:`set_epoch` chooses the
    epoch and the first batch (a resumed run starts mid-epoch)."""

    def __init__(self, num_items: int, batch_size: int, steps: int, *, seed: int,
                 rank: int = 0, world: int = 1) -> None:
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} does not split over {world} processes")
        self.num_items = num_items
        self.batch_size = batch_size
        self.steps = steps
        self.seed = seed
        self.rank = rank
        self.world = world
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def global_batches(self, epoch: int) -> np.ndarray:
        """``(steps, batch_size)`` dataset indices of every global batch of ``epoch``."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.num_items)
        return order[: self.steps * self.batch_size].reshape(self.steps, self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        share = self.batch_size // self.world
        for batch in self.global_batches(self.epoch)[self.start:]:
            local = batch[self.rank * share:(self.rank + 1) * share]
            yield [(self.epoch, int(index)) for index in local]

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def worker_init(worker_id: int) -> None:
    # decoding workers share the machine with the training process: one thread each
    torch.set_num_threads(1)
