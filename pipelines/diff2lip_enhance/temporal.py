"""Stage 6: flow-guided temporal consistency of the generated region.

Diff2Lip samples every frame independently (no temporal layer), so the mouth flickers. A plain EMA with the previous
output (the usual ``TemporalSmoother`` of lip-sync add-ons) mixes in the previous frame at the previous position and
smears moving edges (ghosting). Here the previous OUTPUT is first warped into the current frame with dense optical
flow (OpenCV DIS or Farneback), pixels that fail a forward-backward consistency check (occlusions, flow errors) are
not blended, and only the masked region is touched.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..optical_flow import flow_with_validity, warp_with_flow
from ._arrays import as_frames, as_masks, blend_inside, check_unit_range, mask_box

FLOW_MARGIN_PX = 24  # flow is computed on the mask's box grown by this much, enough context for DIS patches


def flow_temporal_smooth(generated, mask, strength: float = 0.5, method: str = "dis", fb_tolerance_px: float = 1.0,
                         progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Blend each frame's masked region with the previous output warped into it by optical flow.

    ``out_t = g_t + w·(warp(out_{t-1}) − g_t)`` with ``w = strength·mask_t·valid_t``, where ``valid_t`` is the
    forward-backward consistency of the flow between generated frames t and t−1. Frame 0 and pixels where the mask is
    0 are returned unchanged (bit-for-bit).

    Args:
        generated: float32 [N,H,W,3] in 0..1 (the composited Diff2Lip output).
        mask: float32 [N,H,W], the generated (mouth) region.
        strength: 0..1, weight of the warped previous output (0 disables the stage).
        method: 'dis' (default, fast and robust to the mouth's texture) or 'farneback'.
        fb_tolerance_px: forward-backward round-trip error in px above which a pixel counts as occluded.
        progress: optional ``progress(done, total)`` callback.
    """
    generated = as_frames(generated, "generated")
    masks = as_masks(mask, generated)
    strength = check_unit_range(strength, "strength")
    out = generated.copy()
    for index in range(1, len(generated)):
        out[index] = flow_step(generated[index], masks[index], generated[index - 1], masks[index - 1], out[index - 1],
                               strength, method, fb_tolerance_px)
        if progress is not None:
            progress(index, len(generated) - 1)
    return out


def flow_step(current, mask, previous, previous_mask, previous_out, strength: float, method: str = "dis",
              fb_tolerance_px: float = 1.0) -> np.ndarray:
    """One frame of :func:`flow_temporal_smooth` (frames [H,W,3] float32, masks [H,W] in 0..1): what a stream
    carries from frame to frame is the previous input, mask and output."""
    out = current.copy()
    box = mask_box((mask > 0) | (previous_mask > 0), FLOW_MARGIN_PX)
    if box is not None and strength > 0:
        crop = np.ascontiguousarray(current[box])
        forward, valid = flow_with_validity(crop, previous[box], method, fb_tolerance_px)
        warped_previous = warp_with_flow(previous_out[box], forward)
        out[box] = blend_inside(crop, warped_previous, strength * mask[box] * valid)
    return out


def ema_step(current, mask, previous_out, strength: float) -> np.ndarray:
    """One frame of :func:`ema_temporal_smooth`."""
    return blend_inside(current, previous_out, strength * mask)


def ema_temporal_smooth(generated, mask, strength: float = 0.5) -> np.ndarray:
    """Baseline: masked EMA ``out_t = g_t + strength·mask_t·(out_{t-1} − g_t)`` without motion compensation.

    Kept as the reference the flow version is measured against (it ghosts on moving edges).
    """
    generated = as_frames(generated, "generated")
    masks = as_masks(mask, generated)
    strength = check_unit_range(strength, "strength")
    out = generated.copy()
    for index in range(1, len(generated)):
        out[index] = ema_step(generated[index], masks[index], out[index - 1], strength)
    return out
