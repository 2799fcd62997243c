"""Diff2Lip enhancement stage 6: flow-guided temporal smoothing against a plain EMA, and the x_T initial guess."""
from __future__ import annotations

import numpy as np
import pytest
from diff2lip_enhance_media import enhance_clip, flickering

from talkinghead.pipelines.diff2lip_enhance import (ema_temporal_smooth, flow_temporal_smooth,
                                                    flow_warped_initial_guess, mix_initial_noise, warp_with_flow,
                                                    warped_flicker)

STRENGTH = 0.5


@pytest.fixture(scope="module")
def moving():
    """A real-photo clip with ~3 px head motion per frame; the region flickers like per-frame sampling."""
    clip = enhance_clip(frames=6, motion=3.0)
    return clip.original, flickering(clip.original, clip.region), clip.region


def _edge_error(output, clean, region):
    """Mean |output − clean| on the strong edges of the clean frames inside the region (frames 1..)."""
    gradient = np.stack([np.hypot(*np.gradient(frame.mean(-1))) for frame in clean])
    edges = (gradient > 0.05) & (region > 0.5)
    edges[0] = False
    return float(np.abs(output - clean).mean(-1)[edges].mean())


def test_flow_smoothing_halves_flicker_where_plain_ema_does_not(moving):
    clean, flicker, region = moving
    flow_out = flow_temporal_smooth(flicker, region, STRENGTH)
    ema_out = ema_temporal_smooth(flicker, region, STRENGTH)
    before = warped_flicker(flicker, region, flow_frames=clean)
    after_flow = warped_flicker(flow_out, region, flow_frames=clean)
    after_ema = warped_flicker(ema_out, region, flow_frames=clean)
    floor = warped_flicker(clean, region, flow_frames=clean)
    assert floor < 0.3 * before
    assert after_flow < 0.65 * before, (before, after_flow)
    assert after_ema > 0.9 * before, (before, after_ema)  # averaging misaligned frames adds its own difference


def test_plain_ema_ghosts_on_moving_edges_where_the_flow_version_does_not(moving):
    clean, flicker, region = moving
    error_none = _edge_error(flicker, clean, region)
    error_flow = _edge_error(flow_temporal_smooth(flicker, region, STRENGTH), clean, region)
    error_ema = _edge_error(ema_temporal_smooth(flicker, region, STRENGTH), clean, region)
    assert error_flow < error_none < error_ema, (error_flow, error_none, error_ema)
    assert error_ema > 1.8 * error_flow


def test_temporal_smoothing_only_touches_the_mask_and_keeps_frame_zero(moving):
    _, flicker, region = moving
    for out in (flow_temporal_smooth(flicker, region, STRENGTH), ema_temporal_smooth(flicker, region, STRENGTH)):
        assert np.array_equal(out[region == 0], flicker[region == 0])
        assert np.array_equal(out[0], flicker[0])
    assert np.array_equal(flow_temporal_smooth(flicker, region, 0.0), flicker)
    assert np.array_equal(flow_temporal_smooth(flicker, region, 1.0, method="farneback")[region == 0],
                          flicker[region == 0])


def test_flow_warped_initial_guess_moves_the_previous_crop_with_the_head(moving):
    clean, _, _ = moving
    previous_input = clean[0, 96:224, 64:192]
    current_input = np.roll(previous_input, (2, 3), axis=(0, 1))  # the head moved 3 px right, 2 px down
    previous_generated = np.clip(previous_input * 0.9 + 0.05, 0, 1)
    guess, valid = flow_warped_initial_guess(previous_generated, previous_input, current_input)
    expected = np.roll(previous_generated, (2, 3), axis=(0, 1))
    inner = (slice(16, -16), slice(16, -16))
    assert valid[inner].mean() > 0.9
    assert np.abs(guess - expected)[inner][valid[inner]].mean() < 0.02
    assert np.abs(previous_generated - expected)[inner].mean() > 0.04  # without the warp the guess would be off
    noise = np.random.default_rng(0).standard_normal(guess.shape).astype(np.float32)
    np.testing.assert_allclose(mix_initial_noise(2 * guess - 1, noise, 0.0), noise)
    np.testing.assert_allclose(mix_initial_noise(2 * guess - 1, noise, 1.0), 2 * guess - 1, atol=1e-6)
    mixed = mix_initial_noise(2 * guess - 1, noise, 0.25, valid[..., None].astype(np.float32))
    np.testing.assert_allclose(mixed[~valid], noise[~valid])


def test_warp_with_flow_samples_at_p_plus_flow():
    image = np.random.default_rng(2).random((32, 40, 3)).astype(np.float32)
    flow = np.zeros((32, 40, 2), np.float32)
    flow[..., 0] = 2.0
    np.testing.assert_allclose(warp_with_flow(image, flow)[:, :-2], image[:, 2:], atol=1e-6)
