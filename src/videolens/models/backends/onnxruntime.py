"""ONNX Runtime: towers exported to ONNX (:func:`.common.export_onnx`), run by the CPU
execution provider.

Precision: ``auto`` and ``fp32`` are fp32 (ONNX Runtime's CPU provider has no bf16 path for
these graphs); ``int8`` is dynamic quantization (int8 weights, activations quantized per
batch at run time), so it needs no calibration data; its agreement with fp32 is still
measured on the user's first frames (see :mod:`.common`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .common import export_onnx

NAME = "onnxruntime"
FILE = "model.onnx"


def version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def export(tower: torch.nn.Module, example: dict[str, torch.Tensor],
           dynamic: dict[str, list[int]], folder: Path) -> None:
    """Write ``folder/model.onnx`` (:func:`.common.export_onnx`)."""
    export_onnx(tower, example, dynamic, folder / FILE)


def quantize(fp32_folder: Path, folder: Path, tower: str, calibration) -> None:
    """Dynamic int8 quantization of the fp32 graph (``calibration`` is not needed)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_folder / FILE), str(folder / FILE), weight_type=QuantType.QInt8)


class Session:
    """A compiled tower: ``session(inputs) -> (N, D)`` float32."""

    def __init__(self, path: Path, precision: str, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # the same thread budget as torch's, so a backend does not oversubscribe the cores
        # that decoding workers use
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options,
                                                    providers=["CPUExecutionProvider"])
        self.inputs = {item.name for item in self.session.get_inputs()}
        self.precision = "int8" if precision == "int8" else "fp32"

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = {name: value for name, value in inputs.items() if name in self.inputs}
        return self.session.run(["features"], feed)[0]


def load(folder: Path, precision: str, threads: int) -> Session:
    return Session(folder / FILE, precision, threads)
