"""How many threads torch and FAISS may use: the CPUs this process may really run on.

``os.cpu_count()`` counts the machine's CPUs, not this process's: a container limited to 2
CPUs on a 64-core host (a cgroup ``cpu.max`` quota) or a process pinned with ``taskset``
would otherwise start dozens of OpenMP threads that wait on each other at every barrier.
:func:`available_cpus` takes the smallest of the affinity mask and the cgroup quota (v2
``cpu.max`` of the process's cgroup and its ancestors, or v1 ``cpu.cfs_quota_us``).

:func:`configure_threads` applies a count once per process, at the start of each command
and of the Python API calls that load a model (``pipelines.common.get_model``). Override
with the ``VIDEOLENS_THREADS`` environment variable (an integer, or ``auto``); a user's own
``OMP_NUM_THREADS`` is respected the same way. ``videolens serve`` uses
:data:`SERVE_THREADS` (see :func:`threads_for`), measured by ``benchmarks/bench_threads.py``.

This sits in ``io`` (which every layer that runs work may import); it imports torch and
FAISS lazily: ``import videolens.io`` stays free of both.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Literal

from ..errors import UsageError

ENV = "VIDEOLENS_THREADS"
Purpose = Literal["batch", "serve"]

# Threads for `videolens serve`. Measured by benchmarks/bench_threads.py
# (results/threads.json, 2 CPUs shared with other jobs): one query's text encode (ViT-B/32
# text tower) at 2 threads had p50 889 ms, and 3210 ms with one busy-loop process beside it;
# at 1 thread 128 ms and 245 ms (OpenMP threads wait at every barrier for the one the
# scheduler took away). A server shares its machine, so it takes the setting that stays fast.
SERVE_THREADS = 1

_configured: int | None = None


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (``taskset``, cpusets), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _v2_quota(root: Path, relative: str) -> float | None:
    """The tightest ``cpu.max`` quota (in CPUs) on the way from ``relative`` up to ``root``."""
    tightest = None
    folder = (root / relative.lstrip("/")).resolve()
    root = root.resolve()
    while True:
        text = _read(folder / "cpu.max")
        if text:
            parts = text.split()
            if len(parts) == 2 and parts[0] != "max":
                try:
                    quota, period = int(parts[0]), int(parts[1])
                except ValueError:
                    quota, period = 0, 0
                if quota > 0 and period > 0:
                    cpus = quota / period
                    tightest = cpus if tightest is None else min(tightest, cpus)
        if folder == root or root not in folder.parents:
            return tightest
        folder = folder.parent


def _v1_quota(root: Path, controllers: str, relative: str) -> float | None:
    """``cpu.cfs_quota_us / cpu.cfs_period_us`` of a v1 cpu controller (the process's own
    cgroup folder, or the mount's root when a container mounts its cgroup there)."""
    for mount in (controllers, "cpu,cpuacct", "cpu"):
        base = root / mount
        for folder in (base / relative.lstrip("/"), base):
            quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
            if quota is None or period is None:
                continue
            try:
                q, p = int(quota), int(period)
            except ValueError:
                return None
            return q / p if q > 0 and p > 0 else None
    return None


def cgroup_cpu_quota(root: str | os.PathLike = "/sys/fs/cgroup",
                     proc_cgroup: str | os.PathLike = "/proc/self/cgroup") -> float | None:
    """CPUs this process's cgroup may use (``quota / period``, e.g. 1.5), or ``None`` when
    there is no limit or no cgroup to read."""
    text = _read(Path(proc_cgroup))
    if not text:
        return None
    root = Path(root)
    limits = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, relative = parts
        if controllers == "":  # cgroup v2: one unified hierarchy
            limit = _v2_quota(root, relative)
        elif "cpu" in controllers.split(","):
            limit = _v1_quota(root, controllers, relative)
        else:
            continue
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def available_cpus(root: str | os.PathLike = "/sys/fs/cgroup",
                   proc_cgroup: str | os.PathLike = "/proc/self/cgroup") -> int:
    """Whole CPUs this process may keep busy: the affinity mask, capped by the cgroup quota
    rounded down (a 1.5-CPU quota gives 1 thread: a second would be throttled half the
    time, and each barrier waits for it), at least 1."""
    cpus = affinity_cpus()
    quota = cgroup_cpu_quota(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota + 1e-9)))
    return max(1, cpus)


def _env_count(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value or value.lower() == "auto":
        return None
    try:
        count = int(value)
    except ValueError:
        raise UsageError(f"{name} must be a whole number of threads or 'auto', got "
                         f"{value!r}") from None
    if count < 1:
        raise UsageError(f"{name} must be at least 1, got {count}")
    return count


def threads_for(purpose: Purpose = "batch", cpus: int | None = None) -> int:
    """The automatic thread count for ``purpose`` on ``cpus`` (default: this process's,
    :func:`available_cpus`): all of them for batch work (index, classify, eval: long matrix
    products that keep every thread busy), at most :data:`SERVE_THREADS` for a server
    (small requests on a machine it shares)."""
    cpus = available_cpus() if cpus is None else cpus
    return min(cpus, SERVE_THREADS) if purpose == "serve" else cpus


def requested_threads() -> int | None:
    """The count the user asked for: ``VIDEOLENS_THREADS``, else ``OMP_NUM_THREADS``;
    ``None`` when neither is set (or ``VIDEOLENS_THREADS=auto``)."""
    if os.environ.get(ENV, "").strip().lower() == "auto":
        return None
    for name in (ENV, "OMP_NUM_THREADS"):
        count = _env_count(name)
        if count is not None:
            return count
    return None


def configure_threads(purpose: Purpose = "batch", threads: int | None = None) -> int:
    """Size torch's and FAISS's thread pools for ``purpose`` and return the count.

    ``threads`` (an option such as ``serve --threads``) wins, then
    :func:`requested_threads`, then :func:`threads_for` — which for batch work only ever
    lowers torch's own default (its choice of physical cores, or what the caller set with
    ``torch.set_num_threads``), never raises it. The first call in a process decides; later
    calls return that count unless ``threads`` is given, so a server's setting is not undone
    by the pipeline calls it makes. FAISS bundles its own OpenMP runtime, which reads
    ``OMP_NUM_THREADS`` when FAISS is first imported: that variable is set for it (unless
    the user set it), and ``faiss.omp_set_num_threads`` is called if it is already loaded.
    """
    global _configured
    if threads is None and _configured is not None:
        return _configured
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    count = threads if threads is not None else requested_threads()
    if count is None:
        count = threads_for(purpose)
        if torch is not None:
            count = min(count, torch.get_num_threads())
    if count < 1:
        raise UsageError(f"threads must be at least 1, got {count}")
    if threads is not None or "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(count)
    if torch is not None and torch.get_num_threads() != count:
        torch.set_num_threads(count)
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(count)
    _configured = count
    return count
