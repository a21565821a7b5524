"""Loaders for tests/test_ray_engine.py that Ray's decoder processes import by name.

Kept apart from the test module so that a decoder process imports only ``videolens.io`` (the
test module would pull in torch and pytest, seconds of imports inside a decode timeout).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from videolens.io import Sampling, load_at_rate, load_video


def gated_load_at_rate(path: str, sampling: Sampling, **options):
    """:func:`load_at_rate`, except that ``zz_gate.mp4`` waits (at most 60 s) until its
    ``.go`` file exists: a test holds a Ray decode task in flight until it has killed the
    worker running it."""
    if path.endswith("zz_gate.mp4"):
        go = Path(path).with_suffix(".go")
        deadline = time.monotonic() + 60
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return load_at_rate(path, sampling, **options)


def faulty_load(path: str, sampling: Sampling):
    """Crash the decoder process on ``crash*`` files, hang it on ``hang*`` files."""
    if Path(path).name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if Path(path).name.startswith("hang"):
        time.sleep(3600)
    return load_video(path, sampling)
