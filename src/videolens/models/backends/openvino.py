"""OpenVINO: towers exported to ONNX, converted (``openvino.convert_model``) and saved as IR
(``model.xml`` + ``model.bin``, weights kept fp32), compiled for the CPU.

Precision: ``auto`` is OpenVINO's own choice for the CPU (bf16 where the CPU computes it
natively, AMX or AVX512-BF16; fp32 elsewhere), ``fp32`` forces fp32, ``int8`` quantizes the
vision tower with NNCF calibrated on the user's first frames and the text tower's weights
to int8 (data-free, as no prompts are known when the model loads).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .common import export_onnx

NAME = "openvino"
FILE = "model.xml"


class _SignalStack(ctypes.Structure):  # glibc/musl's stack_t (macOS orders it differently)
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def signal_stack_kept() -> Iterator[None]:
    """Give the calling thread back the alternate signal stack it had before the block.

    OpenVINO's CPU plugin (2026.4, Linux) installs a signal stack of its own on the thread
    that compiles or runs a model and leaves it installed once that memory is freed.
    CPython runs its signal handlers on the alternate stack (SA_ONSTACK), so the next signal
    the process handled in Python -- Ctrl-C, SIGTERM under a server, the training decode
    timer -- died of a segfault instead. Every call into OpenVINO here runs inside this.
    """
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    saved = _SignalStack()
    if libc.sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        now = _SignalStack()
        libc.sigaltstack(None, ctypes.byref(now))
        if (now.ss_sp, now.ss_size, now.ss_flags) != (saved.ss_sp, saved.ss_size,
                                                      saved.ss_flags):
            saved.ss_flags &= 2  # SS_DISABLE is the one flag sigaltstack accepts
            libc.sigaltstack(ctypes.byref(saved), None)


def version() -> str:
    import openvino

    return openvino.__version__


def export(tower: torch.nn.Module, example: dict[str, torch.Tensor],
           dynamic: dict[str, list[int]], folder: Path) -> None:
    """Write ``folder/model.xml``: inputs named as ``example``'s keys with the axes in
    ``dynamic`` free.

    Through ONNX (:func:`.common.export_onnx`): converting the traced ONNX file took ~1.5 s
    per tower here, against ~7 s for ``convert_model`` on the torch module.
    """
    import openvino

    onnx_path = folder / "tower.onnx"
    export_onnx(tower, example, dynamic, onnx_path)
    with signal_stack_kept():
        converted = openvino.convert_model(str(onnx_path))
        # ONNX's first node may rename an input: name every input as the tokenizer/processor
        # does
        for port, name in zip(converted.inputs, example, strict=True):
            port.get_tensor().set_names({name})
        # fp32 weights on disk: compress_to_fp16 (the default) would round every weight
        openvino.save_model(converted, str(folder / FILE), compress_to_fp16=False)
        del converted
    onnx_path.unlink()


def quantize(fp32_folder: Path, folder: Path, tower: str, calibration) -> None:
    """int8 with NNCF: the vision tower calibrated on ``calibration`` (a list of input
    dicts, one frame each), the text tower's weights only."""
    import nncf
    import openvino

    with signal_stack_kept():
        _quantize(openvino, nncf, fp32_folder, folder, calibration)


def _quantize(openvino, nncf, fp32_folder: Path, folder: Path, calibration) -> None:
    model = openvino.Core().read_model(str(fp32_folder / FILE))
    # NNCF logs tables and draws progress bars on stdout, where --json output goes; videolens
    # reports the result in one line of its own
    nncf.set_log_level(logging.ERROR)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        if calibration:
            quantized = nncf.quantize(model, nncf.Dataset(calibration),
                                      model_type=nncf.ModelType.TRANSFORMER,
                                      subset_size=len(calibration))
        else:
            quantized = nncf.compress_weights(model)
    openvino.save_model(quantized, str(folder / FILE), compress_to_fp16=False)


_PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


class Compiled:
    """A compiled tower: ``compiled(inputs) -> (N, D)`` float32."""

    def __init__(self, path: Path, precision: str, threads: int):
        import openvino

        # same thread budget as torch's, so decoding workers keep their cores
        config = {"INFERENCE_NUM_THREADS": max(1, threads)}
        if precision == "fp32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        with signal_stack_kept():
            self.compiled = openvino.Core().compile_model(str(path), "CPU", config)
            hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.inputs = {port.get_any_name() for port in self.compiled.inputs}
        chosen = hint.to_string() if hasattr(hint, "to_string") else str(hint)
        actual = _PRECISIONS.get(chosen, chosen)
        self.precision = f"int8 (+ {actual})" if precision == "int8" else actual

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = {name: value for name, value in inputs.items() if name in self.inputs}
        if len(feed) != len(self.inputs):
            raise KeyError(f"the compiled tower wants {sorted(self.inputs)}, got {sorted(inputs)}")
        with signal_stack_kept():
            return np.asarray(self.compiled(feed)[0])

    def __del__(self) -> None:
        compiled = self.__dict__.pop("compiled", None)
        if compiled is None:
            return
        # at interpreter exit ctypes may already be torn down; the stack matters no more then
        with contextlib.suppress(Exception), signal_stack_kept():
            del compiled


def load(folder: Path, precision: str, threads: int) -> Compiled:
    return Compiled(folder / FILE, precision, threads)
