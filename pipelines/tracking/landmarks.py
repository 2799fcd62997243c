"""Landmark conventions of the tracker: the 98 -> 70 point map and the FLAME 70-point landmarks it fits.

The 70 points are the 68 iBUG points plus the two pupils (indices 68, 69).  The optimiser uses points 17:68 (brows,
nose, eyes, mouth; the jaw contour 0:17 is never fitted) and 68:70 (pupils).
"""
from __future__ import annotations

import numpy as np
import torch

# WFLW-98 index of each of the 70 points: every other jaw point, brows (the upper arcs), nose, the six-point
# eye contours and the mouth, then the two pupils (96, 97).
WFLW98_TO_70 = np.array([
    0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32,
    33, 34, 35, 36, 37, 42, 43, 44, 45, 46,
    51, 52, 53, 54, 55, 56, 57, 58, 59,
    60, 61, 63, 64, 65, 67,
    68, 69, 71, 72, 73, 75,
    76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97,
])

FITTED_FACE = slice(17, 68)
PUPILS = slice(68, 70)

# FLAME-2020 vertices that replace the eyelid landmarks of the barycentric embedding (reference `reselect_eyes`):
# 15 vertices, pairs averaged into 12 points; eyelid landmarks 37,38,40,41,43,44,46,47 take 8 of them.
_EYE_VERTICES = [2422, 2422, 2452, 2454, 2471, 3638, 2276, 2360, 3835, 1292, 1217, 1146, 1146, 999, 827]
_EYE_KEEP = [0, 2, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14]
_EYELID_LANDMARKS = [37, 38, 40, 41, 43, 44, 46, 47]
_EYELID_SOURCES = [1, 2, 4, 5, 7, 8, 10, 11]


def wflw98_to_70(points98):
    """Map WFLW 98-point landmarks [...,98,2] to the tracker's 70 points [...,70,2] (numpy or torch)."""
    if points98.shape[-2] != 98:
        raise ValueError(f"expected 98 landmarks [...,98,2], got shape {tuple(points98.shape)}")
    index = WFLW98_TO_70 if isinstance(points98, np.ndarray) else torch.as_tensor(WFLW98_TO_70, device=points98.device)
    return points98[..., index, :]


def reselect_eyelids(vertices: torch.Tensor, landmarks70: torch.Tensor) -> torch.Tensor:
    """Replace the 8 eyelid landmarks by FLAME-2020 eyelid vertices (used for the VGGHead landmarks only).

    Meshes with fewer vertices than FLAME 2020 (synthetic test files) are returned unchanged.
    """
    if vertices.shape[1] <= max(_EYE_VERTICES):
        return landmarks70
    eye = vertices[:, _EYE_VERTICES].clone()
    eye[:, 0] = (eye[:, 0] + eye[:, 1]) * 0.5
    eye[:, 2] = (eye[:, 2] + eye[:, 3]) * 0.5
    eye[:, 11] = (eye[:, 11] + eye[:, 12]) * 0.5
    eye = eye[:, _EYE_KEEP]
    result = landmarks70.clone()
    result[:, _EYELID_LANDMARKS] = eye[:, _EYELID_SOURCES]
    return result
