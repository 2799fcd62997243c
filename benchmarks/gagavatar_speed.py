"""GAGAvatar speed per driven frame (FLAME + Gaussians + rasteriser + refiner): today's exact fp32 path vs the new
default vs each precision mode, in ONE interleaved run.

Random weights in the released layout (see benchmarks/gagavatar_frame.py), synthetic FLAME with the real sizes.
Paths, all on the same source and driver frames:

- ``fp32``: as shipped before: fp32 eager, NCHW, one frame per call (the bundled workflows' batch size), the
  rasteriser's tensor compositor;
- ``default``: the same with the numba per-pixel compositor that the CPU rasteriser now uses (exact up to float
  rounding);
- ``channels_last``: the default with channels_last weights (an experiment; the loader does not set it);
- ``bf16`` / ``fp16``: the default plus autocast in that precision (skipped where the device lacks it).

``*_maxdiff``/``*_meandiff`` compare the refined frames (0..1) with the fp32 path; ``*_pixel_maxdiff`` /
``*_pixel_meandiff`` the same frames as uint8.  The last line printed is JSON.

    .venv/bin/python benchmarks/gagavatar_speed.py [--frames 2] [--rounds 2] [--device auto|cpu|cuda]
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from gagavatar_frame import FIXTURES, released_random_model  # noqa: E402
from compare import record  # noqa: E402
from pack import load_pack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--manifest", type=Path, default=FIXTURES / "gagavatar" / "model_full_keys.json")
    args = parser.parse_args()
    load_pack()
    import gagavatar_synth as synth
    from talkinghead.models import gaussian_rasterizer as gr
    from talkinghead.models import speed
    from talkinghead.models.flame import load_flame
    from talkinghead.pipelines import gagavatar as gg
    from talkinghead.pipelines.frames import to_uint8_half_up

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    model = released_random_model(args.manifest, device)
    flame = load_flame(synth.synthetic_flame(num_vertices=5023, num_faces=9976, seed=0)).to(device)
    driver = gg.as_driver(synth.synthetic_driver_arrays(args.frames))
    source = synth.synthetic_frame(0)
    avatar = gg.encode_source_cached(model, source, driver.transform_matrix[0])
    shape = driver.shapecode[0]

    paths = {"fp32": dict(channels_last=False, autocast=None, numba=False),
             "default": dict(channels_last=False, autocast=None, numba=True),
             "channels_last": dict(channels_last=True, autocast=None, numba=True)}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if speed.half_supported(dtype, device):
            paths[name] = dict(channels_last=False, autocast=dtype, numba=True)
    rasterize = gr.rasterize

    def frames_for(setting) -> tuple[float, np.ndarray]:
        layout = torch.channels_last if setting["channels_last"] else torch.contiguous_format
        for module in model.modules():  # 2D convolutions only (the model also holds 5-D tensors)
            if isinstance(module, torch.nn.Conv2d):
                module.to(memory_format=layout)
        gr.rasterize = functools.partial(rasterize, use_numba=setting["numba"])  # read by render_splat per call
        try:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            frames = gg.animate(model, flame, avatar, shape, driver, batch_size=1, autocast_dtype=setting["autocast"])
            if device.type == "cuda":
                torch.cuda.synchronize()
        finally:
            gr.rasterize = rasterize
        return (time.perf_counter() - start) / args.frames, np.asarray(frames)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"GAGAvatar release size, random weights, 512² on {where}; {args.frames} frames per path, "
          f"{args.rounds} interleaved rounds")
    walls = {name: [] for name in paths}
    results = {}
    for round_index in range(args.rounds + 1):  # round 0 warms up
        for name, setting in paths.items():
            seconds, frames = frames_for(setting)
            if round_index:
                walls[name].append(seconds)
            results[name] = frames

    summary = {"device": where, "frames": args.frames, "rounds": args.rounds}
    reference = results["fp32"]
    print(f"{'path':<9} {'s/frame':>9} {'x fp32':>7} {'max|d|':>9} {'mean|d|':>9} {'px max':>7} {'px mean':>8}")
    for name in paths:
        seconds = min(walls[name])
        diff = np.abs(results[name] - reference)
        pixels = np.abs(to_uint8_half_up(results[name]).astype(np.int16) - to_uint8_half_up(reference))
        print(f"{name:<9} {seconds:9.3f} {min(walls['fp32']) / seconds:7.2f} {diff.max():9.2e} {diff.mean():9.2e} "
              f"{pixels.max():7d} {pixels.mean():8.4f}")
        record(summary, name, walls[name], diff, pixels, digits=4)
    summary["speedup"] = round(summary["fp32_s"] / summary["default_s"], 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
