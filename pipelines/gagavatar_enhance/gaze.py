"""Gaze correction (FLAME eye pose) and eye-region sharpening of rendered frames.

Geometry:

- World space is FLAME × scale (5): the space of GAGAvatar's ``t_points`` and of the driver camera.
- ``transform_matrix`` is PyTorch3D [R|T] with row vectors, X_cam = X_world R + T, so the camera centre is
  C = -T R^T.  Projection: focal 12 in NDC (tan(fov/2) = 1/12), principal point at the image centre, PyTorch3D
  +X left / +Y up, i.e. pixel x = W/2 - 12 (W/2) X/Z - 1/2, y = H/2 - 12 (H/2) Y/Z - 1/2 (integer pixel centres).
- Eye centres are the FLAME eyeball joints 3 and 4 (J_regressor applied to the shaped template), rotated with the
  global pose about joint 0 (the neck pose is always 0).  An eyeball at rest looks along FLAME +z (the face's
  forward axis), so the world gaze of an eye is R_global R_eye (0, 0, 1).

Correction: the look-at rotation is the smallest rotation taking the current gaze to the direction of the target
(the camera by default), applied on top of the driver's eye rotation; the output is slerp(driver, look-at,
strength).  Because that rotation moves the gaze along a great circle, the gaze-to-target angle becomes exactly
(1 - strength) × the original angle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch

from ...models.camera_geometry import FOCAL_LENGTH
from ...models.flame import FlameLayer
from .detail import DetailConfig, enhance_frame_details, validate_frames_and_mask
from .rotations import quat_conjugate, quat_exp, quat_log, quat_multiply, quat_rotate, quat_slerp, rotation_between
from .smoothing import require_track

REST_GAZE = np.array([0.0, 0.0, 1.0])
EYE_JOINTS = (3, 4)


def camera_centres(transform: np.ndarray) -> np.ndarray:
    """Camera positions [T,3] in world space from PyTorch3D [R|T] matrices [T,3,4] (C = -T R^T)."""
    transform = np.asarray(transform, dtype=np.float64)
    return -np.einsum("tj,tij->ti", transform[:, :, 3], transform[:, :, :3])


def project_points(points: np.ndarray, transform: np.ndarray, image_size: tuple[int, int] = (512, 512),
                   focal_ndc: float = FOCAL_LENGTH) -> np.ndarray:
    """Project world points [T,N,3] with the driver cameras [T,3,4] to pixel coordinates [T,N,2] (x right, y down;
    pixel (i, j) has its centre at (i, j)).  ``image_size`` is (H, W)."""
    transform = np.asarray(transform, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    cam = np.einsum("tnj,tjk->tnk", points, transform[:, :, :3]) + transform[:, None, :, 3]
    if np.any(cam[..., 2] <= 0):
        raise ValueError("a point to project is behind the driver camera; check transform_matrix and the points")
    height, width = image_size
    x = width / 2 - focal_ndc * (width / 2) * cam[..., 0] / cam[..., 2] - 0.5
    y = height / 2 - focal_ndc * (height / 2) * cam[..., 1] / cam[..., 2] - 0.5
    return np.stack([x, y], axis=-1)


def _frames_of(array, num_frames: int, tail: int, name: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] < tail or array.shape[0] not in (1, num_frames):
        raise ValueError(f"{name} must be [{tail}] or [T,{tail}] with T = {num_frames}, got {array.shape}")
    return np.broadcast_to(array, (num_frames, array.shape[1]))


def eye_centres_from_flame(flame: FlameLayer, shapecode, expcode=None, posecode=None) -> np.ndarray:
    """World eye centres [T,2,3] (× flame.scale) of the FLAME eyeball joints for the given codes.

    ``shapecode`` [300] or [T,300]; ``expcode`` [T,100] (expressions shift joints slightly; None = 0);
    ``posecode`` [T,6] (its global part rotates the eyes about joint 0; None = 0).
    """
    num_frames = max(np.atleast_2d(np.asarray(a)).shape[0] for a in (shapecode, expcode, posecode) if a is not None)
    shape = _frames_of(shapecode, num_frames, 1, "shapecode")
    betas = np.zeros((num_frames, flame.shapedirs.shape[2]))
    betas[:, : min(shape.shape[1], 300)] = shape[:, :300]
    if expcode is not None:
        expression = _frames_of(expcode, num_frames, 1, "expcode")
        betas[:, 300: 300 + expression.shape[1]] = expression[:, :100]
    with torch.no_grad():
        offsets = torch.einsum("tl,vkl->tvk", torch.from_numpy(betas), flame.shapedirs.double())
        shaped = flame.v_template.double() + offsets
        joints = torch.einsum("jv,tvk->tjk", flame.J_regressor.double(), shaped).numpy()
    eyes = joints[:, list(EYE_JOINTS)]
    if posecode is not None:
        global_rotation = quat_exp(_frames_of(posecode, num_frames, 6, "posecode")[:, :3])[:, None]
        eyes = joints[:, :1] + quat_rotate(global_rotation, eyes - joints[:, :1])
    return eyes * flame.scale


def _eye_rotations(driver: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    eyecode = require_track(driver, "eyecode", (6,)).astype(np.float64)
    eye_quats = quat_exp(eyecode.reshape(-1, 2, 3))
    if "posecode" in driver:
        global_quats = quat_exp(require_track(driver, "posecode", (6,)).astype(np.float64)[:, None, :3])
    else:
        global_quats = quat_exp(np.zeros((len(eyecode), 1, 3)))
    return eye_quats, np.broadcast_to(global_quats, eye_quats.shape)


def _targets(driver: Mapping[str, np.ndarray], target, num_frames: int) -> np.ndarray:
    """[T,1,3] look-at points: the driver camera centres, or a fixed / per-frame world point."""
    if target is None:
        return camera_centres(require_track(driver, "transform_matrix", (3, 4)))[:, None]
    return _frames_of(target, num_frames, 3, "target")[:, None, :3]


def _eye_centres_per_frame(eye_centres, num_frames: int) -> np.ndarray:
    centres = np.asarray(eye_centres, dtype=np.float64)
    if centres.shape == (2, 3):
        centres = centres[None]
    if centres.ndim != 3 or centres.shape[1:] != (2, 3) or centres.shape[0] not in (1, num_frames):
        raise ValueError(f"eye_centres must be [2,3] or [T,2,3] world points (see eye_centres_from_flame), "
                         f"got {centres.shape}")
    return np.broadcast_to(centres, (num_frames, 2, 3))


def _world_gaze(eye_quats: np.ndarray, global_quats: np.ndarray) -> np.ndarray:
    rest = np.broadcast_to(REST_GAZE, eye_quats.shape[:-1] + (3,))
    return quat_rotate(quat_multiply(global_quats, eye_quats), rest)


def gaze_directions(driver: Mapping[str, np.ndarray]) -> np.ndarray:
    """World gaze directions [T,2,3] of both eyes (unit vectors)."""
    return _world_gaze(*_eye_rotations(driver))


def gaze_angles(driver: Mapping[str, np.ndarray], eye_centres, target=None) -> np.ndarray:
    """Angle (radians) [T,2] between each eye's gaze and the direction from the eye to the target (camera)."""
    gaze = gaze_directions(driver)
    to_target = _targets(driver, target, len(gaze)) - _eye_centres_per_frame(eye_centres, len(gaze))
    return np.linalg.norm(rotation_between(gaze, to_target), axis=-1)


@dataclass(frozen=True)
class GazeConfig:
    """strength: 0 keeps the driver's gaze, 1 looks straight at the target (seed default 0.7).
    target: None = the driver camera of each frame; else a world point [3] or [T,3] (FLAME × 5 space)."""

    strength: float = 0.7
    target: np.ndarray | None = None


def correct_gaze(driver: Mapping[str, np.ndarray], eye_centres, config: GazeConfig = GazeConfig()) -> dict:
    """New driver with ``eyecode`` turned towards the target by slerp(driver, look-at, strength).

    ``eye_centres``: world eye positions [2,3] or [T,2,3] (:func:`eye_centres_from_flame`).
    """
    if not 0.0 <= config.strength <= 1.0:
        raise ValueError(f"gaze strength must be in [0, 1], got {config.strength}")
    eyecode = require_track(driver, "eyecode", (6,))
    eye_quats, global_quats = _eye_rotations(driver)
    gaze = _world_gaze(eye_quats, global_quats)
    to_target = _targets(driver, config.target, len(gaze)) - _eye_centres_per_frame(eye_centres, len(gaze))
    turn_world = rotation_between(gaze, to_target)
    # Express the world turn in the eye's parent frame (the head's global rotation): R_g^T turn.
    turn_local = quat_rotate(quat_conjugate(global_quats), turn_world)
    look_at = quat_multiply(quat_exp(turn_local), eye_quats)
    corrected = quat_slerp(eye_quats, look_at, config.strength)
    return {**driver, "eyecode": quat_log(corrected).reshape(eyecode.shape).astype(eyecode.dtype)}


# ---------------------------------------------------------------------------------------------------------------
# Eye-region sharpening of the rendered frames


@dataclass(frozen=True)
class EyeEnhanceConfig:
    """Sharpening inside soft Gaussian masks around the projected eye centres.

    sigma_interocular: mask sigma as a fraction of the projected inter-ocular distance (0.3 covers lids and brows'
    lower edge); the mask is cut to exactly 0 beyond ``cutoff_sigmas``.
    detail: the pyramid sharpening used inside the mask (milder edge attenuation than the face-wide default:
    iris and lid edges are the detail that matters here).
    """

    sigma_interocular: float = 0.3
    cutoff_sigmas: float = 2.5
    detail: DetailConfig = DetailConfig(strength=0.5, level_gains=(1.5, 1.0, 0.5), edge_suppression=0.5,
                                        mask_feather_px=0.0)


def eye_masks(eye_pixels: np.ndarray, image_size: tuple[int, int], config: EyeEnhanceConfig = EyeEnhanceConfig()
              ) -> np.ndarray:
    """Soft masks [T,H,W] around eye pixel positions [T,2,2] (x, y); sigma from their distance."""
    eye_pixels = np.asarray(eye_pixels, dtype=np.float64)
    if eye_pixels.ndim != 3 or eye_pixels.shape[1:] != (2, 2):
        raise ValueError(f"eye_pixels must be [T,2,2] pixel (x, y) positions of both eyes, got {eye_pixels.shape}")
    height, width = image_size
    ys, xs = np.mgrid[0:height, 0:width]
    sigma = config.sigma_interocular * np.linalg.norm(eye_pixels[:, 0] - eye_pixels[:, 1], axis=-1)
    sigma = np.maximum(sigma, 1.0)[:, None, None, None]
    dx = xs[None, None] - eye_pixels[:, :, 0, None, None]
    dy = ys[None, None] - eye_pixels[:, :, 1, None, None]
    distance2 = (dx * dx + dy * dy) / (sigma * sigma)
    masks = np.where(distance2 <= config.cutoff_sigmas**2, np.exp(-0.5 * distance2), 0.0).max(axis=1)
    return masks.astype(np.float32)


def enhance_eyes(frames: np.ndarray, eye_pixels: np.ndarray, config: EyeEnhanceConfig = EyeEnhanceConfig(),
                 face_mask: np.ndarray | None = None, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Sharpen the eye regions of frames [T,H,W,3]; ``eye_pixels`` [T,2,2] from :func:`project_points` of the eye
    centres (or given by the user).  ``face_mask`` ([H,W] / [T,H,W], optional) further limits the region.
    Pixels outside the cut-off eye masks (or outside the face mask) are returned bit-exactly."""
    frames, face_mask = validate_frames_and_mask(frames, face_mask, "face_mask")
    eye_pixels = np.asarray(eye_pixels, dtype=np.float64)
    if eye_pixels.ndim == 3 and eye_pixels.shape[0] == 1:
        eye_pixels = np.broadcast_to(eye_pixels, (len(frames),) + eye_pixels.shape[1:])
    if len(eye_pixels) != len(frames):
        raise ValueError(f"eye_pixels has {len(eye_pixels)} frames but there are {len(frames)} frames")
    out = np.empty(frames.shape, np.float32)
    for t in range(len(frames)):
        mask = eye_masks(eye_pixels[t:t + 1], frames.shape[1:3], config)[0] * np.clip(face_mask[t], 0.0, 1.0)
        out[t] = enhance_frame_details(np.ascontiguousarray(frames[t], dtype=np.float32), mask, config.detail)
        if progress is not None:
            progress(t + 1, len(frames))
    return out
