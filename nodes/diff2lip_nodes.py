"""Diff2Lip nodes: adapters from ComfyUI sockets to ``pipelines.diff2lip`` (no lip-sync logic lives here)."""
from __future__ import annotations

from comfy_api.latest import io

from .common import PRECISIONS, LoadedModel, ModelCache, resolve_dtype, torch_device
from .paths import model_file_problem, model_files, resolve_model_file

DIFF2LIP_MODEL = io.Custom("DIFF2LIP_MODEL")
CATEGORY = "TalkingHead/Diff2Lip"
_models = ModelCache()


class Diff2LipModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipModelLoader",
            display_name="Diff2Lip Model Loader",
            category=CATEGORY,
            description="Loads the official Diff2Lip checkpoint (checkpoint.pt) from models/diff2lip. The architecture is "
                        "read from the file itself; the model stays cached on the device between runs.",
            inputs=[
                io.Combo.Input("ckpt_name", options=model_files("diff2lip"),
                               tooltip="Checkpoint file in models/diff2lip (official Diff2Lip checkpoint.pt, CC BY-NC 4.0)."),
                io.Combo.Input("precision", options=PRECISIONS, default="auto",
                               tooltip="auto = fp16 on CUDA, fp32 on CPU. Half precision is only used on CUDA."),
                io.Int.Input("num_head_channels", default=64, min=1, max=1024,
                             tooltip="Attention head width: the one size the checkpoint cannot tell. The release uses 64."),
            ],
            outputs=[DIFF2LIP_MODEL.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, ckpt_name, **_):
        return model_file_problem("diff2lip", ckpt_name, "Diff2Lip Model Loader") or True

    @classmethod
    def execute(cls, ckpt_name, precision, num_head_channels=64):
        from ..models.diff2lip import load_diff2lip

        path = resolve_model_file("diff2lip", ckpt_name, "Diff2Lip Model Loader")
        device = torch_device()
        dtype = resolve_dtype(precision, device)
        module = _models.get(path, device, dtype, lambda: load_diff2lip(path, device=device, dtype=dtype,
                                                                        num_head_channels=num_head_channels),
                             extra=(num_head_channels,))
        return io.NodeOutput(LoadedModel(module, device, dtype, ckpt_name))


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
        params = sum(p.numel() for p in model.module.parameters())
        config = getattr(model.module, "config", None)
        text = f"{model.name}: {params:,} parameters on {model.device} ({model.dtype})"
        if config is not None:
            text += "\n" + "\n".join(f"{k} = {v}" for k, v in vars(config).items()) if hasattr(config, "__dict__") \
                else f"\n{config}"
        return io.NodeOutput(text, ui={"text": [text]})


NODES = [Diff2LipModelLoader, Diff2LipModelInfo]
