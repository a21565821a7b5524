"""Times for people: seconds as a clock reading, one rule for the CLI and the web pages."""

from __future__ import annotations

import math


def clock(seconds: float) -> str:
    """``seconds`` as ``M:SS.s`` (``H:MM:SS.s`` from one hour), to the tenth of a second.

    Rounded to tenths *before* splitting into minutes, so 599.97 s reads ``10:00.0`` (not
    ``9:60.0``). Negative times read as 0; a time that is not finite reads ``?``.
    """
    if not math.isfinite(seconds):
        return "?"
    # round(x, 1) rounds the float's exact decimal value, as f"{x:.1f}" does
    tenths = round(round(max(0.0, seconds), 1) * 10)
    minutes, tenths = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    rest = f"{tenths // 10:02d}.{tenths % 10}"
    return f"{hours}:{minutes:02d}:{rest}" if hours else f"{minutes}:{rest}"
