"""Which part of each face crop Diff2Lip re-generates.

- ``lower_half`` (default, the release): rows from half the crop height down, what the model was trained with.
- ``lip_region``: the FaceMesh outer lip contour of each crop, scaled by ``expansion`` about its centre and feathered,
  kept inside the lower half (only the lower half is pasted back). The rest of the lower face stays the input, so
  the jaw and cheeks cannot drift. UNTESTED with the real checkpoint: the released model never saw such masks in
  training, so its quality there is unknown. A crop where FaceMesh finds no face falls back to the lower half.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

SAMPLING_MASKS = ("lower_half", "lip_region")
LIP_REGION_EXPANSION = 1.6
LIP_REGION_FEATHER = 0.15


def lower_half(size: int) -> np.ndarray:
    """[S,S] float32, 1 from row ``int(S*0.5)`` down (the release's mask)."""
    mask = np.zeros((size, size), np.float32)
    mask[int(size * 0.5):] = 1
    return mask


def lip_region_masks(crops: np.ndarray, expansion: float = LIP_REGION_EXPANSION,
                     landmarker=None) -> np.ndarray:
    """[B,S,S] float32 sampling masks of face crops [B,S,S,3] (uint8 or float 0..1), see module."""
    from ..face_landmarks import facemesh_landmarks
    from .lip_mask import lip_polygon_masks

    crops = np.asarray(crops)
    unit = crops.astype(np.float32) / 255.0 if crops.dtype == np.uint8 else crops.astype(np.float32)
    size = crops.shape[1]
    points, found = (landmarker or facemesh_landmarks)(unit)
    masks = lip_polygon_masks(points, size, size, expansion=expansion, feather=LIP_REGION_FEATHER)
    half = lower_half(size)
    masks = masks * half
    masks[~found | (masks.max(axis=(1, 2)) == 0)] = half
    return masks.astype(np.float32)


def sampling_mask_maker(kind: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The ``sampling_mask`` hook of :func:`pipelines.diff2lip.lipsync` for a named kind: None for the release's
    lower half, else a function of a batch of crops [B,S,S,3] returning masks [B,S,S]."""
    if kind not in SAMPLING_MASKS:
        raise ValueError(f"sampling_mask must be one of {SAMPLING_MASKS}, got {kind!r}")
    return None if kind == "lower_half" else lip_region_masks
