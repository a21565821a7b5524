"""Typed errors. Each carries the file it is about and the next step for the user.

The CLI turns any :class:`VideolensError` into one line on stderr via :meth:`one_line`;
no traceback ever reaches a user for an expected failure.
"""

from __future__ import annotations

from pathlib import Path


class VideolensError(Exception):
    """Base class: ``message`` says what went wrong, ``path`` which file, ``hint`` what to do."""

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint

    def one_line(self) -> str:
        """``<path>: <message> (<hint>)`` on a single line."""
        text = self.message if self.path is None else f"{self.path}: {self.message}"
        if self.hint:
            text = f"{text} — {self.hint}"
        return " ".join(text.split())

    def __str__(self) -> str:
        return self.one_line()


class VideoDecodeError(VideolensError):
    """A file is missing, is not a video, has no video stream, or cannot be decoded."""


class ModelLoadError(VideolensError):
    """A model id or folder cannot be loaded (offline, missing files, unsupported type)."""


class LabelError(VideolensError):
    """A label list or prompt template is unusable (empty, duplicates, bad file)."""


class UsageError(VideolensError):
    """Invalid arguments from the caller (bad option value, no inputs)."""


class LibraryError(VideolensError):
    """A video library is missing, locked by another writer, bound to another model, or
    written by a newer videolens."""
