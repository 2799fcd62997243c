"""Synthetic scenes with known ground truth for measuring the enhancements (used by the tests and the benchmark).

Nothing here is a face model: these are controlled signals whose correct answer is known by construction.
"""
from __future__ import annotations

import cv2
import numpy as np

from .rotations import matrix_to_quat, quat_exp, quat_log, quat_plus, quat_to_matrix


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
    from .detail import edge_strength

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
