"""GAGAvatar stream nodes: render a driver as a frame stream (one batch of splats at a time) and the frame-side
enhancements as stream stages.  The driver-side enhancements keep working on the whole (small) driver."""
from __future__ import annotations

from comfy_api.latest import io

from . import help_text
from .gagavatar_nodes import _autocast, _check_same_model, rasterizer_input
from .sockets import FLAME_MODEL, FRAME_STREAM, GAGAVATAR_AVATAR, GAGAVATAR_DRIVER, GAGAVATAR_MODEL, GAGAVATAR_SOURCE

CATEGORY = "TalkingHead/GAGAvatar/stream"


class GAGAvatarAnimateStream(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GAGAvatarAnimateStream",
            display_name="Animate Avatar (GAGAvatar, stream)",
            category=CATEGORY,
            description="The avatar driven by the driver, as a frame stream rendered batch by batch when the sink "
                        "runs: the 32-channel splats exist for one batch at a time, never for the whole clip. Same "
                        "frames as Animate Splats + Refine with equal batch sizes; each frame carries the splat's "
                        "alpha for Detail Enhance (stream).",
            inputs=[GAGAVATAR_MODEL.Input("model"), FLAME_MODEL.Input("flame"), GAGAVATAR_AVATAR.Input("avatar"),
                    GAGAVATAR_DRIVER.Input("driver"),
                    io.Int.Input("batch_size", default=1, min=1, max=64,
                                 tooltip=help_text.batch_size("Frames per FLAME/rasteriser/refiner call",
                                                              "One batch of 32 MB splats is alive at a time.")),
                    io.Boolean.Input("reference_noise", default=False, tooltip=help_text.REFERENCE_NOISE),
                    rasterizer_input()],
            outputs=[FRAME_STREAM.Output(display_name="stream"), io.Float.Output(display_name="fps")],
        )

    @classmethod
    def execute(cls, model, flame, avatar, driver, batch_size, reference_noise, rasterizer="auto"):
        from ..pipelines.stream import FrameStream
        from ..pipelines.stream.gagavatar import AvatarRenderSource

        _check_same_model(avatar, model, "Animate Avatar (GAGAvatar, stream)")
        source = AvatarRenderSource(model=model.module, flame=flame.module, avatar=avatar["avatar"],
                                    source_shape=avatar["source"].shapecode, driver=driver,
                                    identity=f"{model.name}|{id(avatar['avatar'])}|{driver.source_path}|{len(driver)}",
                                    batch_size=batch_size, randomize_noise=reference_noise,
                                    autocast_dtype=_autocast(model), backend=rasterizer)
        return io.NodeOutput(FrameStream(source), float(source.info().fps))


class GAGAvatarDetailEnhanceStream(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GAGAvatarDetailEnhanceStream",
            display_name="Detail Enhance (GAGAvatar, stream)",
            category=CATEGORY,
            description="Detail Enhance on a rendered stream, inside the avatar's alpha (background untouched).",
            inputs=[FRAME_STREAM.Input("stream"),
                    io.Float.Input("strength", default=0.3, min=0.0, max=2.0, step=0.05,
                                   tooltip="Base gain of the pyramid detail boost; 0 = unchanged."),
                    io.Boolean.Input("inside_alpha", default=True,
                                     tooltip="Limit to the rendered avatar (its alpha); off = the whole frame.")],
            outputs=[FRAME_STREAM.Output(display_name="stream")],
        )

    @classmethod
    def execute(cls, stream, strength, inside_alpha):
        from ..pipelines.stream.gagavatar import DetailEnhanceStage

        return io.NodeOutput(stream.then(DetailEnhanceStage(strength, inside_alpha)))


class GAGAvatarEyeEnhanceStream(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GAGAvatarEyeEnhanceStream",
            display_name="Eye Enhance (GAGAvatar, stream)",
            category=CATEGORY,
            description="Eye Enhance on a rendered stream (eye positions from the driver that was rendered).",
            inputs=[FRAME_STREAM.Input("stream"), GAGAVATAR_DRIVER.Input("driver", tooltip="The driver rendered."),
                    FLAME_MODEL.Input("flame"),
                    io.Float.Input("strength", default=0.5, min=0.0, max=2.0, step=0.05,
                                   tooltip="Sharpening gain inside the eye masks; 0 = unchanged."),
                    GAGAVATAR_SOURCE.Input("source", optional=True)],
            outputs=[FRAME_STREAM.Output(display_name="stream")],
        )

    @classmethod
    def execute(cls, stream, driver, flame, strength, source=None):
        from ..pipelines.stream.gagavatar import EyeEnhanceStage

        if stream.info().num_frames != len(driver):
            raise ValueError(f"Eye Enhance (GAGAvatar, stream): the stream has {stream.info().num_frames} frames but "
                             f"the driver {len(driver)}; connect the driver that rendered it")
        return io.NodeOutput(stream.then(EyeEnhanceStage(
            driver=driver, flame=flame.module, shapecode=None if source is None else source.shapecode,
            identity=f"{driver.source_path}|{len(driver)}", strength=strength)))


NODES = [GAGAvatarAnimateStream, GAGAvatarDetailEnhanceStream, GAGAvatarEyeEnhanceStream]
