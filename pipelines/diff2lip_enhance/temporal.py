"""Stage 6: flow-guided temporal consistency of the generated region.

Diff2Lip samples every frame independently (no temporal layer), so the mouth flickers. A plain EMA with the previous
output (the usual ``TemporalSmoother`` of lip-sync add-ons) mixes in the previous frame at the previous position and
smears moving edges (ghosting). Here the previous OUTPUT is first warped into the current frame with dense optical
flow (OpenCV DIS or Farneback), pixels that fail a forward-backward consistency check (occlusions, flow errors) are
not blended, and only the masked region is touched.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from ._arrays import as_frames, as_masks, blend_inside, check_unit_range, mask_box

FLOW_MARGIN_PX = 24  # flow is computed on the mask's box grown by this much, enough context for DIS patches
FLOW_METHODS = ("dis", "farneback")


def _gray_uint8(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def dense_flow(current: np.ndarray, previous: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow [H,W,2] (dx, dy) such that ``current(p) ≈ previous(p + flow(p))`` for RGB float images in 0..1."""
    if method not in FLOW_METHODS:
        raise ValueError(f"method: unknown optical flow {method!r}; use one of {FLOW_METHODS}")
    current_gray, previous_gray = _gray_uint8(current), _gray_uint8(previous)
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(current_gray, previous_gray, None)
    return cv2.calcOpticalFlowFarneback(current_gray, previous_gray, None, pyr_scale=0.5, levels=3, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def warp_with_flow(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: ``out(p) = image(p + flow(p))`` with bilinear sampling and replicated borders."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(np.ascontiguousarray(image), grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def consistent_flow_mask(forward: np.ndarray, backward: np.ndarray, tolerance_px: float = 1.0) -> np.ndarray:
    """True where following ``forward`` then ``backward`` returns within ``tolerance_px`` (+5 % of the motion).

    ``forward`` maps current → previous, ``backward`` previous → current. Occluded or mismatched pixels fail.
    """
    backward_at_target = warp_with_flow(backward, forward)
    round_trip = np.linalg.norm(forward + backward_at_target, axis=-1)
    motion = np.linalg.norm(forward, axis=-1) + np.linalg.norm(backward_at_target, axis=-1)
    return round_trip <= tolerance_px + 0.05 * motion


def flow_with_validity(current: np.ndarray, previous: np.ndarray, method: str = "dis", tolerance_px: float = 1.0):
    """``(flow current → previous, forward-backward consistent bool mask)`` for two RGB images in 0..1."""
    forward = dense_flow(current, previous, method)
    backward = dense_flow(previous, current, method)
    return forward, consistent_flow_mask(forward, backward, tolerance_px)


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


def flow_warped_initial_guess(previous_generated_crop, previous_input_crop, current_input_crop, method: str = "dis",
                              fb_tolerance_px: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Warp the previous frame's generated crop into the current frame as an initial guess for its sampling.

    The flow is taken between the INPUT crops (known before sampling: head motion); the generated mouth rides along.
    Returns ``(guess [H,W,3] in 0..1, valid [H,W] bool)``; ``valid`` is False where the flow is inconsistent.

    How it feeds Diff2Lip's sampler (see :func:`mix_initial_noise`): map the guess to −1..1 (``2·guess − 1``) and
    resize it to the 128² crop; pick a start step t0 of the respaced DDIM schedule and build
    ``x_t0 = sqrt(ᾱ_t0)·guess + sqrt(1 − ᾱ_t0)·noise`` (SDEdit), using the seed-7 noise and plain noise where
    ``valid`` is False; then run DDIM from t0 instead of from 960. Starting at 960 is pointless: the linear schedule
    has ᾱ_960 ≈ 1e-4, so the guess would carry 1 % of x_T. Only the masked lower half is sampled, and the cond_img
    noise must stay the unchanged seed-7 tensor (the model saw exactly that noise, the same tensor as x_T,
    in training; other noise is a distribution shift).
    A later t0 gives more temporal coherence and less freedom for the new mouth shape.
    """
    previous_generated = np.asarray(previous_generated_crop, dtype=np.float32)
    current_input = np.asarray(current_input_crop, dtype=np.float32)
    previous_input = np.asarray(previous_input_crop, dtype=np.float32)
    if not (previous_generated.shape == previous_input.shape == current_input.shape) or current_input.ndim != 3:
        raise ValueError("crops: previous_generated_crop, previous_input_crop and current_input_crop must all be "
                         f"[H,W,3] of one size, got {previous_generated.shape}, {previous_input.shape}, "
                         f"{current_input.shape}")
    forward, valid = flow_with_validity(current_input, previous_input, method, fb_tolerance_px)
    return warp_with_flow(previous_generated, forward), valid


def mix_initial_noise(guess, noise, alpha_bar: float, valid=None):
    """SDEdit start ``sqrt(ᾱ)·guess + sqrt(1 − ᾱ)·noise``, guess in −1..1; plain ``noise`` where ``valid`` is 0.

    With ᾱ = ᾱ_t0 of the DDIM step the sampler starts from, the mix has the marginal of the guess noised to t0
    (linear schedule: ᾱ_600 ≈ 0.026, ᾱ_400 ≈ 0.19, ᾱ_200 ≈ 0.66). Works on numpy arrays or torch tensors of one
    shape; ``valid`` is a 0/1 float array broadcastable to them.
    """
    alpha_bar = check_unit_range(alpha_bar, "alpha_bar")
    mixed = alpha_bar ** 0.5 * guess + (1.0 - alpha_bar) ** 0.5 * noise
    if valid is None:
        return mixed
    return valid * mixed + (1 - valid) * noise
