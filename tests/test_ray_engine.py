"""``--engine ray`` against the local engine, on one local Ray runtime (2 CPUs) per module.

Each Ray run starts its own decode and encode actors (several seconds of torch imports on
two cores), so the file makes few runs and checks several things on each: the library,
the eval cache and classify's answers equal the local engine's; a Ray worker killed in the
middle of a run is replaced and the run completes; broken, crashing and hanging files are
reported and the rest go on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from media import make_truncated, make_video, make_video_with_segments  # noqa: E402
from ray_loaders import faulty_load, gated_load_at_rate  # noqa: E402

import videolens.pipelines.index as index_module  # noqa: E402
from videolens.cli import main  # noqa: E402
from videolens.errors import UsageError, VideoDecodeError  # noqa: E402
from videolens.io import Sampling, load_video  # noqa: E402
from videolens.library import Library  # noqa: E402
from videolens.models import load_model  # noqa: E402
from videolens.pipelines.evaluate import evaluate  # noqa: E402
from videolens.pipelines.index import index  # noqa: E402
from videolens.pipelines.ray_engine import (  # noqa: E402
    RayEngine,
    RayReader,
    plan_resources,
)

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


@pytest.fixture(scope="module")
def ray_runtime():
    """A local Ray runtime with 2 CPUs. Its workers get tests/ on their path: the loaders of
    ray_loaders.py that crash, hang or wait are imported by name in the decoder processes."""
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """Four lossless clips (2-3.5 s, 10 fps, solid colours in known ranges), a truncated MP4
    that cannot be decoded, and ``zz_gate.mp4``, whose decoding waits for ``zz_gate.go``."""
    folder = tmp_path_factory.mktemp("ray-videos")
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    for i, colour in enumerate(colours):
        make_video_with_segments(folder / f"clip{i}.mp4", [(0.5, 1.5, colour)],
                                 duration=2.0 + 0.5 * i, fps=10)
    make_video_with_segments(folder / "zz_gate.mp4", [(1.0, 2.0, (255, 0, 255))],
                             duration=3.0, fps=10)
    whole = make_video(tmp_path_factory.mktemp("src") / "whole.mp4", num_frames=30, fps=10,
                       codec="h264")
    make_truncated(whole, folder / "broken.mp4", 0.5)
    return folder


def ray_processes(tag: bytes) -> list[int]:
    """Pids of Ray worker processes whose title contains ``tag`` (Ray titles them
    ``ray::MapWorker(MapBatches(<UDF>))``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                title = handle.read()
        except OSError:
            continue
        if title.startswith(b"ray::") and tag in title:
            found.append(int(entry))
    return found


def library_content(root: Path) -> dict[str, tuple]:
    """path -> (timestamps, float32 vectors, duration, frame count) of every stored video."""
    with Library.open(root) as store:
        content = {}
        for record in store.videos():
            timestamps, vectors = store.frames(record.id)
            content[record.path] = (timestamps, vectors.astype(np.float32), record.duration,
                                    record.num_frames)
        failures = {path: reason for path, (reason, *_stat) in store.failures().items()}
    return content, failures


# --- tests ---------------------------------------------------------------------------------


def test_index_on_ray_equals_local_though_a_worker_is_killed(
        ray_runtime, collection, tiny_clip, tmp_path, monkeypatch):
    local = index([collection], library=tmp_path / "local", model=tiny_clip, fps=2,
                  device="cpu")
    broken = str(collection / "broken.mp4")
    assert list(local.failed) == [broken] and len(local.indexed) == 5

    monkeypatch.setattr(index_module, "load_at_rate", gated_load_at_rate)
    killed: list[int] = []

    def kill_the_decoder_once(kind: str, path: str, detail: str) -> None:
        # the first video is committed; zz_gate.mp4's decode task is queued or running on
        # the one decode actor and cannot finish before the gate opens: kill that actor
        if kind == "indexed" and not killed:
            killed.extend(ray_processes(b"MapBatches(_Decode)"))
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            (collection / "zz_gate.go").touch()

    try:
        summary = index([collection], library=tmp_path / "ray", model=tiny_clip, fps=2,
                        device="cpu", engine="ray", on_event=kill_the_decoder_once)
    finally:
        (collection / "zz_gate.go").unlink(missing_ok=True)
    assert len(killed) == 1  # one decode actor, killed while its work was in flight
    assert not os.path.exists(f"/proc/{killed[0]}")

    # the same summary as the local run: every good video indexed, the broken one failed
    # with the same reason (exit code 1 for both)
    assert sorted(summary.indexed) == sorted(local.indexed)
    assert summary.failed == local.failed
    assert summary.frames == local.frames == 4 + 5 + 6 + 7 + 6  # 2 frames/s of 2-3.5 s, 3 s
    ray_content, ray_failures = library_content(tmp_path / "ray")
    local_content, local_failures = library_content(tmp_path / "local")
    assert ray_failures == local_failures == {broken: local.failed[broken]}
    assert sorted(ray_content) == sorted(local_content)
    for path, (timestamps, vectors, duration, count) in local_content.items():
        ray_timestamps, ray_vectors, ray_duration, ray_count = ray_content[path]
        assert ray_timestamps.tolist() == timestamps.tolist()
        assert (ray_duration, ray_count) == (duration, count)
        # both were computed in float32 and stored as float16
        np.testing.assert_allclose(ray_vectors, vectors, atol=2e-3)

    # incremental as locally: nothing changed, so nothing is sent to Ray
    again = index([collection], library=tmp_path / "ray", engine="ray")
    assert again.indexed == [] and len(again.unchanged) == 5 and list(again.failed) == [broken]


def test_eval_on_ray_gives_the_same_metrics_and_fills_the_same_cache(
        ray_runtime, collection, tiny_clip, tmp_path, monkeypatch):
    # a generic list: the four distinct clips under colour labels, and the broken file
    labels = ["red", "green", "blue", "yellow"]
    listed = [f"{collection / f'clip{i}.mp4'},{label}" for i, label in enumerate(labels)]
    listed.append(f"{collection / 'broken.mp4'},red")
    (tmp_path / "test.txt").write_text("\n".join(listed) + "\n")
    model = load_model(tiny_clip, "cpu")
    caches, results = {}, {}
    for engine in ("local", "ray"):
        caches[engine] = tmp_path / f"cache-{engine}"
        monkeypatch.setenv("VIDEOLENS_CACHE_DIR", str(caches[engine]))
        results[engine] = evaluate("zero-shot", "generic", collection, model=model,
                                   split=str(tmp_path / "test.txt"), frames=4, engine=engine)
    local, on_ray = results["local"], results["ray"]
    assert on_ray.num_videos == local.num_videos == 4
    assert on_ray.failures == local.failures and list(local.failures) == [
        str(collection / "broken.mp4")]
    assert on_ray.metrics.keys() == local.metrics.keys() and "top1" in local.metrics
    for name, value in local.metrics.items():
        assert on_ray.metrics[name] == pytest.approx(value, abs=1e-6), name
    np.testing.assert_array_equal(on_ray.confusion, local.confusion)

    [local_file] = (caches["local"] / "videos").glob("*.sqlite")
    [ray_file] = (caches["ray"] / "videos").glob("*.sqlite")
    assert ray_file.name == local_file.name  # same model fingerprint and sampling

    def rows(path):
        with sqlite3.connect(path) as db:
            return {p: (np.frombuffer(e, np.float32), json.loads(t)) for p, e, t in
                    db.execute("SELECT path, embedding, timestamps FROM embeddings")}

    local_rows, ray_rows = rows(local_file), rows(ray_file)
    assert sorted(local_rows) == sorted(ray_rows) == sorted(
        str(collection / f"clip{i}.mp4") for i in range(4))
    for path, (embedding, timestamps) in local_rows.items():
        assert ray_rows[path][1] == timestamps
        np.testing.assert_allclose(ray_rows[path][0], embedding, atol=1e-5)


def test_classify_cli_on_ray_matches_local_and_reports_the_broken_file(
        ray_runtime, collection, tiny_clip, capsys):
    videos = [str(collection / "clip0.mp4"), str(collection / "broken.mp4"),
              str(collection / "clip3.mp4"), str(collection / "clip1.mp4")]
    lines = {}
    for engine in ("local", "ray"):
        code = main(["classify", *videos, "--labels", "red, green, blue, yellow",
                     "--model", tiny_clip, "--device", "cpu", "--frames", "4", "--top", "0",
                     "--json", "--engine", engine])
        out, err = capsys.readouterr()
        assert code == 1, err  # one input failed: exit 1 on either engine
        assert f"error: {videos[1]}" in err
        lines[engine] = [json.loads(line) for line in out.splitlines()]
    local, on_ray = lines["local"], lines["ray"]
    assert [r["video"] for r in on_ray] == [r["video"] for r in local] == videos  # input order
    assert on_ray[1] == local[1] and "error" in local[1]
    for ours, theirs in zip(on_ray, local, strict=True):
        if "error" in theirs:
            continue
        assert ours["timestamps"] == theirs["timestamps"]
        assert [s["label"] for s in ours["scores"]] == [s["label"] for s in theirs["scores"]]
        np.testing.assert_allclose([s["score"] for s in ours["scores"]],
                                   [s["score"] for s in theirs["scores"]], atol=1e-5)


def test_a_crashing_or_hanging_decoder_costs_its_file_only(ray_runtime, collection, tmp_path,
                                                          tiny_clip):
    good = str(collection / "clip2.mp4")
    crash, hang = tmp_path / "crash.mp4", tmp_path / "hang.mp4"
    for name in (crash, hang):
        name.write_bytes(Path(good).read_bytes())
    model = load_model(tiny_clip, "cpu")
    engine = RayEngine(decode_timeout=6.0)
    sampling = Sampling(kind="uniform", num_frames=4)
    with RayReader(engine, sampling, model, output="video", loader=faulty_load,
                   ordered=True) as reader:
        results = list(reader.map([str(crash), good, str(hang)]))
    assert [path for path, *_ in results] == [str(crash), good, str(hang)]
    (_, crashed, none1), (_, (info, frames), embedding), (_, hung, none2) = results
    assert isinstance(crashed, VideoDecodeError) and "crashed" in crashed.message
    assert "SIGSEGV" in crashed.message
    assert isinstance(hung, VideoDecodeError) and "longer than 6 s" in hung.message
    assert none1 is None and none2 is None
    # the good file: timestamps back, pixels left on the worker, the model's own embedding
    decoded = load_video(good, sampling)[1]
    local = model.encode_video(decoded.frames)
    # segment centres 0.375, 1.125, 1.875, 2.625 s of 3 s at 10 fps -> the frames shown then
    assert frames.timestamps == pytest.approx([0.3, 1.1, 1.8, 2.6])
    assert frames.timestamps.tolist() == decoded.timestamps.tolist()
    assert frames.frames.shape == (0, *decoded.frames.shape[1:])
    np.testing.assert_allclose(embedding.embedding.numpy(), local.embedding.numpy(),
                               atol=1e-5)


def test_resource_plan():
    # GPUs: one actor per GPU (or per fraction of one), every other CPU decodes
    gpus = plan_resources([16, 16], 4, None)
    assert (gpus.encoders, gpus.encoder_gpus, gpus.encoder_cpus, gpus.decoders) == (4, 1, 1, 28)
    assert gpus.encoder_threads is None and gpus.frames_per_batch == 256
    quarter = plan_resources([16, 16], 4, 0.25)
    assert (quarter.encoders, quarter.encoder_gpus, quarter.decoders) == (16, 0.25, 16)
    # CPUs only: one encoder per node on all but an eighth of its cores, the rest decode
    cpus = plan_resources([32, 32, 32], 0, None)
    assert (cpus.encoders, cpus.encoder_cpus, cpus.encoder_threads, cpus.decoders) == (3, 28,
                                                                                      32, 12)
    here = plan_resources([2], 0, None)  # this machine: as the local engine, 1 decoder
    assert (here.encoders, here.encoder_cpus, here.encoder_threads, here.decoders) == (1, 1,
                                                                                      2, 1)
    assert plan_resources([2], 0, None, cpu_threads=1).encoder_threads == 1
    # too few CPUs for 1 each: shared out, so that every actor can be scheduled
    small = plan_resources([1], 0, None)
    assert small.decoder_cpus + small.encoder_cpus == 1
    tight = plan_resources([2], 4, 1)
    assert (tight.encoders, tight.decoders) == (4, 1)
    assert tight.decoder_cpus + 4 * tight.encoder_cpus == pytest.approx(2)
    with pytest.raises(UsageError, match="--ray-gpus-per-actor 1 but the Ray cluster has 0"):
        plan_resources([8], 0, 1)


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)


def test_the_local_path_never_imports_ray(collection, tiny_clip):
    done = _run_python(f"""
import sys
import videolens.cli
from videolens.pipelines.classify import classify
assert "ray" not in sys.modules, "import videolens.cli loaded ray"
[result] = classify([{str(collection / 'clip0.mp4')!r}], "red, blue", model={tiny_clip!r},
                    device="cpu", frames=2)
assert result.ok, result.error
assert not [m for m in sys.modules if m == "ray" or m.startswith("ray.")], "classify loaded ray"
print("ok")
""")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_engine_ray_without_ray_installed_is_one_line_exit_2(collection, tiny_clip, tmp_path):
    done = _run_python(f"""
import sys
sys.modules["ray"] = None  # what `import ray` meets where Ray is not installed
from videolens.cli import main
sys.exit(main(["classify", {str(collection / 'clip0.mp4')!r}, "--labels", "a, b",
               "--model", {tiny_clip!r}, "--engine", "ray"]))
""")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "videolens: error: --engine ray needs Ray Data, which is not installed — "
        "pip install \"videolens[ray]\" (or: pip install 'ray[data]')"]
    wrong = _run_python(f"""
import sys
from videolens.cli import main
sys.exit(main(["index", {str(collection / 'clip0.mp4')!r}, "--model", {tiny_clip!r},
               "--library", {str(tmp_path / 'lib')!r}, "--ray-address", "auto"]))
""")
    assert wrong.returncode == 2
    assert "--ray-address and --ray-gpus-per-actor need --engine ray" in wrong.stderr


def test_an_actor_that_cannot_load_the_model_sends_the_error_not_a_death(
        ray_runtime, collection, tiny_clip, tmp_path):
    # the encode actor's class, run here: a failed model load must reach the driver as one
    # typed error (raised by RayReader.map), not as an actor death that Ray retries
    import pickle

    from videolens.errors import ModelLoadError
    from videolens.pipelines.ray_engine import _Decode, _Encode, _payload_table, _probe_frame

    model = load_model(tiny_clip, "cpu")
    probe = model.encode_frames(_probe_frame()).numpy()[0]
    decoder = _Decode(Sampling(kind="uniform", num_frames=2), load_video, 60.0)
    decoded = decoder(_payload_table([0], [str(collection / "clip0.mp4")], [b""]))
    decoder.reader.close()
    cases = {"missing": (str(tmp_path / "no-such-model"), probe, "model folder not found"),
             "other weights": (tiny_clip, -probe, "other weights")}
    for folder, vector, words in cases.values():
        encoder = _Encode(folder, "auto", "video", 32, 1, vector)
        [payload] = encoder(decoded).column("payload").to_pylist()
        loaded, encoded = pickle.loads(payload)
        assert loaded[1].frames.shape[0] == 0  # pixels stay on the worker
        assert isinstance(encoded, ModelLoadError) and words in encoded.one_line()
    good = _Encode(tiny_clip, "auto", "video", 32, 1, probe)
    [payload] = good(decoded).column("payload").to_pylist()
    _, embedding = pickle.loads(payload)
    local = model.encode_video(load_video(str(collection / "clip0.mp4"),
                                          Sampling(kind="uniform", num_frames=2))[1].frames)
    np.testing.assert_allclose(embedding.embedding.numpy(), local.embedding.numpy(), atol=1e-5)
