"""Stage 2: unsharp-mask sharpening of the generated mouth region.

A common add-on filters the whole frame with ``[[-1,-1,-1],[-1,9,-1],[-1,-1,-1]]·strength``. That kernel sums to
``strength`` instead of 1, so it darkens the frame (strength 0.3 scales brightness to 30 %) and it touches every
pixel. What it meant is an unsharp mask whose DC gain is 1, applied only inside the generated region.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from ._arrays import as_frames, as_masks, blend_inside, check_unit_range, mask_box
from .masks import feather_inside

MAX_AMOUNT = 2.0  # strength 1 adds twice the high-pass detail (a strong but still artifact-free unsharp mask)


def unsharp_mask(image: np.ndarray, sigma: float, amount: float, threshold: float = 0.0) -> np.ndarray:
    """``image + amount·(image − blur_sigma(image))`` clipped to 0..1; detail below ``threshold`` is left alone."""
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    detail = image - blurred
    if threshold > 0:
        detail = detail * (np.abs(detail).max(axis=-1, keepdims=True) > threshold)
    return np.clip(image + amount * detail, 0.0, 1.0)


def sharpen_region(frames, mask, strength: float = 0.3, sigma: float = 1.0, threshold: float = 0.0,
                   feather_px: float = 3.0, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Sharpen the generated region of each frame with an unsharp mask blended by the feathered mask.

    Args:
        frames: float32 [N,H,W,3] in 0..1.
        mask: float32 [N,H,W]; 1 on the generated region. Pixels where it is 0 are returned bit-for-bit.
        strength: 0..1; the unsharp amount is ``strength·MAX_AMOUNT`` (0 returns the input unchanged).
        sigma: Gaussian blur sigma in px of the unsharp mask (about the size of the detail to boost).
        threshold: detail smaller than this (0..1 units) is not amplified, which keeps flat skin noise down.
        feather_px: the mask is feathered inwards over this many px so that no seam appears at its edge.
        progress: optional ``progress(done, total)`` callback.
    Returns:
        float32 [N,H,W,3].
    """
    frames = as_frames(frames)
    masks = as_masks(mask, frames)
    strength = check_unit_range(strength, "strength")
    if sigma <= 0:
        raise ValueError(f"sigma: expected a blur radius > 0 px, got {sigma}")
    out = frames.copy()
    margin = int(np.ceil(3 * sigma)) + 1
    for index in range(len(frames)):
        box = mask_box(masks[index] > 0, margin)
        if box is not None and strength > 0:
            crop = np.ascontiguousarray(frames[index][box])
            weight = masks[index][box] * feather_inside(masks[index][box] > 0, feather_px)
            sharpened = unsharp_mask(crop, sigma, strength * MAX_AMOUNT, threshold)
            out[index][box] = blend_inside(crop, sharpened, weight)
        if progress is not None:
            progress(index + 1, len(frames))
    return out
