"""What the OpenVINO and ONNX Runtime backends share.

The towers as exportable modules, the export cache (one folder per weights fingerprint,
backend, precision and tool versions, published by an atomic rename so that concurrent runs
never read half a model), int8 calibrated on the first frames the user encodes, and the
cosine agreement with fp32 that int8 reports when it is built.

A backend module provides ``NAME``, ``FILE`` (the model file inside a tower folder),
``version()``, ``export(tower, example, dynamic, folder)``, ``quantize(fp32_folder, folder,
tower, calibration)`` and ``load(folder, precision, threads) -> Runner``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..clip import FrameAveragingModel, pooled
from ..text_cache import cache_dir

# Bumped when what an export folder holds changes, so old folders are never read.
EXPORT_FORMAT = 1
# int8's vision tower is calibrated on this many of the user's frames, encoded in fp32 until
# then; agreement with fp32 is reported over the same frames.
CALIBRATION_FRAMES = 64
# Prompts whose fp32 and int8 text features are compared when the int8 text tower is built.
AGREEMENT_PROMPTS = [f"a video of a person {action}." for action in (
    "running", "swimming", "cooking", "playing guitar", "riding a bike", "dancing",
    "brushing hair", "doing push ups")]


class Runner(Protocol):
    """One exported tower, compiled: numpy inputs by name -> (N, D) float32 features."""

    precision: str

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


class VisionTower(torch.nn.Module):
    """(N, 3, H, W) pixel values -> (N, D) projected image features, as
    ``get_image_features`` computes them."""

    def __init__(self, hf_model):
        super().__init__()
        self.hf_model = hf_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pooled(self.hf_model.get_image_features(pixel_values=pixel_values))


class TextTower(torch.nn.Module):
    """(N, L) token ids (and attention mask, when the tokenizer gives one) -> (N, D)
    projected text features, as ``get_text_features`` computes them."""

    def __init__(self, hf_model):
        super().__init__()
        self.hf_model = hf_model

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            return pooled(self.hf_model.get_text_features(input_ids=input_ids))
        return pooled(self.hf_model.get_text_features(input_ids=input_ids,
                                                      attention_mask=attention_mask))


class Unsupported(Exception):
    """This model (or one of its ops) cannot run on the backend; the message says why."""


def backend_module(name: str):
    return import_module(f".{name}", __package__)


def export_root() -> Path:
    """``<cache dir>/backends``; a temporary folder for this process when the cache is off."""
    folder = cache_dir()
    if folder is not None:
        return folder / "backends"
    global _TEMP_ROOT
    if _TEMP_ROOT is None:
        _TEMP_ROOT = Path(tempfile.mkdtemp(prefix="videolens-backends-"))
    return _TEMP_ROOT


_TEMP_ROOT: Path | None = None


def example_pixels(model: FrameAveragingModel) -> torch.Tensor:
    """(2, 3, H, W) float32 pixels from the model's own processor, for tracing."""
    frames = np.random.default_rng(0).integers(0, 256, (2, 72, 96, 3), dtype=np.uint8)
    return model.image_processor(images=list(frames), return_tensors="pt")["pixel_values"]


def tokens(model: FrameAveragingModel, texts: list[str]) -> dict[str, torch.Tensor]:
    """The model's tokens for ``texts``, padded as :meth:`text_features` pads them."""
    encoded = model.tokenizer(texts, padding=model.text_padding, truncation=True,
                              max_length=model.context_length, return_tensors="pt")
    return {name: encoded[name] for name in ("input_ids", "attention_mask") if name in encoded}


def export_folder(model: FrameAveragingModel, backend, precision: str) -> Path:
    """The folder for these weights exported to ``backend`` at ``precision`` (fp32 or int8),
    keyed by the tool versions too: an export from other versions is not read."""
    import transformers

    pixels = tuple(example_pixels(model).shape[1:])
    key = json.dumps([EXPORT_FORMAT, backend.NAME, backend.version(), precision,
                      torch.__version__, transformers.__version__, pixels, model.text_padding,
                      model.context_length])
    tag = hashlib.sha256(key.encode()).hexdigest()[:12]
    return export_root() / model.fingerprint / f"{backend.NAME}-{precision}-{tag}"


def publish(build: Callable[[Path], dict], target: Path) -> dict:
    """``build(tmp)`` into a fresh folder next to ``target``, then rename it to ``target``.

    ``build`` returns facts to keep (export seconds, agreement), written to ``info.json``.
    When another process published ``target`` meanwhile, its copy is kept. Returns the info.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        info = build(staging)
        (staging / "info.json").write_text(json.dumps(info), encoding="utf-8")
        try:
            os.rename(staging, target)
        except OSError:  # published by someone else first: theirs is as good
            shutil.rmtree(staging, ignore_errors=True)
            return read_info(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return info


def read_info(folder: Path) -> dict:
    try:
        return json.loads((folder / "info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def cosine_agreement(reference: np.ndarray, other: np.ndarray) -> dict:
    """Mean and min cosine between matching rows of two (N, D) feature matrices."""
    a = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    b = other / np.maximum(np.linalg.norm(other, axis=1, keepdims=True), 1e-12)
    cosine = (a * b).sum(axis=1)
    return {"mean": float(cosine.mean()), "min": float(cosine.min()), "frames": len(cosine)}


ONNX_OPSET = 17


def export_onnx(tower: torch.nn.Module, example: dict[str, torch.Tensor],
                dynamic: dict[str, list[int]], path: Path) -> None:
    """Write ``tower`` as ONNX: inputs named as ``example``'s keys, the axes in ``dynamic``
    (batch, and for text the sequence) free, output ``features``.

    The TorchScript exporter (``dynamo=False``): the dynamo exporter needs onnxscript, and
    tracing these towers gives the same graph.
    """
    import inspect

    # torch < 2.5 has no `dynamo` argument (and only the TorchScript exporter)
    choice = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters \
        else {}
    with torch.no_grad():
        torch.onnx.export(
            tower, tuple(example.values()), str(path),
            input_names=list(example), output_names=["features"],
            dynamic_axes={name: {axis: f"{name}_{axis}" for axis in axes}
                          for name, axes in dynamic.items()},
            opset_version=ONNX_OPSET, **choice,
        )


def _quiet_export(run: Callable[[], None]) -> None:
    # the exporters warn about every Python bool and shape they trace; none concerns a user
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()


class BackendEncoder:
    """The exported towers of one model, called by :class:`FrameAveragingModel` in place of
    torch (``model.runner``). ``precision``: ``auto`` (the backend's default), ``fp32`` or
    ``int8``."""

    def __init__(self, model: FrameAveragingModel, backend, precision: str,
                 say: Callable[[str], None]):
        self.model, self.backend, self.say = model, backend, say
        self.requested = precision
        self.threads = torch.get_num_threads()
        self.lock = threading.Lock()
        self.fp32_folder = export_folder(model, backend, "fp32")
        self.int8_folder = export_folder(model, backend, "int8")
        self.info: dict = {}
        self.exported_now = False
        self._ensure_fp32()
        self.text = self._load_text()
        self.vision: Runner
        self._pending: list[tuple[np.ndarray, np.ndarray]] | None = None
        if precision == "int8" and (self.int8_folder / "vision").is_dir():
            self.vision = backend.load(self.int8_folder / "vision", "int8", self.threads)
            self.info["int8_agreement"] = read_info(self.int8_folder / "vision").get("agreement")
        else:
            self.vision = backend.load(self.fp32_folder / "vision",
                                       "fp32" if precision == "int8" else precision, self.threads)
            if precision == "int8":
                self._pending = []

    # --- building --------------------------------------------------------------------------

    def _ensure_fp32(self) -> None:
        hf_model = self.model.model
        towers = {
            "vision": (VisionTower(hf_model), {"pixel_values": example_pixels(self.model)},
                       {"pixel_values": [0]}),
            "text": (TextTower(hf_model),
                     tokens(self.model, ["a video of a person running.", "a dog."]),
                     {"input_ids": [0, 1], "attention_mask": [0, 1]}),
        }
        missing = [name for name in towers if not (self.fp32_folder / name).is_dir()]
        if not missing:
            return
        self.say(f"exporting the {' and '.join(missing)} tower{'s' * (len(missing) > 1)} of "
                 f"{self.model.name} to {self.backend.NAME} (once; kept in "
                 f"{self.fp32_folder.parent})")
        for name in missing:
            tower, example, dynamic = towers[name]
            dynamic = {key: axes for key, axes in dynamic.items() if key in example}

            def build(folder: Path, tower=tower, example=example, dynamic=dynamic) -> dict:
                start = time.perf_counter()
                try:
                    _quiet_export(lambda: self.backend.export(tower, example, dynamic, folder))
                except Exception as err:
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    raise Unsupported(f"the export failed: {first[:200]}") from err
                return {"export_seconds": round(time.perf_counter() - start, 3)}

            self.info[f"{name}_export_seconds"] = publish(
                build, self.fp32_folder / name).get("export_seconds")
        self.exported_now = True

    def _load_text(self) -> Runner:
        if self.requested != "int8":
            return self.backend.load(self.fp32_folder / "text", self.requested, self.threads)
        folder = self.int8_folder / "text"
        if not folder.is_dir():
            def build(target: Path) -> dict:
                start = time.perf_counter()
                self.backend.quantize(self.fp32_folder / "text", target, "text", None)
                took = time.perf_counter() - start
                sample = {k: v.numpy() for k, v in tokens(self.model, AGREEMENT_PROMPTS).items()}
                reference = self.backend.load(self.fp32_folder / "text", "fp32", self.threads)
                quantized = self.backend.load(target, "int8", self.threads)
                agreement = cosine_agreement(reference(sample), quantized(sample))
                return {"quantize_seconds": round(took, 3), "agreement": agreement}

            info = publish(build, folder)
            agree = info.get("agreement") or {}
            if agree:
                self.say(f"int8 text tower on {self.backend.NAME} built in "
                         f"{info.get('quantize_seconds', 0):.1f} s; cosine to fp32 over "
                         f"{agree['frames']} prompts: mean {agree['mean']:.5f}, "
                         f"min {agree['min']:.5f}")
        self.info["int8_text_agreement"] = read_info(folder).get("agreement")
        return self.backend.load(folder, "int8", self.threads)

    def _calibrate(self) -> None:
        """Quantize the vision tower on the frames seen so far; switch to it; report."""
        assert self._pending is not None
        pixels = np.concatenate([p for p, _ in self._pending])
        reference = np.concatenate([f for _, f in self._pending])
        self._pending = None
        # one frame per calibration item: the exported graph has a dynamic batch axis
        calibration = [{"pixel_values": pixels[i : i + 1]} for i in range(len(pixels))]

        def build(target: Path) -> dict:
            start = time.perf_counter()
            self.backend.quantize(self.fp32_folder / "vision", target, "vision", calibration)
            took = time.perf_counter() - start
            quantized = self.backend.load(target, "int8", self.threads)
            features = np.concatenate([quantized({"pixel_values": pixels[i : i + 32]})
                                       for i in range(0, len(pixels), 32)])
            return {"quantize_seconds": round(took, 3),
                    "agreement": cosine_agreement(reference, features)}

        info = publish(build, self.int8_folder / "vision")
        self.vision = self.backend.load(self.int8_folder / "vision", "int8", self.threads)
        agree = info.get("agreement")
        self.info["int8_agreement"] = agree
        if self.model.runtime is not None:
            self.model.runtime["int8_agreement"] = agree
            self.model.runtime["precision"] = "int8"
        if agree:
            self.say(f"int8 vision tower on {self.backend.NAME} calibrated on the first "
                     f"{agree['frames']} frames in {info.get('quantize_seconds', 0):.1f} s; "
                     f"cosine to fp32 over them: mean {agree['mean']:.5f}, "
                     f"min {agree['min']:.5f}")

    # --- encoding (called by FrameAveragingModel) -------------------------------------------

    @property
    def precision(self) -> str:
        if self._pending is not None:
            return f"int8 (fp32 until {CALIBRATION_FRAMES} frames calibrate it)"
        return self.vision.precision

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float32 pixels -> (N, D) float32 features."""
        array = pixels.detach().float().cpu().numpy()
        with self.lock:
            features = self.vision({"pixel_values": array})
            if self._pending is not None:
                self._pending.append((array, features))
                if sum(len(p) for p, _ in self._pending) >= CALIBRATION_FRAMES:
                    self._calibrate()
        return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))

    def text_features(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Tokens as the tokenizer gives them -> (N, D) float32 features."""
        arrays = {name: value.detach().cpu().numpy().astype(np.int64)
                  for name, value in inputs.items() if name in ("input_ids", "attention_mask")}
        with self.lock:
            features = self.text(arrays)
        return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))


def attach(model, backend_name: str, precision: str, say: Callable[[str], None]) -> None:
    """Make ``model`` encode with ``backend_name``, or say in one line why it stays on torch.

    Updates ``model.runtime`` with the backend, the precision it computes in and the export
    folder.
    """
    runtime = model.runtime if model.runtime is not None else {}
    model.runtime = runtime

    def stay(why: str) -> None:
        runtime["fallback"] = f"{why}; running on torch"
        say(f"--backend {backend_name}: {why}; running on torch instead")

    if not isinstance(model, FrameAveragingModel):
        return stay(f"{type(model).__name__} ({model.name}) runs on torch only (its video "
                    "encoder and prompt generator are not exported)")
    if model.temporal != "none":
        return stay("a checkpoint with temporal attention runs on torch only")
    if not model.fingerprint:
        return stay("the weights have no fingerprint to key the exported copy")
    backend = backend_module(backend_name)
    try:
        encoder = BackendEncoder(model, backend, precision, say)
    except Unsupported as err:
        return stay(f"{model.name} cannot be exported: {err}")
    except Exception as err:  # the backend refused to compile or run what it was given
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return stay(f"{backend_name} cannot run {model.name}: {first[:200]}")
    model.runner = encoder
    runtime.update({"backend": backend_name, "precision": encoder.precision,
                    "export_folder": str(encoder.fp32_folder.parent), **{
                        k: v for k, v in encoder.info.items() if v is not None}})
