"""What every verb does the same way: take inputs, get a model, open a library."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..io import expand_inputs
from ..io.threads import configure_threads
from ..models import DEFAULT_MODEL, VideoTextModel, load_model

if TYPE_CHECKING:  # only classify's callers never open a library: keep it off their path
    import numpy as np

    from ..library import Library

# One path, or many; each a file, a folder (its videos, recursively) or a glob; `~` expanded.
Inputs = str | os.PathLike | Iterable[str | os.PathLike]

DEFAULT_LIBRARY = ".videolens"


def as_paths(inputs: Inputs) -> list[str]:
    """Inputs -> video paths, in order, the same for the CLI and the Python API."""
    return expand_inputs(inputs)


def resolved(path: str | os.PathLike) -> str:
    """The absolute, symlink-free path a library stores."""
    # realpath, not Path.resolve(): a symlink loop must become that file's error, not a
    # RuntimeError that ends the whole run; a broken or looping link keeps its own name, so
    # the error names what the user passed
    given = os.path.abspath(os.path.expanduser(os.fspath(path)))
    real = os.path.realpath(given)
    return real if os.path.exists(real) else given


def get_model(model: VideoTextModel | str | None, device: str = "auto",
              dtype: str = "auto") -> VideoTextModel:
    """A loaded model as given, or load a preset / hub id / folder (default ``clip-b32``).
    Sizes the thread pools first (:func:`~videolens.io.threads.configure_threads`): every
    verb of the API and the CLI gets its model here."""
    configure_threads()
    if isinstance(model, VideoTextModel):
        return model
    return load_model(model or DEFAULT_MODEL, device, dtype)


def library_model(library: Library, model: VideoTextModel | str | None, device: str = "auto",
                  dtype: str = "auto") -> VideoTextModel:
    """The model the library was built with (or ``model``, checked against it)."""
    encoder = get_model(model or library.model["name"], device, dtype)
    library.check_model(encoder.meta)
    return encoder


def prompt_rows(encoder: Callable[[], VideoTextModel]) -> Callable[[], np.ndarray]:
    """What a library's vector index calls, only when it re-tunes its search, for the text
    queries it measures recall on: the model's own embeddings of
    :func:`~videolens.text.prompts.tuning_prompts` (cached on disk like any prompt list).
    ``encoder`` is called then, so a run that never re-tunes never loads a model for it."""

    def rows() -> np.ndarray:
        from ..text import tuning_prompts

        return encoder().encode_text(tuning_prompts()).numpy()

    return rows
