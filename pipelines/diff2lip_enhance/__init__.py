"""Diff2Lip image-side enhancement stages: pure functions on numpy frames [N,H,W,3] / masks [N,H,W] (float32, 0..1).

Suggested order after the Diff2Lip core: lip_composite_masks + composite (4/5) → match_color (8) →
flow_temporal_smooth (6) → denoise_region (9) → sharpen_region (2); quality_report (10) measures the result.
"""
from .color_match import match_color
from .denoise import denoise_region, guided_filter
from .landmarks import LIP_SCHEMES, FanLandmarker, facemesh_landmarks
from .lip_mask import (adaptive_expansion, composite, lip_composite_masks, lip_polygon_masks, mouth_opening_ratio,
                       smooth_series)
from .masks import region_masks_from_boxes
from .metrics import (boundary_delta_e, lip_landmark_distance, psnr, quality_report, seam_energy, ssim,
                      warped_flicker)
from .sharpen import sharpen_region, unsharp_mask
from .temporal import ema_temporal_smooth, flow_temporal_smooth
from ..diff2lip.flow_start import flow_warped_initial_guess, mix_initial_noise  # the sampler's flow start
from ..optical_flow import dense_flow, warp_with_flow

__all__ = [
    "LIP_SCHEMES", "FanLandmarker", "adaptive_expansion", "boundary_delta_e", "composite", "dense_flow",
    "denoise_region", "ema_temporal_smooth", "facemesh_landmarks", "flow_temporal_smooth", "flow_warped_initial_guess",
    "guided_filter", "lip_composite_masks", "lip_landmark_distance", "lip_polygon_masks", "match_color",
    "mix_initial_noise", "mouth_opening_ratio", "psnr", "quality_report", "region_masks_from_boxes", "seam_energy",
    "sharpen_region", "smooth_series", "ssim", "unsharp_mask", "warp_with_flow", "warped_flicker",
]
