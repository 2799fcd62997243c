"""Soft-mask geometry: feathering by distance, boundary rings, box-to-face helpers.

Feathering uses the Euclidean distance to the mask edge (not a Gaussian blur of the mask) so that a mask feathered
"inside" stays exactly 0 outside its support: blurring a mask that is not
zero-padded first leaks into untouched pixels.
"""
from __future__ import annotations

import cv2
import numpy as np


def _distance_inside(binary: np.ndarray) -> np.ndarray:
    """Distance in px from each pixel of ``binary`` to the nearest pixel outside it (0 outside)."""
    return cv2.distanceTransform(binary.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def feather_inside(mask2d: np.ndarray, feather_px: float) -> np.ndarray:
    """Soft weight that is 0 where ``mask2d <= 0.5`` and rises smoothly to 1 at ``feather_px`` inside the edge."""
    inside = mask2d > 0.5
    if feather_px <= 0:
        return inside.astype(np.float32)
    return _smoothstep(_distance_inside(inside) / float(feather_px))


def feather_outside(mask2d: np.ndarray, feather_px: float) -> np.ndarray:
    """Soft weight that is 1 where ``mask2d > 0.5`` and falls smoothly to 0 at ``feather_px`` outside the edge."""
    inside = mask2d > 0.5
    if feather_px <= 0:
        return inside.astype(np.float32)
    return _smoothstep(1.0 - _distance_inside(~inside) / float(feather_px))


def boundary_ring(mask2d: np.ndarray, width_px: float) -> np.ndarray:
    """Boolean ring of pixels within ``width_px`` of the 0.5 contour of ``mask2d`` (both sides)."""
    inside = mask2d > 0.5
    if not inside.any() or inside.all():
        return np.zeros(mask2d.shape, dtype=bool)
    distance = np.where(inside, _distance_inside(inside), _distance_inside(~inside))
    return distance <= float(width_px)


def inner_band(mask2d: np.ndarray, width_px: float) -> np.ndarray:
    """Boolean band of pixels inside ``mask2d > 0.5`` within ``width_px`` of its edge."""
    inside = mask2d > 0.5
    return inside & (_distance_inside(inside) <= float(width_px))


def outer_band(mask2d: np.ndarray, width_px: float) -> np.ndarray:
    """Boolean band of pixels outside ``mask2d > 0.5`` within ``width_px`` of its edge."""
    outside = ~(mask2d > 0.5)
    return outside & (_distance_inside(outside) <= float(width_px))


def face_box_from_region(mask2d: np.ndarray) -> tuple[float, float, float, float] | None:
    """Face box (x1, y1, x2, y2) from a Diff2Lip region mask, which covers the lower half of the box.

    The box is the region's bounding box extended upwards by its own height; None for an empty mask.
    """
    rows = np.flatnonzero((mask2d > 0.5).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((mask2d > 0.5).any(axis=0))
    height = rows[-1] + 1 - rows[0]
    return float(cols[0]), float(rows[0] - height), float(cols[-1] + 1), float(rows[-1] + 1)


def region_masks_from_boxes(boxes, height: int, width: int) -> np.ndarray:
    """Diff2Lip region masks [N,H,W]: 1 on the lower half of each face box (x1, y1, x2, y2); NaN rows give 0.

    The rows start at ``y1 + (y2 − y1)/2`` (Diff2Lip generates rows 64..127 of the 128 crop), rounded to pixels.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes: expected [N,4] face boxes (x1, y1, x2, y2), got shape {boxes.shape}")
    masks = np.zeros((len(boxes), height, width), dtype=np.float32)
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        if np.isfinite([x1, y1, x2, y2]).all():
            top, bottom = int(round((y1 + y2) / 2)), int(round(y2))
            left, right = int(round(x1)), int(round(x2))
            masks[index, max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = 1.0
    return masks
