"""Stage 9: optional edge-preserving denoise of the generated region only (diffusion speckle, JPEG-like blocks)."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from ..frames import to_float, to_uint8
from ._arrays import as_frames, as_masks, blend_inside, check_unit_range, mask_box
from .masks import feather_inside

DENOISE_METHODS = ("bilateral", "nlm", "guided")
_MARGIN_PX = 12


def _bilateral(image: np.ndarray, strength: float) -> np.ndarray:
    return cv2.bilateralFilter(image, d=7, sigmaColor=0.02 + 0.13 * strength, sigmaSpace=3.0)


def _non_local_means(image: np.ndarray, strength: float) -> np.ndarray:
    h = 3.0 + 12.0 * strength
    return to_float(cv2.fastNlMeansDenoisingColored(to_uint8(image), None, h, h, 5, 15))


def _box_mean(image: np.ndarray, radius: int) -> np.ndarray:
    return cv2.blur(image, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def guided_filter(image: np.ndarray, guide: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a grey guide: a local linear model ``a·guide + b`` per window, per channel."""
    mean_guide = _box_mean(guide, radius)
    variance_guide = _box_mean(guide * guide, radius) - mean_guide ** 2
    channels = []
    for channel in range(image.shape[-1]):
        values = np.ascontiguousarray(image[..., channel])
        mean_values = _box_mean(values, radius)
        covariance = _box_mean(guide * values, radius) - mean_guide * mean_values
        slope = covariance / (variance_guide + eps)
        offset = mean_values - slope * mean_guide
        channels.append(_box_mean(slope, radius) * guide + _box_mean(offset, radius))
    return np.stack(channels, axis=-1)


def _guided(image: np.ndarray, strength: float) -> np.ndarray:
    guide = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return guided_filter(image, guide, radius=4, eps=(0.02 + 0.1 * strength) ** 2)


_FILTERS = {"bilateral": _bilateral, "nlm": _non_local_means, "guided": _guided}


def denoise_region(frames, mask, method: str = "bilateral", strength: float = 0.5, feather_px: float = 2.0,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Edge-preserving denoise of the masked region; pixels where the mask is 0 are returned bit-for-bit.

    Args:
        frames: float32 [N,H,W,3] in 0..1.
        mask: float32 [N,H,W], the generated region.
        method: 'bilateral' (default; sigma_color 0.02..0.15), 'nlm' (OpenCV non-local means on uint8, h 3..15) or
            'guided' (self-guided filter, radius 4, eps (0.02..0.12)²).
        strength: 0..1, maps to the filter's range parameter above (0 still filters lightly; skip the stage to disable).
        feather_px: inward feather of the mask so the filtered region has no visible edge.
        progress: optional ``progress(done, total)`` callback.
    """
    if method not in DENOISE_METHODS:
        raise ValueError(f"method: unknown denoiser {method!r}; use one of {DENOISE_METHODS}")
    frames = as_frames(frames)
    masks = as_masks(mask, frames)
    strength = check_unit_range(strength, "strength")
    out = frames.copy()
    for index in range(len(frames)):
        box = mask_box(masks[index] > 0, _MARGIN_PX)
        if box is not None:
            crop = np.ascontiguousarray(frames[index][box])
            weight = masks[index][box] * feather_inside(masks[index][box] > 0, feather_px)
            out[index][box] = blend_inside(crop, np.clip(_FILTERS[method](crop, strength), 0.0, 1.0), weight)
        if progress is not None:
            progress(index + 1, len(frames))
    return out
