"""Decoding workers and the caller: scripts without a __main__ guard and heredocs work, and
workers never outlive the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parent.parent / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

UNGUARDED = """
import videolens
results = videolens.classify({video!r}, "red, green", model={model!r}, device="cpu")
print("RESULT", results[0].ok, results[0].error)
"""


def _check(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0, run.stderr[-2000:]
    assert "RESULT True None" in run.stdout, run.stdout + run.stderr[-2000:]
    assert "damaged" not in run.stderr and "Traceback" not in run.stderr


def test_unguarded_script_classifies(tmp_path, video_mp4, tiny_clip):
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED.format(video=video_mp4, model=tiny_clip))
    _check(subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=ENV, cwd=tmp_path, timeout=240))


def test_heredoc_classifies(tmp_path, video_mp4, tiny_clip):
    code = UNGUARDED.format(video=video_mp4, model=tiny_clip)
    _check(subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True,
                          env=ENV, cwd=tmp_path, timeout=240))


HANGING_LOADER = """
import os, time
def hang(path, sampling):
    with open(os.environ["PID_FILE"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)
"""

PARENT = """
import sys
sys.path.insert(0, {folder!r})
from hanging import hang
from videolens.io import FrameReader, Sampling
with FrameReader(Sampling(num_frames=2), loader=hang, timeout=600) as reader:
    list(reader.map([{video!r}]))
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_parent(tmp_path, video_mp4):
    (tmp_path / "hanging.py").write_text(HANGING_LOADER)
    pid_file = tmp_path / "worker.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT.format(folder=str(tmp_path), video=video_mp4)],
        env={**ENV, "PID_FILE": str(pid_file)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        server = int(Path(f"/proc/{worker}/stat").read_text().split(") ")[1].split()[1])
        assert _alive(worker) and _alive(server)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while (_alive(worker) or _alive(server)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the decode worker outlived its killed parent"
        assert not _alive(server), "the forkserver outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    code = textwrap.dedent("""
        import sys, time
        import videolens.cli as cli
        def slow(args):
            print("started", flush=True)
            time.sleep(60)
            return 0
        cli.commands.run_models = slow
        sys.exit(cli.main(["models"]))
    """)
    child = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "started"
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=20)
    assert child.returncode == 130
    assert "interrupted" in stderr and "Traceback" not in stderr


# ------------------------------------------------------------------ odd files and empty inputs


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "videolens", *args], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=240)


def test_symlink_loop_fifo_and_broken_link_are_one_line_each(tmp_path, video_mp4, tiny_clip):
    import shutil

    folder = tmp_path / "videos"
    folder.mkdir()
    good = folder / "good.mp4"
    shutil.copy(video_mp4, good)
    loop = tmp_path / "loop.mp4"
    loop.symlink_to(loop)
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    broken = tmp_path / "broken.mp4"
    broken.symlink_to(tmp_path / "gone.mp4")
    started = time.monotonic()
    run = _cli("index", str(loop), str(fifo), str(broken), str(folder), "--library",
               str(tmp_path / "lib"), "--model", tiny_clip, "--device", "cpu", cwd=tmp_path)
    assert time.monotonic() - started < 120  # the FIFO must not wait for the decode timeout
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert any(str(loop) in line and "symlink loop" in line for line in lines)
    assert any(str(fifo) in line and "not a regular file (a named pipe" in line for line in lines)
    assert any(str(broken) in line and "broken symlink" in line for line in lines)
    assert "indexed 1 video" in run.stderr  # the good file still made it
    run = _cli("localize", str(loop), "red", "--library", str(tmp_path / "none"),
               "--model", tiny_clip, "--device", "cpu", cwd=tmp_path)
    assert run.returncode == 1 and "symlink loop" in run.stderr
    assert "Traceback" not in run.stderr


def test_nothing_found_is_a_failure(tmp_path, tiny_clip):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "x.mp4").mkdir()  # a folder named like a video
    for args in (["classify", str(empty), "--labels", "a, b"],
                 ["classify", str(tmp_path / "x.mp4"), "--labels", "a, b"],
                 ["index", str(empty), "--library", str(tmp_path / "lib")]):
        run = _cli(*args, "--model", tiny_clip, cwd=tmp_path)
        assert run.returncode == 1, (args, run.stderr)
        assert "no video files found in" in run.stderr
        assert run.stdout == ""


PRELOAD = """
import multiprocessing, sys
from concurrent.futures import ProcessPoolExecutor
from videolens.io.isolate import preload_workers
if {preload}:
    assert preload_workers(["videolens.pipelines.index"])
assert "videolens.pipelines.index" not in sys.modules  # imported in the server, not here
with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver")) as pool:
    # eval is pickled by name: asking the worker imports nothing it did not have at birth
    print("BORN WITH", pool.submit(eval, "sorted({{'torch', 'videolens.pipelines.index'}}"
                                   " & set(__import__('sys').modules))").result())
"""


@pytest.mark.skipif("forkserver" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="no forkserver on this platform")
@pytest.mark.parametrize("preload", [True, False])
def test_preloaded_workers_are_born_with_torch_and_the_loaders(preload):
    """Every index run starts a decode pool; without the preload each new worker imported
    torch and the loaders itself (1.2 s here) before the encoder got its first frames."""
    run = subprocess.run([sys.executable, "-c", PRELOAD.format(preload=preload)],
                         capture_output=True, text=True, env=ENV, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    expected = "['torch', 'videolens.pipelines.index']" if preload else "[]"
    assert f"BORN WITH {expected}" in run.stdout, run.stdout + run.stderr[-2000:]
