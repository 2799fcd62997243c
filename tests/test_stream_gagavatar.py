"""GAGAvatar as a stream: the rendered frames (and the enhancement stages) equal the whole-clip functions for every
chunk size, with only one batch of splats alive at a time."""
from __future__ import annotations

import numpy as np
import pytest

import gagavatar_synth as synth
from talkinghead.pipelines import gagavatar as gg
from talkinghead.pipelines.gagavatar_enhance import DetailConfig, EnhanceConfig, EyeEnhanceConfig, enhance_frames
from talkinghead.pipelines.stream import FrameStream
from talkinghead.pipelines.stream.gagavatar import AvatarRenderSource, DetailEnhanceStage, EyeEnhanceStage

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return synth.tiny_scene(tmp_path_factory.mktemp("scene"), num_frames=7, fps=30.0)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_streamed_render_and_enhancement_equal_the_whole_clip(scene, batch_size):
    model, flame, avatar, source_shape, driver = scene
    splats, alpha = gg.splat_frames(model, flame, avatar, source_shape, driver, batch_size=batch_size,
                                    return_alpha=True)
    frames = gg.refine_splats(model, splats, batch_size=batch_size)
    eyes = EyeEnhanceConfig()
    from dataclasses import replace

    expected = enhance_frames(frames, EnhanceConfig(detail=DetailConfig(strength=0.3)), alpha.clamp(0, 1).numpy())
    expected = enhance_frames(expected, EnhanceConfig(eyes=replace(eyes, detail=replace(eyes.detail, strength=0.5))),
                              driver=driver.as_dict(), flame=flame, shapecode=source_shape)
    source = AvatarRenderSource(model=model, flame=flame, avatar=avatar, source_shape=source_shape, driver=driver,
                                batch_size=batch_size)
    info = source.info()
    assert (info.num_frames, info.width, info.fps) == (7, frames.shape[2], 30)
    plain = FrameStream(source)
    stream = plain.then(DetailEnhanceStage(0.3)).then(EyeEnhanceStage(driver=driver, flame=flame,
                                                                      shapecode=source_shape, strength=0.5))
    for chunk_size in (1, 4, 100):
        rendered, masks = plain.to_arrays(chunk_size)
        assert np.array_equal(rendered, frames) and np.array_equal(masks["alpha"], alpha.clamp(0, 1).numpy())
        out, _ = stream.to_arrays(chunk_size)
        assert np.array_equal(out, expected), chunk_size
    assert not np.array_equal(expected, frames)  # the stages did something
    # from a frame index (the batch runner's parts): the same frames
    tail = [item.image for chunk in plain.chunks(2, start=4) for item in chunk]
    assert np.array_equal(np.stack(tail), frames[4:])
