"""Self-reenactment metrics for an avatar (GAGAvatar driven by the video its source frame came from, so every
rendered frame has a ground truth: the driver frame).

- ``psnr`` / ``ssim``: whole frame; ``psnr_eyes``: inside the box around both FaceMesh eye contours of the driver
  frame (plus 25 % margin), where avatars usually lose detail first.
- ``expression_nme``: FaceMesh landmarks of the render against the driver's after a least-squares similarity
  alignment (so head pose and scale are taken out), mean distance over the inter-ocular distance: a proxy of
  expression error.
- ``pose_error``: the similarity that aligns them: roll in degrees and scale ratio; the landmark centroids' distance
  over the inter-ocular distance; plus yaw / pitch proxies (nose tip offset from the eye-mouth midline, in
  inter-ocular units).
- ``landmark_jitter``: mean |second difference| of the landmarks over time over the inter-ocular distance, for the
  render and for the driver (the driver's own jitter is the floor).
LPIPS and identity similarity need networks no package here ships; they are reported absent with the reason.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .per_frame import psnr_per_frame

LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
OUTER_EYE_CORNERS = (33, 263)
NOSE_TIP, UPPER_LIP, LOWER_LIP = 1, 13, 14
EYE_MARGIN = 0.25
ABSENT_LPIPS = ("not computed: LPIPS needs its AlexNet/VGG backbone weights plus the lpips linear layers (the lpips "
                "package's alex.pth / vgg.pth), which no installed package ships")
ABSENT_IDENTITY = ("not computed: identity similarity needs a face-recognition network (e.g. ArcFace / insightface "
                   "w600k_r50.onnx), which no installed package ships")


def _interocular(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, OUTER_EYE_CORNERS[0]] - points[:, OUTER_EYE_CORNERS[1]], axis=-1)


def eye_boxes(points: np.ndarray, height: int, width: int) -> list[tuple[slice, slice] | None]:
    """Per frame, the box around both eye contours with :data:`EYE_MARGIN`, clipped; None where no landmarks."""
    boxes = []
    for frame_points in points:
        eyes = frame_points[list(LEFT_EYE + RIGHT_EYE)]
        if not np.isfinite(eyes).all():
            boxes.append(None)
            continue
        (x0, y0), (x1, y1) = eyes.min(axis=0), eyes.max(axis=0)
        mx, my = EYE_MARGIN * (x1 - x0), EYE_MARGIN * (y1 - y0) + 2
        boxes.append((slice(max(0, int(y0 - my)), min(height, int(np.ceil(y1 + my)))),
                      slice(max(0, int(x0 - mx)), min(width, int(np.ceil(x1 + mx))))))
    return boxes


def similarity_fit(source: np.ndarray, target: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least-squares 2-D similarity (Umeyama) mapping ``source`` [K,2] onto ``target``: (angle rad, scale, t)."""
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    s, t = source - mean_s, target - mean_t
    covariance = t.T @ s / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float((singular * np.diag(sign)).sum() / s.var(axis=0).sum())
    return float(np.arctan2(rotation[1, 0], rotation[0, 0])), scale, mean_t - scale * rotation @ mean_s


def _pose_proxies(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Yaw / pitch proxies: nose tip offset from the eye midpoint, along and across the eye line, in inter-ocular
    units (relative to the mouth centre's for pitch)."""
    left, right = points[:, OUTER_EYE_CORNERS[0]], points[:, OUTER_EYE_CORNERS[1]]
    middle, axis = 0.5 * (left + right), right - left
    iod = np.linalg.norm(axis, axis=-1)
    along = axis / iod[:, None]
    across = np.stack([-along[:, 1], along[:, 0]], axis=-1)
    nose = points[:, NOSE_TIP] - middle
    mouth = 0.5 * (points[:, UPPER_LIP] + points[:, LOWER_LIP]) - middle
    yaw = (nose * along).sum(-1) / iod
    pitch = (nose * across).sum(-1) / np.maximum((mouth * across).sum(-1), 1e-6)
    return yaw, pitch


def landmark_jitter(points: np.ndarray) -> np.ndarray:
    """Per frame (NaN at both ends and where landmarks are missing): mean |p_{t-1} - 2 p_t + p_{t+1}| over the
    inter-ocular distance."""
    values = np.full(len(points), np.nan)
    iod = _interocular(points)
    for index in range(1, len(points) - 1):
        second = points[index - 1] - 2 * points[index] + points[index + 1]
        values[index] = float(np.linalg.norm(second, axis=-1).mean() / iod[index])
    return values


def _psnr(output: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (peak 1) over all pixels of the clip; inf when identical."""
    mse = float(((output.astype(np.float64) - reference) ** 2).mean())
    return float("inf") if mse == 0 else float(10 * np.log10(1 / mse))


def _ssim(output: np.ndarray, reference: np.ndarray) -> float:
    """Mean SSIM over frames (7x7 windows, per channel, data range 1)."""
    from skimage.metrics import structural_similarity

    return float(np.mean([structural_similarity(a, b, data_range=1.0, channel_axis=-1)
                          for a, b in zip(output, reference)]))


def _nanmean(values) -> float | None:
    """Mean over the frames that have a value (inf kept: identical frames have infinite PSNR); None if none."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else None


def self_reenactment_report(driver, rendered, landmarker: Callable | None = None,
                            progress: Callable[[int, int], None] | None = None) -> tuple[dict, dict]:
    """``(report, per_frame)`` comparing rendered frames with their driver frames (float [N,H,W,3] 0..1; the driver
    is resized to the render's size when they differ). See the module for each number."""
    from ..face_landmarks import facemesh_landmarks

    driver = np.asarray(driver, dtype=np.float32)
    rendered = np.asarray(rendered, dtype=np.float32)
    if len(driver) != len(rendered):
        raise ValueError(f"driver has {len(driver)} frames but the render {len(rendered)}: connect the frames the "
                         "avatar was driven with")
    height, width = rendered.shape[1:3]
    resized = driver.shape[1:3] != (height, width)
    if resized:
        driver = np.stack([cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA) for frame in driver])
    landmarker = landmarker or facemesh_landmarks
    driver_points, driver_found = landmarker(driver)
    rendered_points, rendered_found = landmarker(rendered, progress=progress)
    both = driver_found & rendered_found

    per_frame_psnr = psnr_per_frame(rendered, driver)
    eyes = np.full(len(driver), np.nan)
    for index, box in enumerate(eye_boxes(driver_points, height, width)):
        if box is not None:
            eyes[index] = psnr_per_frame(rendered[index:index + 1][:, box[0], box[1]],
                                         driver[index:index + 1][:, box[0], box[1]])[0]
    nme = np.full(len(driver), np.nan)
    roll, scale, shift = (np.full(len(driver), np.nan) for _ in range(3))
    for index in np.flatnonzero(both):
        angle, factor, translation = similarity_fit(rendered_points[index], driver_points[index])
        iod = float(_interocular(driver_points[index:index + 1])[0])
        c, s = np.cos(angle), np.sin(angle)
        aligned = factor * rendered_points[index] @ np.array([[c, s], [-s, c]]) + translation
        nme[index] = float(np.linalg.norm(aligned - driver_points[index], axis=-1).mean() / iod)
        roll[index], scale[index] = np.degrees(angle), factor
        shift[index] = float(np.linalg.norm(rendered_points[index].mean(0) - driver_points[index].mean(0)) / iod)
    yaw_d, pitch_d = _pose_proxies(driver_points)
    yaw_r, pitch_r = _pose_proxies(rendered_points)
    jitter_r, jitter_d = landmark_jitter(rendered_points), landmark_jitter(driver_points)
    report = {
        "frames": len(driver), "frames_with_landmarks_in_both": int(both.sum()),
        "driver_resized_to_render": bool(resized),
        "psnr": _psnr(rendered, driver), "ssim": _ssim(rendered, driver), "psnr_eyes": _nanmean(eyes),
        "expression_nme": _nanmean(nme),
        "pose_error": {"roll_deg": _nanmean(np.abs(roll)), "scale_ratio": _nanmean(scale),
                       "translation_iod": _nanmean(shift),
                       "yaw_proxy": _nanmean(np.abs(yaw_r - yaw_d)[both]),
                       "pitch_proxy": _nanmean(np.abs(pitch_r - pitch_d)[both])},
        "landmark_jitter": {"rendered": _nanmean(jitter_r), "driver": _nanmean(jitter_d)},
        "lpips": {"absent": ABSENT_LPIPS}, "identity_similarity": {"absent": ABSENT_IDENTITY},
    }
    per_frame = {"PSNR (dB)": per_frame_psnr, "eye-region PSNR (dB)": eyes, "expression NME": nme,
                 "landmark jitter (rendered)": jitter_r}
    return report, per_frame
