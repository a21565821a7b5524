"""Where training videos come from: an eval dataset reader, a list file, or plain videos.

``--dataset D --root DIR --split N`` trains on the official training list of split ``N``
and validates on its test list (UCF101/HMDB51: ``train<N>``/``test<N>``; datasets with one
official split, such as Kinetics or SSv2: ``train``/``val``). ``--data LIST`` reads ``path
label`` lines with the generic reader (``--classes FILE`` fixes class ids); ``--val-data``
is its validation list. ``--videos`` takes files, folders or globs of unlabelled videos
(self-supervised recipes only).

With ``--eval-protocol base-to-novel`` a labelled recipe trains on the base classes only (the
first half of the class ids, :func:`~videolens.eval.openvocab.default_b2n_split`, as
``videolens eval base-to-novel`` splits them without a split file) and every evaluation
scores the base and the novel half of the validation split.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import UsageError
from ..eval.datasets import DATASETS, Dataset, load_dataset, use_class_names
from ..eval.openvocab import default_b2n_split
from ..io import expand_inputs
from .config import TrainConfig
from .data import VideoItem


@dataclass
class TrainingData:
    """Training items, the class list (labelled recipes) and the validation split, if any."""

    items: list[VideoItem]
    train: Dataset | None = None
    val: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.train.class_names) if self.train is not None else 0


def split_names(dataset: str, split: str | None) -> tuple[str, str | None]:
    """(training split, validation split) of a dataset reader for an official split number.

    ``split`` may also name a training split directly (``train2``); its test split is then
    ``test2``. Raises UsageError for a dataset or split number that does not exist."""
    key = dataset.strip().lower()
    if key not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}",
                         hint=f"choose one of: {', '.join(DATASETS)}")
    reader = DATASETS[key]
    number = (split or "1").strip().lower().removeprefix("train").removeprefix("split")
    if f"train{number}" in reader.splits:
        return f"train{number}", f"test{number}" if f"test{number}" in reader.splits else None
    if "train" in reader.splits:
        if split not in (None, "1", "train", "split1"):
            raise UsageError(f"{reader.name} has one official split, not {split!r}",
                             hint="leave --split out")
        val = next((s for s in ("val", "test") if s in reader.splits), None)
        return "train", val
    raise UsageError(f"{reader.name} has no training split",
                     hint="use --data LIST with your own training list")


def _generic(list_file: str, root: str | None, classes: str | None,
             class_texts: str | None) -> Dataset:
    path = Path(list_file).expanduser()
    return load_dataset("generic", Path(root).expanduser() if root else path.parent,
                        split=str(path), class_names_file=classes, overrides=class_texts)


def training_data(config: TrainConfig, *, labelled: bool) -> TrainingData:
    """Read the data source of ``config``.

    Raises:
        UsageError: unlabelled videos for a labelled recipe, no video found.
        DatasetError: from the readers (missing annotation files, unknown classes, ...).
    """
    if config.videos:
        if labelled:
            raise UsageError(f"{config.recipe} needs labelled videos",
                             hint="use --dataset or --data LIST")
        paths = expand_inputs(list(config.videos))
        if not paths:
            raise UsageError("no video found in --videos", hint="check the paths or globs")
        return TrainingData(items=[VideoItem(str(p)) for p in paths])
    val = None
    if config.dataset:
        train_split, val_split = split_names(config.dataset, config.split)
        train = load_dataset(config.dataset, config.root, split=train_split,
                             class_names_file=config.classes, overrides=config.class_texts)
        if val_split is not None and config.eval_every:
            val = load_dataset(config.dataset, config.root, split=val_split,
                               class_names_file=config.classes, overrides=config.class_texts)
    else:
        train = _generic(config.data, config.root, config.classes, config.class_texts)
    if config.val_data:
        val = _generic(config.val_data, config.root, config.classes, config.class_texts)
    if val is not None and val.class_names != train.class_names:
        val = use_class_names(val, train.class_names, config.val_data or "")
    if labelled and config.eval_protocol == "base-to-novel":
        train = base_classes_only(train)
    if labelled and train.multilabel:
        raise UsageError(f"{train.name} is multi-label; the training recipes are single-label",
                         hint="train on a single-label dataset")
    items = [VideoItem(s.path, s.labels[0] if labelled and s.labels else -1)
             for s in train.samples]
    return TrainingData(items=items, train=train, val=val)


def base_classes_only(dataset: Dataset) -> Dataset:
    """``dataset`` restricted to the base half of its classes (ids renumbered 0..B-1)."""
    base = list(default_b2n_split(dataset).base)
    new_id = {old: new for new, old in enumerate(base)}
    samples = tuple(replace(s, labels=(new_id[s.labels[0]],)) for s in dataset.samples
                    if s.labels and s.labels[0] in new_id)
    descriptions = (tuple(dataset.class_descriptions[c] for c in base)
                    if dataset.class_descriptions else ())
    return replace(dataset, class_names=tuple(dataset.class_names[c] for c in base),
                   class_texts=tuple(dataset.class_texts[c] for c in base),
                   class_descriptions=descriptions, samples=samples)
