"""Dense optical flow between RGB frames (OpenCV DIS or Farneback), backward warping and a forward-backward check.

Shared by the Diff2Lip sampler's flow start, the temporal enhancement stage and the flicker metrics; any product may
use it.  Images are float RGB in 0..1; a flow [H,W,2] holds (dx, dy) in pixels.
"""
from __future__ import annotations

import cv2
import numpy as np

from .frames import to_uint8

FLOW_METHODS = ("dis", "farneback")


def _gray_uint8(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2GRAY)


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
