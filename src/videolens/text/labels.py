"""Label sets: what a user wants to find, read from a list, a comma string or a file.

A :class:`LabelSet` is the ordered list of display names plus optional free-text descriptions
per label. It is built once by :func:`load_labels` and validated on construction, so every
later step (prompts, classifiers, reports) can rely on: at least one label, no blank labels,
no duplicates, and a description tuple for every label.

Accepted inputs of :func:`load_labels`:

- a sequence of strings (Python API): the labels, in order;
- a mapping ``label -> description | [descriptions] | None`` (Python API);
- an existing ``LabelSet``: returned unchanged;
- a path (``str`` or ``os.PathLike``) to an existing file:

  - ``.json``, ``.yaml``, ``.yml``: a list of labels, or a mapping
    ``label -> description | [descriptions] | null``; in a list, an item may also be a
    one-key mapping ``{label: description(s)}`` so YAML users can keep order and descriptions
    together (``- running: a person jogging outdoors``);
  - anything else (``.txt``, ``.csv``, no extension): one label per line; blank lines and lines
    whose first non-space character is ``#`` are ignored, and a ``#`` after whitespace starts
    a comment to the end of the line (``running  # outdoors`` is ``running``); a ``#`` with
    no whitespace before it is part of the label (``C# programming``);

- any other string: labels separated by commas (or newlines), e.g. ``"running, jumping"``.
  Empty items are dropped, so ``"a,,b,"`` is ``["a", "b"]``: a stray or trailing comma from a
  shell or a generated string is not worth an error, while a list with *no* label is one.

A string that looks like a path (ends in ``.txt/.json/.yaml/.yml``, or contains a path separator
and no comma) but names no file raises ``LabelError("label file not found")`` instead of
silently becoming a one-label list.

Labels are kept exactly as written apart from surrounding whitespace; no lowercasing (see
:func:`videolens.text.prompts.class_name_to_text` for the opt-in conversion of dataset class
names). Duplicates are detected ignoring case and runs of whitespace, because ``"Running"`` and
``"running"`` would get near-identical text embeddings and split one class's score in two.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from videolens.errors import LabelError
from videolens.text.loader import StructuredFileError, parse_structured

__all__ = ["LabelSet", "LabelSpec", "load_labels"]

# Sources that are not files are shown in angle brackets and never used as an error's path.
LIST_SOURCE = "<list>"

_STRUCTURED_SUFFIXES = {".json", ".yaml", ".yml"}
_KNOWN_SUFFIXES = (".txt", ".json", ".yaml", ".yml")
_EXAMPLE_HINT = "pass labels separated by commas like 'running, jumping', or a label file"


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of labels with optional extra descriptions per label.

    Attributes:
        labels: display names in the user's order; used verbatim in prompts.
        descriptions: ``label -> tuple of description strings`` (an empty tuple when a label
            has none). After construction it holds an entry for every label, so
            ``label_set.descriptions[label]`` never raises.
        source: the file the labels came from, or ``"<list>"`` for labels given in code or as a
            comma string. Not part of equality: two sets with the same content are equal.

    Raises:
        LabelError: no labels, a blank or non-string label, duplicate labels (ignoring case
            and spacing), or descriptions for a label that is not in ``labels``.
    """

    labels: tuple[str, ...]
    descriptions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        path = _error_path(self.source)
        labels = tuple(self.labels)
        if not labels:
            raise LabelError("no labels given", path=path, hint=_EXAMPLE_HINT)
        for position, label in enumerate(labels, start=1):
            if not isinstance(label, str):
                raise LabelError(
                    f"label {position} is not text ({type(label).__name__}: {label!r})",
                    path=path,
                    hint="write every label as a string",
                )
            if not label.strip():
                raise LabelError(f"label {position} is empty", path=path, hint=_EXAMPLE_HINT)
        _check_duplicates(labels, path)

        unknown = [key for key in self.descriptions if key not in labels]
        if unknown:
            raise LabelError(
                f"descriptions given for labels that are not in the set: {_quoted(unknown)}",
                path=path,
                hint="spell the description keys exactly like the labels",
            )
        descriptions = {
            label: _clean_descriptions(label, self.descriptions.get(label), path)
            for label in labels
        }
        # Frozen dataclass: normalise in place once, so consumers never see a list or a
        # missing key, and nobody can mutate the set after validation.
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "descriptions", MappingProxyType(descriptions))

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[str]:
        return iter(self.labels)

    def __hash__(self) -> int:
        # The generated hash would fail on the mapping; hash the same content that __eq__
        # compares so label sets can key caches.
        return hash((self.labels, tuple(self.descriptions[label] for label in self.labels)))

    def __reduce__(self) -> tuple[type[LabelSet], tuple[Any, ...]]:
        # mappingproxy cannot be pickled; rebuild from a plain dict so label sets can cross
        # process boundaries (data-loader workers, multiprocessing pools).
        return (LabelSet, (self.labels, dict(self.descriptions), self.source))


# Everything load_labels accepts; other modules annotate their ``labels=`` arguments with it.
LabelSpec = (
    str | os.PathLike[str] | Sequence[str] | Mapping[str, str | Sequence[str] | None] | LabelSet
)


def load_labels(spec: LabelSpec) -> LabelSet:
    """Build a :class:`LabelSet` from a list, a mapping, a comma string or a label file.

    See the module docstring for every accepted form and the exact file formats.

    Args:
        spec: labels as a sequence of strings, a mapping ``label -> description(s)``, a path
            to a ``.txt``/``.json``/``.yaml``/``.yml`` file (other extensions are read as
            ``.txt``), a comma-separated string, or an existing ``LabelSet``.

    Returns:
        The validated label set; ``source`` is the file path or ``"<list>"``.

    Raises:
        LabelError: file not found or unreadable, not UTF-8, invalid JSON/YAML (with line and
            column), wrong structure, no labels, empty labels, or duplicate labels.
    """
    if isinstance(spec, LabelSet):
        return spec
    if isinstance(spec, os.PathLike):
        return _load_file(Path(os.fspath(spec)).expanduser())
    if isinstance(spec, str):
        return _load_string(spec)
    if isinstance(spec, Mapping):
        return _from_structure(dict(spec), path=None, what="mapping")
    if isinstance(spec, Iterable) and not isinstance(spec, (bytes, set, frozenset)):
        return _from_structure(list(spec), path=None, what="list")
    raise LabelError(
        f"cannot read labels from a {type(spec).__name__}",
        hint="pass a list of strings, a comma-separated string or a label file path",
    )


def _load_string(spec: str) -> LabelSet:
    candidate = Path(spec.strip()).expanduser()
    if spec.strip() and candidate.is_file():
        return _load_file(candidate)
    if _looks_like_path(spec.strip()):
        if candidate.is_dir():
            raise LabelError(
                "is a folder, not a label file", path=candidate, hint="name the file inside it"
            )
        raise LabelError(
            "label file not found",
            path=candidate,
            hint="check the path, or pass labels separated by commas like 'running, jumping'",
        )
    items = spec.replace("\n", ",").split(",")
    labels = [item.strip() for item in items if item.strip()]
    return LabelSet(labels=tuple(labels), descriptions={}, source=LIST_SOURCE)


def _looks_like_path(text: str) -> bool:
    """True when a string that names no file was most likely meant as one."""
    if text.lower().endswith(_KNOWN_SUFFIXES):
        return True
    # A comma means a label list even if a label contains a slash ("push/pull, lift").
    if "," in text or "\n" in text:
        return False
    return "/" in text or "\\" in text or os.sep in text or text.startswith("~")


def _load_file(path: Path) -> LabelSet:
    if not path.exists():
        raise LabelError("label file not found", path=path, hint="check the path")
    if path.is_dir():
        raise LabelError("is a folder, not a label file", path=path, hint="name the file inside it")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise LabelError(
            f"cannot read label file: {error.strerror or error}",
            path=path,
            hint="check the file's permissions",
        ) from error
    try:
        # utf-8-sig: files saved by Windows editors start with a BOM that would otherwise
        # end up glued to the first label.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise LabelError(
            f"label file is not UTF-8 text (invalid byte at offset {error.start})",
            path=path,
            hint="save the file with UTF-8 encoding",
        ) from error
    if not text.strip():
        raise LabelError("label file is empty", path=path, hint="write one label per line")

    suffix = path.suffix.lower()
    if suffix == ".json" or suffix in _STRUCTURED_SUFFIXES:
        return _from_structure(_parse(text, path), path=path, what="file")
    return _from_lines(text, path)


# a comment starts at a "#" that opens the line or follows whitespace
_COMMENT = re.compile(r"(^|\s)#.*$")


def _from_lines(text: str, path: Path) -> LabelSet:
    labels = []
    for line in text.splitlines():
        line = _COMMENT.sub("", line).strip()
        if line:
            labels.append(line)
    if not labels:
        raise LabelError(
            "no labels found (blank lines and lines starting with '#' are ignored)",
            path=path,
            hint="write one label per line",
        )
    return LabelSet(labels=tuple(labels), descriptions={}, source=str(path))


def _parse(text: str, path: Path) -> Any:
    try:
        return parse_structured(text, path.suffix)
    except StructuredFileError as error:
        if error.duplicate is not None:
            where = f" (line {error.line})" if error.line else ""
            raise LabelError(
                f"duplicate labels: {error.duplicate!r} appears twice in the mapping{where}",
                path=path,
                hint="merge its descriptions into one entry",
            ) from error
        example = ('a list like ["running", "jumping"]' if path.suffix.lower() == ".json"
                   else "a list of '- label' lines or 'label: description' lines")
        raise LabelError(error.detail, path=path,
                         hint=f"fix the syntax, e.g. {example}") from error


def _from_structure(data: Any, path: Path | None, what: str) -> LabelSet:
    """Turn a parsed list / mapping into a LabelSet, rejecting anything else clearly."""
    source = LIST_SOURCE if path is None else str(path)
    if data is None:
        raise LabelError("no labels found", path=path, hint=_EXAMPLE_HINT)
    if isinstance(data, Mapping):
        entries = list(data.items())
    elif isinstance(data, list):
        entries = []
        for position, item in enumerate(data, start=1):
            if isinstance(item, Mapping):
                if len(item) != 1:
                    raise LabelError(
                        f"list item {position} is a mapping with {len(item)} keys",
                        path=path,
                        hint="write one 'label: description' per list item, "
                        "or use a mapping at the top level",
                    )
                entries.extend(item.items())
            elif item is None:
                raise LabelError(
                    f"list item {position} is empty", path=path, hint="remove the empty item"
                )
            else:
                entries.append((item, None))
    else:
        raise LabelError(
            f"expected a list of labels or a mapping label -> description(s) in the {what}, "
            f"got a {type(data).__name__}",
            path=path,
            hint='e.g. ["running", "jumping"] or {"running": "a person jogging"}',
        )

    labels: list[str] = []
    descriptions: dict[str, tuple[str, ...]] = {}
    for key, value in entries:
        if not isinstance(key, str):
            # YAML turns unquoted yes/no/on/1/2.5 into booleans and numbers.
            raise LabelError(
                f"label {key!r} is not text ({type(key).__name__})",
                path=path,
                hint="write labels as strings (in YAML, put such a label in quotes)",
            )
        label = key.strip()
        labels.append(label)
        descriptions[label] = _clean_descriptions(label, value, path)
    if len(descriptions) < len(labels):
        # The dict above merged exact repeats, so LabelSet could no longer see them.
        _check_duplicates(labels, None if path is None else str(path))
    return LabelSet(labels=tuple(labels), descriptions=descriptions, source=source)


def _clean_descriptions(label: str, value: Any, path: str | Path | None) -> tuple[str, ...]:
    """``None``/``""``/``[]`` -> ``()``; a string -> one description; strings are stripped."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence):
        raise LabelError(
            f"descriptions for {label!r} must be a string or a list of strings, "
            f"got a {type(value).__name__} ({value!r})",
            path=path,
            hint="quote the description",
        )
    cleaned = []
    for description in value:
        if not isinstance(description, str):
            raise LabelError(
                f"description of {label!r} is not text "
                f"({type(description).__name__}: {description!r})",
                path=path,
                hint="quote the description",
            )
        if description.strip():
            cleaned.append(description.strip())
    return tuple(cleaned)


def _normalise(label: str) -> str:
    return " ".join(label.split()).casefold()


def _check_duplicates(labels: Sequence[str], path: str | None) -> None:
    groups: dict[str, list[str]] = {}
    for label in labels:
        groups.setdefault(_normalise(label), []).append(label)
    repeated = [group for group in groups.values() if len(group) > 1]
    if repeated:
        shown = "; ".join(" = ".join(repr(label) for label in group) for group in repeated)
        raise LabelError(
            f"duplicate labels (compared ignoring case and spacing): {shown}",
            path=path,
            hint="remove or rename the repeated labels",
        )


def _error_path(source: str | None) -> str | None:
    if source is None or source.startswith("<"):
        return None
    return source


def _quoted(items: Iterable[object]) -> str:
    return ", ".join(repr(item) for item in items)
