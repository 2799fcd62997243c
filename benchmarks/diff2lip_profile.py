"""Where a Diff2Lip DDIM step spends its time: FLOPs per frame per step (torch's FLOP counter) and the share of each
operator in the CPU time of the default path (batch 1, channels_last, fp32), from torch.profiler.

The figures behind the README's statement that convolutions dominate a step and already run near the CPU's fp32
rate.  Release-size random weights; a few UNet calls, so it takes well under a minute on a 2-core CPU.

    .venv/bin/python benchmarks/diff2lip_profile.py [--calls 2] [--top 8] [--threads N]
"""
from __future__ import annotations

import argparse
import json

import torch
from torch.profiler import profile
from torch.utils.flop_counter import FlopCounterMode

from diff2lip_unet import _modules, random_release_state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2, help="profiled UNet calls (one frame each)")
    parser.add_argument("--top", type=int, default=8, help="operators listed")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model_module, _ = _modules()
    model = model_module.load_diff2lip(random_release_state_dict(model_module), device="cpu",
                                       num_head_channels=64).set_speed(channels_last=True)
    size = model.image_size
    generator = torch.Generator().manual_seed(0)
    face = torch.rand(1, 3, size, size, generator=generator) * 2 - 1
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 2:, :] = 1
    timestep = torch.tensor([500])
    with torch.no_grad():
        style = model.encode_audio(torch.rand(1, 80, 16, generator=generator))
        model(face, timestep, face, mask, face, audio_style=style)  # warm-up (oneDNN primitives)
        with FlopCounterMode(display=False) as counter:
            model(face, timestep, face, mask, face, audio_style=style)
        with profile() as prof:
            for _ in range(args.calls):
                model(face, timestep, face, mask, face, audio_style=style)

    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total_us = sum(e.self_cpu_time_total for e in events)
    seconds = total_us / 1e6 / args.calls
    gflop = counter.get_total_flops() / 1e9
    print(f"Diff2Lip release size, batch 1, channels_last, fp32, CPU {torch.get_num_threads()} threads: "
          f"{gflop:.1f} GFLOP per frame per step, {seconds:.3f} s of profiled CPU time per call "
          f"({gflop / seconds:.0f} GFLOP/s overall)")
    shares = {}
    for event in events[:args.top]:
        shares[event.key] = round(event.self_cpu_time_total / total_us, 4)
        print(f"  {event.key:<48} {100 * shares[event.key]:5.1f} %")
    print(json.dumps({"gflop_per_frame_step": round(gflop, 2), "cpu_s_per_call": round(seconds, 4),
                      "op_share": shares}))


if __name__ == "__main__":
    main()
