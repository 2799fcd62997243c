"""Frame conversion between 8-bit and float RGB and the checks of float frame/mask inputs, written once for both
products.

Frames are numpy arrays of any shape (usually [N,H,W,3] or one [H,W,3]); float frames hold 0..1.  Two roundings
exist on purpose and each caller keeps the one it has always used, so outputs stay bit-identical:
:func:`to_uint8` rounds half to even (``np.rint``, as OpenCV-bound stages, landmarkers and the video writer do);
:func:`to_uint8_half_up` rounds halves up (``floor(x·255 + 0.5)``, as the lip sync's detector input and the crop
upscaler do).  They differ only where ``x·255`` falls exactly on a half.
"""
from __future__ import annotations

import numpy as np


def to_uint8(frames) -> np.ndarray:
    """Float 0..1 -> uint8 0..255, clipped, rounded half to even; uint8 input is returned as it is."""
    array = np.asarray(frames)
    if array.dtype == np.uint8:
        return array
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def to_uint8_half_up(frames) -> np.ndarray:
    """Float 0..1 -> uint8 0..255, clipped, rounded half up; uint8 input is returned as it is."""
    array = np.asarray(frames)
    if array.dtype == np.uint8:
        return array
    scaled = np.clip(array, 0.0, 1.0)  # one float temporary, scaled in place
    scaled *= 255.0
    scaled += 0.5
    return scaled.astype(np.uint8)


def to_float(frames) -> np.ndarray:
    """uint8 0..255 -> float32 0..1; float input becomes float32 (always a new array)."""
    array = np.asarray(frames)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return array.astype(np.float32)


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
