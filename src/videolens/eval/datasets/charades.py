"""Charades (Sigurdsson et al., 2016), multi-label, from the official annotation zip.

``Charades.zip`` unpacks to ``Charades/`` with

- ``Charades_v1_classes.txt``: ``c000 Holding some clothes`` per line (157 classes);
- ``Charades_v1_train.csv`` / ``Charades_v1_test.csv``: a header with (among others) ``id`` and
  ``actions``; ``actions`` is ``c092 11.90 21.20;c147 0.00 12.60`` (class, start and end in
  seconds), empty for videos without actions.

Those files are looked for in ``root/Charades/`` and ``root/``. Videos are
``root/Charades_v1_480/<id>.mp4`` (the 480p download) or ``root/Charades_v1/<id>.mp4``.

Splits: ``test`` (1,863 videos; the standard video-level mAP evaluation) and ``train``.
``Sample.labels`` are the distinct classes of the video (sorted), ``Sample.segments`` every
interval in file order; videos without actions (75 of the test split) are kept with no labels;
the official mAP leaves them out of the ranking
(:func:`~videolens.eval.metrics.multilabel_map`).
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
    file_lines,
    find_file,
    find_folder,
    read_text,
    require_some_found,
    texts_for,
)

__all__ = ["READER", "parse_actions", "read_charades"]

SPLITS = ("test", "train")
_HINT = "download the Charades annotations (Charades.zip) from the Charades page and unpack it " \
        "into --root"


def _annotation(root: Path, filename: str) -> Path:
    return find_file([root / "Charades" / filename, root / filename],
                     f"Charades file {filename}", _HINT)


def parse_actions(
    text: str, index_of: dict[str, int], where: str
) -> tuple[tuple[int, float, float], ...]:
    """``"c092 11.90 21.20;c147 0.00 12.60"`` -> ``((92, 11.9, 21.2), (147, 0.0, 12.6))``
    (class indices via ``index_of``; times in seconds). Empty text -> ``()``.

    Raises:
        DatasetError: an item that is not ``<class> <start> <end>``, or an unknown class.
    """
    segments = []
    for item in text.split(";"):
        if not item.strip():
            continue
        parts = item.split()
        try:
            if len(parts) != 3:
                raise ValueError(item)
            code, start, end = parts[0], float(parts[1]), float(parts[2])
        except ValueError as error:
            raise DatasetError(f"{where}: action {item!r} is not '<class> <start> <end>'"
                               ) from error
        if code not in index_of:
            raise DatasetError(f"{where}: action {item!r} has an unknown class {code!r}")
        segments.append((index_of[code], start, end))
    return tuple(segments)


def read_charades(root: Path, split: str, class_names: tuple[str, ...] | None = None) -> Dataset:
    """Read one Charades split (see the module docstring for the layout).

    Args:
        root: the folder holding ``Charades/`` (or the CSVs) and ``Charades_v1_480/``.
        split: ``test`` or ``train``.
        class_names: unused (``load_dataset`` re-indexes onto it afterwards).

    Returns:
        A multi-label dataset; class names are the descriptions (``"Holding some clothes"``),
        texts their lower-case form; ``video_id`` is the Charades id (``"46GP8"``).

    Raises:
        DatasetError: a missing file (paths tried listed), a malformed line, or none of the
            split's videos found.
    """
    del class_names
    classes_file = _annotation(root, "Charades_v1_classes.txt")
    codes: list[str] = []
    names: list[str] = []
    for number, line in file_lines(read_text(classes_file)):
        code, _, name = line.partition(" ")
        if not code.startswith("c") or not name.strip():
            raise DatasetError(f"line {number}: expected 'c000 <class name>', got {line!r}",
                               path=classes_file)
        codes.append(code)
        names.append(name.strip())
    index_of = {code: index for index, code in enumerate(codes)}

    split_file = _annotation(root, f"Charades_v1_{split}.csv")
    reader = csv.DictReader(io.StringIO(read_text(split_file)))
    if not reader.fieldnames or not {"id", "actions"} <= set(reader.fieldnames):
        raise DatasetError(f"expected the columns 'id' and 'actions', got {reader.fieldnames}",
                           path=split_file)
    video_folder = find_folder(
        [root / "Charades_v1_480", root / "Charades_v1"], "Charades video folder",
        "download Charades_v1_480.zip from the Charades page and unpack it into --root",
    )
    samples: list[Sample] = []
    missing: list[str] = []
    listed = 0
    for number, row in enumerate(reader, start=2):
        listed += 1
        video_id = (row["id"] or "").strip()
        segments = parse_actions(row["actions"] or "", index_of, f"{split_file}:{number}")
        path = video_folder / f"{video_id}.mp4"
        if path.is_file():
            samples.append(Sample(
                path=str(path.resolve()),
                labels=tuple(sorted({segment[0] for segment in segments})),
                video_id=video_id,
                segments=segments,
            ))
        else:
            missing.append(video_id)
    example = video_folder / f"{missing[0]}.mp4" if missing else None
    require_some_found("Charades", listed, len(samples), video_folder, split_file, example)
    return Dataset(
        name="charades",
        split=split,
        class_names=tuple(names),
        class_texts=texts_for(names),
        samples=tuple(samples),
        multilabel=True,
        root=str(root),
        missing=tuple(missing),
        sources=(str(classes_file), str(split_file)),
    )


READER = DatasetReader(
    name="charades",
    read=read_charades,
    default_split="test",
    splits=SPLITS,
    layout="root/Charades/Charades_v1_{classes.txt,test.csv,train.csv}, "
    "root/Charades_v1_480/<id>.mp4",
)
