"""Clips for the Diff2Lip enhancement tests and benchmark: real-photo talking clips (tests/media.py) with a stand-in
for the Diff2Lip output whose lower face box differs from the original in position, sharpness and colour."""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
from media import talking_clip

from talkinghead.pipelines.diff2lip_enhance import region_masks_from_boxes

RECOLOUR_GAIN = np.float32([1.12, 0.95, 0.88])  # a warm cast, as a generator's colour drift


class EnhanceClip(NamedTuple):
    """original / generated float32 [N,H,W,3] in 0..1, region float32 [N,H,W], mouth_open [N] in 0..1."""
    original: np.ndarray
    generated: np.ndarray
    region: np.ndarray
    mouth_open: np.ndarray


def shifted_blurred_recoloured(frame: np.ndarray, shift=(1.5, 2.0), blur_sigma: float = 1.2,
                               gain=RECOLOUR_GAIN, offset: float = 0.02) -> np.ndarray:
    """The frame moved by ``shift`` px, blurred and re-coloured: what a generator's paste-in looks like."""
    height, width = frame.shape[:2]
    moved = cv2.warpAffine(frame, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (width, height),
                           borderMode=cv2.BORDER_REFLECT)
    return np.clip(cv2.GaussianBlur(moved, (0, 0), blur_sigma) * gain + offset, 0.0, 1.0)


def enhance_clip(face: str = "astronaut", frames: int = 6, size=(256, 256), motion: float = 2.0,
                 mouth_px: float = 8.0, seed: int = 0) -> EnhanceClip:
    """A talking clip and its "generated" version: the region (lower half of the face box) is replaced by
    :func:`shifted_blurred_recoloured` of the same frame, as Diff2Lip's hard paste would show it."""
    clip = talking_clip(face, frames, size, motion=motion, mouth_px=mouth_px, seed=seed)
    original = clip.frames.astype(np.float32) / 255.0
    region = region_masks_from_boxes(clip.face_boxes, *size)
    generated = np.stack([np.where(mask[..., None] > 0, shifted_blurred_recoloured(frame), frame)
                          for frame, mask in zip(original, region)]).astype(np.float32)
    return EnhanceClip(original, generated, region, clip.mouth_open)


def flickering(original: np.ndarray, region: np.ndarray, gain_jitter: float = 0.08, noise_std: float = 0.02,
               seed: int = 0) -> np.ndarray:
    """Independent per-frame colour gain and pixel noise inside the region: the flicker of per-frame sampling."""
    rng = np.random.default_rng(seed)
    out = original.copy()
    for index, (frame, mask) in enumerate(zip(original, region)):
        gain = (1 + rng.uniform(-gain_jitter, gain_jitter, 3)).astype(np.float32)
        noisy = np.clip(frame * gain + rng.normal(0, noise_std, frame.shape).astype(np.float32), 0, 1)
        out[index] = np.where(mask[..., None] > 0, noisy, frame)
    return out
