"""Input checks and small array helpers shared by the enhancement stages."""
from __future__ import annotations

import numpy as np

from ..frames import as_frames, as_masks  # noqa: F401 - the stages import their input checks from here


def check_unit_range(value: float, name: str) -> float:
    """Return ``value`` as float if it lies in 0..1, else raise ValueError."""
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a value in 0..1, got {value}")
    return value


def mask_box(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """Slices of the bounding box of ``mask > 0`` grown by ``margin`` px and clipped to the image; None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    return (slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, height)),
            slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, width)))


def blend_inside(base: np.ndarray, replacement: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``weight·replacement + (1 − weight)·base``, returning ``base`` bit-for-bit where weight is 0."""
    mixed = weight[..., None] * replacement + (1.0 - weight[..., None]) * base
    return np.where(weight[..., None] > 0, mixed, base).astype(np.float32)
