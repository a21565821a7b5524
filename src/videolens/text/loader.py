"""One strict reader for the JSON and YAML files users write (label files, class-text
overrides): a repeated key is an error instead of silently keeping the last value, YAML is
read with a SafeLoader (no tag runs code), and every syntax error carries its position.
Callers turn :class:`StructuredFileError` into their own typed error with their own advice.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

import yaml


class StructuredFileError(ValueError):
    """``duplicate`` is the repeated key (``None`` for a syntax error); ``line`` is 1-based
    when known; ``detail`` says what and where, without the file name."""

    def __init__(self, detail: str, *, duplicate: object = None, line: int | None = None):
        super().__init__(detail)
        self.detail, self.duplicate, self.line = detail, duplicate, line


class _StrictYamlLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys with a position
            if key in seen:
                line = key_node.start_mark.line + 1
                raise StructuredFileError(f"{key!r} appears twice (line {line})",
                                          duplicate=key, line=line)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise StructuredFileError(f"{key!r} appears twice", duplicate=key)
        mapping[key] = value
    return mapping


def parse_json(text: str) -> Any:
    """Parse JSON text, refusing repeated keys.

    Raises:
        StructuredFileError: a syntax error (with line and column) or a repeated key.
    """
    try:
        return json.loads(text, object_pairs_hook=_no_repeats)
    except json.JSONDecodeError as error:
        raise StructuredFileError(
            f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
            line=error.lineno,
        ) from error


def parse_yaml(text: str) -> Any:
    """Parse YAML text safely, refusing repeated keys.

    Raises:
        StructuredFileError: a syntax error (with line and column) or a repeated key.
    """
    try:
        return yaml.load(text, Loader=_StrictYamlLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = error.problem or error.context or "syntax error"
        raise StructuredFileError(f"invalid YAML{where}: {problem}",
                                  line=None if mark is None else mark.line + 1) from error
    except yaml.YAMLError as error:
        raise StructuredFileError(f"invalid YAML: {error}") from error


def parse_structured(text: str, suffix: str) -> Any:
    """:func:`parse_json` for ``.json``, :func:`parse_yaml` otherwise (JSON is parsed as
    JSON, not as YAML: JSON indented with tabs is not valid YAML)."""
    return parse_json(text) if suffix.lower() == ".json" else parse_yaml(text)
