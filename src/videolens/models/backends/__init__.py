"""Where the CLIP/SigLIP towers run: torch (the default), OpenVINO or ONNX Runtime.

``load_model(backend="openvino" | "onnxruntime")`` exports the vision and text towers once per
(weights fingerprint, backend, precision) into the cache folder and encodes with the exported
copy afterwards (:mod:`.common`; one module per backend: :mod:`.openvino`,
:mod:`.onnxruntime`). What cannot be exported (X-CLIP, checkpoints with temporal attention, a
GPU device, an op the exporter refuses) runs on torch, said in one line.

This module is cheap to import (no torch): the CLI validates ``--backend`` and
``--precision`` and sets them for every model a command loads with :func:`model_options`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from ...errors import UsageError

BACKENDS = ("torch", "openvino", "onnxruntime")
PRECISIONS = ("auto", "fp32", "int8")
# the package each backend needs, and the extra that installs it
PACKAGES = {"openvino": ("openvino", "openvino"), "onnxruntime": ("onnxruntime", "onnx")}


def _stderr(message: str) -> None:
    print(f"videolens: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ModelOptions:
    """How models load when the caller does not say: ``backend``, ``precision``, whether to
    say how each model runs (``verbose``) and where such lines go (``say``)."""

    backend: str = "torch"
    precision: str = "auto"
    verbose: bool = False
    say: Callable[[str], None] = _stderr


_DEFAULT = ModelOptions()
_OPTIONS: ContextVar[ModelOptions | None] = ContextVar("videolens_model_options",
                                                       default=None)


def current_options() -> ModelOptions:
    return _OPTIONS.get() or _DEFAULT


@contextlib.contextmanager
def model_options(backend: str = "torch", precision: str = "auto", *, verbose: bool = False,
                  say: Callable[[str], None] | None = None) -> Iterator[ModelOptions]:
    """Within this block, ``load_model`` without ``backend``/``precision`` uses these.

    The CLI wraps each command in it, so that ``--backend`` reaches every model the command
    loads (classify, index, search, localize, eval, serve) without each pipeline passing it on.
    """
    check_options(backend, precision)
    options = ModelOptions(backend, precision, verbose, say or _stderr)
    token = _OPTIONS.set(options)
    try:
        yield options
    finally:
        _OPTIONS.reset(token)


def check_options(backend: str, precision: str) -> None:
    """UsageError for an unknown backend or precision, int8 on torch, or a backend whose
    package is not installed (found without importing it)."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}", hint=f"use {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint=f"use {', '.join(PRECISIONS)}")
    if backend == "torch" and precision == "int8":
        raise UsageError("--precision int8 needs --backend openvino or onnxruntime",
                         hint="torch runs fp32/bf16/fp16: choose it with --dtype")
    if backend in PACKAGES:
        package, extra = PACKAGES[backend]
        if importlib.util.find_spec(package) is None:
            raise UsageError(f"--backend {backend} needs the {package} package",
                             hint=f"pip install 'videolens[{extra}]'")


def describe(runtime: dict) -> str:
    """One line saying how a model computes, from its ``runtime`` record."""
    parts = [f"{runtime.get('model', 'model')} on {runtime.get('device', '?')}",
             f"backend {runtime.get('backend', 'torch')}"]
    if runtime.get("backend", "torch") == "torch":
        parts.append(f"dtype {runtime.get('dtype_reason') or runtime.get('dtype')}")
    else:
        parts.append(f"precision {runtime.get('precision')}")
        if runtime.get("export_folder"):
            parts.append(f"exported copy in {runtime['export_folder']}")
    if runtime.get("int8_agreement"):
        agree = runtime["int8_agreement"]
        parts.append(f"int8 vs fp32 cosine mean {agree['mean']:.5f}, min {agree['min']:.5f} "
                     f"over {agree['frames']} frames")
    if runtime.get("fallback"):
        parts.append(f"({runtime['fallback']})")
    return "; ".join(parts)


__all__ = ["BACKENDS", "PRECISIONS", "ModelOptions", "check_options", "current_options",
           "describe", "model_options"]
