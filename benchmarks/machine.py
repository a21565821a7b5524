"""What every benchmark JSON records about the machine it ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_info(**versions: object) -> dict:
    """Platform, CPU model, cores, memory and the given library versions (plus Python's)."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "memory_bytes": memory,
            "versions": {"python": platform.python_version(), **versions}}
