"""The JSON API's shapes (pydantic models, which FastAPI turns into the OpenAPI schema), the
converters from library records to them, and the checks on request values."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from ..errors import UsageError, VideolensError
from ..library import VideoRecord
from ..tasks.search import Moment
from .media import servable_path

MAX_TOP = 100
MAX_LABELS = 200
MAX_TEXT = 1000  # characters in a query or a label; CLIP reads 77 tokens anyway


class MomentOut(BaseModel):
    """A moment of a video matching the query. Times in seconds; ``score`` is the cosine
    similarity of its best frame to the query."""

    video_id: int
    video: str = Field(description="file name (no folders)")
    start: float
    end: float
    score: float
    thumbnail_url: str
    media_url: str
    page_url: str


class SearchOut(BaseModel):
    query: str | None = Field(description="the text searched, or null for an image")
    results: list[MomentOut]


class VideoOut(BaseModel):
    id: int
    video: str = Field(description="file name (no folders)")
    duration: float = Field(description="seconds")
    fps: float
    width: int
    height: int
    num_frames: int = Field(description="frames stored in the library for this video")
    size: int = Field(description="bytes")
    indexed_at: float = Field(description="unix time, seconds")
    available: bool = Field(description="whether the file can be served now")
    media_url: str
    thumbnail_url: str
    page_url: str


class VideosOut(BaseModel):
    videos: list[VideoOut]


class SegmentOut(BaseModel):
    label: str
    start: float
    end: float
    score: float


class LocalizeOut(BaseModel):
    video_id: int
    video: str
    actions: list[str]
    source: str = Field(description="'library' (stored frames) or 'decoded' (sampled now)")
    fps: float
    segments: list[SegmentOut]


class ClassifyIn(BaseModel):
    video_id: int
    labels: list[str] | str = Field(
        description="a list of labels, or one string of labels separated by commas")
    top: int = Field(5, ge=0, le=MAX_LABELS, description="labels returned (0 = all)")
    frames: int | None = Field(None, ge=1, le=256, description="default: the model's")


class LabelScoreOut(BaseModel):
    label: str
    score: float


class ClassifyOut(BaseModel):
    video_id: int
    video: str
    frames: int
    timestamps: list[float]
    scores: list[LabelScoreOut]


def video_name(record: VideoRecord) -> str:
    """The file name only: a client knows videos by id, never by server folders."""
    return Path(record.path).name


def moment_out(moment: Moment) -> MomentOut:
    start = round(moment.start, 3)
    return MomentOut(
        video_id=moment.video_id, video=Path(moment.video).name, start=start,
        end=round(moment.end, 3), score=round(moment.score, 6),
        thumbnail_url=f"/thumbs/{moment.video_id}?t={round(moment.start, 1):g}",
        media_url=f"/media/{moment.video_id}",
        page_url=f"/videos/{moment.video_id}?t={start:g}",
    )


def video_out(record: VideoRecord) -> VideoOut:
    # a quarter in is often past a black intro; the server picks the stored frame nearest it
    poster = round(max(0.0, record.duration) * 0.25, 1)
    return VideoOut(
        id=record.id, video=video_name(record), duration=record.duration, fps=record.fps,
        width=record.width, height=record.height, num_frames=record.num_frames,
        size=record.size, indexed_at=record.indexed_at,
        available=servable_path(record) is not None, media_url=f"/media/{record.id}",
        thumbnail_url=f"/thumbs/{record.id}?t={poster:g}", page_url=f"/videos/{record.id}",
    )


def split_labels(values: Sequence[str] | str) -> list[str]:
    """Labels from strings that may each hold a comma or newline separated list.

    Always a list of plain strings: a single string given to :func:`load_labels` may name
    a label *file*, and a web client must never make the server read one.
    """
    items = [values] if isinstance(values, str) else list(values)
    labels = [part.strip() for item in items for part in re.split(r"[,\n]", item)]
    labels = [label for label in labels if label]
    if not labels:
        raise UsageError("give at least one label (or action)")
    if len(labels) > MAX_LABELS:
        raise UsageError(f"at most {MAX_LABELS} labels, got {len(labels)}")
    if any(len(label) > MAX_TEXT for label in labels):
        raise UsageError(f"a label is longer than {MAX_TEXT} characters")
    return labels


def check_top(top: int) -> int:
    if not 1 <= top <= MAX_TOP:
        raise UsageError(f"top must be between 1 and {MAX_TOP}, got {top}")
    return top


def public_message(err: VideolensError) -> str:
    """The error without its file path: a client knows videos by id, not by server path."""
    return " ".join(err.message.split())
