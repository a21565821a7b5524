"""Load a model by preset name, hub id or local folder, with clear errors when that fails."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..errors import ModelLoadError, UsageError
from .base import VideoTextModel
from .presets import DEFAULT_MODEL, PRESETS, resolve

SUPPORTED_TYPES = ("clip", "siglip", "xclip")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda, then mps, then cpu. An explicit device that is absent is a UsageError."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise UsageError(
            f"unknown device {device!r}", hint="use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "device 'cuda' requested but this torch build sees no CUDA GPU",
            hint="use --device cpu, or install a CUDA build of torch",
        )
    if chosen.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise UsageError("device 'mps' requested but MPS is not available", hint="use cpu")
    return chosen


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` -> fp16 on CUDA, fp32 elsewhere (bf16/fp16 matmuls on CPU are several times
    slower than fp32, see shared/MEASURED.md)."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}", hint="use auto, fp32, fp16 or bf16")
    return DTYPES[dtype]


def _looks_like_path(name: str) -> bool:
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        return True
    return os.sep != "/" and os.sep in name


def _cached_config(hub_id: str) -> str | None:
    """Path of the hub checkpoint's config.json in the local HF cache, if it is there."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return None
    try:
        found = try_to_load_from_cache(hub_id, "config.json")
    except Exception:  # an id the hub would reject; let from_pretrained word the error
        return None
    return found if isinstance(found, str) else None


def _fingerprint(source: str, config_path: Path | None) -> str:
    """Identify the weights: hub snapshot (commit) or the folder's files, sizes and mtimes."""
    digest = hashlib.sha256(source.encode())
    folder = config_path.parent if config_path is not None else None
    if folder is not None and folder.is_dir():
        digest.update(str(folder.resolve()).encode())
        for item in sorted(folder.iterdir()):
            if item.is_file():
                stat = item.stat()
                digest.update(f"{item.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _load_error(name: str, source: str, err: OSError, what: str) -> ModelLoadError:
    """transformers reports every loading failure as OSError; tell offline from the rest."""
    text = str(err)
    if "connect" in text or "offline" in text.lower() or "cached" in text:
        return _offline_error(name, source)
    first = text.splitlines()[0] if text else type(err).__name__
    return ModelLoadError(
        f"{what} model {name!r}: {first}",
        hint="check the hub id; a local folder needs the model weights and the "
        "processor/tokenizer files written by save_pretrained",
    )


def _offline_error(name: str, hub_id: str) -> ModelLoadError:
    offline = os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0")
    why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub could not be reached"
    return ModelLoadError(
        f"cannot load model {name!r} ({hub_id}): it is not in the local Hugging Face cache "
        f"and {why}",
        hint="download it once where there is network (`hf download "
        f"{hub_id}`), or pass a local folder with --model /path/to/folder",
    )


def load_model(
    name: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto"
) -> VideoTextModel:
    """Load a CLIP, SigLIP or X-CLIP checkpoint as a :class:`VideoTextModel`.

    Args:
        name: a preset (``clip-b32``, see ``videolens.models.PRESETS``), a hub id
            (``openai/clip-vit-base-patch16``) or a local folder saved with
            ``save_pretrained`` (model + processor files).
        device: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
        dtype: ``auto`` (fp16 on CUDA, else fp32), ``fp32``, ``fp16``, ``bf16``.

    A hub checkpoint already in the local cache is loaded without touching the network.
    """
    from transformers import AutoConfig

    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    source, preset = resolve(name)
    local = Path(source).expanduser()
    config_path: Path | None = None
    load_kwargs: dict = {}
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelLoadError(
                "model folder has no config.json",
                path=local,
                hint="pass a folder written by save_pretrained (model and processor files)",
            )
        source = str(local)
        config_path = local / "config.json"
    elif _looks_like_path(source):
        raise ModelLoadError(
            "model folder not found",
            path=source,
            hint=f"check the path, or use a preset ({', '.join(PRESETS)}) or a hub id",
        )
    else:
        cached = _cached_config(source)
        if cached is not None:
            config_path = Path(cached)
            load_kwargs["local_files_only"] = True

    try:
        config = AutoConfig.from_pretrained(source, **load_kwargs)
    except OSError as err:
        raise _load_error(name, source, err, "cannot load model") from None
    except ValueError as err:
        raise ModelLoadError(
            f"cannot read the config of model {name!r}: {str(err).splitlines()[0]}",
            hint="pass a CLIP, SigLIP or X-CLIP checkpoint",
        ) from None

    model_type = getattr(config, "model_type", "")
    if model_type not in SUPPORTED_TYPES:
        raise ModelLoadError(
            f"model {name!r} is a {model_type!r} checkpoint; videolens supports "
            f"{', '.join(SUPPORTED_TYPES)}",
            hint=f"use a preset ({', '.join(PRESETS)}) or another CLIP-family checkpoint",
        )
    fingerprint = _fingerprint(source, config_path)
    try:
        model = _build(model_type, source, load_kwargs, torch_device, torch_dtype, fingerprint)
    except OSError as err:
        raise _load_error(name, source, err, "cannot load the weights or processor of") from None
    if preset is not None and model.num_frames is None:
        model.default_frames = preset.frames
    return model


def _build(
    model_type: str,
    source: str,
    load_kwargs: dict,
    device: torch.device,
    dtype: torch.dtype,
    fingerprint: str,
) -> VideoTextModel:
    import transformers
    from transformers import AutoProcessor

    # transformers 5 renamed from_pretrained's torch_dtype to dtype
    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    kwargs = {**load_kwargs, dtype_key: dtype}
    processor = AutoProcessor.from_pretrained(source, **load_kwargs)
    if model_type == "xclip":
        from transformers import XCLIPModel

        from .xclip import XClipModel

        hf_model = XCLIPModel.from_pretrained(source, **kwargs).to(device).eval()
        return XClipModel(
            hf_model, processor, name=source, device=device, dtype=dtype, fingerprint=fingerprint
        )

    from .clip import FrameAveragingModel

    if model_type == "siglip":
        from transformers import SiglipModel as model_class
    else:
        from transformers import CLIPModel as model_class
    hf_model = model_class.from_pretrained(source, **kwargs).to(device).eval()
    return FrameAveragingModel(
        hf_model,
        processor,
        name=source,
        kind="sigmoid" if model_type == "siglip" else "softmax",
        device=device,
        dtype=dtype,
        fingerprint=fingerprint,
    )
