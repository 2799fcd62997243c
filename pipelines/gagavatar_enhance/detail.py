"""Edge-aware Laplacian-pyramid detail enhancement of rendered frames, restricted to a soft face mask.

Per frame, a Laplacian pyramid with ``len(level_gains)`` band-pass levels (finest first) is built with OpenCV's
5-tap binomial pyrDown/pyrUp.  Band i is amplified by ``strength * level_gains[i] * face * texture_i`` where

- ``face`` is the feathered face mask (rendered alpha or a user mask; exactly 0 outside it),
- ``texture_i = 1 - edge_suppression * smoothstep(edge_low, edge_high, |Sobel|)`` on the luminance of pyramid level
  i, dilated so the band's ringing beside a strong edge is covered too.

A naive version multiplies the gain by (1 + edge) and uses a learned attention map.  Boosting strong edges is what
produces halos, so here strong edges are *attenuated* and fine texture (pores, wrinkles, hair strands: weak
gradients) gets the boost; the learned attention (an untrained network) is replaced by these deterministic maps.
Only the added detail is collapsed and it is multiplied by the face mask, so pixels outside the mask are returned
bit-exactly and flat regions (zero band energy) change by float rounding only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class DetailConfig:
    """Detail enhancement settings.

    strength: base gain beta (seed default 0.3); 0 disables.
    level_gains: per-band multipliers, finest band first (its length is the number of pyramid levels).
    edge_low / edge_high: Sobel gradient magnitudes (intensity step per pixel, 0..1 units) where the edge
        attenuation starts / is complete.
    edge_suppression: 0 = no edge weighting (plain pyramid sharpening), 1 = no boost at strong edges.
    edge_dilate_px: how far (pixels at each level) the attenuation reaches beside an edge.
    mask_feather_px: Gaussian sigma used to soften the face mask inwards (0 = use the mask as given).
    """

    strength: float = 0.3
    level_gains: tuple[float, ...] = (1.5, 1.2, 0.8, 0.4)
    edge_low: float = 0.08
    edge_high: float = 0.25
    edge_suppression: float = 1.0
    edge_dilate_px: int = 2
    mask_feather_px: float = 3.0


def laplacian_pyramid(image: np.ndarray, levels: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(band-pass levels [finest..coarsest], Gaussian levels [0..levels]) of an [H,W,C] float32 image."""
    gaussians = [image]
    for _ in range(levels):
        gaussians.append(cv2.pyrDown(gaussians[-1]))
    bands = [g - _upsample(coarser, g.shape) for g, coarser in zip(gaussians[:-1], gaussians[1:])]
    return bands, gaussians


def _upsample(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    up = cv2.pyrUp(image, dstsize=(shape[1], shape[0]))
    return up.reshape(shape)  # pyrUp drops a singleton channel axis


def _smoothstep(low: float, high: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - low) / max(high - low, 1e-12), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def edge_strength(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the luminance, in intensity units per pixel ([H,W], ~ step height at an edge)."""
    luma = image @ _LUMA
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy) / 4.0  # the 3x3 Sobel answers 4x a unit step


def texture_weight(image: np.ndarray, config: DetailConfig) -> np.ndarray:
    """[H,W] weight in [0,1]: 1 on texture and flat areas, 1 - edge_suppression on and beside strong edges."""
    edges = _smoothstep(config.edge_low, config.edge_high, edge_strength(image))
    if config.edge_dilate_px > 0:
        size = 2 * config.edge_dilate_px + 1
        edges = cv2.dilate(edges, np.ones((size, size), np.uint8))
    return 1.0 - config.edge_suppression * edges


def soft_face_mask(mask: np.ndarray, feather_px: float) -> np.ndarray:
    """Feather a [H,W] mask inwards: blur, then multiply by the mask so it stays exactly 0 outside."""
    mask = np.clip(mask.astype(np.float32), 0.0, 1.0)
    if feather_px <= 0:
        return mask
    return cv2.GaussianBlur(mask, (0, 0), feather_px) * mask


def _resize_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _enhance_region(frame: np.ndarray, face: np.ndarray, config: DetailConfig) -> np.ndarray:
    bands, gaussians = laplacian_pyramid(frame, len(config.level_gains))
    added = None
    for level in range(len(bands) - 1, -1, -1):
        gain = config.strength * config.level_gains[level]
        weight = texture_weight(gaussians[level], config) * _resize_mask(face, bands[level].shape)
        extra = bands[level] * (gain * weight)[:, :, None]
        added = extra if added is None else _upsample(added, extra.shape) + extra
    changed = np.clip(frame + face[:, :, None] * added, 0.0, 1.0)
    return np.where(face[:, :, None] > 0, changed, frame)


def _mask_window(face: np.ndarray, levels: int) -> tuple[slice, slice]:
    """Bounding box of face > 0 plus the reach of the coarsest pyramid band (5-tap kernel at 2^levels px)."""
    rows, cols = np.flatnonzero(face.any(axis=1)), np.flatnonzero(face.any(axis=0))
    margin = 4 * 2**levels
    return (slice(max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, face.shape[0])),
            slice(max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, face.shape[1])))


def enhance_frame_details(frame: np.ndarray, face: np.ndarray, config: DetailConfig) -> np.ndarray:
    """Enhance one [H,W,3] float32 frame where the soft mask ``face`` [H,W] is > 0 (see module doc).

    Only the mask's bounding box (plus the pyramid's reach) is processed.
    """
    out = frame.copy()
    if config.strength == 0 or not np.any(face > 0):
        return out
    window = _mask_window(face, len(config.level_gains))
    out[window] = _enhance_region(frame[window], np.ascontiguousarray(face[window]), config)
    return out


def validate_frames_and_mask(frames: np.ndarray, mask: np.ndarray | None, what: str = "mask"
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Check frames [T,H,W,3] and broadcast a [H,W] / [T,H,W] / [T,H,W,1] mask (None -> ones) to [T,H,W]."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be float [T,H,W,3] in 0..1, got shape {frames.shape}")
    shape = frames.shape[:3]
    if mask is None:
        return frames, np.ones(shape, np.float32)
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim == 4 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim == 2 and mask.shape == shape[1:]:
        mask = np.broadcast_to(mask, shape)
    if mask.shape != shape:
        raise ValueError(f"{what} must be [H,W] or [T,H,W] matching the frames {shape}, got {mask.shape}")
    return frames, mask


def enhance_details(
    frames: np.ndarray,
    mask: np.ndarray | None = None,
    config: DetailConfig = DetailConfig(),
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Detail-enhance frames [T,H,W,3] (float, 0..1) inside the face ``mask`` ([H,W] or [T,H,W], 1 = face).

    ``mask``: the rendered alpha or a face mask; None enhances the whole frame (documented fallback when no mask is
    available).  Returns new float32 frames; pixels where the mask is 0 are bit-exact copies of the input.
    """
    frames, mask = validate_frames_and_mask(frames, mask)
    if len(config.level_gains) < 1:
        raise ValueError("DetailConfig.level_gains needs at least one pyramid level")
    out = np.empty(frames.shape, np.float32)
    for t in range(len(frames)):
        frame = np.ascontiguousarray(frames[t], dtype=np.float32)
        out[t] = enhance_frame_details(frame, soft_face_mask(mask[t], config.mask_feather_px), config)
        if progress is not None:
            progress(t + 1, len(frames))
    return out
