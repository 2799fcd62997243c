"""What the interleaved speed benchmarks record per path: the least disturbed round, every round, and the output's
difference from the fp32 reference (model output and 8-bit pixels)."""
from __future__ import annotations

import numpy as np


def record(summary: dict, name: str, walls: list[float], diff: np.ndarray, pixel_diff: np.ndarray,
           digits: int = 5) -> float:
    """Add ``name``'s figures to the JSON ``summary`` and return its seconds (the fastest round)."""
    seconds = min(walls)
    summary[f"{name}_s"] = round(seconds, digits)
    summary[f"{name}_rounds_s"] = [round(w, digits) for w in walls]
    if name != "fp32":
        summary[f"{name}_maxdiff"] = float(f"{diff.max():.3e}")
        summary[f"{name}_meandiff"] = float(f"{diff.mean():.3e}")
        summary[f"{name}_pixel_maxdiff"] = int(pixel_diff.max())
        summary[f"{name}_pixel_meandiff"] = round(float(pixel_diff.mean()), 5)
    return seconds
