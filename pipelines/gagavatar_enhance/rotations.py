"""Vectorised unit-quaternion helpers (w, x, y, z order) shared by the smoothing and gaze modules.

All functions broadcast over leading dimensions.  Rotations are never interpolated through Euler angles: the tangent
space (rotation vectors) is reached with the quaternion log/exp maps, and the log always picks the shortest arc, so a
quaternion and its negation (the same rotation) give the same result.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

_SMALL_ANGLE = 1e-8


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a*b (apply b first, then a)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    """Inverse of a unit quaternion."""
    return q * np.array([1.0, -1.0, -1.0, -1.0], dtype=q.dtype)


def quat_exp(rotvec: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, radians) -> unit quaternion with w >= 0."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(half)/angle -> 1/2 as angle -> 0; the series keeps small rotations exact to float64 precision.
    scale = np.where(angle > _SMALL_ANGLE, np.sin(half) / np.maximum(angle, _SMALL_ANGLE), 0.5 - angle**2 / 48.0)
    return np.concatenate([np.cos(half), rotvec * scale], axis=-1)


def quat_log(q: np.ndarray) -> np.ndarray:
    """Unit quaternion -> rotation vector of the shortest arc (angle in [0, pi]); q and -q give the same result."""
    q = np.where(q[..., :1] < 0, -q, q)
    w = np.clip(q[..., :1], -1.0, 1.0)
    xyz = q[..., 1:]
    sin_half = np.linalg.norm(xyz, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, w)
    scale = np.where(sin_half > _SMALL_ANGLE, angle / np.maximum(sin_half, _SMALL_ANGLE), 2.0 / np.maximum(w, 0.5))
    return xyz * scale


def quat_normalize(q: np.ndarray) -> np.ndarray:
    """Rescale to unit norm (guards against drift after many products)."""
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quat_plus(q: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Move q by the body-frame rotation vector delta: q * exp(delta)."""
    return quat_normalize(quat_multiply(q, quat_exp(delta)))


def quat_minus(q: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Body-frame rotation vector that carries q to target: log(q^-1 * target) (inverse of quat_plus)."""
    return quat_log(quat_multiply(quat_conjugate(q), target))


def quat_slerp(q0: np.ndarray, q1: np.ndarray, t) -> np.ndarray:
    """Spherical linear interpolation along the shortest arc; t may broadcast (0 -> q0, 1 -> q1)."""
    return quat_plus(q0, np.asarray(t, dtype=np.float64)[..., None] * quat_minus(q0, q1))


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate 3-vectors v (column-vector convention) by unit quaternions q."""
    v_quat = np.concatenate([np.zeros_like(v[..., :1]), v], axis=-1)
    return quat_multiply(quat_multiply(q, v_quat), quat_conjugate(q))[..., 1:]


def matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """3x3 rotation matrices [..., 3, 3] (column-vector operators) -> quaternions [..., 4] (w, x, y, z)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    xyzw = Rotation.from_matrix(matrix.reshape(-1, 3, 3)).as_quat()
    return np.roll(xyzw, 1, axis=-1).reshape(matrix.shape[:-2] + (4,))


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternions [..., 4] (w, x, y, z) -> rotation matrices [..., 3, 3] (column-vector operators)."""
    q = np.asarray(q, dtype=np.float64)
    xyzw = np.roll(q.reshape(-1, 4), -1, axis=-1)
    return Rotation.from_quat(xyzw).as_matrix().reshape(q.shape[:-1] + (3, 3))


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation vector of the smallest rotation that turns direction a into direction b (both [..., 3])."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    cross = np.cross(a, b)
    sin = np.linalg.norm(cross, axis=-1, keepdims=True)
    angle = np.arctan2(sin, np.sum(a * b, axis=-1, keepdims=True))
    # Antiparallel (or identical) directions leave the axis undefined: any axis perpendicular to a works.
    fallback = np.cross(a, np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
    axis = np.where(sin > 1e-12, cross, fallback)
    return axis / np.linalg.norm(axis, axis=-1, keepdims=True) * angle
