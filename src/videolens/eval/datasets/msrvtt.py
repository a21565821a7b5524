"""MSR-VTT (Xu et al., 2016), the "1k-A" text-video retrieval test set.

The 1k-A split (Yu et al., 2018, "JSFusion") is the test set of CLIP4Clip, Frozen in Time and
most later retrieval work: ``MSRVTT_JSFUSION_test.csv`` with a header and 1,000 rows
``key,vid_key,video_id,sentence`` (``ret0,msr7020,video7020,a woman is ...``), one caption
per video. ``MSRVTT_data.json`` (the full annotation: ``{"videos": [...], "sentences":
[{"video_id": "video7020", "caption": "...", "sen_id": ...}, ...]}``) holds all 20 captions
per video.

Files are looked for in ``root/``, ``root/msrvtt_data/`` (CLIP4Clip's folder) and
``root/annotations/``; videos at ``root/MSRVTT_Videos/<video_id>.mp4``,
``root/videos/all/`` or ``root/MSRVTT/videos/all/``.

Splits:

- ``1k-a``: the CSV's 1,000 videos, each with its one CSV sentence (the standard protocol);
- ``1k-a-all``: the same videos with all their captions from ``MSRVTT_data.json``
  (``--captions all``), in the file's order.

There are no classes: ``class_names`` is empty and ``Sample.labels`` is ``()``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .base import (
    Dataset,
    DatasetError,
    DatasetReader,
    Sample,
    find_file,
    find_folder,
    read_json,
    read_text,
    require_some_found,
)

__all__ = ["READER", "read_msrvtt"]

SPLITS = ("1k-a", "1k-a-all")
_HINT = (
    "get MSRVTT_JSFUSION_test.csv and MSRVTT_data.json (e.g. CLIP4Clip's msrvtt_data.zip) "
    "and put them in --root"
)


def _annotation(root: Path, filename: str) -> Path:
    return find_file(
        [folder / filename for folder in (root, root / "msrvtt_data", root / "annotations")],
        f"MSR-VTT file {filename}", _HINT,
    )


def _all_captions(path: Path) -> dict[str, list[str]]:
    """``video_id -> captions`` from ``MSRVTT_data.json``, in file order."""
    data = read_json(path)
    sentences = data.get("sentences") if isinstance(data, dict) else None
    if not isinstance(sentences, list):
        raise DatasetError("expected an object with a 'sentences' list", path=path)
    captions: dict[str, list[str]] = {}
    for position, sentence in enumerate(sentences, start=1):
        if not isinstance(sentence, dict) or "video_id" not in sentence or (
            "caption" not in sentence
        ):
            raise DatasetError(f"sentence {position} lacks 'video_id' or 'caption'", path=path)
        captions.setdefault(str(sentence["video_id"]), []).append(str(sentence["caption"]).strip())
    return captions


def read_msrvtt(root: Path, split: str, class_names: tuple[str, ...] | None = None) -> Dataset:
    """Read the MSR-VTT 1k-A test set (see the module docstring).

    Args:
        root: the folder holding the annotation files and the video folder.
        split: ``1k-a`` (one caption per video) or ``1k-a-all`` (all 20).
        class_names: must be ``None`` (there are no classes).

    Returns:
        One sample per CSV row, in CSV order, ``captions`` filled; ``video_id`` like
        ``"video7020"``.

    Raises:
        DatasetError: a missing file (paths tried listed), missing columns, a video without
            captions in ``MSRVTT_data.json``, or none of the videos found.
    """
    if class_names is not None:
        raise DatasetError("MSR-VTT has no classes; --class-names does not apply")
    csv_file = _annotation(root, "MSRVTT_JSFUSION_test.csv")
    reader = csv.DictReader(io.StringIO(read_text(csv_file)))
    if not reader.fieldnames or not {"video_id", "sentence"} <= set(reader.fieldnames):
        raise DatasetError(
            f"expected the columns key,vid_key,video_id,sentence, got {reader.fieldnames}",
            path=csv_file,
        )
    rows = [((row["video_id"] or "").strip(), (row["sentence"] or "").strip())
            for row in reader]
    sources = [str(csv_file)]
    every: dict[str, list[str]] = {}
    if split == "1k-a-all":
        data_file = _annotation(root, "MSRVTT_data.json")
        sources.append(str(data_file))
        every = _all_captions(data_file)
        lacking = [video_id for video_id, _ in rows if video_id not in every]
        if lacking:
            raise DatasetError(f"no captions for {', '.join(lacking[:5])}", path=data_file)

    video_folder = find_folder(
        [root / "MSRVTT_Videos", root / "videos" / "all", root / "MSRVTT" / "videos" / "all"],
        "MSR-VTT video folder", "unpack the MSR-VTT videos into --root/MSRVTT_Videos",
    )
    samples: list[Sample] = []
    missing: list[str] = []
    for video_id, sentence in rows:
        path = video_folder / f"{video_id}.mp4"
        captions = tuple(every[video_id]) if every else (sentence,)
        if path.is_file():
            samples.append(Sample(path=str(path.resolve()), labels=(), video_id=video_id,
                                  captions=captions))
        else:
            missing.append(video_id)
    example = video_folder / f"{missing[0]}.mp4" if missing else None
    require_some_found("MSR-VTT", len(rows), len(samples), video_folder, csv_file, example)
    return Dataset(
        name="msrvtt",
        split=split,
        class_names=(),
        class_texts=(),
        samples=tuple(samples),
        root=str(root),
        missing=tuple(missing),
        sources=tuple(sources),
    )


READER = DatasetReader(
    name="msrvtt",
    read=read_msrvtt,
    default_split="1k-a",
    splits=SPLITS,
    aliases={"1ka": "1k-a", "1k-a-all-captions": "1k-a-all"},
    layout="root/MSRVTT_JSFUSION_test.csv [+ MSRVTT_data.json] (or root/msrvtt_data/), "
    "root/MSRVTT_Videos/<video_id>.mp4",
)
