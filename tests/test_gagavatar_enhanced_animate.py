"""*Animate Avatar, Enhanced* in one call: the same frames as the multi-node enhanced workflow, and its detail
enhancement stays inside the rendered alpha, so the background is exactly what the refiner rendered."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import gagavatar_synth as synth
from talkinghead.pipelines import gagavatar as gg
from talkinghead.pipelines.gagavatar_enhance import (PRESETS, DetailConfig, EnhanceConfig, animate_enhanced,
                                                     enhance_driver, enhance_frames)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return synth.tiny_scene(tmp_path_factory.mktemp("scene"), num_frames=3)


# a strong detail gain so that enhancing the background would show
STRONG_DETAIL = EnhanceConfig(detail=replace(DetailConfig(), strength=1.5))


def _far(driver) -> dict:
    """The driver with its camera twice as far away: the avatar covers the centre and the rest is empty (alpha 0)."""
    far = driver.as_dict()
    far["transform_matrix"] = far["transform_matrix"].copy()
    far["transform_matrix"][:, :, 3] *= 2.0
    return far


def test_detail_enhancement_leaves_the_background_as_rendered(scene):
    model, flame, avatar, source_shape, near = scene
    driver = _far(near)
    plain = gg.animate(model, flame, avatar, source_shape, driver)
    _, alpha = gg.splat_frames(model, flame, avatar, source_shape, driver, return_alpha=True)
    background = alpha.numpy() <= 0
    assert background.any() and (~background).any()
    calls = []
    enhanced = animate_enhanced(model, flame, avatar, source_shape, driver, STRONG_DETAIL,
                                progress=lambda done, total: calls.append((done, total)))
    assert np.array_equal(enhanced[background], plain[background])  # bit-exact outside the avatar
    assert np.abs(enhanced - plain)[~background].max() > 1e-3  # and the face really was enhanced
    assert calls[-1] == (9, 9)  # splat, refine and detail over 3 frames
    # what the one node did before (no mask: the whole frame) changes the background: the check above can fail
    unmasked = enhance_frames(plain, STRONG_DETAIL)
    assert np.abs(unmasked[background] - plain[background]).max() > 1e-3


def test_one_call_equals_the_multi_node_enhanced_workflow(scene):
    """Driver enhancements -> Animate (splats + alpha) -> Refine -> Detail Enhance(face_mask=alpha) -> Eye Enhance."""
    model, flame, avatar, source_shape, driver = scene
    config = replace(PRESETS["gaze_correct"], smoothing=PRESETS["enhanced"].smoothing,
                     detail=PRESETS["enhanced"].detail)
    one = animate_enhanced(model, flame, avatar, source_shape, driver, config)
    rendered = gg.as_driver(enhance_driver(driver.as_dict(), config, flame=flame, shapecode=source_shape))
    splats, alpha = gg.splat_frames(model, flame, avatar, source_shape, rendered, return_alpha=True)
    frames = gg.refine_splats(model, splats)
    frames = enhance_frames(frames, EnhanceConfig(detail=config.detail), alpha.clamp(0, 1).numpy())
    frames = enhance_frames(frames, EnhanceConfig(eyes=config.eyes), driver=rendered.as_dict(), flame=flame,
                            shapecode=source_shape)
    assert np.array_equal(one, frames)
