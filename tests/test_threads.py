"""Thread pools sized to the CPUs the process may use: affinity, cgroup v1/v2 quotas (on fake
cgroup trees), the environment overrides, and the count really applied to torch and FAISS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from videolens.errors import UsageError
from videolens.io import threads

SRC = str(Path(__file__).resolve().parent.parent / "src")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def fresh(monkeypatch):
    """No configuration yet in this process, no thread variables; torch restored after."""
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_configured", None)
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def test_cgroup_v2_takes_the_tightest_quota_up_the_tree(tmp_path):
    root, proc = tmp_path / "cg", tmp_path / "cgroup"
    write(proc, "0::/user.slice/app\n")
    write(root / "user.slice" / "cpu.max", "150000 100000\n")  # 1.5 CPUs
    write(root / "user.slice" / "app" / "cpu.max", "max 100000\n")  # no own limit
    assert threads.cgroup_cpu_quota(root, proc) == pytest.approx(1.5)
    write(root / "user.slice" / "app" / "cpu.max", "50000 100000\n")  # tighter below
    assert threads.cgroup_cpu_quota(root, proc) == pytest.approx(0.5)


def test_cgroup_v2_container_sees_its_own_root(tmp_path):
    root, proc = tmp_path / "cg", tmp_path / "cgroup"
    write(proc, "0::/\n")
    write(root / "cpu.max", "400000 100000\n")
    assert threads.cgroup_cpu_quota(root, proc) == pytest.approx(4.0)
    write(root / "cpu.max", "max 100000\n")
    assert threads.cgroup_cpu_quota(root, proc) is None


def test_cgroup_v1_quota_and_unlimited(tmp_path):
    root, proc = tmp_path / "cg", tmp_path / "cgroup"
    write(proc, "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    folder = root / "cpu,cpuacct" / "docker" / "abc"
    write(folder / "cpu.cfs_quota_us", "300000\n")
    write(folder / "cpu.cfs_period_us", "100000\n")
    assert threads.cgroup_cpu_quota(root, proc) == pytest.approx(3.0)
    write(folder / "cpu.cfs_quota_us", "-1\n")
    assert threads.cgroup_cpu_quota(root, proc) is None


def test_cgroup_v1_inside_a_container_reads_the_mount_root(tmp_path):
    # the host path in /proc/self/cgroup does not exist in the container's mount
    root, proc = tmp_path / "cg", tmp_path / "cgroup"
    write(proc, "3:cpu,cpuacct:/kubepods/pod1/c2\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "200000")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000")
    assert threads.cgroup_cpu_quota(root, proc) == pytest.approx(2.0)


def test_no_cgroup_or_nonsense_is_no_limit(tmp_path):
    assert threads.cgroup_cpu_quota(tmp_path / "none", tmp_path / "missing") is None
    write(tmp_path / "cgroup", "garbage\n0::/x\n")
    write(tmp_path / "cg" / "x" / "cpu.max", "lots 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path / "cg", tmp_path / "cgroup") is None


def test_available_cpus_is_affinity_capped_by_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5},
                        raising=False)
    root, proc = tmp_path / "cg", tmp_path / "cgroup"
    write(proc, "0::/\n")
    assert threads.available_cpus(root, proc) == 6  # no cpu.max: the affinity mask
    write(root / "cpu.max", "250000 100000")
    assert threads.available_cpus(root, proc) == 2  # 2.5 CPUs -> 2 threads
    write(root / "cpu.max", "20000 100000")
    assert threads.available_cpus(root, proc) == 1  # never 0
    write(root / "cpu.max", "1600000 100000")
    assert threads.available_cpus(root, proc) == 6  # a quota above the mask


def test_threads_for_batch_and_serve():
    assert threads.threads_for("batch", cpus=8) == 8
    assert threads.threads_for("serve", cpus=8) == threads.SERVE_THREADS == 1
    assert threads.threads_for("serve", cpus=1) == 1


def test_configure_applies_to_torch_and_faiss_once(fresh, monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda *a, **k: 1)
    assert threads.configure_threads() == 1
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    assert threads.configure_threads("serve") == 1  # the first call decided: no change
    assert torch.get_num_threads() == 2
    assert threads.configure_threads(threads=2) == 2  # an explicit count always applies
    assert torch.get_num_threads() == 2
    faiss = pytest.importorskip("faiss")
    threads.configure_threads(threads=1)
    assert faiss.omp_get_max_threads() == 1
    assert threads.os.environ["OMP_NUM_THREADS"] == "1"


def test_batch_never_raises_torch_above_its_own_setting(fresh, monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda *a, **k: 64)
    torch.set_num_threads(1)  # a caller's own choice
    assert threads.configure_threads() == 1
    assert torch.get_num_threads() == 1


def test_environment_overrides(fresh, monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda *a, **k: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.requested_threads() == 1
    monkeypatch.setenv(threads.ENV, "2")
    assert threads.requested_threads() == 2  # ours before OpenMP's
    assert threads.configure_threads("serve") == 2
    assert torch.get_num_threads() == 2
    monkeypatch.setenv(threads.ENV, "auto")
    assert threads.requested_threads() is None
    for bad, message in (("many", "whole number"), ("0", "at least 1")):
        monkeypatch.setenv(threads.ENV, bad)
        with pytest.raises(UsageError, match=message):
            threads.requested_threads()


def test_get_model_sizes_threads(fresh, monkeypatch, tiny_clip):
    from videolens.models import load_model
    from videolens.pipelines.common import get_model

    model = load_model(tiny_clip, device="cpu")
    torch.set_num_threads(2)
    monkeypatch.setenv(threads.ENV, "1")
    assert get_model(model) is model
    assert torch.get_num_threads() == 1


def test_serve_refuses_zero_threads(tmp_path):
    run = subprocess.run([sys.executable, "-m", "videolens", "serve", "--library",
                          str(tmp_path), "--threads", "0"], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == "videolens: error: --threads must be at least 1, got 0"


_SPIN = """
import os, sys
{before}
import videolens
print("SPIN", os.environ.get("GOMP_SPINCOUNT"))
"""


@pytest.mark.parametrize(("before", "env", "expected"), [
    ("", {}, "10000"),                                    # the default videolens sets
    ("", {"GOMP_SPINCOUNT": "500"}, "500"),               # a user's value is kept
    ("", {"OMP_WAIT_POLICY": "ACTIVE"}, "None"),          # so is a wait policy of theirs
    ("import torch", {}, "None"),                         # too late: libgomp has read it
])
def test_import_sets_openmp_spin_count_only_before_torch_and_never_over_the_user(
        before, env, expected):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    run = subprocess.run([sys.executable, "-c", _SPIN.format(before=before)],
                         capture_output=True, text=True, timeout=120,
                         env={**clean, **env, "PYTHONPATH": SRC})
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"SPIN {expected}" in run.stdout
