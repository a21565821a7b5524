"""HMDB51 (Kuehne et al., 2011), in the layout of the official downloads.

``hmdb51_org.rar`` holds one rar per class; unpacked, videos are ``<class>/<name>.avi`` under
``root/`` or ``root/hmdb51/``. ``test_train_splits.rar`` unpacks to
``testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt`` with lines ``<name>.avi <0|1|2>``
(1 = training, 2 = testing, 0 = not used in that split: 70 training and 30 testing clips per
class). Class names are the folder names (``brush_hair``), 51 classes sorted alphabetically;
the class list comes from the split file names when the split folder exists, else from the
class folders.

Splits: ``test1..3``, ``train1..3``; ``full`` (alias ``hmdb_full``): the videos split 1 marks
1 or 2 — 70 training + 30 testing per class, 5,100 videos — which is "HMDB*" as FROSTER and
Open-VCLIP evaluate it (``Visual-AI/FROSTER``, ``zs_label_db/hmdb_full/process.py`` keeps codes
``[1, 2]`` of ``<class>_test_split1.txt``; their test scripts set ``hmdb_file=hmdb_full``);
and ``all``: every ``.avi`` in the class folders (6,766 videos, including the 1,666 that no
split uses).

The split files have no comments: 16 real videos have names starting with ``#``
(``#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi``, in ``chew``, ``clap``, ``pick`` and
``ride_bike``) and are read like any other line.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import (
    Dataset,
    DatasetError,
    DatasetReader,
    Sample,
    file_lines,
    find_file,
    read_text,
    require_some_found,
    texts_for,
)

__all__ = ["READER", "read_hmdb51"]

SPLITS = ("test1", "test2", "test3", "train1", "train2", "train3", "full", "all")
# split -> (split file number, codes kept): 1 = training, 2 = testing
_CODES = {**{f"test{k}": (str(k), ("2",)) for k in (1, 2, 3)},
          **{f"train{k}": (str(k), ("1",)) for k in (1, 2, 3)},
          "full": ("1", ("1", "2"))}
SPLIT_FOLDER = "testTrainMulti_7030_splits"
_SPLIT_FILE = re.compile(r"^(.+)_test_split([123])\.txt$")
_SPLITS_HINT = (
    "download test_train_splits.rar from the HMDB51 page and unpack it into --root "
    f"(it holds {SPLIT_FOLDER}/)"
)
_VIDEOS_HINT = "download hmdb51_org.rar from the HMDB51 page and unpack every class rar into --root"


def _video_folder(root: Path) -> Path:
    nested = root / "hmdb51"
    return nested if nested.is_dir() else root


def _split_folder(root: Path) -> Path | None:
    for candidate in (root / SPLIT_FOLDER, root / "hmdb51" / SPLIT_FOLDER):
        if candidate.is_dir():
            return candidate
    return None


def _class_names(root: Path, video_folder: Path, split_folder: Path | None) -> tuple[str, ...]:
    if split_folder is not None:
        names = {
            match.group(1)
            for path in split_folder.iterdir()
            if (match := _SPLIT_FILE.match(path.name))
        }
        if names:
            return tuple(sorted(names))
    names = {
        child.name
        for child in (video_folder.iterdir() if video_folder.is_dir() else [])
        if child.is_dir() and child.name != SPLIT_FOLDER and any(child.glob("*.avi"))
    }
    if not names:
        raise DatasetError(
            f"HMDB51 class folders not found: tried {root / 'hmdb51'}, {root}",
            hint=_VIDEOS_HINT,
        )
    return tuple(sorted(names))


def read_hmdb51(root: Path, split: str, class_names: tuple[str, ...] | None = None) -> Dataset:
    """Read one HMDB51 split (see the module docstring for the layout).

    Args:
        root: the folder holding the class folders (or ``hmdb51/``) and the split folder.
        split: ``test1..3``, ``train1..3``, ``full`` or ``all``.
        class_names: unused (``load_dataset`` re-indexes onto it afterwards).

    Returns:
        The split, samples ordered by class then split-file line; ``video_id`` is the file stem;
        class texts have underscores as spaces (``brush_hair`` -> ``brush hair``).

    Raises:
        DatasetError: the split folder or one class's split file is missing (paths tried
            listed), a malformed line, or none of the split's videos found.
    """
    del class_names
    video_folder = _video_folder(root)
    split_folder = _split_folder(root)
    names = _class_names(root, video_folder, split_folder)
    if split == "all":
        samples = [
            Sample(path=str(path.resolve()), labels=(label,), video_id=path.stem)
            for label, name in enumerate(names)
            for path in sorted((video_folder / name).glob("*.avi"))
        ]
        if not samples:
            raise DatasetError(f"HMDB51: no .avi videos in the class folders of {video_folder}",
                               hint=_VIDEOS_HINT)
        return Dataset(name="hmdb51", split=split, class_names=names,
                       class_texts=texts_for(names), samples=tuple(samples), root=str(root))

    number, wanted = _CODES[split]
    samples = []
    missing: list[str] = []
    sources: list[str] = []
    example: Path | None = None
    for label, name in enumerate(names):
        filename = f"{name}_test_split{number}.txt"
        split_file = find_file(
            [root / SPLIT_FOLDER / filename, root / "hmdb51" / SPLIT_FOLDER / filename],
            "HMDB51 split file", _SPLITS_HINT,
        )
        sources.append(str(split_file))
        for line_number, line in file_lines(read_text(split_file)):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DatasetError(
                    f"line {line_number}: expected '<video>.avi <0|1|2>', got {line!r}",
                    path=split_file,
                )
            if parts[1] not in wanted:
                continue
            path = video_folder / name / parts[0]
            video_id = Path(parts[0]).stem
            if path.is_file():
                samples.append(Sample(path=str(path.resolve()), labels=(label,),
                                      video_id=video_id))
            else:
                missing.append(video_id)
                example = example or path
    require_some_found("HMDB51", len(samples) + len(missing), len(samples), video_folder,
                       Path(sources[0]).parent, example)
    return Dataset(
        name="hmdb51",
        split=split,
        class_names=names,
        class_texts=texts_for(names),
        samples=tuple(samples),
        root=str(root),
        missing=tuple(missing),
        sources=tuple(sources),
    )


READER = DatasetReader(
    name="hmdb51",
    read=read_hmdb51,
    default_split="test1",
    splits=SPLITS,
    aliases={"test": "test1", "train": "train1", "hmdb_full": "full"},
    layout=f"root/<class>/*.avi (or root/hmdb51/<class>/), "
    f"root/{SPLIT_FOLDER}/<class>_test_split{{1,2,3}}.txt",
)
