"""Speed of the released-size Diff2Lip UNet (random weights in the release's shapes) under DDIM.

Prints seconds per output frame for one DDIM step and for a whole preset (25 steps = the release) at each batch
size, for the reference-style path (legacy einsum attention, audio encoder inside every UNet call) and the fast path
(SDPA attention, audio conditioning computed once per frame), and the speed-up.  On CPU the default measures
--steps 1 step and extrapolates the preset (a batch-8 step costs ~20 s there); --full runs the preset.

    .venv/bin/python benchmarks/diff2lip_unet.py [--batches 1 8] [--steps 1] [--preset-steps 25] [--full]
        [--device auto|cpu|cuda] [--dtype auto|fp32|fp16|bf16]
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from pack import load_pack

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _modules():
    """Import the pack under a fixed name (its modules use relative imports)."""
    load_pack()
    from talkinghead.models import diff2lip as model_module
    from talkinghead.pipelines import diff2lip as pipeline

    return model_module, pipeline


def random_release_state_dict(model_module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the release's key/shape layout (scaled like a trained net: weights ~ 1/sqrt(fan_in))."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in model_module.Diff2LipUNet(model_module.RELEASE_CONFIG).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        value = torch.randn(shape, generator=generator)
        if len(shape) > 1:
            value /= math.sqrt(math.prod(shape[1:]))
        elif key.endswith("weight"):
            value = 1 + 0.1 * value
        else:
            value *= 0.05
        state[key] = value
    return state


class PerStepAudio(torch.nn.Module):
    """The reference's call pattern: the audio encoder runs inside every UNet call."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def encode_audio(self, mels):
        return mels

    def forward(self, x, timesteps, audio_style, **kwargs):
        return self.unet(x, timesteps, mels=audio_style, **kwargs)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_sampling(pipeline, model, batch: int, steps: int, device) -> tuple[float, float]:
    """(wall, process CPU) seconds for one DDIM run of ``steps`` steps on ``batch`` random 128x128 faces."""
    generator = torch.Generator().manual_seed(1)
    faces = torch.rand(batch, 3, 128, 128, generator=generator) * 2 - 1
    mels = torch.rand(batch, 80, 16, generator=generator) * 8 - 4
    noise = pipeline.seeded_noise(7, 128)
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    pipeline.ddim_sample(model, faces, faces, mels, noise, steps)
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps timed per run (CPU 1, CUDA = preset)")
    parser.add_argument("--preset-steps", type=int, default=25, help="steps of the preset to report (release 25)")
    parser.add_argument("--full", action="store_true", help="time the whole preset instead of extrapolating")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtype", default="auto", choices=["auto", *DTYPES])
    args = parser.parse_args()

    model_module, pipeline = _modules()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    dtype = DTYPES.get(args.dtype, torch.float16 if device.type == "cuda" else torch.float32)
    steps = args.preset_steps if args.full or (args.steps is None and device.type == "cuda") else (args.steps or 1)
    model = model_module.load_diff2lip(random_release_state_dict(model_module), device=device, dtype=dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"Diff2Lip UNet (release size, random weights) on {name}, {model.compute_dtype}; "
          f"{steps} timed DDIM steps, preset = {args.preset_steps} steps")
    # On a shared CPU wall time is inflated by other jobs; process CPU time (all threads) is the steadier figure.
    print(f"{'batch':>5} {'path':<28} {'s/frame/step':>13} {'s/frame preset':>15} {'speed-up':>9} "
          f"{'CPU s/frame/step':>17}")
    for batch in args.batches:
        if device.type == "cuda":
            time_sampling(pipeline, model, batch, 1, device)  # warm-up: kernels, allocator
        seconds = {}
        for label, attention, runner in (("legacy attn, audio per step", "legacy", PerStepAudio(model)),
                                         ("SDPA, audio once per frame", "sdpa", model)):
            model.set_attention(attention)
            wall, cpu = (t / steps / batch for t in time_sampling(pipeline, runner, batch, steps, device))
            seconds[attention] = wall
            speedup = f"{seconds['legacy'] / wall:8.2f}x" if attention == "sdpa" else ""
            preset = wall * args.preset_steps
            print(f"{batch:>5} {label:<28} {wall:13.4f} {preset:15.3f}{'' if steps == args.preset_steps else '*'}"
                  f" {speedup:>9} {cpu:17.3f}")
    if steps != args.preset_steps:
        print("* preset extrapolated from the timed steps (--full to run it)")


if __name__ == "__main__":
    main()
