"""UCF101 (Soomro et al., 2012), in the layout of the official downloads.

``UCF101.rar`` unpacks to ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi``; the "Train/Test Splits for
Action Recognition" zip unpacks to ``ucfTrainTestlist/`` with

- ``classInd.txt``: ``1 ApplyEyeMakeup`` per line (1-based ids);
- ``testlist0{1,2,3}.txt``: ``ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi`` (no label: the class
  is the folder part);
- ``trainlist0{1,2,3}.txt``: ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1`` (1-based label).

The annotation folder is accepted at ``root/ucfTrainTestlist``, ``root/UCF-101/ucfTrainTestlist``
or directly in ``root``; videos at ``root/UCF-101`` or directly in ``root``.

Splits: ``test1..3`` and ``train1..3`` (the three official splits), and ``all``: every video in
the class folders, the "full dataset" zero-shot protocol (13,320 videos) used when no UCF101
class was seen in training (alias ``full``: FROSTER's ``zs_label_db/ucf101_full/test.csv``
lists the same 13,320 videos, split 1's training and test lists together). Class ids are
``classInd.txt``'s minus one; ``all`` without ``classInd.txt`` uses the class folders sorted
by name (the same order for the official data).

Quirk handled: one class is spelled ``HandstandPushups`` in ``classInd.txt`` and folders but
``HandStandPushups`` in file names, so folder names are matched ignoring case.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    Dataset,
    DatasetError,
    DatasetReader,
    Sample,
    file_lines,
    find_file,
    loose_key,
    read_text,
    require_some_found,
    texts_for,
)

__all__ = ["READER", "read_ucf101"]

SPLITS = ("test1", "test2", "test3", "train1", "train2", "train3", "all")
_VIDEO_SUFFIX = ".avi"
_SPLITS_HINT = (
    "download the 'Train/Test Splits for Action Recognition' zip (UCF101TrainTestSplits-"
    "RecognitionTask.zip) from the UCF101 page and unpack it into --root"
)
_VIDEOS_HINT = "download UCF101.rar from the UCF101 page and unpack it into --root"


def _annotation_candidates(root: Path, filename: str) -> list[Path]:
    return [
        root / "ucfTrainTestlist" / filename,
        root / "UCF-101" / "ucfTrainTestlist" / filename,
        root / filename,
    ]


def _video_folder(root: Path) -> Path:
    nested = root / "UCF-101"
    return nested if nested.is_dir() else root


def _read_class_ind(path: Path) -> tuple[str, ...]:
    """``classInd.txt`` -> class names in id order (ids must be 1..N)."""
    by_id: dict[int, str] = {}
    for number, line in file_lines(read_text(path)):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetError(
                f"line {number}: expected '<id> <ClassName>', got {line!r}", path=path
            )
        by_id[int(parts[0])] = parts[1]
    if sorted(by_id) != list(range(1, len(by_id) + 1)):
        raise DatasetError("class ids must run 1..N without gaps", path=path)
    return tuple(by_id[i] for i in range(1, len(by_id) + 1))


class _Folders:
    """Class folders of the video folder, found ignoring case (listed once)."""

    def __init__(self, video_folder: Path) -> None:
        self.video_folder = video_folder
        self._by_key: dict[str, Path] | None = None

    def resolve(self, relative: str) -> Path:
        """``video_folder/relative``, or the same file under a differently-cased class folder;
        the plain path when neither exists (the caller records it as missing)."""
        path = self.video_folder / relative
        if path.is_file():
            return path
        folder, _, filename = relative.replace("\\", "/").rpartition("/")
        if self._by_key is None:
            self._by_key = {
                loose_key(child.name): child
                for child in sorted(self.video_folder.iterdir())
                if child.is_dir()
            } if self.video_folder.is_dir() else {}
        other = self._by_key.get(loose_key(folder))
        if other is not None and (other / filename).is_file():
            return other / filename
        return path


def read_ucf101(root: Path, split: str, class_names: tuple[str, ...] | None = None) -> Dataset:
    """Read one UCF101 split (see the module docstring for the layout).

    Args:
        root: the folder holding ``UCF-101/`` and ``ucfTrainTestlist/``.
        split: ``test1..3``, ``train1..3`` or ``all``.
        class_names: unused (``load_dataset`` re-indexes onto it afterwards).

    Returns:
        The split; ``video_id`` is the file stem (``v_ApplyEyeMakeup_g01_c01``); class texts
        are :func:`class_name_to_text` of the names (``ApplyEyeMakeup`` -> ``apply eye makeup``).

    Raises:
        DatasetError: a missing annotation file (every path tried listed), a malformed line, a
            class not in ``classInd.txt``, or none of the split's videos found.
    """
    del class_names
    video_folder = _video_folder(root)
    class_ind_candidates = _annotation_candidates(root, "classInd.txt")
    if split == "all":
        return _read_all(root, video_folder, class_ind_candidates)

    class_ind = find_file(class_ind_candidates, "UCF101 class list classInd.txt", _SPLITS_HINT)
    names = _read_class_ind(class_ind)
    index_of = {loose_key(name): index for index, name in enumerate(names)}
    kind, number = split[:-1], split[-1]
    list_file = find_file(
        _annotation_candidates(root, f"{kind}list0{number}.txt"), "UCF101 split file",
        _SPLITS_HINT,
    )
    folders = _Folders(video_folder)
    samples: list[Sample] = []
    missing: list[str] = []
    example: Path | None = None
    for line_number, line in file_lines(read_text(list_file)):
        parts = line.split()
        relative = parts[0]
        folder = relative.replace("\\", "/").rpartition("/")[0]
        if loose_key(folder) not in index_of:
            raise DatasetError(
                f"line {line_number}: class folder {folder!r} is not in {class_ind}",
                path=list_file,
            )
        label = index_of[loose_key(folder)]
        if len(parts) > 1:
            # trainlist lines carry a 1-based label; it must agree with the folder.
            if not parts[1].isdigit() or int(parts[1]) - 1 != label:
                raise DatasetError(
                    f"line {line_number}: label {parts[1]!r} does not match class folder "
                    f"{folder!r} (id {label + 1} in classInd.txt)",
                    path=list_file,
                )
        path = folders.resolve(relative)
        video_id = Path(relative).stem
        if path.is_file():
            samples.append(Sample(path=str(path.resolve()), labels=(label,), video_id=video_id))
        else:
            missing.append(video_id)
            example = example or path
    require_some_found("UCF101", len(samples) + len(missing), len(samples), video_folder,
                       list_file, example)
    return Dataset(
        name="ucf101",
        split=split,
        class_names=names,
        class_texts=texts_for(names),
        samples=tuple(samples),
        root=str(root),
        missing=tuple(missing),
        sources=(str(class_ind), str(list_file)),
    )


def _read_all(root: Path, video_folder: Path, class_ind_candidates: list[Path]) -> Dataset:
    """Every ``.avi`` in the class folders (classes from classInd.txt when present)."""
    class_ind = next((path for path in class_ind_candidates if path.is_file()), None)
    folders = {
        loose_key(child.name): child
        for child in (sorted(video_folder.iterdir()) if video_folder.is_dir() else [])
        if child.is_dir() and child.name != "ucfTrainTestlist"
    }
    if class_ind is not None:
        names = _read_class_ind(class_ind)
    else:
        names = tuple(sorted((folder.name for folder in folders.values()), key=str.casefold))
    if not names:
        raise DatasetError(
            f"UCF101 class folders not found: tried {root / 'UCF-101'}, {root}",
            hint=_VIDEOS_HINT,
        )
    samples: list[Sample] = []
    for label, name in enumerate(names):
        folder = folders.get(loose_key(name))
        if folder is None:
            continue  # reported below if every class is absent
        for path in sorted(folder.glob(f"*{_VIDEO_SUFFIX}")):
            samples.append(Sample(path=str(path.resolve()), labels=(label,), video_id=path.stem))
    if not samples:
        raise DatasetError(
            f"UCF101: no {_VIDEO_SUFFIX} videos found in the class folders of {video_folder}",
            hint=_VIDEOS_HINT,
        )
    return Dataset(
        name="ucf101",
        split="all",
        class_names=names,
        class_texts=texts_for(names),
        samples=tuple(samples),
        root=str(root),
        sources=(str(class_ind),) if class_ind is not None else (),
    )


READER = DatasetReader(
    name="ucf101",
    read=read_ucf101,
    default_split="test1",
    splits=SPLITS,
    aliases={"test": "test1", "train": "train1", "full": "all", "ucf101_full": "all"},
    layout="root/UCF-101/<Class>/*.avi, "
    "root/ucfTrainTestlist/{classInd,testlist0N,trainlist0N}.txt",
)
