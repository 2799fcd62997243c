"""Stage 8: match the generated region's colour to the original frame.

Statistics are taken on one band of pixels just inside the region edge, in the generated frame and in the original
frame: both show the same skin there, so the difference is the generator's colour cast. The Lab transfer estimated on
that band is applied to the whole region with the soft mask, so the colour no longer jumps across the edge.

Optional white balance (before the transfer): the illuminant of each side is estimated on the same band as the
per-channel Minkowski mean (p = 1: gray world; p = 6: shades of gray), and the generated region's RGB is scaled by
original / generated per channel (a von Kries correction). It removes a pure colour cast without touching contrast;
with ``method='none'`` it is the only correction.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from ._arrays import as_frames, as_masks, blend_inside, mask_box
from .masks import inner_band

COLOR_METHODS = ("lab_meanstd", "histogram", "none")
WHITE_BALANCE = {"off": None, "gray_world": 1.0, "shades_of_gray": 6.0}  # name -> Minkowski p
_QUANTILES = np.linspace(0.0, 1.0, 65)
_MIN_BAND_PIXELS = 16


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """float RGB 0..1 → CIE Lab (L 0..100), D65, via OpenCV's float path."""
    return cv2.cvtColor(np.clip(image, 0.0, 1.0).astype(np.float32), cv2.COLOR_RGB2Lab)


def lab_to_rgb(image: np.ndarray) -> np.ndarray:
    """CIE Lab → float RGB clipped to 0..1."""
    return np.clip(cv2.cvtColor(image.astype(np.float32), cv2.COLOR_Lab2RGB), 0.0, 1.0)


def _meanstd_transfer(values: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    scale = target.std(axis=0) / np.maximum(source.std(axis=0), 1e-3)
    return (values - source.mean(axis=0)) * scale + target.mean(axis=0)


def _histogram_transfer(values: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    source_q = np.quantile(source, _QUANTILES, axis=0)
    target_q = np.quantile(target, _QUANTILES, axis=0)
    # np.interp needs increasing x; quantiles are non-decreasing, tiny offsets break ties on flat bands
    ramp = np.arange(len(_QUANTILES)) * 1e-6
    return np.stack([np.interp(values[:, channel], source_q[:, channel] + ramp, target_q[:, channel])
                     for channel in range(values.shape[1])], axis=1)


def illuminant(pixels: np.ndarray, p: float) -> np.ndarray:
    """Per-channel Minkowski p-mean of [K,3] RGB pixels: the illuminant estimate of gray world (p=1) or shades of
    gray (p=6)."""
    return np.power(np.mean(np.power(np.clip(pixels, 0.0, None), p), axis=0), 1.0 / p)


def _white_balanced(generated: np.ndarray, generated_band: np.ndarray, original_band: np.ndarray,
                    p: float) -> np.ndarray:
    gains = illuminant(original_band, p) / np.maximum(illuminant(generated_band, p), 1e-4)
    return np.clip(generated * gains.astype(np.float32), 0.0, 1.0)


def match_color(original, generated, region_mask, apply_mask=None, method: str = "lab_meanstd",
                band_px: float = 8.0, progress: Callable[[int, int], None] | None = None,
                white_balance: str = "off") -> np.ndarray:
    """Correct the generated region's colour towards the original frame.

    Args:
        original: float32 [N,H,W,3], the input video frames.
        generated: float32 [N,H,W,3], Diff2Lip output (or the composite of it).
        region_mask: float32 [N,H,W]; its inner edge band (``band_px`` wide) is where statistics are compared.
        apply_mask: soft mask the correction is applied with (default: the region mask). Pixels where it is 0 are
            returned bit-for-bit.
        method: 'lab_meanstd' (per-channel mean/std in Lab), 'histogram' (per-channel Lab quantile matching) or
            'none' (only the white balance).
        band_px: width of the statistics band in px.
        progress: optional ``progress(done, total)`` callback.
        white_balance: 'off', 'gray_world' or 'shades_of_gray' (see module), applied before ``method``.
    Frames whose band has fewer than 16 pixels are returned unchanged.
    """
    if method not in COLOR_METHODS:
        raise ValueError(f"method: unknown colour matching {method!r}; use one of {COLOR_METHODS}")
    if white_balance not in WHITE_BALANCE:
        raise ValueError(f"white_balance: unknown {white_balance!r}; use one of {tuple(WHITE_BALANCE)}")
    original = as_frames(original, "original")
    generated = as_frames(generated, "generated")
    if original.shape != generated.shape:
        raise ValueError(f"generated: shape {generated.shape} differs from original {original.shape}")
    region = as_masks(region_mask, original, "region_mask")
    weights = region if apply_mask is None else as_masks(apply_mask, original, "apply_mask")
    transfer = {"lab_meanstd": _meanstd_transfer, "histogram": _histogram_transfer, "none": None}[method]
    out = generated.copy()
    for index in range(len(generated)):
        box = mask_box((weights[index] > 0) | (region[index] > 0), 1)
        band = inner_band(region[index][box], band_px) if box is not None else None
        if band is not None and band.sum() >= _MIN_BAND_PIXELS:
            corrected_rgb = generated[index][box]
            if WHITE_BALANCE[white_balance] is not None:
                corrected_rgb = _white_balanced(corrected_rgb, corrected_rgb[band], original[index][box][band],
                                                WHITE_BALANCE[white_balance])
            if transfer is not None:
                generated_lab = rgb_to_lab(corrected_rgb)
                original_lab = rgb_to_lab(original[index][box])
                corrected = transfer(generated_lab.reshape(-1, 3), generated_lab[band], original_lab[band])
                corrected_rgb = lab_to_rgb(corrected.reshape(generated_lab.shape))
            out[index][box] = blend_inside(generated[index][box], corrected_rgb, weights[index][box])
        if progress is not None:
            progress(index + 1, len(generated))
    return out
