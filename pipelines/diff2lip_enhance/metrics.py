"""Stage 10: quality metrics of the enhancement stages, and one dict report for a clip.

Definitions (all on float frames in 0..1):
- ``seam_energy``: on the ring of pixels within ``ring_px`` of the composite mask's 0.5 contour, the mean colour
  gradient magnitude (RGB, central differences) of the output minus that of a seam-free reference. The reference
  is ``w·|∇generated| + (1 − w)·|∇original|`` (w = composite mask) when the generated frames are given, else
  ``|∇original|``. Pass the generated frames: Diff2Lip output is blurrier than the original, and with the plain
  reference that lost texture inside the ring cancels the seam's step. 0 means the paste adds no edge; a hard paste of
  a crop that differs in colour gives a clearly positive value.
- ``warped_flicker``: mean |frame_t − warp(frame_{t−1})| inside the mask (mask_t > 0.5 and flow consistent), flow
  taken from ``flow_frames`` (default: the frames themselves); motion is compensated, so what remains is flicker.
- ``boundary_delta_e``: CIE76 ΔE between the mean Lab colour of the band just inside the mask and of the band
  just outside it, averaged over frames.
- ``lip_landmark_distance``: mean distance of the 40 FaceMesh lip points between input and output (reconstruction
  mode: the output should keep the input's mouth), in px and relative to the mouth width.
LPIPS and a lip-sync score need user-supplied networks: pass callables to ``quality_report`` (otherwise None).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from skimage.metrics import structural_similarity

from ._arrays import as_frames, as_masks, mask_box
from .color_match import rgb_to_lab
from .landmarks import FACEMESH_LIP_POINTS, LIP_SCHEMES, facemesh_landmarks
from .masks import boundary_ring, inner_band, outer_band
from ..optical_flow import flow_with_validity, warp_with_flow
from .temporal import FLOW_MARGIN_PX



def _pair(output, original):
    output = as_frames(output, "output")
    original = as_frames(original, "original")
    if output.shape != original.shape:
        raise ValueError(f"output: shape {output.shape} differs from original {original.shape}")
    return output, original


def psnr(output, original, mask=None, mask_outside: bool = False) -> float:
    """PSNR in dB (peak 1) over all pixels, inside ``mask > 0.5`` or, with ``mask_outside``, where ``mask == 0``.

    Identical pixels give ``inf``; an empty selection gives NaN.
    """
    output, original = _pair(output, original)
    squared = ((output - original) ** 2).mean(axis=-1)
    if mask is not None:
        masks = as_masks(mask, output)
        squared = squared[(masks == 0) if mask_outside else (masks > 0.5)]
    if squared.size == 0:
        return float("nan")
    mse = float(squared.mean())
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def ssim(output, original, mask=None, mask_outside: bool = False) -> float:
    """Mean SSIM (7×7 windows, per channel, data range 1), averaged over the selected pixels as in :func:`psnr`."""
    output, original = _pair(output, original)
    masks = None if mask is None else as_masks(mask, output)
    values = []
    for index in range(len(output)):
        _, ssim_map = structural_similarity(output[index], original[index], data_range=1.0, channel_axis=-1,
                                            full=True)
        ssim_map = ssim_map.mean(axis=-1)
        if masks is not None:
            ssim_map = ssim_map[(masks[index] == 0) if mask_outside else (masks[index] > 0.5)]
        values.append(ssim_map)
    selected = np.concatenate([v.ravel() for v in values])
    return float(selected.mean()) if selected.size else float("nan")


def _gradient_magnitude(frame: np.ndarray) -> np.ndarray:
    """Colour gradient magnitude sqrt(sum over RGB of |∇c|²): a paste seam is often a chroma step luma misses."""
    grad_y, grad_x = np.gradient(frame, axis=(0, 1))
    return np.sqrt((grad_x ** 2 + grad_y ** 2).sum(axis=-1))


def seam_energy(output, original, mask, generated=None, ring_px: float = 2.0) -> float:
    """Mean colour |∇| on the ring within ``ring_px`` of the mask's 0.5 contour, output minus the seam-free reference
    built from ``generated`` and ``original`` (see module); NaN when no frame has a mask edge."""
    output, original = _pair(output, original)
    masks = as_masks(mask, output)
    if generated is not None:
        generated, _ = _pair(generated, original)
    excess = []
    for index in range(len(output)):
        ring = boundary_ring(masks[index], ring_px)
        if not ring.any():
            continue
        reference = _gradient_magnitude(original[index])[ring]
        if generated is not None:
            weight = masks[index][ring]
            reference = weight * _gradient_magnitude(generated[index])[ring] + (1.0 - weight) * reference
        excess.append(_gradient_magnitude(output[index])[ring].mean() - reference.mean())
    return float(np.mean(excess)) if excess else float("nan")


def warped_flicker(frames, mask, flow_frames=None, method: str = "dis", fb_tolerance_px: float = 1.0) -> float:
    """Motion-compensated frame-to-frame difference inside the mask (see module); NaN for fewer than 2 frames."""
    frames = as_frames(frames)
    masks = as_masks(mask, frames)
    flow_source = frames if flow_frames is None else as_frames(flow_frames, "flow_frames")
    if flow_source.shape != frames.shape:
        raise ValueError(f"flow_frames: shape {flow_source.shape} differs from frames {frames.shape}")
    totals, counts = 0.0, 0
    for index in range(1, len(frames)):
        box = mask_box(masks[index] > 0.5, FLOW_MARGIN_PX)
        if box is None:
            continue
        forward, valid = flow_with_validity(np.ascontiguousarray(flow_source[index][box]), flow_source[index - 1][box],
                                    method, fb_tolerance_px)
        warped = warp_with_flow(frames[index - 1][box], forward)
        selected = valid & (masks[index][box] > 0.5)
        totals += float(np.abs(frames[index][box] - warped).mean(axis=-1)[selected].sum())
        counts += int(selected.sum())
    return totals / counts if counts else float("nan")


def boundary_delta_e(frames, mask, band_px: float = 6.0) -> float:
    """CIE76 ΔE between mean Lab just inside and just outside the mask edge, averaged over frames."""
    frames = as_frames(frames)
    masks = as_masks(mask, frames)
    values = []
    for index in range(len(frames)):
        inner, outer = inner_band(masks[index], band_px), outer_band(masks[index], band_px)
        if inner.any() and outer.any():
            lab = rgb_to_lab(frames[index])
            values.append(float(np.linalg.norm(lab[inner].mean(axis=0) - lab[outer].mean(axis=0))))
    return float(np.mean(values)) if values else float("nan")


def lip_landmark_distance(output, original, landmarker=facemesh_landmarks) -> dict:
    """FaceMesh lip-point distance between original and output frames found in both.

    Returns ``{'px': mean px distance, 'relative': px / mouth width, 'frames_compared': k}`` (NaN when k is 0).
    """
    output, original = _pair(output, original)
    output_points, output_found = landmarker(output)
    original_points, original_found = landmarker(original)
    both = output_found & original_found
    if not both.any():
        return {"px": float("nan"), "relative": float("nan"), "frames_compared": 0}
    lips = list(FACEMESH_LIP_POINTS)
    distance = np.linalg.norm(output_points[both][:, lips] - original_points[both][:, lips], axis=-1).mean(axis=1)
    left, right = LIP_SCHEMES["facemesh"].corner_pair
    width = np.linalg.norm(original_points[both][:, left] - original_points[both][:, right], axis=-1)
    return {"px": float(distance.mean()), "relative": float((distance / width).mean()),
            "frames_compared": int(both.sum())}


def quality_report(original, output, region_mask, composite_mask=None, generated=None, flow_frames=None,
                   landmarks: bool = True, lpips_fn: Callable | None = None, sync_fn: Callable | None = None) -> dict:
    """One dict of the metrics above for a clip.

    Keys: psnr/ssim over the full frame and OUTSIDE the region (where the output must equal the input: PSNR inf, SSIM
    just under 1 because 7×7 windows next to the edge see the change),
    ``max_abs_outside``, ``flicker_output`` / ``flicker_original`` (inside the region), ``seam_energy`` (on the
    composite mask, default the region mask; pass the raw Diff2Lip ``generated`` frames for the reference),
    ``boundary_delta_e``, ``lip_landmarks`` (dict or None when
    ``landmarks`` is False), and ``lpips`` / ``sync_score``: ``fn(output, original)`` when a callable built from
    user-supplied weights is given, else None.
    """
    output, original = _pair(output, original)
    region = as_masks(region_mask, output, "region_mask")
    seam_mask = region if composite_mask is None else as_masks(composite_mask, output, "composite_mask")
    outside = region == 0
    return {
        "psnr_full": psnr(output, original),
        "ssim_full": ssim(output, original),
        "psnr_outside": psnr(output, original, region, mask_outside=True),
        "ssim_outside": ssim(output, original, region, mask_outside=True),
        "max_abs_outside": float(np.abs(output - original)[outside].max()) if outside.any() else 0.0,
        "flicker_output": warped_flicker(output, region, flow_frames),
        "flicker_original": warped_flicker(original, region, flow_frames),
        "seam_energy": seam_energy(output, original, seam_mask, generated),
        "boundary_delta_e": boundary_delta_e(output, seam_mask),
        "lip_landmarks": lip_landmark_distance(output, original) if landmarks else None,
        "lpips": None if lpips_fn is None else float(lpips_fn(output, original)),
        "sync_score": None if sync_fn is None else float(sync_fn(output, original)),
    }
