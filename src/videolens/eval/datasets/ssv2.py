"""Something-Something v2 (Goyal et al., 2017), from the official label files.

The labels download unpacks to ``labels/`` with

- ``labels.json``: ``{"Approaching something with your camera": "0", ...}`` — 174 templates
  with the brackets removed -> class id (a string);
- ``train.json`` / ``validation.json``: lists of ``{"id": "74225", "label": "...",
  "template": "Approaching [something] with your camera", "placeholders": [...]}``; the class
  is ``template`` with ``[`` and ``]`` removed (``label`` has the objects filled in).

Those files are looked for in ``root/labels/``, ``root/`` and ``root/annotations/`` (also under
their ``something-something-v2-<name>.json`` download names). Videos are
``root/20bn-something-something-v2/<id>.webm`` (or ``root/videos/<id>.webm``).

The class name is the ``labels.json`` key; its text is the same sentence lower-cased
(``"approaching something with your camera"``). Splits: ``val`` (``validation.json``, the
standard 24,777-video evaluation split; ``validation`` is accepted) and ``train``.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    Dataset,
    DatasetError,
    DatasetReader,
    Sample,
    find_file,
    find_folder,
    loose_key,
    read_json,
    require_some_found,
    texts_for,
)

__all__ = ["READER", "read_ssv2", "template_to_class"]

SPLITS = ("val", "train")
_SPLIT_FILES = {"val": "validation", "train": "train"}
_HINT = (
    "download the Something-Something v2 labels zip from the dataset page (Qualcomm) and "
    "unpack it into --root (it holds labels/)"
)


def template_to_class(template: str) -> str:
    """``"Putting [something] on [something]"`` -> ``"Putting something on something"``."""
    return " ".join(template.replace("[", "").replace("]", "").split())


def _annotation(root: Path, stem: str) -> Path:
    names = (f"{stem}.json", f"something-something-v2-{stem}.json")
    candidates = [folder / name for folder in (root / "labels", root, root / "annotations")
                  for name in names]
    return find_file(candidates, f"Something-Something v2 {stem}.json", _HINT)


def read_ssv2(root: Path, split: str, class_names: tuple[str, ...] | None = None) -> Dataset:
    """Read one Something-Something v2 split (see the module docstring for the layout).

    Args:
        root: the folder holding ``labels/`` and ``20bn-something-something-v2/``.
        split: ``val`` or ``train``.
        class_names: unused (``load_dataset`` re-indexes onto it afterwards).

    Returns:
        The split in annotation order; ``video_id`` is the numeric id (a string).

    Raises:
        DatasetError: a missing or malformed label file (paths tried listed), a template not
            in ``labels.json``, no video folder, or none of the split's videos found.
    """
    del class_names
    labels_file = _annotation(root, "labels")
    mapping = read_json(labels_file)
    if not isinstance(mapping, dict) or not all(
        isinstance(value, (str, int)) and str(value).isdigit() for value in mapping.values()
    ):
        raise DatasetError("expected a mapping template -> class id", path=labels_file)
    by_id = {int(value): name for name, value in mapping.items()}
    if sorted(by_id) != list(range(len(mapping))):
        raise DatasetError("class ids must be 0..N-1, each once", path=labels_file)
    names = tuple(by_id[index] for index in range(len(by_id)))
    # compared ignoring case and spacing, in case a template's capitalisation differs
    index_of = {loose_key(template_to_class(name)): index for index, name in enumerate(names)}

    split_file = _annotation(root, _SPLIT_FILES[split])
    entries = read_json(split_file)
    if not isinstance(entries, list):
        raise DatasetError("expected a list of videos", path=split_file)
    candidates = [root / "20bn-something-something-v2", root / "videos"]
    video_folder = find_folder(
        candidates, "Something-Something v2 video folder",
        "unpack the 20bn-something-something-v2 video archive into --root",
    )
    samples: list[Sample] = []
    missing: list[str] = []
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
            raise DatasetError(f"entry {position} lacks 'id' or 'template'", path=split_file)
        video_id = str(entry["id"])
        template = loose_key(template_to_class(str(entry["template"])))
        if template not in index_of:
            raise DatasetError(
                f"entry {position} (id {video_id}): template {entry['template']!r} is not a "
                f"class of {labels_file}",
                path=split_file,
            )
        path = video_folder / f"{video_id}.webm"
        if path.is_file():
            samples.append(Sample(path=str(path.resolve()), labels=(index_of[template],),
                                  video_id=video_id))
        else:
            missing.append(video_id)
    example = video_folder / f"{missing[0]}.webm" if missing else None
    require_some_found("Something-Something v2", len(entries), len(samples), video_folder,
                       split_file, example)
    return Dataset(
        name="ssv2",
        split=split,
        class_names=names,
        class_texts=texts_for(names),
        samples=tuple(samples),
        root=str(root),
        missing=tuple(missing),
        sources=(str(labels_file), str(split_file)),
    )


READER = DatasetReader(
    name="ssv2",
    read=read_ssv2,
    default_split="val",
    splits=SPLITS,
    aliases={"validation": "val"},
    layout="root/labels/{labels,validation,train}.json, root/20bn-something-something-v2/<id>.webm",
)
