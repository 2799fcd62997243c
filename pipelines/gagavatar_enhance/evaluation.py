"""Evaluation only (the tests and the benchmarks; no node and no product code imports it): the one synthetic
driver generator and synthetic scenes with known ground truth, and the metrics that measure the enhancements on them
(smoothing jitter/error/lag, render flicker, detail gain and halos).

Nothing here is a face model: these are controlled signals whose correct answer is known by construction.
"""
from __future__ import annotations

from typing import Mapping

import cv2
import numpy as np

from .detail import _LUMA, edge_strength
from .rotations import matrix_to_quat, quat_exp, quat_log, quat_minus, quat_plus, quat_to_matrix
from .smoothing import SmoothingConfig, smooth_driver


def synthetic_driver_track(num_frames: int = 250, fps: float = 25.0, seed: int = 0) -> tuple[dict, dict]:
    """A smooth ground-truth driver and a jittered copy of it (tracking noise), for measuring smoothers.

    Ground truth: sums of 0.1-1.5 Hz sinusoids on the 100 expression coefficients (amplitude falling with the PCA
    index), jaw opening 0-0.25 rad, eye yaw/pitch +-0.3/0.15 rad, head yaw/pitch/roll +-25/10/5 degrees around a
    frontal camera at distance 9 with small translations.  Jitter (Gaussian, per frame): 0.15 on expression,
    0.02 rad on jaw and eyes, 1 degree on camera rotation, 0.02 on camera translation.
    """
    rng = np.random.default_rng(seed)
    seconds = np.arange(num_frames)[:, None] / fps

    def waves(dims: int, amplitude, low_hz: float = 0.1, high_hz: float = 1.5) -> np.ndarray:
        freq = rng.uniform(low_hz, high_hz, (2, dims))
        phase = rng.uniform(0, 2 * np.pi, (2, dims))
        angles = 2 * np.pi * freq[:, None, :] * seconds[None] + phase[:, None, :]
        return amplitude * 0.5 * np.sin(angles).sum(axis=0)

    expression = waves(100, 1.5 / np.sqrt(1.0 + np.arange(100) / 5.0))
    jaw = np.concatenate([0.125 + waves(1, 0.125), waves(2, 0.02)], axis=1)
    one_eye = np.concatenate([waves(2, np.array([0.15, 0.3])), np.zeros((num_frames, 1))], axis=1)
    eyes = np.concatenate([one_eye, one_eye], axis=1)  # both eyes follow the same (pitch, yaw)
    head = waves(3, np.deg2rad([10.0, 25.0, 5.0]))
    frontal = quat_exp(np.array([0.0, np.pi, 0.0]))  # camera on +z looking back at the face
    camera_rotation = quat_to_matrix(quat_plus(np.broadcast_to(frontal, (num_frames, 4)), head))
    translation = np.array([0.0, 0.0, 9.0]) + waves(3, np.array([0.1, 0.05, 0.3]))
    truth = {
        "expcode": expression.astype(np.float32),
        "posecode": np.concatenate([np.zeros((num_frames, 3)), jaw], axis=1).astype(np.float32),
        "eyecode": eyes.astype(np.float32),
        "transform_matrix": np.concatenate([camera_rotation, translation[:, :, None]], axis=2).astype(np.float32),
    }

    def jitter_rot(rotvecs: np.ndarray, sigma: float) -> np.ndarray:
        return quat_log(quat_plus(quat_exp(rotvecs), rng.normal(0, sigma, rotvecs.shape)))

    noisy_camera = quat_plus(matrix_to_quat(camera_rotation), rng.normal(0, np.deg2rad(1.0), (num_frames, 3)))
    noisy = {
        "expcode": (expression + rng.normal(0, 0.15, expression.shape)).astype(np.float32),
        "posecode": np.concatenate([np.zeros((num_frames, 3)), jitter_rot(jaw, 0.02)], axis=1).astype(np.float32),
        "eyecode": jitter_rot(eyes.reshape(-1, 2, 3), 0.02).reshape(-1, 6).astype(np.float32),
        "transform_matrix": np.concatenate(
            [quat_to_matrix(noisy_camera), (translation + rng.normal(0, 0.02, translation.shape))[:, :, None]], axis=2
        ).astype(np.float32),
    }
    return truth, noisy


def synthetic_detail_scene(size: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    """A soft 'rendered' frame with regions whose correct treatment is known.

    Returns ``image`` [H,W,3] float32 and boolean [H,W] maps: ``face`` (an ellipse, the mask to enhance inside),
    ``texture`` (fine skin-like noise, slightly blurred as a refiner output is), ``edge`` (a 5-px band around a
    strong 0.45-step dark patch inside the face, where halos show), ``flat`` (constant colour, far from anything)
    and ``background`` (outside the face: textured too, so leaking enhancement would show).
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = (size - 1) / 2.0
    face = ((cols - centre) / (0.42 * size)) ** 2 + ((rows - centre) / (0.47 * size)) ** 2 <= 1.0

    def blurred_noise(sigma: float, amplitude: float) -> np.ndarray:
        noise = cv2.GaussianBlur(rng.normal(size=(size, size)).astype(np.float32), (0, 0), sigma)
        return amplitude * noise / noise.std()

    skin = np.array([0.75, 0.55, 0.45], np.float32)
    image = np.broadcast_to(skin, (size, size, 3)).copy()
    texture = face & (cols < centre - 0.05 * size)
    image[texture] += blurred_noise(0.8, 0.04)[texture][:, None]
    patch = (np.abs(cols - (centre + 0.2 * size)) < 0.1 * size) & (np.abs(rows - (centre + 0.2 * size)) < 0.06 * size)
    image[patch] -= 0.45
    background = ~face
    image[background] = 0.3 + blurred_noise(0.8, 0.05)[background][:, None]
    image = cv2.GaussianBlur(image, (0, 0), 0.7)  # rendered frames are soft
    patch_u8 = patch.astype(np.uint8)
    near_patch = cv2.dilate(patch_u8, np.ones((11, 11), np.uint8)) & ~cv2.erode(patch_u8, np.ones((11, 11), np.uint8))
    far_from_patch = ~cv2.dilate(patch_u8, np.ones((41, 41), np.uint8)).astype(bool)
    inner_face = cv2.erode(face.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
    flat = inner_face & far_from_patch & (cols > centre + 0.05 * size) & ~texture
    texture_core = cv2.erode(texture.astype(np.uint8), np.ones((21, 21), np.uint8)).astype(bool)
    return {
        "image": np.clip(image, 0.0, 1.0).astype(np.float32),
        "face": face,
        "texture": texture_core,
        "edge": near_patch.astype(bool) & face,
        "flat": flat,
        "background": background,
    }


def photo_detail_scene(photo: np.ndarray, face_box: tuple[float, float, float, float], size: int = 512,
                       blur_sigma: float = 1.0) -> dict[str, np.ndarray]:
    """A GAGAvatar-like crop of a real photo with region maps, for :func:`detail.detail_metrics`.

    The crop is the face box enlarged 1.65x to a square (as the tracker crops), resized to ``size`` and blurred by
    ``blur_sigma`` px (rendered frames are soft).  ``face`` is the ellipse inscribed in the face box; ``edge`` is a
    3-px band around strong luminance steps (Sobel >= 0.2) inside it; ``texture`` is the rest of the face interior
    (Sobel < 0.1); ``flat`` is empty (photos have none); ``background`` is outside the face.
    """
    x0, y0, x1, y1 = face_box
    side = 1.65 * np.sqrt((x1 - x0) * (y1 - y0))
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    scale = size / side
    affine = np.array([[scale, 0.0, size / 2 - scale * cx], [0.0, scale, size / 2 - scale * cy]])
    image = cv2.warpAffine(photo.astype(np.float32) / 255.0, affine, (size, size), flags=cv2.INTER_AREA,
                           borderMode=cv2.BORDER_REFLECT)
    image = np.clip(cv2.GaussianBlur(image, (0, 0), blur_sigma), 0.0, 1.0)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    half_w, half_h = 0.5 * scale * (x1 - x0), 0.5 * scale * (y1 - y0)
    face = ((cols - size / 2) / half_w) ** 2 + ((rows - size / 2) / half_h) ** 2 <= 1.0
    strength = edge_strength(image)
    strong = cv2.dilate((strength >= 0.2).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    interior = cv2.erode(face.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    return {
        "image": image.astype(np.float32),
        "face": face,
        "texture": interior & ~strong & (strength < 0.1),
        "edge": strong & interior,
        "flat": np.zeros_like(face),
        "background": ~face,
    }


# ---------------------------------------------------------------------------------------------------------------
# Metrics on tracks with known ground truth.


def rotations_as_vectors(quats: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Express a quaternion track [T, K, 4] as rotation vectors [T, 3K] relative to ``reference`` [K, 4]."""
    return quat_minus(np.broadcast_to(reference, quats.shape), quats).reshape(len(quats), -1)


def jitter_energy(track: np.ndarray) -> float:
    """Mean squared second temporal difference of a [T, D] track."""
    return float(np.mean(np.diff(track, n=2, axis=0) ** 2))


def rms_error(track: np.ndarray, truth: np.ndarray) -> float:
    """Root-mean-square difference of two [T, D] tracks."""
    return float(np.sqrt(np.mean((track - truth) ** 2)))


def lag_frames(track: np.ndarray, truth: np.ndarray, max_lag: int = 15) -> float:
    """Delay of ``track`` behind ``truth`` in frames: the cross-correlation peak, refined by a parabola fit.

    Positive = the track lags (track[t] ~ truth[t - lag]).
    """
    a = track - track.mean(axis=0)
    b = truth - truth.mean(axis=0)
    n = len(a)
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.array([np.sum(a[max(k, 0):n + min(k, 0)] * b[max(-k, 0):n - max(k, 0)]) / (n - abs(k)) for k in lags])
    i = int(np.argmax(corr))
    if 0 < i < len(lags) - 1:
        denominator = corr[i - 1] - 2 * corr[i] + corr[i + 1]
        offset = 0.5 * (corr[i - 1] - corr[i + 1]) / denominator if denominator < 0 else 0.0
        return float(lags[i] + offset)
    return float(lags[i])


def track_metrics(track: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Jitter energy, RMS error to the ground truth and lag (frames) of a [T, D] track."""
    return {"jitter": jitter_energy(track), "rms": rms_error(track, truth), "lag": lag_frames(track, truth)}


def _metric_tracks(driver: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-field [T, D] tracks to measure: vectors as is, rotations as rotation vectors around reference frame 0."""
    def rotation_track(quats: np.ndarray, reference_quats: np.ndarray) -> np.ndarray:
        return rotations_as_vectors(quats, reference_quats[0])

    pose = quat_exp(np.asarray(driver["posecode"], np.float64)[:, 3:].reshape(-1, 1, 3))
    eyes = quat_exp(np.asarray(driver["eyecode"], np.float64).reshape(-1, 2, 3))
    camera = matrix_to_quat(np.asarray(driver["transform_matrix"], np.float64)[:, None, :, :3])
    ref_pose = quat_exp(np.asarray(reference["posecode"], np.float64)[:, 3:].reshape(-1, 1, 3))
    ref_eyes = quat_exp(np.asarray(reference["eyecode"], np.float64).reshape(-1, 2, 3))
    ref_camera = matrix_to_quat(np.asarray(reference["transform_matrix"], np.float64)[:, None, :, :3])
    return {
        "expcode": np.asarray(driver["expcode"], np.float64),
        "jaw (rad)": rotation_track(pose, ref_pose),
        "eyes (rad)": rotation_track(eyes, ref_eyes),
        "camera rotation (rad)": rotation_track(camera, ref_camera),
        "camera translation": np.asarray(driver["transform_matrix"], np.float64)[:, :, 3],
    }


def evaluate_smoothing(
    noisy: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray], configs: Mapping[str, SmoothingConfig]
) -> dict[str, dict[str, dict[str, float]]]:
    """Smooth ``noisy`` with each named config; return {config name: {field: {jitter, rms, lag}}} against ``truth``.

    Rotations are measured as rotation vectors (radians) relative to the ground truth's first frame.
    """
    truth_tracks = _metric_tracks(truth, truth)
    report = {}
    for name, config in configs.items():
        tracks = _metric_tracks(smooth_driver(noisy, config), truth)
        report[name] = {field: track_metrics(tracks[field], truth_tracks[field]) for field in truth_tracks}
    return report



def frame_flicker(frames: np.ndarray) -> float:
    """Mean absolute frame-to-frame change of rendered frames [T,H,W,3] (0 for a still video)."""
    frames = np.asarray(frames, dtype=np.float32)
    if len(frames) < 2:
        raise ValueError(f"frames: need at least 2 frames to measure flicker, got {len(frames)}")
    return float(np.abs(np.diff(frames, axis=0)).mean())


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def high_frequency_energy(image: np.ndarray, region: np.ndarray, sigma: float = 1.5) -> float:
    """Mean squared luminance high-pass (image - Gaussian(sigma)) over the boolean ``region`` of an [H,W,3] image."""
    luma = np.ascontiguousarray(image, dtype=np.float32) @ _LUMA
    high = luma - cv2.GaussianBlur(luma, (0, 0), sigma)
    return float(np.mean(high[region] ** 2))


def edge_overshoot(before: np.ndarray, after: np.ndarray, region: np.ndarray, window: int = 7) -> tuple[float, float]:
    """Halo measure: how far ``after`` leaves the [min, max] range of ``before`` in a window, over ``region``.

    Returns (mean, max) overshoot in intensity units; an edge-preserving operation gives 0.
    """
    kernel = np.ones((window, window), np.uint8)
    local_max = cv2.dilate(before, kernel)
    local_min = cv2.erode(before, kernel)
    excess = np.maximum(after - local_max, 0.0) + np.maximum(local_min - after, 0.0)
    excess = excess.max(axis=-1)[region]
    return float(excess.mean()), float(excess.max())


def detail_metrics(before: np.ndarray, after: np.ndarray, regions: dict[str, np.ndarray]) -> dict[str, float]:
    """Numbers for one enhanced frame, given boolean region maps ``texture``, ``edge``, ``flat``, ``background``.

    hf_gain: high-frequency energy ratio after/before on the texture; overshoot_mean/max on the edge band;
    flat_max_change and background_max_change: largest absolute pixel change there.
    """
    overshoot_mean, overshoot_max = edge_overshoot(before, after, regions["edge"])
    change = np.abs(after.astype(np.float64) - before.astype(np.float64)).max(axis=-1)
    return {
        "hf_gain": high_frequency_energy(after, regions["texture"]) / high_frequency_energy(before, regions["texture"]),
        "overshoot_mean": overshoot_mean,
        "overshoot_max": overshoot_max,
        "flat_max_change": float(change[regions["flat"]].max()),
        "background_max_change": float(change[regions["background"]].max()),
    }
