"""Frame-to-frame flicker of GAGAvatar renders: reference noise vs deterministic noise vs deterministic + smoothing.

    .venv/bin/python benchmarks/gagavatar_flicker.py [--frames 25]

Runs a small random model of the GAGAvatar family (the released weights are not available here) on a synthetic
jittered driver with known ground truth; prints mean |frame_t - frame_t-1| for each setting and the error of each
render against the render of the ground-truth driver.  Absolute values depend on the weights; the ordering is what
the measurement shows.
"""
from __future__ import annotations

import argparse

import numpy as np

from pack import load_pack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=25)
    args = ap.parse_args()
    load_pack()
    import gagavatar_synth as synth
    from talkinghead.models.flame import load_flame
    from talkinghead.models.gagavatar import load_gagavatar
    from talkinghead.pipelines.gagavatar import animate, as_driver, encode_source_cached
    from talkinghead.pipelines.gagavatar_enhance.evaluation import frame_flicker, synthetic_driver_track
    from talkinghead.pipelines.gagavatar_enhance.smoothing import SmoothingConfig, smooth_driver

    model = load_gagavatar(synth.tiny_gagavatar_state_dict(num_vertices=64))
    flame = load_flame(synth.synthetic_flame(num_vertices=64))
    truth, noisy = synthetic_driver_track(num_frames=args.frames, seed=2)
    avatar = encode_source_cached(model, synth.synthetic_frame(0), truth["transform_matrix"][0])

    def render(driver, randomize_noise=False):
        return animate(model, flame, avatar, np.zeros(300, np.float32), as_driver(driver),
                       randomize_noise=randomize_noise)

    ideal = render(truth)
    rows = [("reference noise (fresh per frame)", render(noisy, True)),
            ("deterministic noise", render(noisy)),
            ("deterministic + RTS smoothing", render(smooth_driver(noisy, SmoothingConfig(method="rts"))))]
    print(f"{args.frames} frames, tiny random GAGAvatar-family model, jittered synthetic driver")
    print(f"{'setting':40s} {'flicker':>10s} {'error vs ground-truth render':>30s}")
    print(f"{'ground-truth driver':40s} {frame_flicker(ideal):10.5f} {0.0:30.5f}")
    for name, frames in rows:
        print(f"{name:40s} {frame_flicker(frames):10.5f} {float(np.abs(frames - ideal).mean()):30.5f}")


if __name__ == "__main__":
    main()
