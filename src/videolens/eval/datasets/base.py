"""Shared types and helpers of the dataset readers.

A reader turns a dataset's *official* annotation files plus a folder of videos into a
:class:`Dataset`: the class list (raw names, index = class id), one prompt text per class, and one
:class:`Sample` per video of the requested split. Readers never decode a video; they only check
that the file exists. Listed videos that are not on disk are collected in ``Dataset.missing``
(Kinetics always has some: YouTube removes videos), so a protocol can report the count; a split
where *none* of the listed videos is found is an error, because that is a wrong ``--root``, not
a few lost downloads.

Helpers here are shared by every reader: finding a file among the places people unpack it
(:func:`find_file`, with an error that lists every path tried), reading text
(:func:`read_text`), fixing the class list from a file (:func:`read_class_names_file`,
:func:`use_class_names`) and replacing class texts (:func:`apply_overrides`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from videolens.errors import LabelError, VideolensError
from videolens.text.labels import LabelSet
from videolens.text.loader import StructuredFileError, parse_structured
from videolens.text.prompts import class_name_to_text

from .names import FROSTER_SPELLINGS, compact_key

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetReader",
    "Sample",
    "apply_overrides",
    "find_file",
    "read_class_names_file",
    "read_text",
    "use_class_names",
]


class DatasetError(VideolensError):
    """A dataset cannot be read: an annotation file is missing or malformed, no listed video is
    found, an unknown split, or class names / overrides that do not match the dataset."""


@dataclass(frozen=True)
class Sample:
    """One video of a dataset split.

    Attributes:
        path: absolute path of the video file (it existed when the dataset was read).
        labels: class indices into ``Dataset.class_names``; one for single-label datasets,
            any number (possibly none) for multi-label ones such as Charades.
        video_id: the dataset's own id: the file stem for UCF101/HMDB51
            (``"v_ApplyEyeMakeup_g08_c01"``), ``"<youtube_id>_<start:06d>_<end:06d>"`` for
            Kinetics, the numeric id for SSv2, ``"46GP8"`` for Charades, ``"video7020"`` for
            MSR-VTT.
        segments: ``(class, start_s, end_s)`` intervals in seconds (Charades); empty otherwise.
        captions: reference captions (MSR-VTT); empty otherwise.
    """

    path: str
    labels: tuple[int, ...]
    video_id: str
    segments: tuple[tuple[int, float, float], ...] = ()
    captions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """A dataset split: classes, their prompt texts, and samples.

    Attributes:
        name: reader name (``"ucf101"``, ``"hmdb51"``, ``"kinetics400"``, ``"ssv2"``,
            ``"charades"``, ``"msrvtt"``, ``"generic"``).
        split: the split read (``"test1"``, ``"val"``, ``"1k-a"``, ...).
        class_names: the dataset's raw class names; the index is the class id used in
            ``Sample.labels``. Empty for caption datasets (MSR-VTT).
        class_texts: text that goes into prompt templates, one per class: the reader's rule
            (usually :func:`~videolens.text.prompts.class_name_to_text`) or an override.
        samples: the split's videos that exist on disk, in annotation-file order.
        multilabel: whether a video can have several classes (scored by mAP, not accuracy).
        root: the dataset root folder given by the user.
        missing: ids of listed videos whose file was not found (reported, not fatal).
        class_descriptions: extra prompt sentences per class (from overrides), aligned with
            ``class_names``; empty when there are none.
        sources: the annotation files that were read, for the evaluation report.

    Raises:
        DatasetError: ``class_texts``/``class_descriptions`` not aligned with ``class_names``,
            or a sample label outside ``range(len(class_names))``.
    """

    name: str
    split: str
    class_names: tuple[str, ...]
    class_texts: tuple[str, ...]
    samples: tuple[Sample, ...]
    multilabel: bool = False
    root: str = ""
    missing: tuple[str, ...] = ()
    class_descriptions: tuple[tuple[str, ...], ...] = ()
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        count = len(self.class_names)
        if len(self.class_texts) != count:
            raise DatasetError(
                f"{self.name}: {len(self.class_texts)} class texts for {count} classes"
            )
        if self.class_descriptions and len(self.class_descriptions) != count:
            raise DatasetError(
                f"{self.name}: {len(self.class_descriptions)} description lists for "
                f"{count} classes"
            )
        for sample in self.samples:
            bad = [label for label in sample.labels if not 0 <= label < count]
            bad += [seg[0] for seg in sample.segments if not 0 <= seg[0] < count]
            if bad:
                raise DatasetError(
                    f"{self.name}: video {sample.video_id} has class index {bad[0]}, "
                    f"but there are {count} classes"
                )

    def label_set(self) -> LabelSet:
        """The classes as a :class:`LabelSet`: ``class_texts`` in class-id order, with the
        descriptions from overrides attached.

        Raises:
            DatasetError: the dataset has no classes (MSR-VTT), or two classes end up with the
                same text (ignoring case and spacing) — rename one with an overrides file.
        """
        if not self.class_texts:
            raise DatasetError(
                f"{self.name} has no classes (it is a caption dataset)",
                hint="use the retrieval protocol for it",
            )
        descriptions = {}
        if self.class_descriptions:
            descriptions = dict(zip(self.class_texts, self.class_descriptions, strict=True))
        try:
            return LabelSet(labels=self.class_texts, descriptions=descriptions)
        except LabelError as error:
            raise DatasetError(
                f"{self.name}: class texts are not usable as labels: {error.message}",
                hint="give the clashing classes distinct texts in an --overrides file",
            ) from error

    def summary(self) -> str:
        """One line for logs and reports: name, split, videos, classes, missing videos."""
        text = f"{self.name} {self.split}: {len(self.samples)} videos"
        if self.class_names:
            text += f", {len(self.class_names)} classes"
        if self.missing:
            text += f", {len(self.missing)} listed videos missing"
        return text


@dataclass(frozen=True)
class DatasetReader:
    """How to read one dataset layout.

    Attributes:
        name: the name given to :func:`~videolens.eval.datasets.load_dataset`.
        read: ``read(root, split, class_names) -> Dataset``. ``split`` is already validated
            and canonical (aliases resolved); ``class_names`` is the content of
            ``--class-names`` or ``None`` (most readers ignore it: ``load_dataset`` remaps
            afterwards; Kinetics and the generic reader use it to define the class list).
        default_split: the split used when none is given (the usual zero-shot test split).
        splits: accepted split names; empty for the generic reader, whose split is a path.
        aliases: other accepted spellings -> canonical split (``"validation"`` -> ``"val"``).
        layout: where files are expected, shown in ``--help`` and in errors.
    """

    name: str
    read: Callable[[Path, str, tuple[str, ...] | None], Dataset]
    default_split: str
    splits: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)
    layout: str = ""

    def canonical_split(self, split: str | None) -> str:
        """``split`` (or the default) with aliases resolved.

        Raises:
            DatasetError: a split this dataset does not have.
        """
        if split is None:
            return self.default_split
        if not self.splits:
            return split
        key = split.strip().lower()
        key = self.aliases.get(key, key)
        if key not in self.splits:
            raise DatasetError(
                f"{self.name} has no split {split!r}",
                hint=f"choose one of: {', '.join(self.splits)}",
            )
        return key


def find_file(candidates: Sequence[Path], what: str, hint: str) -> Path:
    """The first of ``candidates`` that is a file.

    Args:
        candidates: places the file may be, in order of preference.
        what: what the file is, for the message (``"UCF101 split file"``).
        hint: how to get the file (where to download it, what to unpack into ``--root``).

    Raises:
        DatasetError: none exists; the message lists every path tried.
    """
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(path) for path in candidates)
    raise DatasetError(f"{what} not found: tried {tried}", hint=hint)


def find_folder(candidates: Sequence[Path], what: str, hint: str) -> Path:
    """The first of ``candidates`` that is a folder; like :func:`find_file` otherwise."""
    for path in candidates:
        if path.is_dir():
            return path
    tried = ", ".join(str(path) for path in candidates)
    raise DatasetError(f"{what} not found: tried {tried}", hint=hint)


def read_text(path: Path) -> str:
    """A UTF-8 text file's content (a leading BOM dropped).

    Raises:
        DatasetError: unreadable or not UTF-8.
    """
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise DatasetError(f"cannot read: {error.strerror or error}", path=path) from error
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"not UTF-8 text (invalid byte at offset {error.start})", path=path
        ) from error


def read_json(path: Path) -> Any:
    """Parse a JSON file; errors carry the line and column."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}", path=path
        ) from error


def file_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, stripped line)`` for every non-blank line, for the published formats,
    which have no comments: HMDB51 lists 16 real videos whose names start with ``#``
    (``#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi 1``), and ViFi-CLIP's lists write them first on
    the line."""
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line:
            lines.append((number, line))
    return lines


def is_comment(line: str) -> bool:
    """A comment line of videolens' own list formats: ``#`` alone or followed by whitespace
    (``# test videos``). ``#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi`` is data."""
    stripped = line.strip()
    return stripped == "#" or (stripped.startswith("#") and stripped[1:2].isspace())


def data_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, stripped line)`` for every non-blank line that is not a comment
    (:func:`is_comment`), for videolens' own formats (generic lists, class-name files)."""
    return [(number, line) for number, line in file_lines(text) if not is_comment(line)]


def texts_for(names: Iterable[str]) -> tuple[str, ...]:
    """Default prompt text per raw class name (:func:`class_name_to_text`)."""
    return tuple(class_name_to_text(name) for name in names)


def loose_key(name: str) -> str:
    """Comparison key that ignores case, underscores and spacing: people write class names by
    hand in class-name and override files, and UCF101 itself spells one class two ways
    (folder ``HandstandPushups``, files ``v_HandStandPushups_*``)."""
    return " ".join(name.replace("_", " ").split()).casefold()


def require_some_found(
    name: str, listed: int, found: int, where: Path | str, source: Path, example: Path | None
) -> None:
    """Refuse a split where none of the ``listed`` videos exists: the root is wrong.

    Raises:
        DatasetError: ``listed > 0`` and ``found == 0``; names the folder searched, the list
            file, and one path tried.
    """
    if listed and not found:
        tried = f" (e.g. {example})" if example is not None else ""
        raise DatasetError(
            f"{name}: none of the {listed} videos listed in {source} was found under "
            f"{where}{tried}",
            hint="check --root: it must be the folder that holds the dataset's video folder",
        )


# --- class names file -------------------------------------------------------------------------

_ID_NAME = re.compile(r"^(\d+)\s*,\s*(.+)$")
_HEADER = re.compile(r"^\s*\w+\s*,\s*\w+\s*$")


def read_class_names_file(path: str | Path) -> tuple[str, ...]:
    """Class names from a file, index = class id.

    Two forms:

    - one name per line (blank lines and ``#`` comments ignored), line order = class id;
    - ``id,name`` CSV, optionally with a header line such as ``id,name`` — the form of the
      base-to-novel class files of published work (e.g. ViFi-CLIP's ``labels/*.csv``).
      Ids must be exactly ``0..K-1`` in any order.

    Raises:
        DatasetError: missing file, no names, repeated names, or ids not ``0..K-1``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError("class names file not found", path=path, hint="check the path")
    lines = data_lines(read_text(path))
    if lines and _HEADER.match(lines[0][1]) and not _ID_NAME.match(lines[0][1]):
        # "id,name" header: only when the rest is id,name rows (a plain name list whose
        # first class is "a,b" keeps it).
        if len(lines) > 1 and all(_ID_NAME.match(line) for _, line in lines[1:]):
            lines = lines[1:]
    if not lines:
        raise DatasetError("class names file has no names", path=path)
    if all(_ID_NAME.match(line) for _, line in lines):
        by_id: dict[int, str] = {}
        for number, line in lines:
            match = _ID_NAME.match(line)
            assert match is not None  # checked just above
            class_id, name = int(match.group(1)), match.group(2).strip().strip('"')
            if class_id in by_id:
                raise DatasetError(f"line {number}: class id {class_id} repeated", path=path)
            by_id[class_id] = name
        if sorted(by_id) != list(range(len(by_id))):
            raise DatasetError(
                f"class ids must be 0..{len(by_id) - 1}, got {sorted(by_id)[:5]}...", path=path
            )
        names = tuple(by_id[i] for i in range(len(by_id)))
    else:
        names = tuple(line for _, line in lines)
    seen: dict[str, str] = {}
    for name in names:
        if loose_key(name) in seen:
            raise DatasetError(
                f"class {name!r} is listed twice (as {seen[loose_key(name)]!r})", path=path
            )
        seen[loose_key(name)] = name
    return names


def use_class_names(dataset: Dataset, names: Sequence[str], source: str = "") -> Dataset:
    """Re-index ``dataset`` onto the class list ``names`` (matched by name, ignoring case,
    underscores and spacing), e.g. to evaluate with a published class order.

    Classes of ``names`` without videos are kept (they still compete in the softmax); a class
    of the dataset that is not in ``names`` is an error, since its videos could not be scored.
    Texts come from the dataset where the class existed, else from ``class_name_to_text``.

    Raises:
        DatasetError: a class of the dataset is missing from ``names`` (all of them listed).
    """
    names = tuple(names)
    if names == dataset.class_names:
        return dataset
    # match raw names and their prompt texts, so "apply_eye_makeup" finds "ApplyEyeMakeup"
    position: dict[str, int] = {}
    for index, name in enumerate(names):
        position.setdefault(loose_key(name), index)
        position.setdefault(loose_key(class_name_to_text(name)), index)

    def find(name: str) -> int | None:
        found = position.get(loose_key(name))
        return found if found is not None else position.get(loose_key(class_name_to_text(name)))

    unknown = [name for name in dataset.class_names if find(name) is None]
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:10])
        more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise DatasetError(
            f"{dataset.name}: classes not in the class names file: {shown}{more}",
            path=source or None,
            hint="the file must list every class of the dataset (it may list more)",
        )
    new_index = [find(name) for name in dataset.class_names]
    texts = list(texts_for(names))
    descriptions: list[tuple[str, ...]] = [() for _ in names]
    for old, new in enumerate(new_index):
        texts[new] = dataset.class_texts[old]
        if dataset.class_descriptions:
            descriptions[new] = dataset.class_descriptions[old]
    samples = tuple(
        replace(
            sample,
            labels=tuple(new_index[label] for label in sample.labels),
            segments=tuple((new_index[c], s, e) for c, s, e in sample.segments),
        )
        for sample in dataset.samples
    )
    return replace(
        dataset,
        class_names=names,
        class_texts=tuple(texts),
        class_descriptions=tuple(descriptions) if any(descriptions) else (),
        samples=samples,
    )


# --- overrides --------------------------------------------------------------------------------


def _indexed_overrides(dataset: Dataset, data: Mapping[str, Any], where: str | None,
                       texts: list[str], descriptions: list[tuple[str, ...]]
                       ) -> tuple[list[str], list[tuple[str, ...]]]:
    """Apply an ``{"<id>": "Name[: description]"}`` file (see :func:`apply_overrides`)."""
    lookup: dict[str, int] = {}
    for index, (name, text) in enumerate(zip(dataset.class_names, texts, strict=True)):
        for key in (name, text, class_name_to_text(name)):
            lookup.setdefault(compact_key(key), index)
    for froster, official in FROSTER_SPELLINGS.items():
        if compact_key(official) in lookup:
            lookup.setdefault(compact_key(froster), lookup[compact_key(official)])
    unknown: list[str] = []
    used: dict[int, str] = {}
    for key in sorted(data, key=lambda k: int(str(k))):
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise DatasetError(f"entry {key!r} must be a non-empty text", path=where)
        entry = " ".join(value.split())
        name = entry.split(": ", 1)[0].strip()
        index = lookup.get(compact_key(name))
        if index is None:
            unknown.append(name)
            continue
        if index in used:
            raise DatasetError(f"entries {used[index]!r} and {key!r} both name class "
                               f"{dataset.class_names[index]!r}", path=where)
        used[index] = str(key)
        texts[index] = name
        if ": " in entry:
            descriptions[index] = (entry,)
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:8])
        raise DatasetError(
            f"{len(unknown)} entries name classes that {dataset.name} does not have: {shown}",
            path=where, hint="use the file made for this dataset (and split)")
    return texts, descriptions


def _read_overrides(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError("overrides file not found", path=path, hint="check the path")
    text = read_text(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        # .txt: the replacement texts, one per line, in class order (load_labels' txt form).
        return [line for _, line in data_lines(text)]
    try:
        return parse_structured(text, suffix)
    except StructuredFileError as error:
        if error.duplicate is not None:
            where = f" (line {error.line})" if error.line else ""
            raise DatasetError(f"class {error.duplicate!r} appears twice{where}",
                               path=path) from error
        raise DatasetError(error.detail, path=path) from error


def _override_entry(key: str, value: Any, where: str | None) -> tuple[str | None, tuple[str, ...]]:
    """``(replacement text or None, descriptions)`` from one mapping value."""

    def strings(items: Any) -> tuple[str, ...]:
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise DatasetError(
                f"descriptions of {key!r} must be a string or a list of strings",
                path=where,
            )
        return tuple(item.strip() for item in items if item.strip())

    if value is None:
        return None, ()
    if isinstance(value, str):
        return (value.strip() or None), ()
    if isinstance(value, list):
        return None, strings(value)
    if isinstance(value, Mapping):
        extra = set(value) - {"text", "descriptions"}
        if extra:
            raise DatasetError(
                f"override of {key!r} has unknown keys {sorted(map(str, extra))}",
                path=where,
                hint="use 'text' and/or 'descriptions'",
            )
        text = value.get("text")
        if text is not None and not isinstance(text, str):
            raise DatasetError(f"'text' of {key!r} must be a string", path=where)
        return (text.strip() or None) if text else None, strings(value.get("descriptions", []))
    raise DatasetError(
        f"override of {key!r} must be a text, a list of descriptions, or a mapping with "
        f"'text'/'descriptions', got {type(value).__name__}",
        path=where,
    )


def apply_overrides(
    dataset: Dataset, overrides: str | Path | Mapping[str, Any] | Sequence[str]
) -> Dataset:
    """Replace class texts and/or attach descriptions.

    ``overrides`` is a file or the equivalent Python object:

    - ``.yaml``/``.yml``/``.json`` mapping, key = raw class name (``"ApplyEyeMakeup"``) or its
      current text (``"apply eye makeup"``), compared ignoring case, underscores and spacing;
      value = a string (the replacement text), a list of strings (descriptions, text kept), a
      mapping ``{text: ..., descriptions: [...]}`` (either or both), or null (no change).
      Classes not mentioned keep their text.
    - ``.yaml``/``.json`` list, or any other extension (``.txt``: one per line, ``#``
      comments and blank lines ignored): the texts of *all* classes in class-id order.
    - a ``.json`` mapping whose keys are all class ids (``{"0": "Brush hair: A person is
      using a brush to style their hair", ...}``): FROSTER's rephrased class files
      (``label_rephrase/*_rephrased_classes.json``, ``zs_label_db/B2N_*/*_rephrased.json``)
      and Open-VCLIP's/FROSTER's ``*-index2cls.json``. Each value is ``"Name"`` or
      ``"Name: description"``; it is matched to a class by ``Name`` (ignoring case, spaces
      and underscores, and FROSTER's own spellings of 7 Kinetics-400 and 3 SSv2 classes,
      :data:`~videolens.eval.datasets.names.FROSTER_SPELLINGS`), not by id, since a K600
      subset file numbers its 160 classes 0..159. The class text becomes ``Name`` and, when
      there is a description, the whole value is the class's one description (FROSTER's
      prompts use it whole: :func:`~videolens.eval.results.class_prompts`).

    Raises:
        DatasetError: unknown class names (all listed), two keys for one class, a list whose
            length is not the number of classes, malformed values.
    """
    where: str | None = None
    if isinstance(overrides, (str, Path)):
        where = str(overrides)
        data = _read_overrides(Path(overrides).expanduser())
    else:
        data = overrides
    count = len(dataset.class_names)
    if not count:
        raise DatasetError(f"{dataset.name} has no classes to override", path=where)
    texts = list(dataset.class_texts)
    descriptions = list(dataset.class_descriptions or [() for _ in range(count)])
    if isinstance(data, Sequence) and not isinstance(data, str):
        if len(data) != count or not all(isinstance(item, str) and item.strip() for item in data):
            raise DatasetError(
                f"an override list must hold {count} non-empty texts, one per class in "
                f"class order; got {len(data)} items",
                path=where,
            )
        texts = [item.strip() for item in data]
    elif isinstance(data, Mapping) and data and all(
            str(key).strip().isdigit() for key in data):
        texts, descriptions = _indexed_overrides(dataset, data, where, texts, descriptions)
    elif isinstance(data, Mapping):
        lookup: dict[str, int] = {}
        for index, (name, text) in enumerate(zip(dataset.class_names, texts, strict=True)):
            lookup.setdefault(loose_key(name), index)
            lookup.setdefault(loose_key(text), index)
        unknown = [str(key) for key in data if loose_key(str(key)) not in lookup]
        if unknown:
            raise DatasetError(
                f"overrides name classes that {dataset.name} does not have: "
                + ", ".join(repr(key) for key in unknown),
                path=where,
                hint=f"use the raw class names, e.g. {dataset.class_names[0]!r}",
            )
        used: dict[int, str] = {}
        for key, value in data.items():
            index = lookup[loose_key(str(key))]
            if index in used:
                raise DatasetError(
                    f"{used[index]!r} and {key!r} both override class "
                    f"{dataset.class_names[index]!r}",
                    path=where,
                )
            used[index] = str(key)
            text, extra = _override_entry(str(key), value, where)
            if text is not None:
                texts[index] = text
            if extra:
                descriptions[index] = extra
    else:
        raise DatasetError(
            "overrides must be a mapping class -> text/descriptions, or a list of texts",
            path=where,
        )
    return replace(
        dataset,
        class_texts=tuple(texts),
        class_descriptions=tuple(descriptions) if any(descriptions) else (),
    )
