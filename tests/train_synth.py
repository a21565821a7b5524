"""Generated videos whose classes a tiny model can learn in seconds, for the training tests.

- :func:`appearance_video`: the class is a colour + shape (one frame tells them apart);
  nuisances: position, size, background brightness, pixel noise.
- :func:`trip_video`: the class is a DIRECTION. A bar makes a round trip between the left
  and the right of the frame: out to the right and back, or out to the left and back. Both
  classes show exactly the same set of frames in another order, so no frame, and no average
  over frames, tells them apart. (Each trip reads the same backwards: Open-VCLIP's attention
  cannot tell a clip from its reversal, see videolens.models.temporal.)
- :func:`colour_video`: the class is an object's colour, on a background whose colour
  changes every frame (for self-supervised pretraining and a linear probe: a random network
  sees mostly the background, which says nothing about the class).

All are lossless (libx264rgb), ``SIZE`` x ``SIZE`` pixels, ``FRAMES`` frames at ``FPS``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from media import make_video

SIZE = 48
FRAMES = 8
FPS = 8.0

APPEARANCE_CLASSES = ("running", "swimming", "cooking")
# class -> (RGB colour, shape)
_LOOKS = {"running": ((230, 40, 40), "square"), "swimming": ((40, 200, 60), "disc"),
          "cooking": ((50, 80, 230), "bar")}
# names whose prompts a random tiny text tower already embeds far apart (its rows for
# "jumping" / "dancing" are 0.8-0.96 cosine apart, depending on the tokenizer's merges)
TRIP_CLASSES = ("walking the dog", "yo yo")
SHAPES = ("square", "disc", "cross")
COLOUR_CLASSES = ("red", "green", "blue")


def _draw(image: np.ndarray, shape: str, cy: float, cx: float, radius: float,
          color) -> None:
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    dy, dx = yy - cy, xx - cx
    if shape == "square":
        mask = (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    elif shape == "disc":
        mask = dy ** 2 + dx ** 2 <= radius ** 2
    elif shape == "bar":
        mask = (np.abs(dy) <= radius * 0.45) & (np.abs(dx) <= radius * 1.6)
    else:  # cross
        arm = radius * 0.35
        mask = (((np.abs(dy) <= arm) & (np.abs(dx) <= radius))
                | ((np.abs(dx) <= arm) & (np.abs(dy) <= radius)))
    image[mask] = color


def _background(rng: np.random.Generator, level: float | None = None) -> np.ndarray:
    level = rng.uniform(60, 140) if level is None else level
    noise = rng.normal(0, 6, (SIZE, SIZE, 1))
    return np.clip(level + noise, 0, 255).repeat(3, axis=2).astype(np.uint8)


def appearance_video(path: Path, label: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    color, shape = _LOOKS[label]
    cy, cx = rng.uniform(16, 32, size=2)
    radius = rng.uniform(8, 12)
    level = rng.uniform(60, 140)
    drift = rng.uniform(-1, 1, size=2)

    def paint(i: int) -> np.ndarray:
        image = _background(np.random.default_rng([seed, i]), level)
        _draw(image, shape, cy + drift[0] * i, cx + drift[1] * i, radius, color)
        return image

    return make_video(path, num_frames=FRAMES, fps=FPS, size=(SIZE, SIZE), content=paint)


def trip_video(path: Path, label: str, seed: int) -> Path:
    """A bar's round trip between the left and the right third of the frame, ``FRAMES``
    frames, half on each side: the first of :data:`TRIP_CLASSES` starts and ends on the left
    (out to the right and back), the other starts and ends on the right. Frames on one side
    are pixel-identical whenever they appear, so both classes show exactly the same set of
    frames."""
    rng = np.random.default_rng(seed)
    top = int(rng.integers(0, 17))  # a 32 px tall bar, somewhere up or down
    color = tuple(int(c) for c in rng.integers(150, 256, size=3))
    level = rng.uniform(20, 80)
    quarter = FRAMES // 4
    home, away = (0, 2) if label == TRIP_CLASSES[0] else (2, 0)
    columns = [home] * quarter + [away] * (FRAMES - 2 * quarter) + [home] * quarter

    def paint(i: int) -> np.ndarray:
        col = columns[i]
        image = _background(np.random.default_rng([seed, col]), level)
        image[top:top + 32, col * 16:(col + 1) * 16] = color
        return image

    return make_video(path, num_frames=FRAMES, fps=FPS, size=(SIZE, SIZE), content=paint)


_COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230)}


def colour_video(path: Path, label: str, seed: int) -> Path:
    """A shape of a random kind, size and place, drifting, in the class's colour (at a random
    brightness), on a background whose colour is drawn anew for every frame: the object's
    colour is the one thing that stays the same through a video."""
    rng = np.random.default_rng(seed)
    color = tuple(int(c) for c in np.clip(np.array(_COLOURS[label]) * rng.uniform(0.6, 1.1),
                                          0, 255))
    cy, cx = rng.uniform(16, 32, size=2)
    radius = rng.uniform(6, 9)
    shape = SHAPES[int(rng.integers(0, len(SHAPES)))]
    drift = rng.uniform(-1.5, 1.5, size=2)

    def paint(i: int) -> np.ndarray:
        frame_rng = np.random.default_rng([seed, i])
        background = frame_rng.integers(0, 256, size=3)
        noise = frame_rng.normal(0, 6, (SIZE, SIZE, 1))
        image = np.clip(background + noise, 0, 255).astype(np.uint8)
        _draw(image, shape, cy + drift[0] * i, cx + drift[1] * i, radius, color)
        return image

    return make_video(path, num_frames=FRAMES, fps=FPS, size=(SIZE, SIZE), content=paint)


def write_split(folder: Path, maker, classes, per_class: int, seed: int,
                name: str) -> Path:
    """``per_class`` videos of each class made by ``maker`` under ``folder/name/``, and a
    list file ``folder/name.txt`` of ``path label`` lines (class order interleaved). Video
    ``i`` of every class has the same seed, so the classes differ only by what defines
    them."""
    videos = folder / name
    videos.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(per_class):
        for label in classes:
            stem = label.replace(" ", "_")
            video = maker(videos / f"{stem}_{i:03d}.mp4", label, seed * 100003 + i)
            lines.append(f"{video} {label}")
    listing = folder / f"{name}.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing
