"""GAGAvatar enhancement nodes: adapters to ``pipelines.gagavatar_enhance`` (each improvement its own node, plus one
switch that applies a preset — ``enhanced`` turns everything on)."""
from __future__ import annotations

from dataclasses import replace

from comfy_api.latest import io

from . import help_text
from .common import image_to_numpy, mask_to_numpy, numpy_to_image, progress_callback
from .guards import check_finite
from .help_text import schema
from .sockets import FLAME_MODEL, GAGAVATAR_DRIVER, GAGAVATAR_MODEL, GAGAVATAR_SOURCE

CATEGORY = "TalkingHead/GAGAvatar/enhance"


def _enhanced_driver(driver, config, flame=None, source=None):
    from ..pipelines.gagavatar_enhance import enhance_driver

    return enhance_driver(driver, config, flame=None if flame is None else flame.module,
                          shapecode=None if source is None else source.shapecode)


class GAGAvatarSmoothDriver(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=["avatar", "jitter", "stabilise"],
            node_id="GAGAvatarSmoothDriver",
            display_name="Smooth Driver (GAGAvatar)",
            category=CATEGORY,
            description="Temporal smoothing of the driver's FLAME expression, jaw, eye pose and camera (rotations on "
                        "quaternions, never Euler). RTS = zero-lag forward-backward Kalman smoother (the whole "
                        "driver is known in advance); Kalman and EMA are causal and lag.",
            inputs=[GAGAVATAR_DRIVER.Input("driver"),
                    io.Combo.Input("method", options=["rts", "kalman", "ema"], default="rts",
                                   tooltip="rts: zero-lag smoother (default); kalman / ema: causal, lag behind."),
                    io.Float.Input("ema_alpha", default=0.5, min=0.01, max=1.0, step=0.01,
                                   tooltip="EMA weight of the newest frame (EMA only)."),
                    io.Float.Input("noise_ratio", default=0.1, min=1e-4, max=100.0, step=0.001,
                                   tooltip="Kalman/RTS process/measurement noise ratio q/r: smaller = smoother.")],
            outputs=[GAGAVATAR_DRIVER.Output(display_name="driver")],
        )

    @classmethod
    def execute(cls, driver, method, ema_alpha, noise_ratio):
        from ..pipelines.gagavatar_enhance import EnhanceConfig, SmoothingConfig

        smoothing = SmoothingConfig(method=method, alpha=ema_alpha, process_noise=noise_ratio, measurement_noise=1.0)
        return io.NodeOutput(_enhanced_driver(driver, EnhanceConfig(smoothing=smoothing)))


class GAGAvatarRegionExpression(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        weights = [io.Float.Input(f"{region}_weight", default=value, min=0.0, max=2.0, step=0.05,
                                  tooltip=f"Scale of the driver's expression displacement on the {region} region.")
                   for region, value in _default_region_weights().items()]
        return io.Schema(
            node_id="GAGAvatarRegionExpression",
            display_name="Region-Aware Expression (GAGAvatar)",
            category=CATEGORY,
            description="Scales the driver's expression per face region in FLAME vertex space (expression "
                        "coefficients are global PCA components), projects back by least squares, and blends with "
                        "the original coefficients.",
            inputs=[GAGAVATAR_DRIVER.Input("driver"), FLAME_MODEL.Input("flame"), *weights,
                    io.Float.Input("blend", default=0.8, min=0.0, max=1.0, step=0.05,
                                   tooltip="Share of the region-scaled expression (0.8 new / 0.2 original).")],
            outputs=[GAGAVATAR_DRIVER.Output(display_name="driver")],
        )

    @classmethod
    def execute(cls, driver, flame, blend, **weights):
        from ..pipelines.gagavatar_enhance import EnhanceConfig, ExpressionTransferConfig

        region_weights = {name[:-len("_weight")]: value for name, value in weights.items()}
        config = EnhanceConfig(expression=ExpressionTransferConfig(region_weights=region_weights, blend=blend))
        return io.NodeOutput(_enhanced_driver(driver, config, flame))


def _default_region_weights() -> dict:
    from ..pipelines.gagavatar_enhance.expression import DEFAULT_REGION_WEIGHTS

    return DEFAULT_REGION_WEIGHTS


class GAGAvatarGazeCorrect(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=["avatar", "eye contact"],
            node_id="GAGAvatarGazeCorrect",
            display_name="Gaze Correction (GAGAvatar)",
            category=CATEGORY,
            description="Turns the eyeballs (FLAME eye pose) toward the camera by a strength (eye contact).",
            inputs=[GAGAVATAR_DRIVER.Input("driver"), FLAME_MODEL.Input("flame"),
                    io.Float.Input("strength", default=0.7, min=0.0, max=1.0, step=0.05,
                                   tooltip="0 = driver's gaze, 1 = straight into the camera."),
                    GAGAVATAR_SOURCE.Input("source", optional=True, tooltip=help_text.RENDERED_SOURCE)],
            outputs=[GAGAVATAR_DRIVER.Output(display_name="driver")],
        )

    @classmethod
    def execute(cls, driver, flame, strength, source=None):
        from ..pipelines.gagavatar_enhance import EnhanceConfig, GazeConfig

        return io.NodeOutput(_enhanced_driver(driver, EnhanceConfig(gaze=GazeConfig(strength=strength)), flame, source))


class GAGAvatarDetailEnhance(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GAGAvatarDetailEnhance",
            display_name="Detail Enhance (GAGAvatar)",
            category=CATEGORY,
            description="4-level Laplacian-pyramid detail boost inside the face, attenuated at strong edges (no "
                        "halos); flat areas and everything outside the mask are unchanged.",
            inputs=[io.Image.Input("frames"),
                    io.Float.Input("strength", default=0.3, min=0.0, max=2.0, step=0.05,
                                   tooltip="Base gain of the pyramid detail boost; 0 = unchanged."),
                    io.Mask.Input("face_mask", optional=True, tooltip="Where to enhance; default the whole frame.")],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, frames, strength, face_mask=None):
        from ..pipelines.gagavatar_enhance import DetailConfig, EnhanceConfig, enhance_frames

        check_finite(frames, "Detail Enhance (GAGAvatar)", "frames")
        if face_mask is not None:
            check_finite(face_mask, "Detail Enhance (GAGAvatar)", "face_mask")
        array = image_to_numpy(frames)
        mask = None if face_mask is None else mask_to_numpy(face_mask)
        out = enhance_frames(array, EnhanceConfig(detail=DetailConfig(strength=strength)), mask,
                             progress=progress_callback(len(array)))
        return io.NodeOutput(numpy_to_image(out))


class GAGAvatarEyeEnhance(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GAGAvatarEyeEnhance",
            display_name="Eye Enhance (GAGAvatar)",
            category=CATEGORY,
            description="Sharpens the eye regions of rendered frames inside soft masks around the FLAME eye centres "
                        "projected with the driver camera.",
            inputs=[io.Image.Input("frames"), GAGAVATAR_DRIVER.Input("driver", tooltip="The driver that was rendered."),
                    FLAME_MODEL.Input("flame"),
                    io.Float.Input("strength", default=0.5, min=0.0, max=2.0, step=0.05,
                                   tooltip="Sharpening gain inside the eye masks; 0 = unchanged."),
                    GAGAVATAR_SOURCE.Input("source", optional=True, tooltip=help_text.RENDERED_SOURCE)],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, frames, driver, flame, strength, source=None):
        from ..pipelines.gagavatar_enhance import EnhanceConfig, EyeEnhanceConfig, enhance_frames

        check_finite(frames, "Eye Enhance (GAGAvatar)", "frames")
        array = image_to_numpy(frames)
        if len(array) != len(driver):
            raise ValueError(f"Eye Enhance: {len(array)} frames but the driver has {len(driver)}; connect the driver "
                             "that rendered these frames")
        eyes = EyeEnhanceConfig()
        config = EnhanceConfig(eyes=replace(eyes, detail=replace(eyes.detail, strength=strength)))
        out = enhance_frames(array, config, driver=driver, flame=flame.module,
                             shapecode=None if source is None else source.shapecode,
                             progress=progress_callback(len(array)))
        return io.NodeOutput(numpy_to_image(out))


class GAGAvatarEnhancedAnimate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        from ..pipelines.gagavatar_enhance import PRESETS

        return schema(
            search_aliases=help_text.AVATAR_ALIASES,
            node_id="GAGAvatarEnhancedAnimate",
            display_name="Animate Avatar, Enhanced (GAGAvatar)",
            category=CATEGORY,
            description="The whole enhanced pipeline in one node: preset 'enhanced' = smoothing + region-aware "
                        "expression + gaze correction before rendering, detail enhancement inside the rendered alpha "
                        "(the background is left as rendered) + eye enhancement after.",
            inputs=[GAGAVATAR_MODEL.Input("model"), FLAME_MODEL.Input("flame"),
                    GAGAVATAR_SOURCE.Input("source"), GAGAVATAR_DRIVER.Input("driver"),
                    io.Combo.Input("preset", options=list(PRESETS), default="enhanced",
                                   tooltip="enhanced = all improvements on; or one of them alone; none = plain."),
                    io.Int.Input("batch_size", default=1, min=1, max=64,
                                 tooltip=help_text.batch_size("Frames per FLAME/rasteriser/refiner call"))],
            outputs=[io.Image.Output(display_name="frames"), io.Float.Output(display_name="fps")],
        )

    @classmethod
    def execute(cls, model, flame, source, driver, preset, batch_size):
        from ..pipelines.gagavatar import encode_source_cached
        from ..pipelines.gagavatar_enhance import animate_enhanced, get_preset

        config = get_preset(preset)
        avatar = encode_source_cached(model.module, source.image, source.transform)
        frames = animate_enhanced(model.module, flame.module, avatar, source.shapecode, driver, config,
                                  batch_size=batch_size, progress=progress_callback(4 * len(driver)))
        return io.NodeOutput(numpy_to_image(frames), float(driver.fps))


NODES = [GAGAvatarSmoothDriver, GAGAvatarRegionExpression, GAGAvatarGazeCorrect, GAGAvatarDetailEnhance,
         GAGAvatarEyeEnhance, GAGAvatarEnhancedAnimate]
