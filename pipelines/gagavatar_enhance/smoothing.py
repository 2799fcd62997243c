"""Temporal smoothing of GAGAvatar driver tracks (expression, jaw, eye pose, camera).

A driver is a dict of per-frame arrays: ``expcode [T,100]``, ``posecode [T,6]`` (= [global axis-angle, jaw
axis-angle]; global is 0 in tracked data), ``eyecode [T,6]`` (two eyeball axis-angles), ``transform_matrix [T,3,4]``
(PyTorch3D [R|T]), plus fields that are passed through untouched.

Methods (``method=``):

- ``"ema"``: exponential moving average; rotations use quaternion SLERP, s_t = slerp(s_{t-1}, x_t, alpha).
- ``"kalman"``: causal constant-velocity Kalman filter.
- ``"rts"`` (default): Kalman forward pass + Rauch-Tung-Striebel backward pass.  The whole driver is known before
  rendering, so the zero-lag smoother is the right default.
- ``"none"``: copy.

Every method is written once over a pair of group operations: ``plus(x, delta)`` and ``minus(x, y)`` (the tangent
step carrying x to y).  Vectors use + and -, rotations use the quaternion maps x*exp(delta) and log(x^-1 y), so axis-
angle poses and camera rotations are filtered on the rotation manifold (body-frame angular velocity), never through
Euler angles, and the shortest-arc log makes the result independent of quaternion sign (hemisphere-consistent).
With the same noise settings for all dimensions the Kalman gains are identical per dimension, so they are computed
once per track length and applied to all dimensions at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from .rotations import matrix_to_quat, quat_exp, quat_log, quat_minus, quat_plus, quat_to_matrix

SMOOTHING_METHODS = ("none", "ema", "kalman", "rts")
SMOOTHED_FIELDS = ("expcode", "posecode", "eyecode", "transform_matrix")


@dataclass(frozen=True)
class SmoothingConfig:
    """Smoothing settings.

    alpha: EMA weight of the newest frame (seed default 0.5).
    process_noise / measurement_noise: variance of the per-frame acceleration (q) and of the tracking jitter (r) for
        the Kalman/RTS methods.  Only the ratio q/r changes the output; smaller q/r = smoother.  The default
        q/r = 0.1 was picked on evaluation.synthetic_driver_track (best RTS error on most fields).
    fields: driver fields to smooth.
    """

    method: str = "rts"
    alpha: float = 0.5
    process_noise: float = 1e-2
    measurement_noise: float = 1e-1
    fields: tuple[str, ...] = SMOOTHED_FIELDS


@dataclass(frozen=True)
class _Space:
    plus: Callable[[np.ndarray, np.ndarray], np.ndarray]
    minus: Callable[[np.ndarray, np.ndarray], np.ndarray]


_VECTOR = _Space(plus=lambda x, d: x + d, minus=lambda x, y: y - x)
_ROTATION = _Space(plus=quat_plus, minus=quat_minus)


def _ema(track: np.ndarray, alpha: float, space: _Space) -> np.ndarray:
    out = np.empty_like(track)
    out[0] = track[0]
    for t in range(1, len(track)):
        out[t] = space.plus(out[t - 1], alpha * space.minus(out[t - 1], track[t]))
    return out


@dataclass(frozen=True)
class _Gains:
    kalman: np.ndarray    # [T, 2]    gain of (position, velocity) on the innovation
    smoother: np.ndarray  # [T-1, 2, 2] RTS gain P_f[t] F^T P_pred[t+1]^-1


_TRANSITION = np.array([[1.0, 1.0], [0.0, 1.0]])


def constant_velocity_gains(num_frames: int, process_noise: float, measurement_noise: float) -> _Gains:
    """Kalman and RTS gains of a 1-D constant-velocity model (dt = 1 frame, white-noise acceleration)."""
    if process_noise <= 0 or measurement_noise <= 0:
        raise ValueError(
            f"process_noise ({process_noise}) and measurement_noise ({measurement_noise}) must be > 0; "
            "use method='none' to switch smoothing off"
        )
    q = process_noise * np.array([[1.0 / 3.0, 0.5], [0.5, 1.0]])  # continuous white acceleration over one frame
    r = measurement_noise
    kalman = np.zeros((num_frames, 2))
    filtered = np.zeros((num_frames, 2, 2))
    predicted = np.zeros((num_frames, 2, 2))
    kalman[0] = (1.0, 0.0)  # the first measurement is taken as is, velocity starts at 0
    filtered[0] = np.diag([r, 1e3 * r])  # near-diffuse velocity prior: a straight track is not pulled to rest
    for t in range(1, num_frames):
        predicted[t] = _TRANSITION @ filtered[t - 1] @ _TRANSITION.T + q
        gain = predicted[t][:, 0] / (predicted[t][0, 0] + r)
        kalman[t] = gain
        filtered[t] = predicted[t] - np.outer(gain, predicted[t][0])
    smoother = np.zeros((max(num_frames - 1, 0), 2, 2))
    for t in range(num_frames - 1):
        smoother[t] = filtered[t] @ _TRANSITION.T @ np.linalg.inv(predicted[t + 1])
    return _Gains(kalman=kalman, smoother=smoother)


def _kalman_forward(track: np.ndarray, gains: _Gains, space: _Space):
    tangent_dim = 3 if space is _ROTATION else track.shape[-1]
    state = np.empty_like(track)
    predicted = np.empty_like(track)
    velocity = np.zeros(track.shape[:-1] + (tangent_dim,))
    state[0] = predicted[0] = track[0]
    for t in range(1, len(track)):
        predicted[t] = space.plus(state[t - 1], velocity[t - 1])
        innovation = space.minus(predicted[t], track[t])
        state[t] = space.plus(predicted[t], gains.kalman[t, 0] * innovation)
        velocity[t] = velocity[t - 1] + gains.kalman[t, 1] * innovation
    return state, velocity, predicted


def _rts(track: np.ndarray, gains: _Gains, space: _Space) -> np.ndarray:
    state, velocity, predicted = _kalman_forward(track, gains, space)
    smoothed = state.copy()
    smoothed_velocity = velocity.copy()
    for t in range(len(track) - 2, -1, -1):
        # The prediction of t+1 used the un-updated velocity, so its velocity part is velocity[t].
        d_state = space.minus(predicted[t + 1], smoothed[t + 1])
        d_velocity = smoothed_velocity[t + 1] - velocity[t]
        g = gains.smoother[t]
        smoothed[t] = space.plus(state[t], g[0, 0] * d_state + g[0, 1] * d_velocity)
        smoothed_velocity[t] = velocity[t] + g[1, 0] * d_state + g[1, 1] * d_velocity
    return smoothed


def smooth_track(track: np.ndarray, config: SmoothingConfig, rotation: bool = False) -> np.ndarray:
    """Smooth one track over its first axis (time).

    track: [T, ..., D] vectors, or [T, ..., 4] unit quaternions (w, x, y, z) when ``rotation`` is True.
    Returns a new float64 array of the same shape.
    """
    if config.method not in SMOOTHING_METHODS:
        raise ValueError(f"method must be one of {SMOOTHING_METHODS}, got {config.method!r}")
    track = np.array(track, dtype=np.float64, copy=True)
    if config.method == "none" or len(track) < 2:
        return track
    space = _ROTATION if rotation else _VECTOR
    if config.method == "ema":
        if not 0.0 < config.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {config.alpha}")
        return _ema(track, config.alpha, space)
    gains = constant_velocity_gains(len(track), config.process_noise, config.measurement_noise)
    if config.method == "kalman":
        return _kalman_forward(track, gains, space)[0]
    return _rts(track, gains, space)


def require_track(driver: Mapping[str, np.ndarray], field: str, tail: tuple[int | None, ...]) -> np.ndarray:
    """Fetch driver[field] as an array of shape [T, *tail] (None in tail = any size) or raise ValueError."""
    if field not in driver:
        raise ValueError(f"driver has no {field!r} field; add it (shape [T,{_shape_text(tail)}]) "
                         "or leave it out of fields")
    array = np.asarray(driver[field])
    matches = array.ndim == len(tail) + 1 and all(t is None or t == s for t, s in zip(tail, array.shape[1:]))
    if not matches or len(array) == 0:
        raise ValueError(f"driver[{field!r}] must have shape [T,{_shape_text(tail)}] with T >= 1, got {array.shape}")
    return array


def _shape_text(tail: tuple[int | None, ...]) -> str:
    return ",".join("n" if t is None else str(t) for t in tail)


def _smooth_axis_angles(axis_angles: np.ndarray, config: SmoothingConfig) -> np.ndarray:
    """[T, 3k] stacked axis-angles -> smoothed [T, 3k] through quaternions."""
    quats = quat_exp(axis_angles.reshape(len(axis_angles), -1, 3))
    return quat_log(smooth_track(quats, config, rotation=True)).reshape(axis_angles.shape)


def _smooth_camera(transform: np.ndarray, config: SmoothingConfig) -> np.ndarray:
    rotations = smooth_track(matrix_to_quat(transform[:, :, :3]), config, rotation=True)
    translations = smooth_track(transform[:, :, 3], config)
    return np.concatenate([quat_to_matrix(rotations), translations[:, :, None]], axis=2)


_FIELD_SHAPES = {"expcode": (None,), "posecode": (6,), "eyecode": (6,), "transform_matrix": (3, 4)}


def smooth_driver(
    driver: Mapping[str, np.ndarray],
    config: SmoothingConfig = SmoothingConfig(),
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Return a new driver dict with ``config.fields`` smoothed over time (other fields are shared, not copied).

    Output arrays keep the input dtype.  Raises ValueError for unknown fields or wrong shapes.
    """
    unknown = [f for f in config.fields if f not in _FIELD_SHAPES]
    if unknown:
        raise ValueError(f"cannot smooth fields {unknown}; supported: {list(_FIELD_SHAPES)}")
    result = dict(driver)
    for done, field in enumerate(config.fields):
        array = require_track(driver, field, _FIELD_SHAPES[field])
        if field == "expcode":
            smoothed = smooth_track(array, config)
        elif field == "transform_matrix":
            smoothed = _smooth_camera(array.astype(np.float64), config)
        else:
            smoothed = _smooth_axis_angles(array.astype(np.float64), config)
        result[field] = smoothed.astype(array.dtype)
        if progress is not None:
            progress(done + 1, len(config.fields))
    return result
