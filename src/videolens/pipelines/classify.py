"""``videolens classify``: whole videos against any label list, zero-shot.

reader -> model -> answer: frames sampled by the model's frames rule are decoded in worker
processes ahead of the model, each video is encoded once, scored against the label set's
prompt-ensemble classifier, and ranked by :func:`videolens.tasks.rank_labels`.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, VideoDecodeError
from ..io import FrameReader, Sampling, load_video
from ..models import VideoTextModel, build_zero_shot_classifier
from ..tasks.classify import LabelScore, rank_labels
from ..text import LabelSet, build_prompts, load_labels
from .common import Inputs, as_paths, get_model

if TYPE_CHECKING:
    from .ray_engine import RayEngine


@dataclass
class VideoResult:
    """The answer for one video. ``error`` is set (and ``scores`` empty) when it failed."""

    video: str
    model: str
    frames: int = 0
    timestamps: list[float] = field(default_factory=list)
    scores: list[LabelScore] = field(default_factory=list)
    duration: float | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def top(self) -> LabelScore | None:
        return self.scores[0] if self.scores else None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` line: scores high to low; ``{"video", "error"}`` for a failure.

        Timestamps are rounded to milliseconds and scores to 6 decimals: float32 scores
        carry no more, and ``0.5333333333333333`` s only looks precise.
        """
        if self.error is not None:
            return {"video": self.video, "error": self.error}
        return {
            "video": self.video,
            "model": self.model,
            "frames": self.frames,
            "timestamps": [round(t, 3) for t in self.timestamps],
            "scores": [{"label": s.label, "score": round(s.score, 6)} for s in self.scores],
        }


def iter_classify(
    videos: Inputs,
    labels: LabelSet | str | Sequence[str],
    *,
    model: VideoTextModel | str | None = None,
    frames: int | None = None,
    top: int = 5,
    templates: Sequence[str] | None = None,
    device: str = "auto",
    dtype: str = "auto",
    workers: int = 1,
    isolate: bool = True,
    engine: str | RayEngine = "local",
    progress: bool = False,
) -> Iterator[VideoResult]:
    """Classify each video against the labels, yielding results in input order as they finish.

    ``videos``: files, folders (their videos, recursively), globs; ``~`` expanded.
    ``model``: a loaded model, or a preset / hub id / folder (default ``clip-b32``).
    Sampling: ``frames`` (default: the model's) uniform segment centres
    ``t_i = (i + 0.5) * D / N`` over the video stream's duration ``D``; at each the last
    frame presented at or before ``t_i``. Decoding runs in ``workers`` background processes
    (crash-isolated unless ``isolate=False``) while the model encodes. A video that fails
    yields a result with ``error`` set; the rest go on. ``engine="ray"`` (or a
    :class:`~videolens.pipelines.ray_engine.RayEngine`) decodes and encodes on Ray Data
    instead (always isolated), with the same results in the same order.

    Raises:
        LabelError, UsageError, ModelLoadError: before any video is touched.
    """
    label_set = labels if isinstance(labels, LabelSet) else load_labels(labels)
    if top < 0:
        raise UsageError(f"--top must be 0 (all labels) or more, got {top}")
    prompts = build_prompts(label_set, templates)
    encoder = get_model(model, device, dtype)
    if len(label_set) == 1 and encoder.kind == "softmax":
        warnings.warn(
            f"only one label ({label_set.labels[0]!r}): a softmax over one label is always "
            "1.000, whatever the video — add labels to compare it with, or use a model "
            "with sigmoid scores (e.g. siglip-b16)", UserWarning, stacklevel=2)
    num_frames = encoder.frames_for(frames)
    classifier = build_zero_shot_classifier(encoder, prompts)
    paths = as_paths(videos)

    bar = None
    if progress and len(paths) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="video", file=sys.stderr, dynamic_ncols=True)
    sampling = Sampling(kind="uniform", num_frames=num_frames)
    try:
        loader = partial(load_video, max_short_side=encoder.decode_short_side)
        if engine == "local":
            reader = FrameReader(sampling, workers=workers, isolate=isolate, loader=loader)
        else:  # Ray decodes and encodes: each result also carries the video's embedding
            from .ray_engine import RayReader

            reader = RayReader(engine, sampling, encoder, output="video", loader=loader,
                               ordered=True)
        with reader:
            for path, loaded, *encoded in reader.map(paths):
                yield _classify_one(
                    path, loaded, encoder, classifier, label_set.labels, num_frames, top,
                    *encoded
                )
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _classify_one(path, loaded, encoder, classifier, labels, num_frames, top,
                  embedding=None) -> VideoResult:
    if isinstance(loaded, VideoDecodeError):
        return VideoResult(video=path, model=encoder.name, error=loaded.one_line())
    info, sampled = loaded
    try:
        if embedding is None:
            embedding = encoder.encode_video(sampled.frames)
        elif isinstance(embedding, Exception):  # the Ray engine's actor could not encode it
            raise embedding
        logits = encoder.logits([embedding], classifier)[0]  # (K,)
        probabilities = encoder.probabilities(logits)
    except (RuntimeError, ValueError) as err:
        # one video that the model cannot take (e.g. out of memory) must not stop the rest
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        return VideoResult(
            video=path, model=encoder.name, error=f"{path}: encoding failed: {message}"
        )
    return VideoResult(
        video=path,
        model=encoder.name,
        frames=num_frames,
        timestamps=[float(t) for t in sampled.timestamps],
        scores=rank_labels(labels, logits, probabilities, top),
        duration=info.duration,
        warnings=list(sampled.warnings),
    )


def classify(
    videos: Inputs,
    labels: LabelSet | str | Sequence[str],
    **options: Any,
) -> list[VideoResult]:
    """Classify one video or many; see :func:`iter_classify` for the options.

    >>> results = classify("clips/", "running, swimming, cooking", model="clip-b32")
    >>> results[0].top.label
    """
    return list(iter_classify(videos, labels, **options))
