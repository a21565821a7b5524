"""CPU speed: ``--dtype auto`` per CPU, and the OpenVINO / ONNX Runtime backends.

The backends are checked against torch on the tiny CLIP and SigLIP checkpoints (real configs,
tokenizers and processors, loaded through ``from_pretrained``) within the tolerances the README
states; the dtype rule is checked with fake /proc/cpuinfo flags, since CI machines differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videolens import Library
from videolens.cli import build_parser, main
from videolens.errors import UsageError
from videolens.models import backends
from videolens.models.backends import model_options
from videolens.models.load import (
    BF16_CPU_FLAGS,
    choose_dtype,
    cpu_flags,
    load_model,
    parse_cpu_flags,
)

# The tolerances README.md states ("CPU speed").
FP32_MAX_ABS = 1e-4  # an fp32 backend's L2-normalised rows vs torch's, per component
BF16_MIN_COSINE = 0.999  # torch bf16 vs fp32, every embedding

CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
flags\t\t: {flags}

processor\t: 1
flags\t\t: {flags}
"""
SAPPHIRE_RAPIDS = "fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8"
ZEN4 = "fpu sse2 avx2 avx512f avx512_vnni avx512_bf16"
EPYC_ZEN2 = "fpu sse2 sse4_2 avx avx2 fma"
GRAVITON3 = "fp asimd bf16 sve"  # an ARM "Features" line: not a bf16 flag videolens trusts
CPU = torch.device("cpu")


def _frames(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 40, 52, 3), dtype=np.uint8)


PROMPTS = ["a video of a person running.", "someone cooking dinner in a kitchen.", "a dog."]


# --- dtype auto --------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "expected"), [
    (SAPPHIRE_RAPIDS, torch.bfloat16), (ZEN4, torch.bfloat16), (EPYC_ZEN2, torch.float32)])
def test_auto_dtype_on_a_cpu_follows_its_bf16_flags(flags, expected):
    parsed = parse_cpu_flags(CPUINFO.format(vendor="x", flags=flags))
    assert parsed == frozenset(flags.split())
    dtype, why = choose_dtype("auto", CPU, parsed)
    assert dtype is expected
    if expected is torch.bfloat16:
        assert why.startswith("bf16: this CPU computes bf16 natively (")
        assert ("amx_bf16" in why) == ("amx_bf16" in flags)
    else:
        assert why.startswith("fp32: this CPU has no native bf16")


def test_auto_dtype_elsewhere_and_explicit_dtypes_ignore_the_flags():
    amx = frozenset(SAPPHIRE_RAPIDS.split())
    arm = parse_cpu_flags(f"processor : 0\nFeatures : {GRAVITON3}\n")
    assert "bf16" in arm and choose_dtype("auto", CPU, arm)[0] is torch.float32
    assert choose_dtype("auto", torch.device("cuda"), amx) == (torch.float16,
                                                               "fp16: auto on a CUDA GPU")
    assert choose_dtype("auto", torch.device("mps"), amx)[0] is torch.float32
    assert choose_dtype("fp32", CPU, amx) == (torch.float32, "fp32: asked for")
    assert choose_dtype("bf16", CPU, frozenset()) == (torch.bfloat16, "bf16: asked for")
    assert parse_cpu_flags("no flags here") == frozenset()
    with pytest.raises(UsageError, match="unknown dtype 'int4'"):
        choose_dtype("int4", CPU)


def test_auto_dtype_on_this_machine_reads_its_own_flags(tiny_clip, monkeypatch):
    monkeypatch.delenv("VIDEOLENS_CPU_DTYPE")  # conftest pins fp32; here the CPU decides
    with open("/proc/cpuinfo", encoding="utf-8") as file:  # the independent read
        native = any(flag in file.read().split() for flag in BF16_CPU_FLAGS)
    assert bool(set(BF16_CPU_FLAGS) & cpu_flags()) == native
    model = load_model(tiny_clip, device="cpu")
    assert model.dtype is (torch.bfloat16 if native else torch.float32)
    assert model.runtime["dtype"] == ("bf16" if native else "fp32")
    assert model.runtime["dtype_reason"].startswith("bf16: this CPU computes" if native
                                                    else "fp32: this CPU has no native bf16")
    assert model.meta["runtime"]["backend"] == "torch"


@pytest.mark.parametrize("which", ["tiny_clip", "tiny_siglip"])
def test_bf16_stays_within_the_stated_tolerance_of_fp32(request, which):
    folder = request.getfixturevalue(which)
    fp32 = load_model(folder, device="cpu", dtype="fp32")
    bf16 = load_model(folder, device="cpu", dtype="bf16")
    assert bf16.dtype is torch.bfloat16 and bf16.runtime["dtype"] == "bf16"
    frames = _frames(12)
    image_cosine = (fp32.encode_frames(frames) * bf16.encode_frames(frames)).sum(dim=1)
    text_cosine = (fp32.text_rows(fp32.text_features(PROMPTS))
                   * bf16.text_rows(bf16.text_features(PROMPTS))).sum(dim=1)
    assert image_cosine.min() >= BF16_MIN_COSINE and text_cosine.min() >= BF16_MIN_COSINE
    # the rounding is real: bf16 is not fp32 under another name
    assert image_cosine.min() < 1 - 1e-7


def test_verbose_says_how_the_model_runs(capsys, tiny_clip, video_mp4):
    code = main(["classify", video_mp4, "--labels", "red, blue", "--model", tiny_clip,
                 "--device", "cpu", "--verbose", "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["video"] == video_mp4
    [line] = [x for x in err.splitlines() if x.startswith("videolens: model: ")]
    assert "on cpu; backend torch; dtype " in line
    assert line.endswith("dtype fp32: pinned by $VIDEOLENS_CPU_DTYPE"), line  # conftest pins it


# --- options -------------------------------------------------------------------------------


def test_every_command_that_loads_a_model_takes_the_backend_options():
    parser = build_parser()
    for command in ("classify", "index", "search", "localize", "eval", "serve"):
        args = parser.parse_args([command, *{"classify": ["v.mp4", "-l", "a"],
                                             "index": ["v.mp4"], "search": ["q"],
                                             "localize": ["v.mp4", "run"],
                                             "eval": ["zero-shot"]}.get(command, []),
                                  "--backend", "onnxruntime", "--precision", "int8",
                                  "--verbose"])
        assert (args.backend, args.precision, args.verbose) == ("onnxruntime", "int8", True)


def test_bad_backend_options_are_one_line_usage_errors(capsys, monkeypatch, tiny_clip,
                                                       video_mp4):
    with pytest.raises(UsageError, match="--precision int8 needs --backend openvino or "
                                         "onnxruntime"):
        load_model(tiny_clip, device="cpu", precision="int8")
    with pytest.raises(UsageError, match="unknown backend 'tensorrt'"):
        load_model(tiny_clip, device="cpu", backend="tensorrt")
    code = main(["classify", video_mp4, "-l", "a, b", "--model", tiny_clip, "--precision",
                 "int8"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    # a backend whose package is missing says which extra installs it
    real = backends.importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name: None if name == "openvino" else real(name))
    with pytest.raises(UsageError, match=r"needs the openvino package — "
                                         r"pip install 'videolens\[openvino\]'"):
        try:
            load_model(tiny_clip, device="cpu", backend="openvino")
        except UsageError as err:
            raise UsageError(err.one_line()) from None


# --- backends ------------------------------------------------------------------------------

BACKENDS = ["onnxruntime", "openvino"]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder for this test: exports start from nothing."""
    monkeypatch.setenv("VIDEOLENS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _load(folder: str, backend: str, precision: str = "auto"):
    said: list[str] = []
    with model_options(backend, precision, say=said.append):
        model = load_model(folder, device="cpu")
    return model, said


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which", ["tiny_clip", "tiny_siglip"])
def test_fp32_backend_scores_as_torch_does(request, fresh_cache, backend, which):
    pytest.importorskip(backend)
    folder = request.getfixturevalue(which)
    reference = load_model(folder, device="cpu", dtype="fp32", backend="torch")
    model, said = _load(folder, backend, "fp32")
    assert model.runtime["backend"] == backend and model.runtime["precision"] == "fp32"
    assert model.runner is not None and "fallback" not in model.runtime
    assert len(said) == 1 and said[0].startswith(f"exporting the vision and text towers of "
                                                 f"{folder} to {backend} (once; kept in ")
    frames = _frames(13)  # not a multiple of the batch: the exported batch axis is free
    ours, theirs = model.encode_frames(frames, batch_size=5), reference.encode_frames(frames)
    assert ours.shape == theirs.shape == (13, reference.embed_dim)
    assert (ours - theirs).abs().max() < FP32_MAX_ABS
    # texts of several lengths: CLIP pads to the longest, SigLIP to its context length
    text, text_ref = model.encode_text(PROMPTS), reference.encode_text(PROMPTS)
    assert (text - text_ref).abs().max() < FP32_MAX_ABS
    videos = [model.encode_video(frames[:8])]
    logits = model.logits(videos, text)
    expected = reference.logits([reference.encode_video(frames[:8])], text_ref)
    assert torch.allclose(logits, expected, atol=FP32_MAX_ABS * reference.logit_scale * 4)
    exported = Path(model.runtime["export_folder"])
    assert exported.parent == fresh_cache / "backends"
    assert {p.name for p in exported.glob(f"{backend}-fp32-*/*")} == {"vision", "text"}


_SIGNAL_AFTER_BACKEND = """
import gc, signal, sys, numpy as np
from videolens.models.backends import model_options
from videolens.models.load import load_model
with model_options(sys.argv[2], "auto", say=lambda line: None):
    model = load_model(sys.argv[1], device="cpu")
model.encode_frames(np.zeros((3, 40, 52, 3), np.uint8))
model.encode_text(["a dog."])
del model
gc.collect()
signal.signal(signal.SIGINT, lambda *_: print("handled", flush=True))
signal.raise_signal(signal.SIGINT)  # what Ctrl-C or a server's shutdown signal does
print("still running", flush=True)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_python_signal_handlers_still_run_after_a_backend_ran_and_was_freed(
        fresh_cache, tiny_clip, backend):
    # OpenVINO 2026.4 left a freed alternate signal stack on the thread that ran it: the next
    # Python signal handler (SA_ONSTACK) died of a segfault (rc -11) before the fix
    pytest.importorskip(backend)
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _SIGNAL_AFTER_BACKEND, tiny_clip, backend],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["handled", "still", "running"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_export_is_made_once_and_loaded_from_the_cache(fresh_cache, tiny_clip, backend):
    pytest.importorskip(backend)
    first, said = _load(tiny_clip, backend)
    files = {p: p.stat().st_mtime_ns for p in fresh_cache.rglob("*") if p.is_file()}
    assert said and files
    second, said_again = _load(tiny_clip, backend)
    assert said_again == []  # nothing exported, nothing said
    assert {p: p.stat().st_mtime_ns for p in fresh_cache.rglob("*") if p.is_file()} == files
    frames = _frames(4)
    assert torch.equal(first.encode_frames(frames), second.encode_frames(frames))
    # the export is keyed by the weights: another checkpoint gets a folder of its own
    assert len(list((fresh_cache / "backends").iterdir())) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_calibrates_on_the_first_frames_and_reports_its_agreement(
        monkeypatch, fresh_cache, tiny_clip, backend):
    pytest.importorskip(backend)
    if backend == "openvino":
        pytest.importorskip("nncf")
    from videolens.models.backends import common

    monkeypatch.setattr(common, "CALIBRATION_FRAMES", 8)
    reference = load_model(tiny_clip, device="cpu", dtype="fp32")
    model, said = _load(tiny_clip, backend, "int8")
    assert model.runtime["precision"].startswith("int8 (fp32 until")
    assert [x for x in said if x.startswith(f"int8 text tower on {backend} built in ")]
    frames = _frames(12)
    # the first frames are encoded in fp32 while they are collected for calibration
    early = model.encode_frames(frames[:5])
    assert (early - reference.encode_frames(frames[:5])).abs().max() < FP32_MAX_ABS
    model.encode_frames(frames[5:10])  # 10 >= 8 frames seen: int8 is built from them
    [report] = [x for x in said if x.startswith(f"int8 vision tower on {backend} calibrated "
                                                "on the first 10 frames")]
    agreement = model.runtime["int8_agreement"]
    assert model.runtime["precision"] == "int8" and agreement["frames"] == 10
    assert f"mean {agreement['mean']:.5f}, min {agreement['min']:.5f}" in report
    # the reported numbers are what int8 now gives against torch's fp32, on those frames
    cosine = (model.encode_frames(frames[:10]) * reference.encode_frames(frames[:10])).sum(1)
    assert cosine.mean().item() == pytest.approx(agreement["mean"], abs=1e-4)
    assert cosine.min().item() == pytest.approx(agreement["min"], abs=1e-4)
    assert 0.9 < agreement["min"] <= agreement["mean"] < 1
    # the next run loads the calibrated model and its recorded agreement, building nothing
    again, said_again = _load(tiny_clip, backend, "int8")
    assert said_again == [] and again.runtime["int8_agreement"] == agreement
    assert torch.allclose(again.encode_frames(frames[:10]), model.encode_frames(frames[:10]),
                          atol=1e-6)
    # int8 text features never share a cache entry with the fp32 ones
    from videolens.models.text_cache import _key

    assert _key(again, PROMPTS) != _key(reference, PROMPTS)


def test_xclip_stays_on_torch_and_says_so_in_one_line(fresh_cache, tiny_xclip):
    pytest.importorskip("onnxruntime")
    model, said = _load(tiny_xclip, "onnxruntime")
    assert said == ["--backend onnxruntime: X-CLIP runs on torch only (its video encoder and "
                    "prompt generator are not exported); running on torch instead"]
    assert model.runtime["backend"] == "torch" and "X-CLIP" in model.runtime["fallback"]
    assert not (fresh_cache / "backends").exists()


def test_an_export_that_fails_falls_back_to_torch(monkeypatch, fresh_cache, tiny_clip):
    pytest.importorskip("onnxruntime")
    from videolens.models.backends import onnxruntime as ort_backend

    def refuse(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::fancy' to ONNX opset version 17 "
                           "is not supported.\nPlease open a bug.")

    monkeypatch.setattr(ort_backend, "export", refuse)
    model, said = _load(tiny_clip, "onnxruntime")
    assert said[-1] == (f"--backend onnxruntime: {tiny_clip} cannot be exported: the export "
                        "failed: Exporting the operator 'aten::fancy' to ONNX opset version 17 "
                        "is not supported.; running on torch instead")
    assert model.runner is None and model.runtime["backend"] == "torch"
    reference = load_model(tiny_clip, device="cpu", dtype="fp32")
    assert torch.equal(model.encode_frames(_frames(3)), reference.encode_frames(_frames(3)))
    # nothing half-written is left where a later run would read it
    assert not list((fresh_cache / "backends").rglob("model.onnx"))


def test_index_with_a_backend_and_search_with_torch_share_the_library(
        capsys, fresh_cache, tmp_path, tiny_clip, video_mp4):
    pytest.importorskip("onnxruntime")
    library = tmp_path / "lib"
    code = main(["index", video_mp4, "--library", str(library), "--model", tiny_clip,
                 "--device", "cpu", "--fps", "2", "--backend", "onnxruntime", "--json"])
    assert code == 0
    capsys.readouterr()
    code = main(["index", video_mp4, "--library", str(tmp_path / "torch"), "--model",
                 tiny_clip, "--device", "cpu", "--fps", "2", "--dtype", "fp32", "--json"])
    assert code == 0
    capsys.readouterr()
    with Library.open(library) as store, Library.open(tmp_path / "torch") as torch_store:
        assert store.model["runtime"]["backend"] == "onnxruntime"
        assert torch_store.model["runtime"]["backend"] == "torch"
        [video], [torch_video] = store.videos(), torch_store.videos()
        times, vectors = store.frames(video.id)
        torch_times, torch_vectors = torch_store.frames(torch_video.id)
    assert list(times) == list(torch_times) and len(times) == 6
    # float16 storage: the library's own rounding dominates the backend's
    difference = np.asarray(vectors, np.float32) - np.asarray(torch_vectors, np.float32)
    assert np.abs(difference).max() < 2e-3
    code = main(["search", "a red square", "--library", str(library), "--json", "--top", "1"])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out.splitlines()[0])["video"] == video_mp4
