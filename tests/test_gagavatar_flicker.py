"""Frame-to-frame flicker of GAGAvatar renders: the reference's fresh refiner noise vs the checkpoint's fixed noise
buffers vs fixed noise plus driver smoothing (the first temporal fix is deterministic noise)."""
from __future__ import annotations

import numpy as np
import pytest

import gagavatar_synth as synth
from talkinghead.models.flame import load_flame
from talkinghead.models.gagavatar import load_gagavatar
from talkinghead.pipelines.gagavatar import animate, as_driver, encode_source_cached
from talkinghead.pipelines.gagavatar_enhance.evaluation import frame_flicker, synthetic_driver_track
from talkinghead.pipelines.gagavatar_enhance.smoothing import SmoothingConfig, smooth_driver

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scene():
    model = load_gagavatar(synth.tiny_gagavatar_state_dict(num_vertices=64))
    flame = load_flame(synth.synthetic_flame(num_vertices=64))
    source = synth.synthetic_frame(0)
    source_transform = synthetic_driver_track(num_frames=1)[0]["transform_matrix"][0]
    avatar = encode_source_cached(model, source, source_transform)
    return model, flame, avatar, np.zeros(300, np.float32)


def _render(scene, driver, randomize_noise=False):
    model, flame, avatar, shape = scene
    return animate(model, flame, avatar, shape, as_driver(driver), randomize_noise=randomize_noise)


def test_fixed_noise_makes_a_still_driver_a_still_video(scene):
    truth, _ = synthetic_driver_track(num_frames=1)
    still = {k: np.repeat(v, 4, axis=0) for k, v in truth.items()}
    assert frame_flicker(_render(scene, still)) == 0.0
    assert frame_flicker(_render(scene, still, randomize_noise=True)) > 1e-4  # the reference shimmers


def test_flicker_reference_noise_vs_fixed_noise_vs_fixed_noise_and_smoothing(scene):
    _, noisy = synthetic_driver_track(num_frames=10, seed=2)
    reference = frame_flicker(_render(scene, noisy, randomize_noise=True))
    fixed = frame_flicker(_render(scene, noisy))
    smoothed = frame_flicker(_render(scene, smooth_driver(noisy, SmoothingConfig(method="rts"))))
    assert reference > fixed > smoothed, (reference, fixed, smoothed)
