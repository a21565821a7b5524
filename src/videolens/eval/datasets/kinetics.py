"""Kinetics-400/600/700 (Kay et al., 2017; Carreira et al., 2018, 2019), from the official CSVs.

Annotations: one CSV per split with a header and the columns ``label,youtube_id,time_start,
time_end,split`` (Kinetics-400 adds ``is_cc``; some Kinetics-700-2020 files lack ``split``;
only ``label``, ``youtube_id``, ``time_start`` and ``time_end`` are read). File names differ
between releases, so each split tries, in ``root/`` and ``root/annotations/``:
``train.csv``/``validate.csv``/``val.csv``/``test.csv`` (DeepMind tarballs and the CVDF mirror),
``kinetics_<split>.csv`` and ``kinetics-<N>_<split>.csv`` (older releases).

Videos: ``<youtube_id>_<time_start:06d>_<time_end:06d>.mp4`` (the ActivityNet crawler's name),
in a split folder (``root/<split>/``, ``root/videos_<split>/``; ``val`` also as ``validate``),
either in per-label subfolders (``<label>/``, as the crawler writes them, or with underscores
for spaces) or flat (the CVDF tarballs). ``.mkv``/``.webm`` are accepted too because
downloaders fall back to them. YouTube removes videos over time, so missing ones are counted in
``Dataset.missing`` instead of failing.

Classes: the sorted unique labels of the training CSV when it is there (so every split gets the
same ids), else of the split's own CSV, or the ``--class-names`` file when one is given.
"""

from __future__ import annotations

import csv
import io
import os
from functools import partial
from pathlib import Path

from .base import (
    Dataset,
    DatasetError,
    DatasetReader,
    Sample,
    find_folder,
    loose_key,
    read_text,
    require_some_found,
    texts_for,
)
from .names import FROSTER_K400_SPELLINGS, official_k400_name  # noqa: F401 (re-exported)

__all__ = ["FROSTER_K400_SPELLINGS", "READERS", "clip_id", "official_k400_name", "read_kinetics"]

SPLITS = ("val", "test", "train")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm")
_REQUIRED = ("label", "youtube_id", "time_start", "time_end")
_FOLDER_NAMES = {"train": ("train",), "val": ("val", "validate", "valid"), "test": ("test",)}
_FILE_NAMES = {"train": ("train",), "val": ("validate", "val"), "test": ("test",)}


def _hint(version: int) -> str:
    return (
        f"download the Kinetics-{version} annotation CSVs (DeepMind's kinetics{version}.tar.gz "
        "or the CVDF mirror) and unpack them into --root"
    )


def clip_id(youtube_id: str, start: float, end: float) -> str:
    """The crawler's clip name: ``<youtube_id>_<start:06d>_<end:06d>`` (whole seconds)."""
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def _csv_candidates(root: Path, version: int, split: str) -> list[Path]:
    names = [f"{name}.csv" for name in _FILE_NAMES[split]]
    for name in _FILE_NAMES[split]:
        names += [f"kinetics_{name}.csv", f"kinetics-{version}_{name}.csv",
                  f"kinetics_{version}_{name}.csv"]
    return [folder / name for folder in (root, root / "annotations") for name in names]


def _read_rows(path: Path) -> list[tuple[str, str, float, float]]:
    """``(label, youtube_id, start_s, end_s)`` per row of a Kinetics CSV."""
    reader = csv.DictReader(io.StringIO(read_text(path)))
    columns = [name.strip() for name in reader.fieldnames or []]
    absent = [name for name in _REQUIRED if name not in columns]
    if absent:
        why = " (this release of the test split has no labels)" if absent == ["label"] else ""
        raise DatasetError(
            f"Kinetics CSV lacks the column(s) {', '.join(absent)}{why}; its header is "
            f"{','.join(columns)!r}",
            path=path,
        )
    reader.fieldnames = columns  # tolerate spaces around header names
    rows = []
    for number, row in enumerate(reader, start=2):
        try:
            start, end = float(row["time_start"]), float(row["time_end"])
        except (TypeError, ValueError) as error:
            raise DatasetError(f"line {number}: time_start/time_end are not numbers",
                               path=path) from error
        label, youtube_id = (row["label"] or "").strip(), (row["youtube_id"] or "").strip()
        if not label or not youtube_id:
            raise DatasetError(f"line {number}: empty label or youtube_id", path=path)
        rows.append((label, youtube_id, start, end))
    return rows


def _index_videos(folder: Path) -> dict[str, Path]:
    """``clip id -> file`` for videos directly in ``folder`` and one level below it (label
    folders); listed once, since checking ~20k clips one by one in 3 layouts is slower."""
    found: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        children = sorted(entries, key=lambda entry: entry.name)
    for entry in children:
        if entry.is_dir():
            with os.scandir(entry.path) as inner:
                for item in inner:
                    stem, suffix = os.path.splitext(item.name)
                    if suffix in VIDEO_SUFFIXES and item.is_file():
                        found.setdefault(stem, Path(item.path))
        else:
            stem, suffix = os.path.splitext(entry.name)
            if suffix in VIDEO_SUFFIXES:
                found.setdefault(stem, Path(entry.path))
    return found


def read_kinetics(
    root: Path, split: str, class_names: tuple[str, ...] | None = None, *, version: int = 400
) -> Dataset:
    """Read one Kinetics split (see the module docstring for the layouts tried).

    Args:
        root: the folder holding the CSVs (or ``annotations/``) and the split video folders.
        split: ``train``, ``val`` or ``test``.
        class_names: the class list to use (e.g. a published class order); ``None`` derives it
            from the CSVs.
        version: 400, 600 or 700 (names the dataset and the older CSV file names).

    Returns:
        The split; ``video_id`` is :func:`clip_id`; ``missing`` lists clips not on disk. Class
        texts are :func:`class_name_to_text` of the labels (already plain words).

    Raises:
        DatasetError: no CSV for the split (paths tried listed), a CSV without the needed
            columns, no split folder, or none of the split's clips found.
    """
    name = f"kinetics{version}"
    hint = _hint(version)
    candidates = _csv_candidates(root, version, split)
    split_csv = next((path for path in candidates if path.is_file()), None)
    if split_csv is None:
        tried = ", ".join(str(path) for path in candidates)
        raise DatasetError(f"Kinetics-{version} {split} CSV not found: tried {tried}", hint=hint)
    rows = _read_rows(split_csv)
    sources = [str(split_csv)]
    if class_names is None:
        train_csv = next(
            (path for path in _csv_candidates(root, version, "train") if path.is_file()), None
        )
        if train_csv is not None and train_csv != split_csv:
            labels = {row[0] for row in _read_rows(train_csv)}
            sources.insert(0, str(train_csv))
        else:
            labels = {row[0] for row in rows}
        class_names = tuple(sorted(labels))
    # loose: a --class-names file may write "air_drumming" for the CSV's "air drumming"
    index_of = {loose_key(label): index for index, label in enumerate(class_names)}
    unknown = sorted({row[0] for row in rows if loose_key(row[0]) not in index_of})
    if unknown:
        raise DatasetError(
            f"labels not in the class list: {', '.join(map(repr, unknown[:10]))}",
            path=split_csv,
            hint="the class list comes from the training CSV or --class-names; use matching files",
        )

    folders = [root / folder for base in _FOLDER_NAMES[split]
               for folder in (base, f"videos_{base}")]
    video_folder = find_folder(
        folders, f"Kinetics-{version} {split} video folder",
        f"put the {split} videos in {folders[0]} (flat or in per-label folders)",
    )
    videos = _index_videos(video_folder)
    samples: list[Sample] = []
    missing: list[str] = []
    for label, youtube_id, start, end in rows:
        video_id = clip_id(youtube_id, start, end)
        path = videos.get(video_id)
        if path is None:
            missing.append(video_id)
        else:
            samples.append(Sample(path=str(path.resolve()), labels=(index_of[loose_key(label)],),
                                  video_id=video_id))
    example = video_folder / f"{missing[0]}.mp4" if missing else None
    require_some_found(f"Kinetics-{version}", len(rows), len(samples), video_folder, split_csv,
                       example)
    return Dataset(
        name=name,
        split=split,
        class_names=class_names,
        class_texts=texts_for(class_names),
        samples=tuple(samples),
        root=str(root),
        missing=tuple(missing),
        sources=tuple(sources),
    )


def _reader(version: int) -> DatasetReader:
    return DatasetReader(
        name=f"kinetics{version}",
        read=partial(read_kinetics, version=version),
        default_split="val",
        splits=SPLITS,
        aliases={"validate": "val", "validation": "val"},
        layout="root/{train,validate,test}.csv (or root/annotations/), "
        "root/<split>/[<label>/]<youtube_id>_<start:06d>_<end:06d>.mp4",
    )


READERS = {reader.name: reader for reader in (_reader(400), _reader(600), _reader(700))}
