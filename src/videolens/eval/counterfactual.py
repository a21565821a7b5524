"""Retrieval from counterfactually augmented data (RCAD; Ma et al., "Rethinking Video-Text
Understanding: Retrieval from Counterfactually Augmented Data", ECCV 2024, Feint6K).

Each video comes with its true caption and counterfactual captions that keep the objects and
the scene but change the action ("a man *opens* the fridge" / "a man *closes* the fridge").
A model that matches nouns and scenery cannot tell them apart; a model that sees the action
can. The protocol reports:

- ``rcad_R@1`` (the RCAD accuracy), ``rcad_R@3``, ``rcad_MnR``, ``rcad_MdR``: for every
  video, the rank of its caption among itself and its counterfactuals
  (:func:`~videolens.eval.metrics.counterfactual_ranks`), as ``facebookresearch/feint6k``
  ``eval_rcad.py`` prints them;
- ``v2t_*``: standard video->text retrieval over the true captions of all videos (R@1/5/10,
  median and mean rank);
- ``v2t_cf_*``: the same with every counterfactual added as a distractor. The drop from
  ``v2t`` to ``v2t_cf`` is the paper's point: standard retrieval barely needs the action.

Scores (``score``): ``"cosine"`` — the model's video-text cosine (X-CLIP's prompted one) —
or ``"softmax"`` — for each caption, a softmax of its cosines over all the file's videos, the
score ``compute_sim_mat_languagebind.py`` of the Feint6K release saves
(``torch.softmax(text @ video.T, dim=-1)``, no temperature) and ``eval_rcad.py`` ranks. The
softmax discounts captions that match every video; it only changes the RCAD ranks (a
caption's column is rescaled, which reorders a video's candidates, not its retrieval ranking
of videos). Ties count against the model (``ties="official"`` in the metric gives the
release's optimistic rule).

Input files (:func:`read_counterfactuals`):

- JSON Lines, one object per video: ``{"video": "clips/v1.mp4", "caption": "...",
  "counterfactuals": ["...", ...]}`` (paths relative to the file; other keys kept as the
  item's id when named ``id``);
- Feint6K's release: a ``.csv`` with a ``video_id`` and a ``sentence`` column, each video's
  rows consecutive, its true caption first and its counterfactuals after (the release has 6
  rows per video: ``compute_sim_mat_languagebind.py`` takes ``video_id`` of every 6th row and
  ``eval_rcad.py`` ranks row 0 of each block of 6). The video is ``<video_id>.mp4`` relative
  to the CSV's folder (or ``root``). The CSVs themselves are distributed through Google Drive
  and were not read here: only the layout those two scripts imply is supported.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from ..models import VideoTextModel
from .cache import EmbeddingCache, embed_videos
from .datasets.base import DatasetError, read_text
from .metrics import counterfactual_ranks, retrieval_metrics
from .results import EvalResult, run_record, sampling_for, view_logits
from .views import ViewSampling

__all__ = ["SCORES", "CounterfactualItem", "counterfactual", "read_counterfactuals"]

SCORES = ("cosine", "softmax")


@dataclass(frozen=True)
class CounterfactualItem:
    """One video: ``path`` (absolute), its ``caption``, its ``counterfactuals`` (>= 1) and an
    ``id`` (the file's ``id``/``video_id``, else the path as written)."""

    path: str
    caption: str
    counterfactuals: tuple[str, ...]
    id: str


def read_counterfactuals(file: str | os.PathLike, root: str | os.PathLike | None = None
                         ) -> tuple[list[CounterfactualItem], list[str]]:
    """Items of a counterfactual file (formats in the module docstring) and the ids of listed
    videos whose file is missing.

    ``root``: where relative video paths are looked for when they are not next to the file.

    Raises:
        DatasetError: missing file, malformed line or row, an item without counterfactuals,
            or none of the videos found.
    """
    path = Path(file).expanduser()
    if not path.is_file():
        raise DatasetError("counterfactual file not found", path=path,
                           hint="pass the JSON Lines (or Feint6K CSV) file as --data")
    text = read_text(path)
    rows = _csv_rows(text, path) if path.suffix.lower() == ".csv" else _jsonl_rows(text, path)
    base = path.parent
    other = Path(root).expanduser() if root is not None else None
    items: list[CounterfactualItem] = []
    missing: list[str] = []
    for where, item_id, video, caption, counterfactuals in rows:
        if not counterfactuals:
            raise DatasetError(f"{where}: {item_id!r} has no counterfactual caption", path=path)
        resolved = _resolve(video, base, other)
        if resolved is None:
            missing.append(item_id)
            continue
        items.append(CounterfactualItem(str(resolved.resolve()), caption,
                                        tuple(counterfactuals), item_id))
    if not items:
        tried = f" (e.g. {base / rows[0][2]})" if rows else ""
        raise DatasetError(f"none of the {len(rows)} videos listed was found{tried}",
                           path=path, hint="video paths are relative to the file; or pass "
                           "--root with the video folder")
    return items, missing


def _resolve(video: str, base: Path, other: Path | None) -> Path | None:
    written = Path(video).expanduser()
    candidates = [written] if written.is_absolute() else [base / written]
    if other is not None and not written.is_absolute():
        candidates.append(other / written)
    return next((c for c in candidates if c.is_file()), None)


Row = tuple[str, str, str, str, list[str]]  # where, id, video, caption, counterfactuals


def _jsonl_rows(text: str, path: Path) -> list[Row]:
    rows: list[Row] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"line {number}: not JSON ({error.msg})", path=path,
                               hint="one object per line: {\"video\": ..., \"caption\": ..., "
                               "\"counterfactuals\": [...]}") from error
        if not isinstance(entry, dict):
            raise DatasetError(f"line {number}: expected an object", path=path)
        video, caption = entry.get("video"), entry.get("caption")
        counterfactuals = entry.get("counterfactuals")
        if not isinstance(video, str) or not video.strip():
            raise DatasetError(f"line {number}: 'video' must be a path", path=path)
        if not isinstance(caption, str) or not caption.strip():
            raise DatasetError(f"line {number}: 'caption' must be a text", path=path)
        if isinstance(counterfactuals, str):
            counterfactuals = [counterfactuals]
        if not isinstance(counterfactuals, list) or not all(
                isinstance(c, str) and c.strip() for c in counterfactuals):
            raise DatasetError(f"line {number}: 'counterfactuals' must be a list of texts",
                               path=path)
        item_id = str(entry.get("id", video))
        rows.append((f"line {number}", item_id, video.strip(), caption.strip(),
                     [c.strip() for c in counterfactuals]))
    return rows


def _csv_rows(text: str, path: Path) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    if not {"video_id", "sentence"} <= set(columns):
        raise DatasetError(f"expected Feint6K's columns video_id and sentence, got {columns}",
                           path=path)
    reader.fieldnames = columns
    rows: list[Row] = []
    for number, row in enumerate(reader, start=2):
        video_id = (row["video_id"] or "").strip()
        sentence = (row["sentence"] or "").strip()
        if not video_id or not sentence:
            raise DatasetError(f"line {number}: empty video_id or sentence", path=path)
        if rows and rows[-1][1] == video_id:
            rows[-1][4].append(sentence)  # a counterfactual of the current video
        else:
            rows.append((f"line {number}", video_id, f"{video_id}.mp4", sentence, []))
    return rows


def counterfactual(
    items: Sequence[CounterfactualItem],
    model: VideoTextModel,
    *,
    name: str = "counterfactual",
    frames: int | None = None,
    cache: EmbeddingCache | None = None,
    sampling: ViewSampling | None = None,
    score: str = "cosine",
    workers: int = 1,
    progress: bool = False,
) -> EvalResult:
    """RCAD and video->text retrieval with and without counterfactual distractors (module
    docstring) for ``items``.

    Returns:
        ``protocol="counterfactual"``; metrics ``rcad_R@1``, ``rcad_R@3``, ``rcad_MnR``,
        ``rcad_MdR`` and ``v2t_*`` / ``v2t_cf_*`` (R@1, R@5, R@10, MdR, MnR);
        ``extra["items"]``: per video its ``id``, ``video``, RCAD ``rank``, ``caption_score``
        and ``counterfactual_scores``, and its v2t ranks with and without distractors.

    Raises:
        UsageError: unknown ``score``, or no readable video.
    """
    if score not in SCORES:
        raise UsageError(f"unknown counterfactual score {score!r}",
                         hint=f"use one of {', '.join(SCORES)}")
    videos, used = embed_videos([item.path for item in items], model, cache,
                                sampling or sampling_for(model, frames), workers=workers,
                                progress=progress)
    kept = [item for item in items if item.path in videos.embeddings]
    if not kept:
        raise UsageError("no video of the counterfactual file could be read",
                         hint="the first failure: " + next(iter(videos.failures.values()),
                                                            "none"))
    # texts: all true captions first (column v = video v's caption), then every counterfactual
    captions = [item.caption for item in kept]
    counterfactuals, owner = [], []
    for index, item in enumerate(kept):
        counterfactuals.extend(item.counterfactuals)
        owner.extend([index] * len(item.counterfactuals))
    text = model.encode_text(captions + counterfactuals)
    logits = view_logits(model, [videos.views[item.path] for item in kept], text,
                         ensemble=used.ensemble)  # (V, T)
    # cosine from logits: logits = scale * cosine + bias (X-CLIP's prompted cosine included)
    cosine = ((logits - model.logit_bias) / model.logit_scale).double()
    if score == "softmax":
        ranked = torch.softmax(cosine, dim=0).numpy()  # each caption: softmax over videos
    else:
        ranked = cosine.numpy()
    similarity = cosine.numpy()
    count = len(kept)
    owner_array = np.array(owner, dtype=np.int64)
    per_item = []
    for v in range(count):
        columns = count + np.flatnonzero(owner_array == v)
        per_item.append(np.concatenate([[ranked[v, v]], ranked[v, columns]]))
    rcad = counterfactual_ranks(per_item)
    relevant = [[v] for v in range(count)]
    plain = retrieval_metrics(similarity[:, :count], relevant)
    with_cf = retrieval_metrics(similarity, relevant)
    metrics = {"rcad_R@1": float((rcad <= 1).mean()), "rcad_R@3": float((rcad <= 3).mean()),
               "rcad_MnR": float(rcad.mean()), "rcad_MdR": float(np.median(rcad)),
               **plain.as_dict("v2t_"), **with_cf.as_dict("v2t_cf_")}
    items_out = [
        {"id": item.id, "video": item.path, "rank": int(rcad[v]),
         "candidates": 1 + len(item.counterfactuals),
         "caption_score": float(per_item[v][0]),
         "counterfactual_scores": [float(x) for x in per_item[v][1:]],
         "v2t_rank": int(plain.ranks[v]), "v2t_cf_rank": int(with_cf.ranks[v])}
        for v, item in enumerate(kept)]
    record = run_record(model, used, [], from_cache=videos.from_cache,
                        computed=videos.computed, score=score, ties="pessimistic",
                        captions=count, counterfactual_captions=len(counterfactuals))
    return EvalResult("counterfactual", name, "", metrics, count, record,
                      failures=videos.failures, extra={"items": items_out})
