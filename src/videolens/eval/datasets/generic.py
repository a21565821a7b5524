"""Any dataset given as a list file: one ``path label`` or ``path,label`` per line.

The list file (``load_dataset("generic", root, split="lists/test.txt")``):

- blank lines and comment lines — ``#`` alone or followed by a space (``# test videos``) —
  are ignored; any other line is data, including one that starts with ``#`` as 16 HMDB51
  file names do (``#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi 4`` in ViFi-CLIP's lists). A first
  line like ``path,label`` or ``video label`` is a header and skipped;
- separator: a tab if the line has one, else the last comma, else whitespace. With whitespace,
  the line splits at the last space when the label is an integer (so paths may contain spaces)
  and at the first space otherwise (so class names may contain spaces) — use commas or tabs
  when both have spaces;
- ``path``: absolute, or relative to the list file's folder; when it is not there, relative to
  ``root`` (lists published with papers, e.g. ViFi-CLIP's, are relative to the video root);
- ``label``: a class name, or an integer class id (0-based; needs a class-names file).

Class names: from ``class_names_file`` (``--class-names``: one per line, or ``id,name`` CSV as
in ViFi-CLIP's base-to-novel label files); without it, the sorted distinct names used in the
list. Class texts are :func:`class_name_to_text` of the names.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    Dataset,
    DatasetError,
    DatasetReader,
    Sample,
    data_lines,
    loose_key,
    read_text,
    require_some_found,
    texts_for,
)

__all__ = ["READER", "parse_list_line", "read_generic"]

_HEADER_PATHS = {"path", "video", "file", "filename", "video_path", "name"}
_HEADER_LABELS = {"label", "labels", "class", "class_id", "label_id", "class_name", "category"}


def parse_list_line(line: str) -> tuple[str, str]:
    """``(path, label)`` of one list line (separator rules in the module docstring).

    Raises:
        ValueError: the line has no separator or an empty field.
    """
    if "\t" in line:
        path, _, label = line.rpartition("\t")
    elif "," in line:
        path, _, label = line.rpartition(",")
    else:
        parts = line.split()
        if len(parts) < 2:
            raise ValueError(line)
        if parts[-1].isdigit():
            path, label = line.rsplit(None, 1)
        else:
            path, label = line.split(None, 1)
    path, label = path.strip().strip('"'), label.strip().strip('"')
    if not path or not label:
        raise ValueError(line)
    return path, label


def _is_header(path: str, label: str) -> bool:
    return path.lower() in _HEADER_PATHS and label.lower() in _HEADER_LABELS


def read_generic(root: Path, split: str, class_names: tuple[str, ...] | None = None) -> Dataset:
    """Read a list file (format in the module docstring).

    Args:
        root: the video root (relative paths not found next to the list file are looked up
            here); may be the list file itself when ``split`` is empty.
        split: the list file, absolute or relative to ``root`` (or the working directory).
        class_names: the class list (index = class id), e.g. from ``--class-names``.

    Returns:
        ``name="generic"``, ``split`` = the list file's name, samples in list order;
        ``video_id`` is the path as written in the list.

    Raises:
        DatasetError: no or missing list file, a malformed line, integer labels without class
            names, an id out of range or a name not in the class names, or no video found.
    """
    list_file = _find_list(root, split)
    if root.is_file():
        root = list_file.parent
    entries: list[tuple[int, str, str]] = []
    for position, (number, line) in enumerate(data_lines(read_text(list_file))):
        try:
            path, label = parse_list_line(line)
        except ValueError as error:
            raise DatasetError(
                f"line {number}: expected 'path label' or 'path,label', got {line!r}",
                path=list_file,
            ) from error
        if position == 0 and _is_header(path, label):
            continue
        entries.append((number, path, label))
    if not entries:
        raise DatasetError("the list has no videos", path=list_file,
                           hint="write one 'path label' per line")

    if class_names is None:
        numeric = [label for _, _, label in entries if label.isdigit()]
        if numeric:
            raise DatasetError(
                f"integer labels (e.g. {numeric[0]}) need a class names file",
                path=list_file,
                hint="pass --class-names FILE (one name per line, or id,name), or write names",
            )
        by_key: dict[str, str] = {}
        for _, _, label in entries:
            by_key.setdefault(loose_key(label), label)
        class_names = tuple(sorted(by_key.values()))
    index_of = {loose_key(name): index for index, name in enumerate(class_names)}

    samples: list[Sample] = []
    missing: list[str] = []
    example: Path | None = None
    for number, written, label in entries:
        if label.isdigit() and loose_key(label) not in index_of:
            label_index = int(label)
            if label_index >= len(class_names):
                raise DatasetError(
                    f"line {number}: class id {label_index} but there are "
                    f"{len(class_names)} classes (ids are 0-based)",
                    path=list_file,
                )
        elif loose_key(label) in index_of:
            label_index = index_of[loose_key(label)]
        else:
            raise DatasetError(f"line {number}: class {label!r} is not in the class names",
                               path=list_file)
        path = _resolve(written, list_file.parent, root)
        if path.is_file():
            samples.append(Sample(path=str(path.resolve()), labels=(label_index,),
                                  video_id=written))
        else:
            missing.append(written)
            example = example or path
    require_some_found("generic", len(entries), len(samples), f"{list_file.parent} or {root}",
                       list_file, example)
    return Dataset(
        name="generic",
        split=list_file.name,
        class_names=class_names,
        class_texts=texts_for(class_names),
        samples=tuple(samples),
        root=str(root),
        missing=tuple(missing),
        sources=(str(list_file),),
    )


def _find_list(root: Path, split: str) -> Path:
    if not split:
        if root.is_file():
            return root
        raise DatasetError(
            "the generic reader needs a list file",
            hint="pass split=<list file> (--split lists/test.txt), or the list file as --root",
        )
    given = Path(split).expanduser()
    candidates = [given] if given.is_absolute() else [root / given, given]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(path) for path in candidates)
    raise DatasetError(f"list file not found: tried {tried}", hint="check --split")


def _resolve(written: str, list_folder: Path, root: Path) -> Path:
    path = Path(written).expanduser()
    if path.is_absolute():
        return path
    near_list = list_folder / path
    if near_list.is_file() or not root.is_dir():
        return near_list
    in_root = root / path
    return in_root if in_root.is_file() else near_list


READER = DatasetReader(
    name="generic",
    read=read_generic,
    default_split="",
    splits=(),
    layout="a list file of 'path label' or 'path,label' lines (--split), optional --class-names",
)
