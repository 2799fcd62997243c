"""GAGAvatar network speed at the released size: source encoding (DINOv2 + DPT head, then the three Gaussian
generators) and the StyleUNet refiner per 512² frame, on the current device.

fp32 is always measured (TF32 off, the exact baseline).  On CUDA it also measures TF32 (what the reference runs),
bf16/fp16 weights (``load_gagavatar(dtype=...)``) and bf16/fp16 autocast over fp32 weights (what the pipeline uses),
each with the max abs difference against fp32.  Without ``--checkpoint`` the released layout gets seeded random weights
(timings are the same; differences are then only indicative).

    .venv/bin/python benchmarks/gagavatar_encoder.py [--checkpoint GAGAvatar.pt] [--device cuda] [--repeats 3]
"""
from __future__ import annotations

import argparse
import contextlib
import math
import time

import torch

from pack import load_pack


def _modules():
    """Import the repo as the package ``talkinghead`` (its modules use relative imports)."""
    load_pack()
    from talkinghead.models import gagavatar
    return gagavatar


def released_random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Official-layout state dict of the released configuration with seeded random weights (fan-in scaled)."""
    from talkinghead.models.dinov2_dpt import DinoDPTConfig, DinoDPTEncoder
    from talkinghead.models.gs_generators import ConvGSGenerator, LinearGSGenerator
    from talkinghead.models.style_unet import StyleUNet, StyleUNetConfig

    with torch.device("meta"):
        network = torch.nn.Module()
        network.head_base = torch.nn.Parameter(torch.empty(5023, 256))
        network.base_model = DinoDPTEncoder(DinoDPTConfig(14, 37, 768, 12, 4.0, (256, 512, 1024, 1024), (4, 2), 256))
        network.gs_generator_g = LinearGSGenerator([(1024, 256)] + [(256, 256)] * 3, 27, 128, 32)
        network.gs_generator_l0 = ConvGSGenerator(256, 27, 128, 3, 41)
        network.gs_generator_l1 = ConvGSGenerator(256, 27, 128, 3, 41)
        network.upsampler = StyleUNet(StyleUNetConfig(32, 1, (16, 32, 64, 128, 256, 256, 256, 256),
                                                      (512, 512, 512, 512, 256, 128, 64, 32), 512, 8, 3))
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, meta in network.state_dict().items():
        noise = torch.randn(meta.shape, generator=generator)
        if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "modulation.bias")):
            state[name] = 1 + 0.1 * noise
        elif name.endswith((".bias", "gamma")) or meta.ndim <= 1:
            state[name] = 0.02 * noise
        else:
            state[name] = noise / math.sqrt(max(meta[0].numel(), 1))
    return state


def source_inputs(device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A smooth 518² source image, a slightly rotated source camera at distance 9.3, and a 32x512² splat."""
    y, x = torch.meshgrid(torch.arange(518.0), torch.arange(518.0), indexing="ij")
    channel = torch.arange(3.0)[:, None, None]
    image = 0.5 + 0.35 * torch.sin(2 * math.pi * (x / 97 + channel / 3)) * torch.cos(2 * math.pi * y / 61)
    angle = 0.2
    rotation = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]])
    transform = torch.cat([rotation, torch.tensor([[0.02], [-0.01], [9.3]])], dim=1)
    y, x = torch.meshgrid(torch.arange(512.0), torch.arange(512.0), indexing="ij")
    channel = torch.arange(32.0)[:, None, None]
    splat = 0.5 * torch.sin(2 * math.pi * (x * (channel + 1) / 512 * 3 + y / 173))
    return image[None].to(device), transform[None].to(device), splat[None].to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device, repeats: int):
    """(best seconds over `repeats` runs after one warm-up, last result)."""
    result = function()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = function()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(model, inputs, device, repeats: int, autocast_dtype=None) -> dict:
    image, transform, splat = inputs
    context = (lambda: torch.autocast(device.type, dtype=autocast_dtype)) if autocast_dtype else contextlib.nullcontext

    def backbone():
        with torch.no_grad(), context():
            return model.base_model(image)

    def encode():
        with context():
            return model.encode_source(image, transform)

    def refine():
        with context():
            return model.refine(splat)

    backbone_s, _ = timed(backbone, device, repeats)
    encode_s, avatar = timed(encode, device, repeats)
    refine_s, rgb = timed(refine, device, repeats)
    return {"backbone_head_s": backbone_s, "generators_s": max(encode_s - backbone_s, 0.0), "encode_s": encode_s,
            "refine_s": refine_s, "avatar": avatar, "rgb": rgb}


def max_differences(result: dict, baseline: dict) -> dict[str, float]:
    pairs = {"global": (result["avatar"].global_feature, baseline["avatar"].global_feature),
             "local": (result["avatar"].local_feature, baseline["avatar"].local_feature),
             "rgb": (result["rgb"], baseline["rgb"])}
    for name in ("xyz", "colors", "opacities", "scales", "rotations"):
        pairs[name] = (result["avatar"].gaussians[name], baseline["avatar"].gaussians[name])
    return {name: (a.float() - b.float()).abs().max().item() for name, (a, b) in pairs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="official GAGAvatar.pt (default: random weights of the released layout)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gagavatar = _modules()
    device = torch.device(args.device)
    source = args.checkpoint or released_random_state()
    inputs = source_inputs(device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device {device} ({name}), weights: {args.checkpoint or 'random (released layout)'}, "
          f"best of {args.repeats}")
    model = gagavatar.load_gagavatar(source, device=device)
    baseline = measure(model, inputs, device, args.repeats)
    rows = [("fp32", baseline, None)]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        rows.append(("tf32", measure(model, inputs, device, args.repeats), baseline))
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        for dtype in (torch.bfloat16, torch.float16):
            name = str(dtype).split(".")[-1]
            rows.append((f"autocast {name}", measure(model, inputs, device, args.repeats, dtype), baseline))
        del model
        for dtype in (torch.bfloat16, torch.float16):
            half = gagavatar.load_gagavatar(source, device=device, dtype=dtype)
            rows.append((f"{str(dtype).split('.')[-1]} weights", measure(half, inputs, device, args.repeats), baseline))
            del half
    for label, result, reference in rows:
        line = (f"{label:>16}: backbone+head {result['backbone_head_s']:.3f} s, "
                f"generators {result['generators_s']:.3f} s, source encoding {result['encode_s']:.3f} s, "
                f"refiner {result['refine_s']:.3f} s/frame (512²)")
        print(line)
        if reference is not None:
            diffs = max_differences(result, reference)
            print(" " * 18 + "max |diff| vs fp32: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))


if __name__ == "__main__":
    main()
