"""Stages 4 and 5: landmark lip masks, mouth-opening-adaptive expansion and the composite of generated into original.

Diff2Lip pastes the generated crop hard into the whole face box. Here the generated frame is composited only inside a
soft mask around the lips (outer lip contour, scaled about its centroid, feathered outwards by distance), limited to the
generated region by a mask feathered inwards from the region edge, so no pixel outside the region changes.
Frames where no landmarks are found on either the original or the generated frame fall back to the plain region mask
(hard box) and are counted in the returned info; where only one of the two is found, its polygon alone is used.

Default by measurement (benchmarks/diff2lip_enhance.py, astronaut clip at 512², generated region shifted, blurred and
re-coloured): seam energy of the hard box +0.0109 against +0.0006 for the feathered lip mask (expansion 1.2, feather
0.2 × mouth width), so the lip mask is the default and the hard box stays available as ``composite(..., lip_mask=None)``.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from ._arrays import as_frames, as_masks, blend_inside, mask_box
from .landmarks import LIP_SCHEMES, facemesh_landmarks
from .masks import feather_inside, feather_outside

_SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point precision: polygon vertices at 1/16 px

# Defaults of the composite, shared with the Lip-Mask Composite node (expansion and feather measured, see above).
DEFAULT_EXPANSION = 1.2
DEFAULT_FEATHER = 0.2
DEFAULT_ADAPTIVE_GAIN = 1.0  # the mask grows with the mouth opening: room for the jaw and teeth of an open mouth
DEFAULT_SMOOTH_WINDOW = 5  # frames over which the opening ratio is smoothed


def _scheme(name: str):
    if name not in LIP_SCHEMES:
        raise ValueError(f"scheme: unknown landmark layout {name!r}; use one of {sorted(LIP_SCHEMES)}")
    return LIP_SCHEMES[name]


def _per_frame(value, count: int, name: str) -> np.ndarray:
    values = np.asarray(value, dtype=np.float32)
    if values.ndim == 0:
        values = np.full(count, values, dtype=np.float32)
    if values.shape != (count,):
        raise ValueError(f"{name}: expected a scalar or one value per frame ({count}), got shape {values.shape}")
    return values


def _corner_distance(points: np.ndarray, scheme: str) -> np.ndarray:
    left, right = _scheme(scheme).corner_pair
    return np.linalg.norm(points[:, left] - points[:, right], axis=-1)


def lip_polygon_masks(points, height: int, width: int, scheme: str = "facemesh", expansion=1.2,
                      feather: float = 0.2) -> np.ndarray:
    """Soft lip masks [N,H,W] from landmarks [N,K,2]: the outer lip contour scaled by ``expansion`` about its
    centroid, 1 inside and falling smoothly to 0 over ``feather × mouth width`` px outside (resolution independent).
    Frames whose points are NaN give an empty mask.

    ``expansion`` may be a scalar or one value per frame (see :func:`adaptive_expansion`).
    """
    layout = _scheme(scheme)
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 3 or points.shape[1:] != (layout.num_points, 2):
        raise ValueError(f"points: expected [N,{layout.num_points},2] for scheme {scheme!r}, got {points.shape}")
    factors = _per_frame(expansion, len(points), "expansion")
    feather_px = feather * _corner_distance(points, scheme)
    masks = np.zeros((len(points), height, width), dtype=np.float32)
    for index, frame_points in enumerate(points):
        contour = frame_points[list(layout.outer_contour)]
        if not np.isfinite(contour).all():
            continue
        centre = contour.mean(axis=0)
        scaled = centre + factors[index] * (contour - centre)
        fixed = np.rint(scaled * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        binary = np.zeros((height, width), dtype=np.uint8)
        cv2.fillPoly(binary, [fixed], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
        masks[index] = feather_outside(binary, feather_px[index])
    return masks


def mouth_opening_ratio(points, scheme: str = "facemesh") -> np.ndarray:
    """Inner-lip gap / mouth width per frame (FaceMesh 13-14 over 61-291; FAN 62-66 over 48-54); NaN if missing."""
    layout = _scheme(scheme)
    points = np.asarray(points, dtype=np.float32)
    gap = np.linalg.norm(points[:, layout.gap_pair[0]] - points[:, layout.gap_pair[1]], axis=-1)
    width = _corner_distance(points, scheme)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(width > 0, gap / width, np.nan).astype(np.float32)


def smooth_series(values, window: int = 5) -> np.ndarray:
    """Centred moving average over ``window`` frames (odd), ignoring NaN; edges use the frames available.

    Between neighbouring frames the average changes by at most (max − min)·(1/window) when every frame is present.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window: expected an odd number of frames >= 1, got {window}")
    values = np.asarray(values, dtype=np.float64)
    half = window // 2
    padded = np.pad(values, half, mode="edge")
    present = np.isfinite(padded)
    kernel = np.ones(window)
    totals = np.convolve(np.where(present, padded, 0.0), kernel, mode="valid")
    counts = np.convolve(present.astype(np.float64), kernel, mode="valid")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / counts, np.nan).astype(np.float32)


def adaptive_expansion(opening_ratio, base_expansion: float = DEFAULT_EXPANSION, gain: float = DEFAULT_ADAPTIVE_GAIN,
                       window: int = DEFAULT_SMOOTH_WINDOW) -> np.ndarray:
    """Per-frame expansion ``base·(1 + gain·smoothed_opening)``; frames without landmarks nearby use ``base``.

    An open mouth (ratio ~0.4-0.6) needs room for the jaw and the generated teeth; a closed one (~0) keeps the mask
    tight so less of the original face is replaced. Smoothing keeps the mask area from jumping between frames.
    """
    smoothed = smooth_series(opening_ratio, window)
    return (base_expansion * (1.0 + gain * np.nan_to_num(smoothed, nan=0.0))).astype(np.float32)


def composite(original, generated, region_mask, lip_mask=None) -> np.ndarray:
    """Original outside, generated inside: ``w·generated + (1 − w)·original``, ``w = lip_mask·[region_mask > 0]``.

    With ``lip_mask=None`` the weight is the region mask itself (Diff2Lip's hard box paste). Pixels where the weight
    is 0 are the original bit-for-bit.
    """
    original = as_frames(original, "original")
    generated = as_frames(generated, "generated")
    if generated.shape != original.shape:
        raise ValueError(f"generated: shape {generated.shape} differs from original {original.shape}; "
                         "pass the Diff2Lip output frames of the same clip")
    region = as_masks(region_mask, original, "region_mask")
    weights = region if lip_mask is None else as_masks(lip_mask, original, "lip_mask") * (region > 0)
    out = original.copy()
    for index, weight in enumerate(weights):
        box = mask_box(weight > 0, 0)
        if box is not None:
            out[index][box] = blend_inside(original[index][box], generated[index][box], weight[box])
    return out


def lip_landmarks(original, generated, region_mask, landmarker=facemesh_landmarks,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Landmarks of the original and of the generated frames: ``{original_points, original_found,
    generated_points, generated_found}``, one entry per frame (frames are independent, so any slice of a clip gives
    the same values for its frames)."""
    first_half = None if progress is None else (lambda done, total: progress(done, 2 * total))
    second_half = None if progress is None else (lambda done, total: progress(total + done, 2 * total))
    original_points, original_found = landmarker(original, region_mask, first_half)
    generated_points, generated_found = landmarker(generated, region_mask, second_half)
    return {"original_points": original_points, "original_found": np.asarray(original_found, bool),
            "generated_points": generated_points, "generated_found": np.asarray(generated_found, bool)}


def masks_from_landmarks(region, marks: dict, expansions, feather: float, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """Composite masks [N,H,W] from :func:`lip_landmarks` and one expansion per frame; returns ``(masks, fallback
    frame indices)`` (no landmarks on either frame: the hard region mask is used there)."""
    count, height, width = region.shape
    lips = np.maximum(lip_polygon_masks(marks["original_points"], height, width, scheme, expansions, feather),
                      lip_polygon_masks(marks["generated_points"], height, width, scheme, expansions, feather))
    feather_px = feather * np.fmax(_corner_distance(marks["original_points"], scheme),
                                   _corner_distance(marks["generated_points"], scheme))
    masks = np.empty_like(region)
    fallback = np.flatnonzero(~(marks["original_found"] | marks["generated_found"]))
    for index in range(count):
        masks[index] = lips[index] * feather_inside(region[index], np.nan_to_num(feather_px[index]))
    masks[fallback] = region[fallback]
    return masks, fallback


def lip_composite_masks(original, generated, region_mask, expansion: float = DEFAULT_EXPANSION,
                        feather: float = DEFAULT_FEATHER, adaptive_gain: float = DEFAULT_ADAPTIVE_GAIN,
                        smooth_window: int = DEFAULT_SMOOTH_WINDOW, landmarker=facemesh_landmarks,
                        scheme: str = "facemesh",
                        progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, dict]:
    """Soft composite masks [N,H,W] around the lips of both the original and the generated frame.

    The lip polygons of the original and of the generated frame are united (the original mouth must be covered and the
    generated one shown), then limited to the region mask feathered inwards; both feathers are ``feather × mouth
    width`` px (see :func:`lip_polygon_masks`).
    ``adaptive_gain > 0`` (the default) makes the expansion follow the generated frame's smoothed mouth-opening
    ratio; 0 keeps it fixed.
    ``landmarker(frames, region_mask, progress)`` returns ``(points, found)`` in layout ``scheme``.

    Returns ``(masks, info)`` with info keys ``fallback_frames`` (indices that use the hard region mask because no
    face was found in either frame), ``num_fallback``, ``opening_ratio`` (generated frames) and ``expansion``.
    """
    original = as_frames(original, "original")
    generated = as_frames(generated, "generated")
    region = as_masks(region_mask, original, "region_mask")
    count = len(region)
    marks = lip_landmarks(original, generated, region, landmarker, progress)
    opening = mouth_opening_ratio(marks["generated_points"], scheme)
    expansions = adaptive_expansion(opening, expansion, adaptive_gain, smooth_window) if adaptive_gain > 0 else \
        np.full(count, expansion, dtype=np.float32)
    masks, fallback = masks_from_landmarks(region, marks, expansions, feather, scheme)
    info = {"fallback_frames": fallback.tolist(), "num_fallback": int(fallback.size), "opening_ratio": opening,
            "expansion": expansions}
    return masks, info
