"""Video-level helpers of the tracker: frame selection, gap filling and the reference's EMA smoothing.

All functions take numpy arrays with time on axis 0.  The EMA is the reference's causal one,
``s_0 = x_0, s_t = alpha·x_t + (1 - alpha)·s_{t-1}`` (alpha = weight of the newest frame): boxes 0.03, camera
rotation (PyTorch3D 6D) and translation 0.6, eye poses 0.7; expression and jaw are not smoothed.
"""
from __future__ import annotations

import numpy as np
import torch

from .camera import matrix_to_rotation_6d, rotation_6d_to_matrix

BOX_ALPHA = 0.03
CAMERA_ALPHA = 0.6
EYE_ALPHA = 0.7
HIGH_FPS = 50.0


def select_frames(num_frames: int, fps: float, drop_high_fps: bool = False) -> tuple[np.ndarray, float]:
    """Indices of the frames to track and the resulting frame rate.

    With ``drop_high_fps`` and fps above 50 every other frame is dropped as the reference does (it keeps the odd
    frames 1, 3, 5, ...) and the frame rate halves; otherwise every frame is kept.
    """
    if num_frames < 1:
        raise ValueError("frames: the video has no frames")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if drop_high_fps and fps > HIGH_FPS:
        return np.arange(1, num_frames, 2), fps / 2.0
    return np.arange(num_frames), float(fps)


def ema(track: np.ndarray, alpha: float) -> np.ndarray:
    """Causal exponential moving average along axis 0 (see module doc)."""
    track = np.asarray(track, dtype=np.float64)
    smoothed = np.empty_like(track)
    smoothed[0] = track[0]
    for t in range(1, len(track)):
        smoothed[t] = alpha * track[t] + (1.0 - alpha) * smoothed[t - 1]
    return smoothed


def fill_gaps(track: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace the rows of invalid frames by linear interpolation between the nearest valid neighbours (the first /
    last valid value before the first / after the last one).  Needs at least one valid frame."""
    track = np.asarray(track, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if not valid.any():
        raise ValueError("cannot fill gaps: no valid frame")
    if valid.all():
        return track.copy()
    times = np.arange(len(track))
    flat = track.reshape(len(track), -1)
    filled = np.stack([np.interp(times, times[valid], column[valid]) for column in flat.T], axis=1)
    return filled.reshape(track.shape)


def cameras_to_vectors(transforms: np.ndarray) -> np.ndarray:
    """[T,3,4] PyTorch3D cameras -> [T,9] = (6D rotation, translation)."""
    transforms = torch.as_tensor(np.asarray(transforms, dtype=np.float64))
    return torch.cat([matrix_to_rotation_6d(transforms[:, :, :3]), transforms[:, :, 3]], dim=1).numpy()


def vectors_to_cameras(vectors: np.ndarray) -> np.ndarray:
    """[T,9] (6D rotation, translation) -> [T,3,4] cameras (Gram-Schmidt re-orthonormalises the rotation)."""
    vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float64))
    return torch.cat([rotation_6d_to_matrix(vectors[:, :6]), vectors[:, 6:, None]], dim=2).numpy()


def smooth_cameras(transforms: np.ndarray, alpha: float = CAMERA_ALPHA) -> np.ndarray:
    """EMA of the 6D rotations and the translations of [T,3,4] cameras, as the reference's ``run_smoothing``."""
    return vectors_to_cameras(ema(cameras_to_vectors(transforms), alpha))


def fill_camera_gaps(transforms: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """:func:`fill_gaps` for cameras, interpolating 6D rotation and translation."""
    return vectors_to_cameras(fill_gaps(cameras_to_vectors(transforms), valid))
