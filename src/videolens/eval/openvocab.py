"""Open-vocabulary protocols: cross-dataset Kinetics-600 and base-to-novel.

Both embed every video once (through :class:`~videolens.eval.cache.EmbeddingCache`), score it
against the classes it may be confused with (:func:`~videolens.eval.protocols.class_logits`),
and then restrict rows (videos) and columns (classes) per evaluation set, so a video shared by
several sets is decoded and encoded once.

**Cross-dataset Kinetics-600** (ER-ZASR, Chen & Huang, ICCV 2021; used by X-CLIP, ViFi-CLIP,
Open-VCLIP and FROSTER): a model trained on Kinetics-400 (or not trained at all) is evaluated on
the Kinetics-600 classes that are *not* Kinetics-400 classes. There are 220 of them: 231
Kinetics-600 names do not occur in Kinetics-400, and 11 of those are Kinetics-400 classes
renamed in Kinetics-600 (:data:`K400_TO_K600_RENAMED`), which count as known. ER-ZASR splits
the 220 three times into 60 validation and 160 test classes; each of the three 160-class
*subsets* is evaluated separately — a video counts for a subset when its class is in it and is
classified among that subset's 160 classes only — and ``top1``/``top5`` are reported as
mean ± std over the subsets (population std, as :func:`~videolens.eval.protocols.over_splits`).

**Base-to-novel** (ViFi-CLIP, Rasheed et al., CVPR 2023; FROSTER, ICLR 2024): a dataset's
classes are split in two halves; methods fine-tune on (few shots of) the base half and are
tested on the test videos of both halves. ``base_top1`` is the top-1 accuracy of the base
classes' test videos classified among the base classes only, ``novel_top1`` the same for the
novel half, and ``HM = 2 · base · novel / (base + novel)`` their harmonic mean. A zero-shot
model is only evaluated (there is no training step).

Split files (``split_file``), with the published formats read as published:

- Kinetics-600 subsets: a folder holding ViFi-CLIP's ``labels/ZS_split{1,2,3}_K600.csv``
  (``id,name`` CSV, 160 Kinetics-600 names each) or FROSTER's
  ``label_rephrase/k600_split{1,2,3}_rephrased_classes.json`` (``{"0": "Name: description"}``,
  the text before the first ``": "`` is the class); one or several such files (one subset per
  file); a ``.json`` file holding a list of subsets (each a list of class names or 0-based
  Kinetics-600 class ids, ids as in the class list of ``k600_val``); or a text file with one
  subset per line, classes separated by ``;``.
- Base-to-novel: a folder in FROSTER's layout (``zs_label_db/B2N_<dataset>/``: ``val.csv`` =
  the base classes' test videos, ``test.csv`` = the novel classes' test videos, lines
  ``path,label``; class names from ``train_idx2cls.csv``/``raw_train_idx2cls.json`` (base) and
  ``test_idx2cls.csv``/``raw_test_idx2cls.json`` (novel) when present) or ViFi-CLIP's
  (``datasets_splits/base2novel_splits/<dataset>_splits/``: ``base_val.txt``,
  ``novel_val.txt``, lines ``path label``); a ``.json`` file ``{"base": [...], "novel":
  [...]}``; or a class list file (one name per line, or ``id,name``) naming the base classes,
  every other class being novel. With video lists, the listed videos are looked up among the
  dataset's samples by file name (extensions dropped; for Kinetics also by YouTube id, since
  FROSTER's files are named ``<youtube_id>.mp4``), so load the split the lists were made from
  (UCF101/HMDB51: ``test1``; Kinetics-400: ``val``).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..models import VideoTextModel
from ..models.scoring import ScoreRule
from ..text.prompts import class_name_to_text
from .cache import CachedVideos, EmbeddingCache, embed_videos
from .datasets import Dataset, DatasetError, read_class_names_file
from .datasets.base import data_lines, file_lines, read_json, read_text
from .datasets.generic import parse_list_line
from .datasets.names import FROSTER_SPELLINGS
from .metrics import topk_accuracy
from .results import EvalResult, class_logits, over_splits, run_record, sampling_for
from .views import ViewSampling

__all__ = [
    "K400_TO_K600_RENAMED",
    "base_to_novel",
    "class_key",
    "cross_dataset_k600",
    "default_b2n_split",
    "default_k600_subsets",
    "harmonic_mean",
    "k600_novel_classes",
    "read_b2n_split",
    "read_class_list",
    "read_k400_class_names",
    "read_k600_subsets",
    "read_video_lists",
]

PathLike = str | Path
ClassSource = Dataset | Sequence[str] | PathLike

# Kinetics-400 name -> its Kinetics-600 name. Found by comparing the official class lists
# (as in X-CLIP's ``labels/kinetics_{400,600}_labels.csv``): 31 Kinetics-400 names are absent
# from Kinetics-600; 11 of them are the same action under a new name, the other 20 were
# dropped. 600 - (400 - 31) - 11 = 220 novel classes, the count of ER-ZASR (its 620-class list
# is 400 + 220) and of the subsets published by ViFi-CLIP. "barbecuing" is not an official
# Kinetics-400 name but FROSTER's spelling of "barbequing" (which Kinetics-600 keeps): listed
# so a Kinetics-400 class list in FROSTER's spelling finds it.
K400_TO_K600_RENAMED: dict[str, str] = {
    "baby waking up": "waking up",
    "balloon blowing": "inflating balloons",
    "barbecuing": "barbequing",
    "changing wheel": "changing wheel (not on bike)",
    "cooking sausages": "cooking sausages (not on barbeque)",
    "dying hair": "dyeing hair",
    "garbage collecting": "person collecting garbage",
    "hugging": "hugging (not baby)",
    "making bed": "making the bed",
    "opening bottle": "opening bottle (not wine)",
    "throwing ball": "throwing ball (not baseball or American football)",
    "tying tie": "tying necktie",
}


def class_key(name: str) -> str:
    """Comparison key of a class name: case-folded, underscores and whitespace removed, so the
    CSV's ``"air drumming"``, a folder's ``"air_drumming"``, UCF101's ``"ApplyEyeMakeup"`` and
    FROSTER's ``"Apply Eye Makeup"`` (or ``"Yoyo"`` for ``"YoYo"``) compare equal."""
    return "".join(name.replace("_", " ").split()).casefold()


def _class_names(source: Dataset | Sequence[str]) -> tuple[str, ...]:
    if isinstance(source, Dataset):
        return source.class_names
    return tuple(source)


def k600_novel_classes(k400: Dataset | Sequence[str], k600: Dataset | Sequence[str]
                       ) -> list[int]:
    """Ids (ascending) of the Kinetics-600 classes that are not Kinetics-400 classes.

    ``k400``/``k600``: a dataset or its class names (index = class id). A Kinetics-600 class is
    known when its :func:`class_key` equals that of a Kinetics-400 class, or of the new name of
    a renamed one (:data:`K400_TO_K600_RENAMED`). With the official lists: 220 classes.
    """
    renamed = {class_key(old): new for old, new in K400_TO_K600_RENAMED.items()}
    known: set[str] = set()
    for name in _class_names(k400):
        known.add(class_key(name))
        if class_key(name) in renamed:
            known.add(class_key(renamed[class_key(name)]))
    return [i for i, name in enumerate(_class_names(k600)) if class_key(name) not in known]


# --- class lists and split files ---------------------------------------------------------------


def read_class_list(path: PathLike) -> tuple[str, ...]:
    """Class names from a file, index = class id.

    ``.json``: a list of names, or an ``{"<id>": "<name>"}`` mapping with ids ``0..K-1``
    (FROSTER's ``*_idx2cls.json``); a value ``"Name: description"`` (FROSTER's rephrased files)
    gives ``"Name"``. Anything else: :func:`~videolens.eval.datasets.read_class_names_file`
    (one name per line, or ``id,name`` CSV).

    Raises:
        DatasetError: missing or malformed file.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() != ".json":
        return read_class_names_file(path)
    content = _read_json(path)
    if isinstance(content, list) and all(isinstance(item, str) for item in content):
        names = content
    elif isinstance(content, dict):
        try:
            ids = sorted(int(key) for key in content)
        except ValueError as error:
            raise DatasetError("class ids (the keys) must be integers", path=path) from error
        if ids != list(range(len(ids))):
            raise DatasetError(f"class ids must be 0..{len(ids) - 1}", path=path)
        names = [str(content[str(i)]) for i in ids]
    else:
        raise DatasetError("expected a list of class names or an {id: name} mapping",
                           path=path)
    names = [name.split(": ", 1)[0].strip() for name in names]
    if not names or not all(names):
        raise DatasetError("empty class name", path=path)
    return tuple(names)


def read_k400_class_names(source: PathLike) -> tuple[str, ...]:
    """The Kinetics-400 class names, from what a user has at hand (``--k400-classes``).

    ``source``: a Kinetics-400 folder (its annotation CSVs in the folder or ``annotations/``:
    the sorted distinct ``label`` values of the first of ``train.csv``, ``validate.csv``,
    ``val.csv``, ``test.csv``, ``kinetics_400_<split>.csv``, ``kinetics-400_<split>.csv``
    found; the videos need not be there); a Kinetics CSV (a ``label`` column); or a class list
    (:func:`read_class_list`).

    Raises:
        DatasetError: nothing usable found (every path tried is named).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        names = ("train", "validate", "val", "test")
        candidates = [folder / pattern.format(split)
                      for folder in (path, path / "annotations")
                      for pattern in ("{}.csv", "kinetics_400_{}.csv", "kinetics-400_{}.csv")
                      for split in names]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            tried = ", ".join(str(c) for c in candidates[:4]) + ", ..."
            raise DatasetError(f"no Kinetics-400 annotation CSV found: tried {tried}",
                               path=path, hint="pass the Kinetics-400 root or a class list")
        path = found
    if not path.is_file():
        raise DatasetError("Kinetics-400 class source not found", path=path,
                           hint="pass the Kinetics-400 root, one of its CSVs or a class list")
    if path.suffix.lower() == ".csv":
        labels = _kinetics_csv_labels(path)
        if labels is not None:
            return labels
    return read_class_list(path)


def _kinetics_csv_labels(path: Path) -> tuple[str, ...] | None:
    """Sorted distinct ``label`` values of a CSV with a ``label`` header, else ``None``."""
    reader = csv.DictReader(io.StringIO(read_text(path)))
    columns = [name.strip() for name in reader.fieldnames or []]
    if "label" not in columns or "youtube_id" not in columns:
        return None
    reader.fieldnames = columns
    labels = {(row["label"] or "").strip() for row in reader}
    labels.discard("")
    if not labels:
        raise DatasetError("the CSV has no labels", path=path)
    return tuple(sorted(labels))


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise DatasetError("split file not found", path=path, hint="check --split-file")
    return read_json(path)


def _index_names(class_names: Sequence[str]) -> dict[str, int]:
    """Look-up of class ids by :func:`class_key` of the name, of its prompt text, and of
    FROSTER's spelling of the Kinetics-400 and SSv2 classes it renamed
    (:data:`~videolens.eval.datasets.names.FROSTER_SPELLINGS`)."""
    index: dict[str, int] = {}
    for i, name in enumerate(class_names):
        index.setdefault(class_key(name), i)
        index.setdefault(class_key(class_name_to_text(name)), i)
    for froster, official in FROSTER_SPELLINGS.items():
        if class_key(official) in index:
            index.setdefault(class_key(froster), index[class_key(official)])
    return index


def _resolve_classes(items: Sequence[str | int], class_names: Sequence[str], source: str
                     ) -> list[int]:
    """Class ids of ``items`` (names, or integer ids into ``class_names``)."""
    index = _index_names(class_names)
    ids: list[int] = []
    unknown: list[str] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            if not 0 <= item < len(class_names):
                raise DatasetError(f"class id {item} outside 0..{len(class_names) - 1}",
                                   path=source)
            ids.append(item)
        elif isinstance(item, str) and class_key(item) in index:
            ids.append(index[class_key(item)])
        else:
            unknown.append(repr(item))
    if unknown:
        raise DatasetError(
            f"{len(unknown)} classes not in the dataset's class list: {', '.join(unknown[:5])}",
            path=source, hint="the split file must name classes of the evaluated dataset")
    if len(set(ids)) != len(ids):
        raise DatasetError("a class is listed twice in one set", path=source)
    return ids


_SPLIT_NUMBER = re.compile(r"split(\d+)", re.IGNORECASE)
_K600_SUBSET_FILES = ("ZS_split*_K600.csv", "k600_split*_rephrased_classes.json",
                      "k600_split*_classes.json")


def _split_number(path: Path) -> int:
    match = _SPLIT_NUMBER.search(path.name)
    return int(match.group(1)) if match else 0


def read_k600_subsets(split_file: PathLike | Sequence[PathLike], class_names: Sequence[str]
                      ) -> tuple[list[list[int]], list[str]]:
    """Kinetics-600 evaluation subsets from split files (formats in the module docstring).

    ``class_names``: the Kinetics-600 class list the ids refer to. Returns the subsets (class
    ids, in file order) and the files read.

    Raises:
        DatasetError: a file is missing or malformed, or names a class not in ``class_names``.
    """
    paths = ([Path(split_file)] if isinstance(split_file, str | Path)
             else [Path(p) for p in split_file])
    paths = [p.expanduser() for p in paths]
    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        found: list[Path] = []
        for where in (folder, folder / "labels", folder / "label_rephrase"):
            for pattern in _K600_SUBSET_FILES:
                found = sorted(where.glob(pattern), key=_split_number)
                if found:
                    break
            if found:
                break
        if not found:
            raise DatasetError(
                "no Kinetics-600 subset files found (ZS_split<k>_K600.csv or "
                "k600_split<k>_rephrased_classes.json, also under labels/ or label_rephrase/)",
                path=folder, hint="pass the subset files themselves, or a JSON list of lists")
        paths = found
    if len(paths) == 1:
        path = paths[0]
        if not path.is_file():
            raise DatasetError("split file not found", path=path, hint="check --split-file")
        if path.suffix.lower() == ".json":
            content = _read_json(path)
            if isinstance(content, list) and content and all(
                    isinstance(subset, list) for subset in content):
                return ([_resolve_classes(subset, class_names, str(path)) for subset in content],
                        [str(path)])
        elif path.suffix.lower() != ".csv":
            lines = data_lines(read_text(path))
            if any(";" in line for _, line in lines):
                subsets = [[item.strip() for item in line.split(";") if item.strip()]
                           for _, line in lines]
                return ([_resolve_classes(subset, class_names, str(path)) for subset in subsets],
                        [str(path)])
    subsets = [_resolve_classes(read_class_list(p), class_names, str(p)) for p in paths]
    return subsets, [str(p) for p in paths]


def default_k600_subsets(novel: Sequence[int], *, subsets: int = 3, subset_size: int = 160,
                         seed: int = 0) -> list[list[int]]:
    """The default subsets: subset ``i`` (0-based) is
    ``numpy.random.default_rng(seed + i).choice(len(novel), subset_size, replace=False)``
    applied to ``sorted(novel)``, returned sorted. Deterministic per seed, independent of the
    other subsets; not the published ER-ZASR subsets (pass those with ``split_file``).

    Raises:
        UsageError: ``subset_size`` not in ``1..len(novel)`` or ``subsets < 1``.
    """
    pool = sorted(novel)
    if subsets < 1:
        raise UsageError(f"--subsets must be at least 1, got {subsets}")
    if not 1 <= subset_size <= len(pool):
        raise UsageError(f"--subset-size must be in 1..{len(pool)} (the novel classes), got "
                         f"{subset_size}")
    chosen = []
    for i in range(subsets):
        picks = np.random.default_rng(seed + i).choice(len(pool), subset_size, replace=False)
        chosen.append(sorted(pool[j] for j in picks))
    return chosen


@dataclass(frozen=True)
class B2NSplit:
    """A base-to-novel split of one dataset.

    ``base``/``novel``: class ids (disjoint). ``base_videos``/``novel_videos``: the sample paths
    evaluated for each half, or ``None`` for "every sample of the dataset whose class is in the
    half". ``missing``: listed videos not found among the dataset's samples. ``source``: where
    the split came from (files, or ``"default: ..."``)."""

    base: tuple[int, ...]
    novel: tuple[int, ...]
    source: str
    base_videos: tuple[str, ...] | None = None
    novel_videos: tuple[str, ...] | None = None
    missing: int = 0


def default_b2n_split(dataset: Dataset) -> B2NSplit:
    """Classes sorted by id; the first ``ceil(K / 2)`` are base, the rest novel. Published
    numbers use the published split files (ViFi-CLIP split the classes by frequency, e.g.
    the 200 most frequent Kinetics-400 classes are base), so pass those to compare."""
    count = len(dataset.class_names)
    half = math.ceil(count / 2)
    return B2NSplit(tuple(range(half)), tuple(range(half, count)),
                    f"default: first {half} of {count} classes by id are base")


_B2N_LISTS = (("val.csv", "test.csv"), ("base_val.txt", "novel_val.txt"))
_B2N_NAMES = (("train_idx2cls.csv", "test_idx2cls.csv"),
              ("raw_train_idx2cls.json", "raw_test_idx2cls.json"))
_VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


def _video_keys(path: str, kinetics: bool) -> list[str]:
    """Look-up keys of a video path: the file name without (repeated) video extensions, and
    for Kinetics its YouTube id (``<id>_<start>_<end>`` -> ``<id>``)."""
    name = Path(path.strip().replace("\\", "/")).name
    while Path(name).suffix.lower() in _VIDEO_SUFFIXES:
        name = name[: -len(Path(name).suffix)]
    keys = [name]
    if kinetics:
        match = re.fullmatch(r"(.{11})_\d+_\d+", name)
        keys.append(match.group(1) if match else name)
    return keys


def _read_video_list(path: Path) -> list[str]:
    """The video paths of a published list (``path,label`` or ``path label`` lines). These
    formats have no comments: a line starting with ``#`` is an HMDB51 video."""
    videos = []
    for number, line in file_lines(read_text(path)):
        try:
            videos.append(parse_list_line(line)[0])
        except ValueError as error:
            raise DatasetError(f"line {number}: expected 'path,label' or 'path label'",
                               path=path) from error
    return videos


def read_b2n_split(split_file: PathLike, dataset: Dataset) -> B2NSplit:
    """A base-to-novel split of ``dataset`` from a split file or folder (formats in the module
    docstring).

    Raises:
        DatasetError: missing/malformed files, classes not in the dataset, overlapping halves,
            a listed video of the wrong half, or no listed video among the dataset's samples.
    """
    path = Path(split_file).expanduser()
    names = dataset.class_names
    if path.is_dir():
        return _read_b2n_folder(path, dataset)
    if not path.is_file():
        raise DatasetError("split file not found", path=path, hint="check --split-file")
    if path.suffix.lower() == ".json":
        content = _read_json(path)
        if not (isinstance(content, dict) and "base" in content):
            raise DatasetError('expected {"base": [...], "novel": [...]}', path=path)
        base = _resolve_classes(content["base"], names, str(path))
        novel = (_resolve_classes(content["novel"], names, str(path)) if "novel" in content
                 else [i for i in range(len(names)) if i not in set(base)])
    else:
        base = _resolve_classes(read_class_list(path), names, str(path))
        novel = [i for i in range(len(names)) if i not in set(base)]
    return _checked_split(base, novel, str(path))


def _checked_split(base: Sequence[int], novel: Sequence[int], source: str, **videos
                   ) -> B2NSplit:
    if set(base) & set(novel):
        raise DatasetError("a class is both base and novel", path=source)
    if not base or not novel:
        raise DatasetError("both halves need at least one class", path=source)
    return B2NSplit(tuple(base), tuple(novel), source, **videos)


def _read_b2n_folder(folder: Path, dataset: Dataset) -> B2NSplit:
    lists = next(((folder / b, folder / n) for b, n in _B2N_LISTS
                  if (folder / b).is_file() and (folder / n).is_file()), None)
    if lists is None:
        tried = ", ".join(f"{b} + {n}" for b, n in _B2N_LISTS)
        raise DatasetError(f"no base-to-novel lists found: tried {tried}", path=folder,
                           hint="point --split-file at FROSTER's zs_label_db/B2N_<dataset> or "
                           "ViFi-CLIP's base2novel_splits/<dataset>_splits folder")
    kinetics = dataset.name.startswith("kinetics")
    index: dict[str, list[int]] = {}
    for position, sample in enumerate(dataset.samples):
        for key in set(_video_keys(sample.path, kinetics) + _video_keys(sample.video_id,
                                                                        kinetics)):
            index.setdefault(key, []).append(position)
    halves: list[list[int]] = []
    chosen: list[tuple[str, ...]] = []
    missing = 0
    for list_file in lists:
        positions: dict[int, None] = {}  # ordered set of sample positions
        for written in _read_video_list(list_file):
            hit = next((index[k] for k in _video_keys(written, kinetics) if k in index), None)
            if hit is None:
                missing += 1
            else:
                positions.update(dict.fromkeys(hit))
        if not positions:
            raise DatasetError(
                f"none of the videos listed was found among the {len(dataset.samples)} "
                f"samples of {dataset.name} {dataset.split}",
                path=list_file, hint="load the split the lists come from (UCF101/HMDB51: "
                "--split test1, Kinetics-400: --split val)")
        chosen.append(tuple(dataset.samples[p].path for p in positions))
        halves.append(sorted({dataset.samples[p].labels[0] for p in positions}))
    source = f"{lists[0]} + {lists[1]}"
    name_files = next(((folder / b, folder / n) for b, n in _B2N_NAMES
                       if (folder / b).is_file() and (folder / n).is_file()), None)
    if name_files is not None:
        declared = [_resolve_classes(read_class_list(f), dataset.class_names, str(f))
                    for f in name_files]
        for videos_classes, classes, list_file in zip(halves, declared, lists, strict=True):
            stray = sorted(set(videos_classes) - set(classes))
            if stray:
                raise DatasetError(
                    f"videos of class {dataset.class_names[stray[0]]!r} are listed but the "
                    "class is not in this half's class names", path=list_file)
        halves = declared
        source += f" (classes: {name_files[0].name}, {name_files[1].name})"
    return _checked_split(halves[0], halves[1], source, base_videos=chosen[0],
                          novel_videos=chosen[1], missing=missing)


# --- protocols -----------------------------------------------------------------------------------


def harmonic_mean(base: float, novel: float) -> float:
    """``2 · base · novel / (base + novel)``; 0 when both are 0."""
    return 0.0 if base + novel == 0 else 2 * base * novel / (base + novel)


def _embed(paths: Sequence[str], model: VideoTextModel, frames: int | None,
           cache: EmbeddingCache | None, sampling: ViewSampling | None, workers: int,
           progress: bool) -> tuple[CachedVideos, ViewSampling]:
    return embed_videos(paths, model, cache, sampling or sampling_for(model, frames),
                        workers=workers, progress=progress)


def _restricted(dataset: Dataset, class_ids: Sequence[int]) -> Dataset:
    """``dataset`` with only ``class_ids`` (in that order) and no samples: for prompts."""
    descriptions = (tuple(dataset.class_descriptions[i] for i in class_ids)
                    if dataset.class_descriptions else ())
    return replace(dataset, class_names=tuple(dataset.class_names[i] for i in class_ids),
                   class_texts=tuple(dataset.class_texts[i] for i in class_ids),
                   class_descriptions=descriptions, samples=(), missing=())


@dataclass
class _Scored:
    """Per-clip logits of the kept videos against ``classes`` (dataset ids, column order)."""

    classes: list[int]
    paths: list[str]
    labels: np.ndarray  # (N,) dataset class ids
    scores: np.ndarray  # (N, clips, C) logits, columns = ``classes``
    rule: ScoreRule
    ensemble: str

    def restrict(self, class_ids: Sequence[int], paths: set[str] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (n, c), labels (n,) in 0..c-1)`` of the videos whose class is in
        ``class_ids`` (and whose path is in ``paths``), against ``class_ids`` only; several
        clips are combined after restricting, so a ``"probs"`` ensemble is a softmax over
        ``class_ids`` as it would be with only those classes."""
        column = {c: j for j, c in enumerate(self.classes)}
        wanted = {c: j for j, c in enumerate(class_ids)}
        rows = [i for i, (p, y) in enumerate(zip(self.paths, self.labels, strict=True))
                if y in wanted and (paths is None or p in paths)]
        # (N, clips, C) -> (n, clips, c)
        scores = self.scores[rows][:, :, [column[c] for c in class_ids]]
        if scores.shape[1] > 1 and self.ensemble == "probs":
            scores = self.rule.probabilities(scores)
        return scores.mean(axis=1), np.array([wanted[self.labels[i]] for i in rows],
                                             dtype=np.int64)


def _score(dataset: Dataset, classes: list[int], paths: Sequence[str], model: VideoTextModel,
           templates: Sequence[str] | None, videos: CachedVideos, sampling: ViewSampling,
           prompt_style: str = "templates") -> _Scored:
    label_of = {s.path: s.labels[0] for s in dataset.samples}
    kept = [p for p in dict.fromkeys(paths) if p in videos.embeddings]
    if not kept:
        raise UsageError(f"no video of {dataset.name} ({dataset.split}) could be read",
                         hint="check --root; the first failure: "
                         + next(iter(videos.failures.values()), "none"))
    clips = [e for p in kept for e in videos.views[p]]
    # every clip on its own: (N * clips, C) -> (N, clips, C)
    logits = class_logits(model, clips, _restricted(dataset, classes), templates,
                          style=prompt_style).numpy()
    logits = logits.reshape(len(kept), sampling.clips, len(classes))
    return _Scored(classes, kept, np.array([label_of[p] for p in kept]), logits,
                   model.score_rule, sampling.ensemble)


def read_video_lists(files: Sequence[PathLike], dataset: Dataset) -> tuple[list[set[str]], int]:
    """The samples of ``dataset`` named by each of the published video lists ``files`` (one per
    evaluation subset, e.g. ViFi-CLIP's ``datasets_splits/k600_splits/
    ZS_split{1,2,3}_K600_eval.txt``, lines ``test/<youtube_id>_<start>_<end>.mp4 <label>``),
    matched by file name and, for Kinetics, by YouTube id. Returns one set of sample paths
    per file and the number of listed videos not among the samples (e.g. ViFi-CLIP's lists
    name K600 train/, val/ and test/ videos: evaluated on ``--split test``, only the test/
    ones are found).

    Raises:
        DatasetError: a list is missing, malformed, or names none of the samples.
    """
    kinetics = dataset.name.startswith("kinetics")
    index: dict[str, list[str]] = {}
    for sample in dataset.samples:
        for key in set(_video_keys(sample.path, kinetics) + _video_keys(sample.video_id,
                                                                        kinetics)):
            index.setdefault(key, []).append(sample.path)
    chosen: list[set[str]] = []
    missing = 0
    for file in files:
        path = Path(file).expanduser()
        if not path.is_file():
            raise DatasetError("video list not found", path=path, hint="check --video-list")
        found: set[str] = set()
        for written in _read_video_list(path):
            hit = next((index[k] for k in _video_keys(written, kinetics) if k in index), None)
            if hit is None:
                missing += 1
            else:
                found.update(hit)
        if not found:
            raise DatasetError(f"none of the listed videos is among the {len(dataset.samples)} "
                               f"samples of {dataset.name} {dataset.split}", path=path,
                               hint="load the split the list's videos come from (--split)")
        chosen.append(found)
    return chosen, missing


def cross_dataset_k600(
    k600_val: Dataset,
    k400_classes: ClassSource,
    model: VideoTextModel,
    *,
    split_file: PathLike | Sequence[PathLike] | None = None,
    subsets: int = 3,
    subset_size: int = 160,
    seed: int = 0,
    video_lists: Sequence[PathLike] = (),
    frames: int | None = None,
    templates: Sequence[str] | None = None,
    cache: EmbeddingCache | None = None,
    sampling: ViewSampling | None = None,
    prompt_style: str = "templates",
    workers: int = 1,
    progress: bool = False,
) -> EvalResult:
    """Zero-shot top-1/top-5 on Kinetics-600 subsets of novel classes (module docstring).

    Which videos: every video of ``k600_val`` (the split loaded: ``val``, as FROSTER and
    Open-VCLIP evaluate — their ``zs_label_db/k600_split*/test.csv`` list ``val/`` videos — or
    ``test``) whose class is in the subset; with ``video_lists`` (one per subset, ViFi-CLIP's
    ``ZS_split{k}_K600_eval.txt``), only the listed ones among them. ``record["videos"]``
    states which.

    Args:
        k600_val: the Kinetics-600 split evaluated (``load_dataset("kinetics600", root)``).
        k400_classes: the Kinetics-400 classes: a dataset, a list of names, or a path for
            :func:`read_k400_class_names` (root folder, CSV or class list).
        split_file: published subsets (:func:`read_k600_subsets`); ``None``: the default
            subsets of :func:`default_k600_subsets` over :func:`k600_novel_classes`.
        subsets, subset_size, seed: the default subsets (ignored with ``split_file``).

    Returns:
        ``protocol="cross-dataset"``; metrics ``top1``, ``top1_std``, ``top5``, ``top5_std``
        (mean and population std over the subsets; ``top5`` only when every subset has at
        least 5 classes); ``extra["subsets"]``: per subset ``top1``, ``top5``, ``num_videos``,
        ``num_classes``; ``record``: split source, K-400 source, the class names of every
        subset, the texts used. ``num_videos``: distinct videos evaluated.

    Raises:
        UsageError: bad subset options, no readable video, or a subset without videos.
        DatasetError: unreadable class or split files.
    """
    if isinstance(k400_classes, str | Path):
        k400_source = str(k400_classes)
        k400_names = read_k400_class_names(k400_classes)
    else:
        k400_names = _class_names(k400_classes)
        k400_source = getattr(k400_classes, "root", "") or "<list>"
    novel = k600_novel_classes(k400_names, k600_val)
    if split_file is not None:
        chosen, sources = read_k600_subsets(split_file, k600_val.class_names)
        split_source = ", ".join(sources)
    else:
        if not novel:
            raise UsageError("no Kinetics-600 class is novel with respect to Kinetics-400",
                             hint="check --k400-classes")
        chosen = default_k600_subsets(novel, subsets=subsets, subset_size=subset_size,
                                      seed=seed)
        split_source = (f"default: {len(chosen)} subsets of {subset_size} of the {len(novel)} "
                        f"novel classes, numpy default_rng(seed + i), seed {seed}")
    union = sorted({c for subset in chosen for c in subset})
    wanted = set(union)
    listed: list[set[str]] | None = None
    listed_missing = 0
    if video_lists:
        if len(video_lists) != len(chosen):
            raise UsageError(f"{len(video_lists)} video lists for {len(chosen)} subsets",
                             hint="give one --video-list per subset, in subset order")
        listed, listed_missing = read_video_lists(video_lists, k600_val)
        allowed = set().union(*listed)
        paths = [s.path for s in k600_val.samples if s.labels[0] in wanted
                 and s.path in allowed]
        videos_used = (f"the videos of {k600_val.name} {k600_val.split} named in "
                       f"{', '.join(map(str, video_lists))} ({listed_missing} listed videos "
                       f"are not in this split)")
    else:
        paths = [s.path for s in k600_val.samples if s.labels[0] in wanted]
        videos_used = f"every {k600_val.name} {k600_val.split} video of the subset's classes"
    videos, used = _embed(paths, model, frames, cache, sampling, workers, progress)
    scored = _score(k600_val, union, paths, model, templates, videos, used, prompt_style)
    per_subset = []
    for number, subset in enumerate(chosen, start=1):
        scores, labels = scored.restrict(subset, listed[number - 1] if listed else None)
        if not len(labels):
            raise UsageError(f"subset {number} has no readable video of its classes",
                             hint="check --root and the split file")
        entry = {"top1": topk_accuracy(scores, labels, 1), "num_videos": int(len(labels)),
                 "num_classes": len(subset)}
        if len(subset) >= 5:
            entry["top5"] = topk_accuracy(scores, labels, 5)
        per_subset.append(entry)
    metrics: dict[str, float] = {}
    for name in ("top1", "top5"):
        if all(name in entry for entry in per_subset):
            values = np.array([entry[name] for entry in per_subset])
            metrics[name], metrics[f"{name}_std"] = float(values.mean()), float(values.std())
    novel_set = set(novel)
    record = run_record(
        model, used, templates, from_cache=videos.from_cache, computed=videos.computed,
        prompt_style=prompt_style, videos=videos_used,
        listed_videos_not_in_split=listed_missing,
        split_source=split_source, k400_classes=k400_source, novel_classes=len(novel),
        subsets=[[k600_val.class_names[c] for c in subset] for subset in chosen],
        classes_not_novel=[k600_val.class_names[c] for c in union if c not in novel_set],
        class_texts={k600_val.class_names[c]: k600_val.class_texts[c] for c in union},
        dataset_sources=list(k600_val.sources), missing_videos=len(k600_val.missing))
    return EvalResult("cross-dataset", k600_val.name, k600_val.split, metrics,
                      len(scored.paths), record,
                      class_texts=tuple(k600_val.class_texts[c] for c in union),
                      failures=videos.failures, extra={"subsets": per_subset})


def base_to_novel(
    dataset: Dataset,
    model: VideoTextModel,
    *,
    split_file: PathLike | Sequence[PathLike] | None = None,
    base_classes: Sequence[str | int] | None = None,
    frames: int | None = None,
    templates: Sequence[str] | None = None,
    cache: EmbeddingCache | None = None,
    sampling: ViewSampling | None = None,
    prompt_style: str = "templates",
    workers: int = 1,
    progress: bool = False,
) -> EvalResult:
    """Zero-shot base-to-novel evaluation (module docstring).

    Args:
        dataset: the evaluated split (its test videos).
        split_file: a split (:func:`read_b2n_split`); several (e.g. the three seeds) give
            mean ± std over them (:func:`~videolens.eval.protocols.over_splits`).
        base_classes: base class names or ids (the rest are novel), instead of ``split_file``.
            Neither: :func:`default_b2n_split`.

    Returns:
        ``protocol="base-to-novel"``; metrics ``base_top1``, ``novel_top1``, ``HM`` (in
        [0, 1]); ``extra``: ``base_videos``, ``novel_videos``; ``record``: split source, the
        base and novel class names and the texts used, listed videos not found.

    Raises:
        UsageError: both ``split_file`` and ``base_classes``, or no readable video in a half.
        DatasetError: unreadable or inconsistent split files.
    """
    if split_file is not None and base_classes is not None:
        raise UsageError("give a split file or base classes, not both")
    if split_file is not None and not isinstance(split_file, str | Path):
        files = list(split_file)
        if len(files) > 1:
            own_cache = cache is None
            cache = cache or EmbeddingCache(model, sampling or sampling_for(model, frames))
            try:
                runs = [base_to_novel(dataset, model, split_file=f, frames=frames,
                                      templates=templates, cache=cache,
                                      prompt_style=prompt_style, workers=workers,
                                      progress=progress) for f in files]
            finally:
                if own_cache:
                    cache.close()
            merged = over_splits(runs)
            merged.extra["splits"] = {str(f): r.metrics for f, r in zip(files, runs,
                                                                        strict=True)}
            merged.record = {**runs[0].record,
                             "split_source": [r.record["split_source"] for r in runs]}
            return merged
        split_file = files[0]
    if split_file is not None:
        split = read_b2n_split(split_file, dataset)
    elif base_classes is not None:
        base = _resolve_classes(list(base_classes), dataset.class_names, "base classes")
        split = _checked_split(base, [i for i in range(len(dataset.class_names))
                                      if i not in set(base)], "base classes given")
    else:
        split = default_b2n_split(dataset)

    halves = []
    for classes, listed in ((split.base, split.base_videos), (split.novel, split.novel_videos)):
        wanted, allowed = set(classes), None if listed is None else set(listed)
        paths = [s.path for s in dataset.samples if s.labels[0] in wanted
                 and (allowed is None or s.path in allowed)]
        halves.append(paths)
    videos, used = _embed(halves[0] + halves[1], model, frames, cache, sampling, workers,
                          progress)
    accuracies = []
    counts = []
    for name, classes, paths in (("base", split.base, halves[0]),
                                 ("novel", split.novel, halves[1])):
        scored = _score(dataset, list(classes), paths, model, templates, videos, used,
                        prompt_style)
        scores, labels = scored.restrict(list(classes), set(paths))
        if not len(labels):
            raise UsageError(f"no readable test video of a {name} class")
        accuracies.append(topk_accuracy(scores, labels, 1))
        counts.append(int(len(labels)))
    base_top1, novel_top1 = accuracies
    metrics = {"base_top1": base_top1, "novel_top1": novel_top1,
               "HM": harmonic_mean(base_top1, novel_top1)}
    record = run_record(
        model, used, templates, from_cache=videos.from_cache, prompt_style=prompt_style,
        computed=videos.computed, split_source=split.source,
        base_classes=[dataset.class_names[c] for c in split.base],
        novel_classes=[dataset.class_names[c] for c in split.novel],
        class_texts={dataset.class_names[c]: dataset.class_texts[c]
                     for c in (*split.base, *split.novel)},
        listed_videos_not_found=split.missing,
        dataset_sources=list(dataset.sources), missing_videos=len(dataset.missing))
    split_name = Path(str(split_file)).name if split_file is not None else dataset.split
    return EvalResult("base-to-novel", dataset.name, split_name, metrics, sum(counts), record,
                      class_texts=tuple(dataset.class_texts), failures=videos.failures,
                      extra={"base_videos": counts[0], "novel_videos": counts[1]})
