"""Diff2Lip speed per frame per DDIM step: today's exact fp32 path vs the new default vs each precision mode.

All paths run in ONE interleaved loop (round-robin, ``--rounds`` times) on the same faces, mels and seeded noise, with
the same model (random weights in the release's shapes unless --tiny), so that load from other jobs on a shared
machine hits every path alike.  Paths:

- ``fp32``: the path as the bundled workflows ran it: fp32 eager, NCHW, batch 8;
- ``default``: what the loader and the lip-sync node use by default: batch chosen per device (1 on CPU),
  channels_last, fp32, eager (the loader's compile switch is off by default);
- ``compiled``: the default with the loader's compile switch on (only with ``--compile``; its first call, which
  compiles, is in the warm-up round and reported as compile_first_call_s);
- ``bf16`` / ``fp16``: the default plus autocast in that precision (skipped where the device lacks it).

Differences are taken against the ``fp32`` path: ``*_maxdiff``/``*_meandiff`` on the UNet output of every step
(the quantity the 1e-4 bound is about), ``*_pixel_maxdiff``/``*_pixel_meandiff`` on the final composited crops as
uint8 (0..255).  The last line printed is JSON.

    .venv/bin/python benchmarks/diff2lip_speed.py [--frames 8] [--steps 1] [--rounds 3] [--tiny] [--compile] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from compare import record  # noqa: E402
from diff2lip_unet import _modules, random_release_state_dict  # noqa: E402

SHIPPED_BATCH = 8  # the bundled workflows' batch_size


def _inputs(frames: int, size: int):
    generator = torch.Generator().manual_seed(1)
    faces = torch.rand(frames, 3, size, size, generator=generator) * 2 - 1
    mels = torch.rand(frames, 80, 16, generator=generator) * 8 - 4
    return faces, mels


def _run(pipeline, model, faces, mels, steps: int, batch: int):
    """DDIM over all faces in batches; returns (wall seconds, UNet outputs per step, final crops as uint8)."""
    noise = pipeline.seeded_noise(7, faces.shape[-1])
    outputs, crops = [], []
    start = time.perf_counter()
    for first in range(0, len(faces), batch):
        part, part_mels = faces[first:first + batch], mels[first:first + batch]
        steps_out = []
        sample = pipeline.ddim_sample(model, part, part, part_mels, noise, steps,
                                      step_hook=lambda s: steps_out.append(s["model_out"].float().cpu()))
        outputs.append(torch.stack(steps_out))
        crops.append(pipeline.model_to_crops(pipeline.composite_lower_half(sample.cpu(), part), "uint8"))
    if faces.device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return wall, torch.cat(outputs, dim=1), torch.from_numpy(__import__("numpy").concatenate(crops)).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=SHIPPED_BATCH, help="faces per path and round (default 8)")
    parser.add_argument("--steps", type=int, default=1, help="DDIM steps per run (speed is per step)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--tiny", action="store_true", help="the fixtures' tiny checkpoint instead of release size")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the default with torch.compile (the loader's opt-in compile switch)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model_module, pipeline = _modules()
    from talkinghead.models import speed

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    if args.tiny:
        state = model_module._read_checkpoint(REPO / "tests/fixtures/diff2lip/tiny_unet.pt")
        heads = 32
    else:
        state, heads = random_release_state_dict(model_module), 64
    default_batch = speed.default_batch_size(device)
    paths = {"fp32": dict(batch=SHIPPED_BATCH, channels_last=False, autocast_dtype=None),
             "default": dict(batch=default_batch, channels_last=True, autocast_dtype=None)}
    if args.compile:
        paths["compiled"] = dict(batch=default_batch, channels_last=True, autocast_dtype=None, compile=True)
    for name in ("bf16", "fp16"):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[name]
        if speed.half_supported(dtype, device):
            paths[name] = dict(batch=default_batch, channels_last=True, autocast_dtype=dtype)
    # One model per path, all built from the same tensors (load_diff2lip assigns them), set up once: a compiled
    # model keeps its compiled code across rounds.
    models = {}
    for name, setting in paths.items():
        models[name] = model_module.load_diff2lip(state, device=device, num_head_channels=heads).set_speed(
            channels_last=setting["channels_last"], autocast_dtype=setting["autocast_dtype"],
            compile=setting.get("compile", False))
    model = models["fp32"]
    faces, mels = _inputs(args.frames, model.image_size)
    faces, mels = faces.to(device), mels.to(device)
    compile_seconds = None

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"Diff2Lip {'tiny fixture' if args.tiny else 'release size, random weights'} on {where}; {args.frames} "
          f"faces x {args.steps} DDIM step(s) per path, {args.rounds} interleaved rounds")
    walls = {name: [] for name in paths}
    results = {}
    for round_index in range(args.rounds + 1):  # round 0 warms up (allocator, oneDNN primitives, compile)
        for name, setting in paths.items():
            wall, outputs, crops = _run(pipeline, models[name], faces, mels, args.steps, setting["batch"])
            if setting.get("compile") and round_index == 0:
                compile_seconds = wall  # the warm-up run, whose first call compiles
            if round_index:
                walls[name].append(wall / args.frames / args.steps)
            results[name] = (outputs, crops)

    summary = {"device": where, "frames": args.frames, "steps": args.steps, "rounds": args.rounds,
               "default_batch": default_batch}
    ref_out, ref_crops = results["fp32"]
    print(f"{'path':<9} {'batch':>5} {'s/frame/step':>13} {'x fp32':>7} {'out max|d|':>11} {'out mean|d|':>11} "
          f"{'px max|d|':>9} {'px mean|d|':>10}")
    for name, setting in paths.items():
        seconds = min(walls[name])  # the least disturbed round; all rounds are listed in the JSON
        out, crops = results[name]
        out_diff, px_diff = (out - ref_out).abs(), (crops - ref_crops).abs()
        print(f"{name:<9} {setting['batch']:>5} {seconds:13.4f} {min(walls['fp32']) / seconds:7.2f} "
              f"{out_diff.max().item():11.2e} {out_diff.mean().item():11.2e} {px_diff.max().item():9.0f} "
              f"{px_diff.mean().item():10.4f}")
        record(summary, name, walls[name], out_diff.numpy(), px_diff.numpy(), digits=5)
    summary["speedup"] = round(summary["fp32_s"] / summary["default_s"], 3)
    if compile_seconds is not None:
        summary["compile_first_call_s"] = round(compile_seconds, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
