"""Diff2Lip loader nodes: the UNet checkpoint, the face detector and the Real-ESRGAN upscaler (cached per file)."""
from __future__ import annotations

import dataclasses

import torch
from comfy_api.latest import io

from .common import PRECISION_TOOLTIP, PRECISIONS, LoadedModel, ModelCache, resolve_dtype, torch_device
from .guards import node_errors
from .help_text import schema
from .paths import model_file_problem, model_files, resolve_model_file
from .sockets import DIFF2LIP_MODEL, FACE_DETECTOR

CATEGORY = "TalkingHead/Diff2Lip"
_models = ModelCache()
_detectors = ModelCache()
_upscalers = ModelCache()
BUILTIN_DETECTORS = {"BlazeFace short-range (built-in)": "blazeface_short",
                     "BlazeFace full-range (built-in)": "blazeface_full"}


class Diff2LipModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=["lipsync", "wav2lip", "dubbing"],
            node_id="Diff2LipModelLoader",
            display_name="Diff2Lip Model Loader",
            category=CATEGORY,
            description="Loads the official Diff2Lip checkpoint (checkpoint.pt) from models/diff2lip. The architecture is "
                        "read from the file itself; the model stays cached on the device between runs.",
            inputs=[
                io.Combo.Input("ckpt_name", options=model_files("diff2lip"),
                               tooltip="Checkpoint file in models/diff2lip (official Diff2Lip checkpoint.pt, CC BY-NC 4.0)."),
                io.Combo.Input("precision", options=PRECISIONS, default="auto", tooltip=PRECISION_TOOLTIP),
                io.Int.Input("num_head_channels", default=64, min=1, max=1024,
                             tooltip="Attention head width: the one size the checkpoint cannot tell. The release uses 64."),
                io.Boolean.Input("compile", default=False, optional=True,
                                 tooltip="torch.compile the UNet: the same output (float rounding), 3-4 % faster "
                                         "measured on a 2-core CPU (not measured on a GPU), but the FIRST run "
                                         "compiles for minutes (about 1.5 min on a 2-core CPU; cached on disk "
                                         "afterwards). Falls back to plain PyTorch with a warning where compiling is "
                                         "impossible. Off (default) = start at once."),
            ],
            outputs=[DIFF2LIP_MODEL.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, ckpt_name):  # no **kwargs: that would switch off the built-in min/max checks
        return model_file_problem("diff2lip", ckpt_name, "Diff2Lip Model Loader") or True

    @classmethod
    def execute(cls, ckpt_name, precision, num_head_channels=64, compile=False):
        from ..models.diff2lip import load_diff2lip

        path = resolve_model_file("diff2lip", ckpt_name, "Diff2Lip Model Loader")
        device = torch_device()
        dtype = resolve_dtype(precision, device)

        def load():
            # CUDA: the reference's mixed precision (convs in half); elsewhere fp32 weights and autocast.
            cuda = device.type == "cuda"
            module = load_diff2lip(path, device=device, dtype=dtype if cuda else torch.float32,
                                   num_head_channels=num_head_channels)
            autocast = None if cuda or dtype == torch.float32 else dtype
            return module.set_speed(channels_last=True, autocast_dtype=autocast, compile=compile)

        with node_errors("Diff2Lip Model Loader"):
            module = _models.get(path, device, dtype, load, extra=(num_head_channels, bool(compile)))
        return io.NodeOutput(LoadedModel(module, device, dtype, ckpt_name, _models.patcher(module)))


class Diff2LipModelInfo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipModelInfo",
            display_name="Diff2Lip Model Info",
            category=CATEGORY,
            description="Shows what the loader read from the checkpoint (architecture, parameters, device, precision), "
                        "to check a checkpoint before a long run.",
            inputs=[DIFF2LIP_MODEL.Input("model")],
            outputs=[io.String.Output(display_name="info")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model):
        module = model.module
        params = sum(p.numel() for p in module.parameters())
        settings = "\n".join(f"{k} = {v}" for k, v in dataclasses.asdict(module.config).items())
        text = (f"{model.name}: {params:,} parameters on {model.device} ({model.dtype})\n{settings}\n"
                f"{model.memory_status()}")
        return io.NodeOutput(text, ui={"text": [text]})


class Diff2LipFaceDetectorLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipFaceDetectorLoader",
            display_name="Diff2Lip Face Detector",
            category=CATEGORY,
            description="Face detector for the lip-sync crop. BlazeFace ships inside mediapipe 0.10.21 (no download); "
                        "S3FD (s3fd-619a316812.pth in models/face_detection) is what the official Diff2Lip uses.",
            inputs=[
                io.Combo.Input("detector", options=[*BUILTIN_DETECTORS, *model_files("face_detection")],
                               default="BlazeFace short-range (built-in)",
                               tooltip="Built-in BlazeFace, or an S3FD file from models/face_detection."),
                io.Float.Input("min_confidence", default=0.5, min=0.05, max=0.99, step=0.01,
                               tooltip="Detections below this score are ignored."),
                io.Int.Input("max_side", default=0, min=0, max=4096,
                             tooltip="Detect on a copy downscaled to this longest side (boxes mapped back); 0 = full "
                                     "resolution. 640 is much faster on 1080p with nearly the same boxes."),
            ],
            outputs=[FACE_DETECTOR.Output(display_name="detector")],
        )

    @classmethod
    def execute(cls, detector, min_confidence, max_side):
        from ..pipelines.face_detection import make_detector

        if detector in BUILTIN_DETECTORS:
            built = make_detector(BUILTIN_DETECTORS[detector], min_confidence=min_confidence, max_side=max_side or None)
        else:
            path = resolve_model_file("face_detection", detector, "Diff2Lip Face Detector")
            device = torch_device()
            with node_errors("Diff2Lip Face Detector"):
                built = _detectors.get(path, device, torch.float32,
                                       lambda: make_detector("s3fd", weights_path=path, device=str(device),
                                                             min_confidence=min_confidence, max_side=max_side or None),
                                       extra=(min_confidence, max_side))
        return io.NodeOutput(built)


class Diff2LipUpscalerLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        from ..models.realesrgan import BACKENDS

        return io.Schema(
            node_id="Diff2LipUpscalerLoader",
            display_name="Diff2Lip Upscaler Loader",
            category=CATEGORY,
            description="Loads a Real-ESRGAN file (RealESRGAN_x2plus / x4plus .pth in models/upscale_models) for the "
                        "lip-sync super-resolution. spandrel is what ComfyUI itself uses; 'basicsr' runs the "
                        "original network if basicsr is installed (same outputs). Core's Load Upscale Model works too.",
            inputs=[
                io.Combo.Input("model_name", options=model_files("upscale_models"),
                               tooltip="Super-resolution model file in models/upscale_models."),
                io.Combo.Input("backend", options=list(BACKENDS), default="spandrel",
                               tooltip="spandrel (default, no extra package) or the original basicsr RRDBNet."),
            ],
            outputs=[io.UpscaleModel.Output(display_name="upscale_model")],
        )

    @classmethod
    def validate_inputs(cls, model_name):
        return model_file_problem("upscale_models", model_name, "Diff2Lip Upscaler Loader") or True

    @classmethod
    def execute(cls, model_name, backend):
        from ..models.realesrgan import load_realesrgan

        path = resolve_model_file("upscale_models", model_name, "Diff2Lip Upscaler Loader")
        with node_errors("Diff2Lip Upscaler Loader"):
            return io.NodeOutput(_upscalers.get(path, torch_device(), torch.float32,
                                                lambda: load_realesrgan(path, backend=backend), extra=(backend,)))


NODES = [Diff2LipModelLoader, Diff2LipModelInfo, Diff2LipFaceDetectorLoader, Diff2LipUpscalerLoader]
