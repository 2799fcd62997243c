"""Self-reenactment metrics: each number reacts to the change it is meant to measure and not to the others."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from media import talking_clip

from talkinghead.pipelines.metrics.avatar import self_reenactment_report, similarity_fit


@pytest.fixture(scope="module")
def driver():
    return talking_clip(frames=8, size=(256, 256), motion=1.0).frames.astype(np.float32) / 255.0


def _each(frames, function):
    return np.stack([function(frame) for frame in frames]).astype(np.float32)


def test_identical_render_is_perfect(driver):
    report, per_frame = self_reenactment_report(driver, driver.copy())
    assert report["frames_with_landmarks_in_both"] == 8
    assert report["psnr"] == report["psnr_eyes"] == float("inf") and report["ssim"] == pytest.approx(1.0)
    assert report["expression_nme"] < 1e-5 and report["pose_error"]["roll_deg"] < 1e-3
    assert report["landmark_jitter"]["rendered"] == pytest.approx(report["landmark_jitter"]["driver"])
    assert "absent" in report["lpips"] and "absent" in report["identity_similarity"]
    assert all(len(v) == 8 for v in per_frame.values())


def test_a_rotated_render_shows_as_pose_error_not_expression_error(driver):
    turn = cv2.getRotationMatrix2D((128, 128), 5, 1.0)
    rotated = _each(driver, lambda f: cv2.warpAffine(f, turn, (256, 256), borderMode=cv2.BORDER_REFLECT))
    report, _ = self_reenactment_report(driver, rotated)
    assert report["pose_error"]["roll_deg"] == pytest.approx(5.0, abs=0.5)
    assert report["expression_nme"] < 0.01
    assert report["psnr"] < 25


def test_a_blurred_render_loses_psnr_but_keeps_its_pose(driver):
    blurred = _each(driver, lambda f: cv2.GaussianBlur(f, (0, 0), 2.0))
    report, _ = self_reenactment_report(driver, blurred)
    assert 20 < report["psnr"] < 35 and report["psnr_eyes"] < 35
    assert report["pose_error"]["roll_deg"] < 1.5  # FaceMesh noise on blurred faces; a 5 degree turn reads 5


def test_a_jittering_render_has_more_landmark_jitter_than_its_driver(driver):
    rng = np.random.default_rng(0)
    shaken = np.stack([cv2.warpAffine(f, np.float32([[1, 0, dx], [0, 1, dy]]), (256, 256),
                                      borderMode=cv2.BORDER_REFLECT)
                       for f, (dx, dy) in zip(driver, rng.uniform(-4, 4, (8, 2)))])
    report, _ = self_reenactment_report(driver, shaken)
    assert report["landmark_jitter"]["rendered"] > 1.5 * report["landmark_jitter"]["driver"]


def test_driver_of_another_size_is_resized_and_frame_counts_must_match(driver):
    small = _each(driver, lambda f: cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA))
    report, _ = self_reenactment_report(small, driver)
    assert report["driver_resized_to_render"] and report["psnr"] > 25
    with pytest.raises(ValueError, match="frames"):
        self_reenactment_report(driver[:4], driver)


def test_similarity_fit_recovers_a_known_transform():
    points = np.random.default_rng(1).uniform(0, 100, (30, 2))
    angle, scale = np.radians(12.0), 1.3
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = scale * points @ rotation.T + [5.0, -7.0]
    fitted_angle, fitted_scale, shift = similarity_fit(points, target)
    assert fitted_angle == pytest.approx(angle) and fitted_scale == pytest.approx(scale)
    np.testing.assert_allclose(shift, [5.0, -7.0], atol=1e-9)
