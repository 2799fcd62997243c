"""Diff2Lip enhancement: sharpening (2), colour matching (8), denoise (9) and metrics (10) on real-photo clips."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from diff2lip_enhance_media import enhance_clip

from talkinghead.pipelines.diff2lip_enhance import (boundary_delta_e, composite, denoise_region, match_color, psnr,
                                                    quality_report, sharpen_region, ssim)

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


@pytest.fixture(scope="module")
def clip():
    return enhance_clip(frames=3)


def _region_box(mask2d):
    rows, cols = np.flatnonzero(mask2d.any(1)), np.flatnonzero(mask2d.any(0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def _with_patch(clip, patch):
    """Frames with ``patch`` [h,w,3] written at the centre of each region, plus the patch's (y, x) corner."""
    frames = clip.original.copy()
    top, bottom, left, right = _region_box(clip.region[0])
    y, x = (top + bottom - patch.shape[0]) // 2, (left + right - patch.shape[1]) // 2
    frames[:, y:y + patch.shape[0], x:x + patch.shape[1]] = patch
    return frames, (y, x)


def _step_patch(size=40, low=0.3, high=0.7, blur=1.5):
    patch = np.full((size, size, 3), low, np.float32)
    patch[:, size // 2:] = high
    return cv2.GaussianBlur(patch, (0, 0), blur)


def _rise_distance(profile, low, high):
    """10-90 % rise distance in px of a monotone edge profile (linear interpolation between samples)."""
    positions = np.arange(len(profile), dtype=np.float64)
    levels = (profile - low) / (high - low)
    first = np.argmax(levels >= 0.1)
    last = np.argmax(levels >= 0.9)
    at = lambda level, i: positions[i - 1] + (level - levels[i - 1]) / (levels[i] - levels[i - 1])  # noqa: E731
    return at(0.9, last) - at(0.1, first)


def test_sharpen_leaves_flat_patch_brightness_and_outside_pixels(clip):
    rng = np.random.default_rng(0)
    flat = np.clip(0.45 + rng.normal(0, 0.01, (40, 40, 3)), 0, 1).astype(np.float32)
    frames, (y, x) = _with_patch(clip, flat)
    out = sharpen_region(frames, clip.region, strength=1.0)
    inner = (slice(None), slice(y + 6, y + 34), slice(x + 6, x + 34))  # 6 px > 3 sigma from the patch border
    assert abs(out[inner].mean() - frames[inner].mean()) < 1e-4
    assert np.abs(out[inner] - frames[inner]).max() > 0.005  # the noise itself was sharpened
    outside = clip.region == 0
    assert np.array_equal(out[outside], frames[outside])
    assert np.array_equal(sharpen_region(frames, clip.region, strength=0.0), frames)


def test_sharpen_edge_contrast_rises_monotonically_with_strength(clip):
    frames, (y, x) = _with_patch(clip, _step_patch())
    rises, mouth_gradients = [], []
    top, bottom, left, right = _region_box(clip.region[0])
    for strength in STRENGTHS:
        out = sharpen_region(frames, clip.region, strength=strength)
        rises.append(_rise_distance(out[0, y + 20, x:x + 40].mean(-1), 0.3, 0.7))
        luma = out[0, top:y, left:right].mean(-1)  # real photo texture above the patch: the upper lip area
        mouth_gradients.append(np.hypot(*np.gradient(luma)).mean())
    assert all(a > b for a, b in zip(rises, rises[1:])), rises
    assert all(a < b for a, b in zip(mouth_gradients, mouth_gradients[1:])), mouth_gradients
    assert rises[-1] < 0.75 * rises[0]


@pytest.mark.parametrize("method", ["bilateral", "nlm", "guided"])
def test_denoise_lowers_flat_noise_keeps_edge_step_and_outside(clip, method):
    rng = np.random.default_rng(1)
    frames, (y, x) = _with_patch(clip, _step_patch(size=48, low=0.35, high=0.75, blur=0.5))
    noise = rng.normal(0, 0.03, frames.shape).astype(np.float32) * clip.region[..., None]
    noisy = np.clip(frames + noise, 0, 1)
    out = denoise_region(noisy, clip.region, method=method, strength=0.5)
    flat = (slice(None), slice(y + 8, y + 40), slice(x + 4, x + 18))
    assert out[flat].std(axis=(1, 2)).mean() < 0.5 * noisy[flat].std(axis=(1, 2)).mean()
    left_side, right_side = out[:, y + 8:y + 40, x + 4:x + 18], out[:, y + 8:y + 40, x + 30:x + 44]
    step = right_side.mean() - left_side.mean()
    assert abs(step - 0.4) < 0.03 * 0.4, step
    # the edge stays sharp: most of the step still happens within 2 px of the boundary
    profile = out[:, y + 8:y + 40, x + 20:x + 28].mean(axis=(0, 1, 3))
    assert profile[5] - profile[2] > 0.8 * 0.4, profile
    outside = clip.region == 0
    assert np.array_equal(out[outside], noisy[outside])


@pytest.mark.parametrize("method", ["lab_meanstd", "histogram"])
def test_colour_match_removes_the_colour_jump_across_the_paste_edge(clip, method):
    pasted = composite(clip.original, clip.generated, clip.region)
    matched = match_color(clip.original, pasted, clip.region, method=method)
    natural = boundary_delta_e(clip.original, clip.region)
    before = boundary_delta_e(pasted, clip.region)
    after = boundary_delta_e(matched, clip.region)
    assert before > natural + 4.0, (natural, before)
    assert after < natural + 0.35 * (before - natural), (natural, before, after)
    outside = clip.region == 0
    assert np.array_equal(matched[outside], pasted[outside])


def test_psnr_ssim_outside_the_region_see_only_outside_changes(clip):
    pasted = composite(clip.original, clip.generated, clip.region)
    assert psnr(pasted, clip.original, clip.region, mask_outside=True) == float("inf")
    assert ssim(pasted, clip.original, clip.region, mask_outside=True) > 0.99
    assert psnr(pasted, clip.original) < 40.0
    assert ssim(pasted, clip.original, clip.region) < 0.9
    leaked = pasted.copy()
    leaked[clip.region == 0] += 0.01
    assert 39.0 < psnr(leaked, clip.original, clip.region, mask_outside=True) < 41.0  # 20·log10(1/0.01) = 40 dB


def test_quality_report_numbers_and_user_hooks(clip):
    pasted = composite(clip.original, clip.generated, clip.region)
    calls = []
    report = quality_report(clip.original, pasted, clip.region, generated=clip.generated, landmarks=True,
                            lpips_fn=lambda out, ref: calls.append(out.shape) or 0.25)
    assert report["psnr_outside"] == float("inf") and report["max_abs_outside"] == 0.0
    assert report["seam_energy"] > 0.003
    assert report["boundary_delta_e"] > 4.0
    assert report["lpips"] == 0.25 and calls == [pasted.shape] and report["sync_score"] is None
    assert report["lip_landmarks"]["frames_compared"] == len(pasted)
    assert np.isfinite(report["flicker_output"]) and np.isfinite(report["flicker_original"])


def test_bad_inputs_raise_value_errors_naming_the_input(clip):
    with pytest.raises(ValueError, match="frames"):
        sharpen_region(clip.original[0], clip.region[0])
    with pytest.raises(ValueError, match="mask"):
        sharpen_region(clip.original, clip.region[:, :10])
    with pytest.raises(ValueError, match="strength"):
        denoise_region(clip.original, clip.region, strength=2.0)
    with pytest.raises(ValueError, match="method"):
        match_color(clip.original, clip.generated, clip.region, method="lut")
    with pytest.raises(ValueError, match="frames"):
        sharpen_region((clip.original * 255).astype(np.uint8), clip.region)
