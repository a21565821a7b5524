"""Load a model by preset name, hub id or local folder, with clear errors when that fails.

Importing this module is cheap (no torch, no transformers): :func:`locate` answers "where do
the weights come from, and can they be had?" from the file system, the Hugging Face cache and a
short connection check, so a typo or a missing network is reported in well under a second,
before the seconds that importing torch and transformers take.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import socket
import threading
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import ModelLoadError, UsageError
from .presets import DEFAULT_MODEL, PRESETS, Preset, resolve

if TYPE_CHECKING:
    import torch

    from .base import VideoTextModel

SUPPORTED_TYPES = ("clip", "siglip", "xclip")
DTYPE_NAMES = ("fp32", "fp16", "bf16")
# How long the hub may take to accept a connection before we call it unreachable. DNS
# failures and refused connections answer at once; this bounds a network that drops packets.
HUB_CHECK_SECONDS = 3.0


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda, then mps, then cpu. An explicit device that is absent is a UsageError."""
    import torch

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


# CPU feature flags (Linux /proc/cpuinfo names) of units that compute bf16 matmuls natively:
# Intel AMX, and AVX512-BF16 (Cooper Lake, Sapphire Rapids and later, AMD Zen 4 and later).
# Without them bf16 is emulated and measured 5-8x slower than fp32 (docs: README, CPU speed).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# Pins what ``auto`` means on a CPU (fp32 or bf16) instead of detecting it: the same numbers
# on every machine (a lab comparing runs, a test suite checking fp32 equality).
CPU_DTYPE_ENV = "VIDEOLENS_CPU_DTYPE"


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor listed in /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This machine's CPU feature flags: /proc/cpuinfo on Linux, else torch's own probe."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            flags = parse_cpu_flags(file.read())
        if flags:
            return flags
    except OSError:
        pass
    try:  # macOS, Windows: torch asks the CPU itself (a private helper, hence the guard)
        import torch

        probe = torch._C._cpu._get_cpu_capability()
        return frozenset(name for name, present in probe.items() if present is True)
    except Exception:
        return frozenset()


def cpu_bf16_verdict(flags: frozenset[str] | set[str]) -> tuple[bool, str]:
    """Whether ``auto`` should run bf16 on a CPU with these flags, and why, in words."""
    native = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    if native:
        return True, f"bf16: this CPU computes bf16 natively ({', '.join(native)})"
    return False, ("fp32: this CPU has no native bf16 (no amx_bf16 or avx512_bf16 flag), "
                   "where bf16 runs several times slower")


def choose_dtype(dtype: str, device: torch.device,
                 flags: frozenset[str] | set[str] | None = None) -> tuple[torch.dtype, str]:
    """:func:`pick_dtype` with the reason for its choice, for ``--verbose`` and run records.

    ``flags``: the CPU's feature flags (default: this machine's, :func:`cpu_flags`, unless
    ``$VIDEOLENS_CPU_DTYPE`` pins this machine's choice).
    """
    import torch

    names = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype == "auto":
        if device.type == "cuda":
            return torch.float16, "fp16: auto on a CUDA GPU"
        if device.type != "cpu":
            return torch.float32, f"fp32: auto on {device.type}"
        pinned = os.environ.get(CPU_DTYPE_ENV, "").strip().lower() if flags is None else ""
        if pinned:
            if pinned not in ("fp32", "bf16"):
                raise UsageError(f"${CPU_DTYPE_ENV} is {pinned!r}",
                                 hint="set it to fp32 or bf16, or unset it to detect")
            return names[pinned], f"{pinned}: pinned by ${CPU_DTYPE_ENV}"
        native, why = cpu_bf16_verdict(cpu_flags() if flags is None else flags)
        return (torch.bfloat16 if native else torch.float32), why
    if dtype not in DTYPE_NAMES:
        raise UsageError(f"unknown dtype {dtype!r}", hint="use auto, fp32, fp16 or bf16")
    return names[dtype], f"{dtype}: asked for"


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` -> fp16 on CUDA; on a CPU bf16 where it computes bf16 natively (AMX or
    AVX512-BF16), else fp32 (emulated bf16 is several times slower than fp32), unless
    ``$VIDEOLENS_CPU_DTYPE`` pins it; fp32 elsewhere.
    """
    return choose_dtype(dtype, device)[0]


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
        hint=f"{_suggestion(name)}check the hub id; a local folder needs the model weights "
        "and the processor/tokenizer files written by save_pretrained",
    )


def hub_offline() -> bool:
    """Whether the user told the Hugging Face libraries to stay off the network."""
    return any(os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _suggestion(name: str) -> str:
    """`` — did you mean clip-b32?`` for a near miss of a preset or a preset's hub id."""
    names = {known.lower(): known for known in
             [*PRESETS, *(p.hub_id for p in PRESETS.values())]}
    if name in names.values():
        return ""
    close = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.6)
    return f"did you mean {names[close[0]]}? " if close else ""


def _offline_error(name: str, hub_id: str, why: str | None = None) -> ModelLoadError:
    offline = hub_offline()
    if why is None:
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub could not be reached"
    then = ("" if offline else
            "; HF_HUB_OFFLINE=1 makes videolens use only the cache, without trying the network")
    return ModelLoadError(
        f"cannot load model {name!r} ({hub_id}): it is not in the local Hugging Face cache "
        f"and {why}",
        hint=f"{_suggestion(name) or _suggestion(hub_id)}download it once where there is "
        f"network (`hf download {hub_id}`), or pass a local folder with "
        f"--model /path/to/folder{then}",
    )


@lru_cache(maxsize=4)
def hub_unreachable(endpoint: str | None = None, timeout: float = HUB_CHECK_SECONDS
                    ) -> str | None:
    """Why the Hugging Face hub cannot be reached, or None when it accepts a connection.

    A TCP connection to ``endpoint`` (default: ``HF_ENDPOINT`` or https://huggingface.co),
    or to the HTTPS proxy the environment names, within ``timeout`` seconds. Name lookup
    runs in a thread so that a resolver that never answers is bounded by the timeout too.
    The answer is kept for the life of the process.
    """
    if endpoint is None:
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_parts.hostname or host, proxy_parts.port or 8080
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(err.strerror or str(err) or type(err).__name__)

    worker = threading.Thread(target=connect, name="videolens-hub-check", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        return f"no answer from {host}:{port} within {timeout:g} s"
    return None if outcome[0] is None else f"{host}:{port}: {outcome[0]}"


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are: ``source`` (a folder or hub id) for ``from_pretrained``.

    ``config_path``: its config.json when it is on disk (a folder, or the hub cache);
    ``local_files_only``: load from the cache without asking the hub.
    """

    name: str
    source: str
    preset: Preset | None
    config_path: Path | None
    local_files_only: bool


def locate(name: str = DEFAULT_MODEL, *, check_network: bool = True) -> ModelSource:
    """Find a model's files without importing torch or transformers, or fail at once.

    ``name``: a preset, a hub id (``owner/name``) or a local folder. A folder must hold a
    config.json; a hub checkpoint in the local cache is used without the network; one that
    is not needs the hub, which is checked first (:func:`hub_unreachable`) unless
    ``check_network`` is False. A name that is none of these (no ``/``, not a preset, not a
    folder, not cached) is taken for a typo: the error says which preset is closest.

    Raises:
        ModelLoadError: with one line saying what to do.
    """
    source, preset = resolve(name)
    local = Path(source).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelLoadError(
                "model folder has no config.json",
                path=local,
                hint="pass a folder written by save_pretrained (model and processor files)",
            )
        # absolute: a library records this name and is searched from other folders later
        local = local.resolve()
        return ModelSource(name, str(local), preset, local / "config.json", False)
    if _looks_like_path(source):
        raise ModelLoadError(
            "model folder not found",
            path=source,
            hint=f"check the path, or use a preset ({', '.join(PRESETS)}) or a hub id",
        )
    cached = _cached_config(source)
    if cached is not None:
        return ModelSource(name, source, preset, Path(cached), True)
    if preset is None and "/" not in source:
        raise ModelLoadError(
            f"unknown model {name!r}",
            hint=f"{_suggestion(name)}use a preset ({', '.join(PRESETS)}), a hub id "
            "(owner/name) or a local folder; `videolens models` lists the presets",
        )
    if hub_offline():
        raise _offline_error(name, source)
    if check_network:
        why = hub_unreachable()
        if why is not None:
            raise _offline_error(
                name, source, f"the Hugging Face hub cannot be reached ({why})")
    return ModelSource(name, source, preset, None, False)


def _model_type(found: ModelSource) -> str:
    """``model_type`` from config.json, read as plain JSON when the file is on disk."""
    if found.config_path is not None:
        try:
            return str(json.loads(found.config_path.read_text(encoding="utf-8"))
                       .get("model_type", ""))
        except (OSError, ValueError, AttributeError) as err:
            raise ModelLoadError(
                f"cannot read the config of model {found.name!r}: {err}",
                path=found.config_path, hint="pass a CLIP, SigLIP or X-CLIP checkpoint",
            ) from None
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(found.source)
    except OSError as err:
        raise _load_error(found.name, found.source, err, "cannot load model") from None
    except ValueError as err:
        raise ModelLoadError(
            f"cannot read the config of model {found.name!r}: {str(err).splitlines()[0]}",
            hint="pass a CLIP, SigLIP or X-CLIP checkpoint",
        ) from None
    return str(getattr(config, "model_type", ""))


def load_model(
    name: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto", *,
    backend: str | None = None, precision: str | None = None,
) -> VideoTextModel:
    """Load a CLIP, SigLIP or X-CLIP checkpoint as a :class:`VideoTextModel`.

    Args:
        name: a preset (``clip-b32``, see ``videolens.models.PRESETS``), a hub id
            (``openai/clip-vit-base-patch16``) or a local folder saved with
            ``save_pretrained`` (model + processor files).
        device: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
        dtype: torch's weights and activations: ``auto`` (fp16 on CUDA; on a CPU bf16 where
            it computes bf16 natively, AMX or AVX512-BF16, else fp32), ``fp32``, ``fp16``,
            ``bf16``.
        backend: where the CLIP/SigLIP towers run: ``torch``, ``openvino`` or
            ``onnxruntime`` (exported once into the cache folder, CPU only; X-CLIP and
            temporal-attention checkpoints stay on torch, said in one line). Default: the
            enclosing :func:`videolens.models.backends.model_options`, else ``torch``.
        precision: for openvino/onnxruntime: ``auto`` (the backend's default: OpenVINO bf16
            on CPUs that compute it natively, else fp32), ``fp32``, or ``int8`` (calibrated
            on the first frames encoded, reporting its agreement with fp32).

    ``model.runtime`` records the device, dtype (and why), backend and precision.

    A hub checkpoint already in the local cache is loaded without touching the network; a
    name that cannot be had (a typo, or not cached while the hub is unreachable) fails at
    once, before transformers is imported (:func:`locate`, which callers that want the answer
    before importing torch too can call first).
    """
    from . import backends

    options = backends.current_options()
    backend = options.backend if backend is None else backend
    precision = options.precision if precision is None else precision
    backends.check_options(backend, precision)
    torch_device = pick_device(device)
    found = locate(name)
    model_type = _model_type(found)
    if model_type not in SUPPORTED_TYPES:
        raise ModelLoadError(
            f"model {name!r} is a {model_type!r} checkpoint; videolens supports "
            f"{', '.join(SUPPORTED_TYPES)}",
            hint=f"use a preset ({', '.join(PRESETS)}) or another CLIP-family checkpoint",
        )
    fallback = None
    if backend != "torch" and torch_device.type != "cpu":
        fallback = f"{backend} runs on the CPU here, not {torch_device.type}"
    elif backend != "torch" and model_type == "xclip":
        fallback = ("X-CLIP runs on torch only (its video encoder and prompt generator are "
                    "not exported)")
    if fallback is not None:
        options.say(f"--backend {backend}: {fallback}; running on torch instead")
        backend, precision = "torch", "auto"
    if backend == "torch":
        torch_dtype, why = choose_dtype(dtype, torch_device)
    else:
        import torch

        # the exporters trace fp32 weights; the backend then computes at `precision`
        torch_dtype, why = torch.float32, f"fp32 weights, exported to {backend}"
    load_kwargs = {"local_files_only": True} if found.local_files_only else {}
    fingerprint = _fingerprint(found.source, found.config_path)
    try:
        model = _build(model_type, found.source, load_kwargs, torch_device, torch_dtype,
                       fingerprint)
    except OSError as err:
        raise _load_error(name, found.source, err,
                          "cannot load the weights or processor of") from None
    if found.preset is not None and model.num_frames is None:
        model.default_frames = found.preset.frames
    short = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
    dtype_name = short.get(str(torch_dtype).removeprefix("torch."), str(torch_dtype))
    model.runtime = {"model": name, "device": str(torch_device), "dtype": dtype_name,
                     "dtype_reason": why, "backend": "torch", "precision": dtype_name}
    if fallback is not None:
        model.runtime["fallback"] = f"{fallback}; running on torch"
    if backend != "torch":
        from .backends.common import attach

        attach(model, backend, precision, options.say)
    if options.verbose:
        options.say(f"model: {backends.describe(model.runtime)}")
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
