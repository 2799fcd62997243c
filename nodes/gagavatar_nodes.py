"""GAGAvatar nodes: adapters from ComfyUI sockets to ``pipelines.gagavatar`` (no avatar logic lives here)."""
from __future__ import annotations

import torch
from comfy_api.latest import io

from . import help_text
from .common import (PRECISION_TOOLTIP, PRECISIONS, LoadedModel, ModelCache, numpy_to_image, progress_callback,
                     resolve_dtype, torch_device)
from .guards import check_fps, checked_latent, node_errors, tracked_folder
from .help_text import schema
from .paths import model_file_problem, model_files, resolve_model_file

from .sockets import FLAME_MODEL, GAGAVATAR_AVATAR, GAGAVATAR_DRIVER, GAGAVATAR_MODEL, GAGAVATAR_SOURCE
CATEGORY = "TalkingHead/GAGAvatar"
RASTERIZERS = ["auto", "torch", "gsplat"]


def rasterizer_input() -> io.Combo.Input:
    """The rasteriser choice of every node that splats (Animate Splats, Animate Avatar and its stream form)."""
    return io.Combo.Input("rasterizer", options=RASTERIZERS, default="auto",
                          tooltip="auto = gsplat on CUDA when installed, else the pure-PyTorch kernel (CPU and any "
                                  "GPU); both follow the original 3DGS rules.")
_models = ModelCache()
_flames = ModelCache()


class GAGAvatarModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=["avatar", "talking head", "head avatar"],
            node_id="GAGAvatarModelLoader",
            display_name="GAGAvatar Model Loader",
            category=CATEGORY,
            description="Loads the official GAGAvatar.pt from models/gagavatar (sizes read from the file; no torch.hub "
                        "download). Cached on the device between runs.",
            inputs=[
                io.Combo.Input("ckpt_name", options=model_files("gagavatar"),
                               tooltip="GAGAvatar.pt (MIT) in models/gagavatar."),
                io.Combo.Input("precision", options=PRECISIONS, default="auto",
                               tooltip=PRECISION_TOOLTIP + " Weights stay fp32 (autocast)."),
            ],
            outputs=[GAGAVATAR_MODEL.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, ckpt_name):  # no **kwargs: that would switch off the built-in min/max checks
        return model_file_problem("gagavatar", ckpt_name, "GAGAvatar Model Loader") or True

    @classmethod
    def execute(cls, ckpt_name, precision):
        from ..models.gagavatar import load_gagavatar

        path = resolve_model_file("gagavatar", ckpt_name, "GAGAvatar Model Loader")
        device = torch_device()
        with node_errors("GAGAvatar Model Loader"):
            module = _models.get(path, device, torch.float32, lambda: load_gagavatar(path, device=device))
        return io.NodeOutput(LoadedModel(module, device, resolve_dtype(precision, device), ckpt_name,
                                         _models.patcher(module)))


class GAGAvatarFLAMELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GAGAvatarFLAMELoader",
            display_name="FLAME Loader (GAGAvatar)",
            category=CATEGORY,
            description="Loads FLAME_with_eye.pt (or the official FLAME 2020 generic_model.pkl) from models/flame. "
                        "FLAME needs registration at flame.is.tue.mpg.de and is never shipped with the pack.",
            inputs=[io.Combo.Input("flame_name", options=model_files("flame"),
                                   tooltip="FLAME_with_eye.pt or generic_model.pkl in models/flame.")],
            outputs=[FLAME_MODEL.Output(display_name="flame")],
        )

    @classmethod
    def validate_inputs(cls, flame_name):
        return model_file_problem("flame", flame_name, "FLAME Loader (GAGAvatar)") or True

    @classmethod
    def execute(cls, flame_name):
        from ..models.flame import load_flame

        path = resolve_model_file("flame", flame_name, "FLAME Loader (GAGAvatar)")
        device = torch_device()
        with node_errors("FLAME Loader (GAGAvatar)"):
            module = _flames.get(path, device, torch.float32, lambda: load_flame(path).to(device))
        return io.NodeOutput(LoadedModel(module, device, torch.float32, flame_name, _flames.patcher(module)))


class GAGAvatarLoadTrackedDriver(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=["avatar", "driver", "face tracking"],
            node_id="GAGAvatarLoadTrackedDriver",
            display_name="Load Tracked Driver (GAGAvatar)",
            category=CATEGORY,
            description="Reads a driver tracked by the official GAGAvatar tracker (smoothed.pkl or optim.pkl + "
                        "img_lmdb/), frames in frame-index order (image sets in a fixed, sorted order).",
            inputs=[
                io.String.Input("driver_path", default="driver",
                                tooltip="Folder of the tracked driver, relative to ComfyUI's input folder (or a "
                                        "'gagavatar_tracked' folder of extra_model_paths.yaml)."),
                io.Float.Input("fps", default=0.0, min=0.0, max=240.0, step=0.001,
                               tooltip="Frame rate of the driver; 0 = the one stored with the driver (meta.json)."),
                io.Int.Input("max_frames", default=0, min=0, max=100000, tooltip="Keep the first N frames (0 = all)."),
                io.Boolean.Input("output_frames", default=True,
                                 tooltip="Also output the driver's 512² crops as IMAGE (3 MB per frame in memory); "
                                         "off = a 1-frame placeholder, the crops stay on disk."),
            ],
            outputs=[GAGAVATAR_DRIVER.Output(display_name="driver"),
                     io.Image.Output(display_name="driver_frames"),
                     io.Float.Output(display_name="fps")],
        )

    @classmethod
    def execute(cls, driver_path, fps, max_frames, output_frames=True):
        from ..pipelines.gagavatar import read_tracked

        node = "Load Tracked Driver (GAGAvatar)"
        if fps:
            check_fps(fps, node)
        folder = tracked_folder(driver_path, node, "driver_path")
        with node_errors(node):
            driver = read_tracked(folder, fps=fps or None, max_frames=max_frames or None)  # crops stay lazy (LMDB)
        if not driver.fps:
            raise ValueError(f"{node}: the driver stores no frame rate; set the fps input (e.g. the driving video's).")
        check_fps(driver.fps, node, "fps (stored in the driver's meta.json; set the fps input to override it)")
        images = driver.load_images() if output_frames else None
        preview = numpy_to_image(images) if images is not None else torch.zeros(1, 64, 64, 3)
        return io.NodeOutput(driver, preview, float(driver.fps))


class GAGAvatarLoadTrackedSource(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GAGAvatarLoadTrackedSource",
            display_name="Load Tracked Source (GAGAvatar)",
            category=CATEGORY,
            description="Picks one tracked frame (its 512² matted crop, FLAME shape and camera) as the avatar's source.",
            inputs=[
                io.String.Input("source_path", default="source",
                                tooltip="Tracked folder (optim.pkl or smoothed.pkl + img_lmdb/), relative to the "
                                        "input folder (or a 'gagavatar_tracked' folder of extra_model_paths.yaml)."),
                io.Int.Input("frame_index", default=0, min=0, max=100000, tooltip="Which tracked frame to use."),
            ],
            outputs=[GAGAVATAR_SOURCE.Output(display_name="source"), io.Image.Output(display_name="source_image")],
        )

    @classmethod
    def execute(cls, source_path, frame_index):
        from ..pipelines.gagavatar import read_tracked
        from ..pipelines.gagavatar.source import source_from_tracked

        node = "Load Tracked Source (GAGAvatar)"
        folder = tracked_folder(source_path, node, "source_path")
        with node_errors(node):
            tracked = read_tracked(folder, load_images=True)
            source = source_from_tracked(tracked, frame_index)
        return io.NodeOutput(source, numpy_to_image(source.image[None]))


class GAGAvatarEncodeSource(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GAGAvatarEncodeSource",
            display_name="Encode Source (GAGAvatar)",
            category=CATEGORY,
            description="Builds the 180k-Gaussian avatar of the source once (DINOv2 features lifted to Gaussians); "
                        "cached by image content, so re-running with the same source costs nothing.",
            inputs=[GAGAVATAR_MODEL.Input("model"), GAGAVATAR_SOURCE.Input("source")],
            outputs=[GAGAVATAR_AVATAR.Output(display_name="avatar")],
        )

    @classmethod
    def execute(cls, model, source):
        from ..pipelines.gagavatar import encode_source_cached

        avatar = encode_source_cached(model.module, source.image, source.transform)
        return io.NodeOutput({"avatar": avatar, "source": source, "model": model})


def _check_same_model(avatar: dict, model: LoadedModel, node: str) -> None:
    if avatar["model"].module is not model.module:
        raise ValueError(f"{node}: the avatar was encoded with another GAGAvatar model; connect the same loader to "
                         "Encode Source and to this node.")


class GAGAvatarAnimate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=help_text.AVATAR_ALIASES,
            node_id="GAGAvatarAnimate",
            display_name="Animate Splats (GAGAvatar)",
            category=CATEGORY,
            description="Drives the avatar with the driver's FLAME expression/jaw/eyes and camera, and splats the "
                        "Gaussians into 32-channel feature images (LATENT, 512²). Feed them to Refine (GAGAvatar). "
                        "The splats take 32 MB per frame; for long drivers use Animate Avatar (one node), which "
                        "never holds them all.",
            inputs=[GAGAVATAR_MODEL.Input("model"), FLAME_MODEL.Input("flame"), GAGAVATAR_AVATAR.Input("avatar"),
                    GAGAVATAR_DRIVER.Input("driver"),
                    io.Int.Input("batch_size", default=1, min=1, max=64,
                                 tooltip=help_text.batch_size("Frames per FLAME/rasteriser call",
                                                              "Each frame's splat is 32 MB in memory.")),
                    rasterizer_input()],
            outputs=[io.Latent.Output(display_name="splats"),
                     io.Mask.Output(display_name="alpha", tooltip="The avatar's coverage per frame (0 = background): "
                                                                   "a matte for compositing or enhancement masks.")],
        )

    @classmethod
    def execute(cls, model, flame, avatar, driver, batch_size, rasterizer="auto"):
        from ..pipelines.gagavatar import splat_frames

        _check_same_model(avatar, model, "Animate Splats (GAGAvatar)")
        progress = progress_callback(len(driver))
        splats, alpha = splat_frames(model.module, flame.module, avatar["avatar"], avatar["source"].shapecode, driver,
                                     batch_size=batch_size, progress=progress, autocast_dtype=_autocast(model),
                                     backend=rasterizer, return_alpha=True)
        return io.NodeOutput({"samples": splats}, alpha.clamp(0, 1))


def _autocast(model: LoadedModel):
    return None if model.dtype == torch.float32 else model.dtype


class GAGAvatarRefine(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GAGAvatarRefine",
            display_name="Refine (GAGAvatar)",
            category=CATEGORY,
            description="StyleUNet neural refiner: 32-channel splats -> RGB frames. Deterministic noise by default "
                        "(the reference draws fresh noise every frame, which makes the video shimmer).",
            inputs=[GAGAVATAR_MODEL.Input("model"), io.Latent.Input("splats"),
                    io.Boolean.Input("reference_noise", default=False, tooltip=help_text.REFERENCE_NOISE),
                    io.Int.Input("batch_size", default=1, min=1, max=64,
                                 tooltip=help_text.batch_size("Frames per refiner call"))],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, model, splats, reference_noise, batch_size):
        from ..pipelines.gagavatar import refine_splats

        samples = checked_latent(splats, "Refine (GAGAvatar)", "splats")
        frames = refine_splats(model.module, samples, batch_size=batch_size, progress=progress_callback(len(samples)),
                               randomize_noise=reference_noise, autocast_dtype=_autocast(model))
        return io.NodeOutput(numpy_to_image(frames))


class GAGAvatarAnimateImages(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=help_text.AVATAR_ALIASES,
            node_id="GAGAvatarAnimateImages",
            display_name="Animate Avatar (GAGAvatar)",
            category=CATEGORY,
            description="One-node path: source + driver -> 512² RGB frames at the driver's frame rate.",
            inputs=[GAGAVATAR_MODEL.Input("model"), FLAME_MODEL.Input("flame"), GAGAVATAR_SOURCE.Input("source"),
                    GAGAVATAR_DRIVER.Input("driver"),
                    io.Boolean.Input("reference_noise", default=False, tooltip=help_text.REFERENCE_NOISE),
                    io.Int.Input("batch_size", default=1, min=1, max=64,
                                 tooltip=help_text.batch_size("Frames per FLAME/rasteriser/refiner call")),
                    rasterizer_input()],
            outputs=[io.Image.Output(display_name="frames"), io.Float.Output(display_name="fps")],
        )

    @classmethod
    def execute(cls, model, flame, source, driver, reference_noise, batch_size, rasterizer="auto"):
        from ..pipelines.gagavatar import animate, encode_source_cached

        avatar = encode_source_cached(model.module, source.image, source.transform)
        frames = animate(model.module, flame.module, avatar, source.shapecode, driver, batch_size=batch_size,
                         progress=progress_callback(len(driver)), randomize_noise=reference_noise,
                         autocast_dtype=_autocast(model), backend=rasterizer)
        return io.NodeOutput(numpy_to_image(frames), float(driver.fps))


NODES = [GAGAvatarModelLoader, GAGAvatarFLAMELoader, GAGAvatarLoadTrackedDriver, GAGAvatarLoadTrackedSource,
         GAGAvatarEncodeSource, GAGAvatarAnimate, GAGAvatarRefine, GAGAvatarAnimateImages]
