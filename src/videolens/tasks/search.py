"""Find moments in a library by text or by an example image.

Frame hits from the store become moments: the best frames seed moments, and neighbouring
frames of the same video that score well (see :func:`merge_hits`) join them; a moment's
score is its best frame's cosine similarity to the query.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np


class Hit(Protocol):
    """One matching frame (the store's ``FrameHit`` has this shape)."""

    video_id: int
    timestamp: float
    score: float


@dataclass(frozen=True)
class Moment:
    """A stretch of one video matching a query. Times in seconds; ``score`` is the cosine
    similarity of its best frame to the query."""

    video_id: int
    video: str
    start: float
    end: float
    score: float

    def to_json(self) -> dict:
        return {"video": self.video, "start": round(self.start, 3), "end": round(self.end, 3),
                "score": round(self.score, 6)}

    def as_dict(self) -> dict:
        return asdict(self)


def merge_hits(
    hits: Sequence[Hit],
    videos: Mapping[int, tuple[str, float]],
    step: float,
    *,
    spread: float = 0.5,
) -> list[Moment]:
    """Group frame hits into moments, best score first.

    Seeds are taken in decreasing score. A moment grows from its seed over neighbouring
    hits of the same video (no more than 1.5 sampling steps apart) that are not in another
    moment and score at least ``seed - spread * (seed - median)``, the median taken over all
    hits: frames clearly better than the typical retrieved frame join the peak, ordinary
    background frames do not (otherwise, in a small library where every frame is a hit,
    whole videos would merge into one moment). A moment spans from its first frame's time to
    its last frame's time plus one step (capped at the video's duration); its score is the
    seed's.

    ``videos``: video id -> (path, duration in seconds); hits of unknown ids are dropped.
    ``step``: the sampling interval in seconds (1 / fps).
    """
    known = [h for h in hits if h.video_id in videos]  # others were removed meanwhile
    if not known:
        return []
    median = float(np.median([h.score for h in known]))
    by_video: dict[int, list[Hit]] = defaultdict(list)
    for hit in known:
        by_video[hit.video_id].append(hit)
    position: dict[int, tuple[int, int]] = {}  # id(hit) -> (video_id, index in time order)
    for video_id, group in by_video.items():
        group.sort(key=lambda h: h.timestamp)
        for i, hit in enumerate(group):
            position[id(hit)] = (video_id, i)
    taken: set[int] = set()
    moments = []
    for seed in sorted(known, key=lambda h: (-h.score, h.video_id, h.timestamp)):
        if id(seed) in taken:
            continue
        video_id, i = position[id(seed)]
        group = by_video[video_id]
        # a seed below the median still takes its equally good neighbours
        floor = seed.score - spread * max(seed.score - median, 0.0)
        lo = hi = i
        while lo > 0 and _joins(group[lo], group[lo - 1], taken, floor, step):
            lo -= 1
        while hi + 1 < len(group) and _joins(group[hi], group[hi + 1], taken, floor, step):
            hi += 1
        taken.update(id(h) for h in group[lo : hi + 1])
        path, duration = videos[video_id]
        start = group[lo].timestamp
        end = group[hi].timestamp + step
        if duration > 0:
            end = min(end, duration)
        moments.append(Moment(video_id, path, start, max(end, start), seed.score))
    return moments


def _joins(edge: Hit, neighbour: Hit, taken: set[int], floor: float, step: float) -> bool:
    """``neighbour`` is next to the moment's ``edge`` in time, free, and good enough."""
    return (id(neighbour) not in taken and neighbour.score >= floor
            and abs(neighbour.timestamp - edge.timestamp) <= 1.5 * step)
