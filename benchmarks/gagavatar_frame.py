"""Time GAGAvatar per driven frame, split into FLAME, splatting (Gaussians + rasteriser) and refiner, plus the one-off
source encoding, for the released model size on the current device.

Weights are random values in the released layout (the 597-key manifest ``model_full_keys.json`` of the test
fixtures, loaded strictly through ``load_gagavatar``); FLAME is synthetic with the real sizes (V = 5,023).  Random
weights give Gaussians of about the formula-weight fixture's size, so the rasteriser load is comparable to it
(trained Gaussians are likely smaller, i.e. cheaper).

    .venv/bin/python benchmarks/gagavatar_frame.py [--frames 3] [--device cuda] [--autocast bf16] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pack import load_pack

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


def _timed(device: torch.device, function):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def released_random_model(manifest_path: Path, device: torch.device):
    from talkinghead.models.gagavatar import load_gagavatar
    import gagavatar_synth as synth

    manifest = json.loads(manifest_path.read_text())
    shapes = {name: torch.empty(shape, device="meta") for name, shape, *_ in manifest["keys"]}
    return load_gagavatar({"model": synth.random_weights(shapes, seed=0)}, device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3, help="driven frames to time (median reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--autocast", choices=("none", "bf16", "fp16"), default="none",
                        help="half-precision autocast for Gaussians and refiner (CUDA only)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--manifest", type=Path, default=FIXTURES / "gagavatar" / "model_full_keys.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_pack()
    import gagavatar_synth as synth
    from talkinghead.models.flame import load_flame
    from talkinghead.pipelines import gagavatar as gg

    device = torch.device(args.device)
    autocast = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.autocast]
    if autocast is not None and device.type != "cuda":
        parser.error("--autocast needs a CUDA device (half precision is CUDA-only)")
    model, load_s = _timed(device, lambda: released_random_model(args.manifest, device))
    flame = load_flame(synth.synthetic_flame(num_vertices=5023, num_faces=9976, seed=0))
    driver = gg.as_driver(synth.synthetic_driver_arrays(args.frames))
    source = synth.synthetic_frame(0)
    avatar, encode_s = _timed(device, lambda: gg.encode_source_cached(model, source, driver.transform_matrix[0]))
    _, cached_s = _timed(device, lambda: gg.encode_source_cached(model, source, driver.transform_matrix[0]))
    shape = driver.shapecode[0]

    timings = {"flame": [], "splat": [], "refine": []}
    visible = []
    for k in range(args.frames):
        points, flame_s = _timed(device, lambda: gg.driver_points(flame, shape, driver, k, k + 1))
        (image, _, radii), splat_s = _timed(
            device, lambda: gg.render_splat(model, avatar, points[0], driver.transform_matrix[k], autocast))
        _, refine_s = _timed(device, lambda: gg.refine_splats(model, image[None], autocast_dtype=autocast))
        for name, seconds in zip(timings, (flame_s, splat_s, refine_s)):
            timings[name].append(seconds)
        visible.append(int((radii > 0).sum()))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; autocast {args.autocast}; frames {args.frames}")
    print(f"model load (random released weights): {load_s:.2f} s")
    print(f"source encoding (DINOv2 + DPT + generators, once per source): {encode_s:.3f} s; cached re-use {cached_s * 1e3:.2f} ms")
    medians = {key: statistics.median(values) for key, values in timings.items()}
    for key, label in (("flame", "FLAME (V=5023)"), ("splat", "Gaussians + rasterisation 512²×32"),
                       ("refine", "StyleUNet refiner 512²")):
        print(f"per frame {label}: {medians[key] * 1e3:.1f} ms  (all: {', '.join(f'{v:.3f}' for v in timings[key])} s)")
    total = sum(medians.values())
    print(f"per frame total: {total:.3f} s = {1 / total:.2f} fps; visible Gaussians per frame: {np.median(visible):.0f}")


if __name__ == "__main__":
    main()
