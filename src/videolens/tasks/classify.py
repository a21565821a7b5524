"""Zero-shot action classification of whole videos with any label list."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UsageError, VideoDecodeError
from ..io import FrameReader, Sampling
from ..models import DEFAULT_MODEL, VideoTextModel, load_model
from ..models.text_cache import encode_text_cached
from ..text import LabelSet, build_prompts, load_labels


@dataclass(frozen=True)
class LabelScore:
    """``score``: probability in [0, 1] (softmax over the label set for CLIP/X-CLIP, an
    independent sigmoid for SigLIP); ``logit``: ``logit_scale * cosine + logit_bias``."""

    label: str
    score: float
    logit: float


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
        """The ``--json`` line: scores high to low; ``{"video", "error"}`` for a failure."""
        if self.error is not None:
            return {"video": self.video, "error": self.error}
        return {
            "video": self.video,
            "model": self.model,
            "frames": self.frames,
            "timestamps": self.timestamps,
            "scores": [{"label": s.label, "score": s.score} for s in self.scores],
        }


def build_zero_shot_classifier(
    model: VideoTextModel, prompts_per_label: Sequence[Sequence[str]]
) -> torch.Tensor:
    """Text weights (K, D), one row per label, from a prompt ensemble per label.

    Each label's prompts are encoded (cached per model and prompt list) and averaged. For
    models whose text rows are L2-normalised (CLIP, SigLIP) the mean of normalised rows is
    renormalised, as in CLIP's prompt ensembling; X-CLIP's raw rows are averaged and left
    raw, because its prompt generator works on them before it normalises.
    """
    if not prompts_per_label or any(len(p) == 0 for p in prompts_per_label):
        raise UsageError("every label needs at least one prompt")
    flat = [prompt for prompts in prompts_per_label for prompt in prompts]
    embeddings = encode_text_cached(model, flat)  # (sum P_k, D)
    rows, start = [], 0
    for prompts in prompts_per_label:
        rows.append(embeddings[start : start + len(prompts)].mean(dim=0))
        start += len(prompts)
    classifier = torch.stack(rows)  # (K, D)
    if model.text_normalized:
        classifier = classifier / classifier.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return classifier


def rank_labels(
    labels: Sequence[str], logits: torch.Tensor, probabilities: torch.Tensor, top: int
) -> list[LabelScore]:
    """Labels sorted by score, high to low (ties keep label order); ``top=0`` keeps all."""
    order = sorted(range(len(labels)), key=lambda k: (-float(probabilities[k]), k))
    if top > 0:
        order = order[:top]
    return [LabelScore(labels[k], float(probabilities[k]), float(logits[k])) for k in order]


def _resolve_frames(model: VideoTextModel, frames: int | None) -> int:
    if frames is None:
        return model.default_frames
    if frames < 1:
        raise UsageError(f"--frames must be at least 1, got {frames}")
    if model.num_frames is not None and frames != model.num_frames:
        raise UsageError(
            f"{model.name} encodes exactly {model.num_frames} frames per video, got --frames "
            f"{frames}",
            hint=f"leave --frames out or pass --frames {model.num_frames}",
        )
    return frames


def iter_classify(
    videos: Iterable[str | os.PathLike],
    labels: LabelSet | str | Sequence[str],
    *,
    model: VideoTextModel | str = DEFAULT_MODEL,
    frames: int | None = None,
    top: int = 5,
    templates: Sequence[str] | None = None,
    device: str = "auto",
    dtype: str = "auto",
    workers: int = 1,
    isolate: bool = True,
    progress: bool = False,
) -> Iterator[VideoResult]:
    """Classify each video against the labels, yielding results in input order as they finish.

    Sampling: ``frames`` uniform segment centres ``t_i = (i + 0.5) * D / N`` over the video
    stream's duration ``D``; at each the last frame presented at or before ``t_i``. Decoding
    runs in ``workers`` background processes (crash-isolated unless ``isolate=False``) while
    the model encodes. A video that fails yields a result with ``error`` set; the rest go on.

    Raises:
        LabelError, UsageError, ModelLoadError: before any video is touched.
    """
    label_set = labels if isinstance(labels, LabelSet) else load_labels(labels)
    if top < 0:
        raise UsageError(f"--top must be 0 (all labels) or more, got {top}")
    prompts = build_prompts(label_set, templates)
    encoder = model if isinstance(model, VideoTextModel) else load_model(model, device, dtype)
    num_frames = _resolve_frames(encoder, frames)
    classifier = build_zero_shot_classifier(encoder, prompts)
    paths = [os.fspath(p) for p in videos]

    bar = None
    if progress and len(paths) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="video", file=sys.stderr, dynamic_ncols=True)
    sampling = Sampling(kind="uniform", num_frames=num_frames)
    try:
        with FrameReader(sampling, workers=workers, isolate=isolate) as reader:
            for path, loaded in reader.map(paths):
                yield _classify_one(
                    path, loaded, encoder, classifier, label_set.labels, num_frames, top
                )
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _classify_one(path, loaded, encoder, classifier, labels, num_frames, top) -> VideoResult:
    if isinstance(loaded, VideoDecodeError):
        return VideoResult(video=path, model=encoder.name, error=loaded.one_line())
    info, sampled = loaded
    try:
        embedding = encoder.encode_video(sampled.frames)
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
    videos: str | os.PathLike | Iterable[str | os.PathLike],
    labels: LabelSet | str | Sequence[str],
    **options: Any,
) -> list[VideoResult]:
    """Classify one video or many; see :func:`iter_classify` for the options.

    >>> results = classify(["a.mp4"], "running, swimming, cooking", model="clip-b32")
    >>> results[0].top.label
    """
    paths = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
    return list(iter_classify(paths, labels, **options))
