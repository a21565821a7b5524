"""Dataset readers for ``videolens eval``: one module per official layout.

Each reader turns a dataset's own annotation files and video folder into a :class:`Dataset`
(class list, prompt text per class, samples of one split). Readers only check that video files
exist — nothing is decoded, and nothing is ever downloaded: errors say which file is missing,
every path tried, and where to get it.

========== ============================= =============== =====================================
name       module                        default split   splits
========== ============================= =============== =====================================
ucf101     :mod:`.ucf101`                test1           test1-3, train1-3, all (= full)
hmdb51     :mod:`.hmdb51`                test1           test1-3, train1-3, full, all
kinetics*  :mod:`.kinetics` (400/600/700) val            val, test, train
ssv2       :mod:`.ssv2`                  val             val, train
charades   :mod:`.charades`              test            test, train (multi-label)
msrvtt     :mod:`.msrvtt`                1k-a            1k-a, 1k-a-all (captions)
generic    :mod:`.generic`               (a list file)   any list file
========== ============================= =============== =====================================

Example::

    dataset = load_dataset("ucf101", "/data/ucf101", split="test1")
    label_set = dataset.label_set()          # prompts for the 101 classes
    for sample in dataset.samples:
        ...                                  # sample.path, sample.labels[0]
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import charades, generic, hmdb51, kinetics, msrvtt, ssv2, ucf101
from .base import (
    Dataset,
    DatasetError,
    DatasetReader,
    Sample,
    apply_overrides,
    read_class_names_file,
    use_class_names,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "DatasetReader",
    "Sample",
    "apply_overrides",
    "load_dataset",
    "read_class_names_file",
    "use_class_names",
]

# name -> reader. A plain dict: the set of layouts is fixed and small (see STYLE.md).
DATASETS: dict[str, DatasetReader] = {
    reader.name: reader
    for reader in (
        ucf101.READER,
        hmdb51.READER,
        *kinetics.READERS.values(),
        ssv2.READER,
        charades.READER,
        msrvtt.READER,
        generic.READER,
    )
}


def load_dataset(
    name: str,
    root: str | Path,
    *,
    split: str | None = None,
    class_names_file: str | Path | None = None,
    overrides: str | Path | Mapping[str, Any] | None = None,
) -> Dataset:
    """Read one split of a dataset from its official layout under ``root``.

    Args:
        name: a key of :data:`DATASETS` (``"ucf101"``, ``"kinetics400"``, ``"generic"``, ...),
            case-insensitive.
        root: the folder the dataset was unpacked into (for ``generic``: the video root, or
            the list file itself).
        split: a split of that dataset (``None``: its default); for ``generic``, the list file.
        class_names_file: a class list (one name per line, or ``id,name`` CSV) that fixes class
            ids and order; every class of the dataset must be in it (matched ignoring case,
            underscores and spacing), classes without videos are allowed.
        overrides: replacement texts and/or descriptions per class
            (see :func:`~videolens.eval.datasets.base.apply_overrides`), a file or a mapping.

    Returns:
        The :class:`Dataset`. Videos listed but not on disk are in ``Dataset.missing``.

    Raises:
        DatasetError: unknown dataset or split, missing/malformed annotation files, no video
            found, or class names / overrides that do not match the dataset.
    """
    key = name.strip().lower()
    if key not in DATASETS:
        raise DatasetError(
            f"unknown dataset {name!r}",
            hint=f"choose one of: {', '.join(DATASETS)} (or 'generic' with a list file)",
        )
    reader = DATASETS[key]
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{reader.name} root folder not found", path=root,
                           hint="pass the folder the dataset was unpacked into as --root")
    canonical = reader.canonical_split(split)
    class_names = None
    if class_names_file is not None:
        class_names = read_class_names_file(class_names_file)
    dataset = reader.read(root, canonical, class_names)
    if class_names is not None:
        dataset = use_class_names(dataset, class_names, str(class_names_file))
    if overrides is not None:
        dataset = apply_overrides(dataset, overrides)
    return dataset
