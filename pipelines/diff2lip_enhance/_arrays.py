"""Input checks and small array helpers shared by the enhancement stages."""
from __future__ import annotations

import numpy as np


def as_frames(frames, name: str = "frames") -> np.ndarray:
    """Return ``frames`` as float32 [N,H,W,3]; raise ValueError naming the input otherwise."""
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"{name}: expected RGB frames [N,H,W,3] in 0..1, got shape {array.shape}; "
                         "add a batch axis for a single image (image[None])")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name}: expected float frames in 0..1, got dtype {array.dtype}; divide uint8 frames by 255")
    return np.ascontiguousarray(array, dtype=np.float32)


def as_masks(masks, frames: np.ndarray, name: str = "mask") -> np.ndarray:
    """Return ``masks`` as float32 [N,H,W] matching ``frames``; a trailing channel axis of 1 is dropped."""
    array = np.asarray(masks, dtype=np.float32)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.shape != frames.shape[:3]:
        raise ValueError(f"{name}: expected a mask [N,H,W] = {frames.shape[:3]} matching the frames, "
                         f"got {array.shape}; pass one mask per frame at the frame resolution")
    return np.ascontiguousarray(np.clip(array, 0.0, 1.0))


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
