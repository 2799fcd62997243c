"""Measure the GAGAvatar inference-time enhancements: per-frame overhead and each one's metric.

- Temporal smoothing (EMA / Kalman / RTS) on a synthetic driver with known ground truth + tracking jitter:
  jitter energy (mean squared 2nd difference), RMS error to the truth, lag (cross-correlation peak, frames).
- Detail enhancement at 512²: high-frequency energy gain inside the face vs overshoot (halo) at strong edges,
  max change in flat areas and outside the mask, on a synthetic scene and on real-photo crops (grace_hopper,
  astronaut), edge-aware vs plain pyramid sharpening.
- Region-aware expression transfer: per-region displacement ratio achieved vs requested and least-squares
  residual on the synthetic FLAME fixture (V=64) and on a 5,023-vertex basis of smooth random bumps (real FLAME
  size; neither is real FLAME geometry), build time (pseudo-inverse, once) and per-frame cost.
- Gaze: angle between gaze and the direction to the camera before/after for several strengths; eye-region
  sharpening cost at 512².
- The ``enhanced`` preset end to end (driver side + frame side).

Timings are wall and process-CPU milliseconds per frame with OpenCV / torch limited to ``--threads`` threads.

    .venv/bin/python benchmarks/gagavatar_enhance.py [--frames 250] [--threads 1] [--repeat 3]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from pack import load_pack

REPO = Path(__file__).resolve().parents[1]
FLAME_FIXTURE = REPO / "tests" / "fixtures" / "gagavatar" / "flame_synthetic_small.pt"


def timed(function, repeat: int):
    """(result, best wall seconds, process CPU seconds of that run) over ``repeat`` runs."""
    best = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best[0]:
            best = (wall, cpu)
    return result, best[0], best[1]


def per_frame(label: str, wall: float, cpu: float, frames: int) -> None:
    print(f"  {label:<44s} {1e3 * wall / frames:9.4f} ms/frame wall  {1e3 * cpu / frames:9.4f} ms/frame CPU")


def bench_smoothing(frames: int, repeat: int) -> None:
    from talkinghead.pipelines.gagavatar_enhance.evaluation import evaluate_smoothing, synthetic_driver_track
    from talkinghead.pipelines.gagavatar_enhance.smoothing import SmoothingConfig, smooth_driver

    truth, noisy = synthetic_driver_track(num_frames=frames, seed=0)
    methods = ("none", "ema", "kalman", "rts")
    print(f"\n[1] temporal smoothing, synthetic driver, {frames} frames at 25 fps "
          "(expression 100-d, jaw, 2 eyes, camera)")
    for method in methods[1:]:
        _, wall, cpu = timed(lambda: smooth_driver(noisy, SmoothingConfig(method=method)), repeat)
        per_frame(f"{method} (all 4 fields)", wall, cpu, frames)
    report = evaluate_smoothing(noisy, truth, {m: SmoothingConfig(method=m) for m in methods})
    print(f"  {'field':<22s} {'method':<7s} {'jitter':>10s} {'RMS error':>10s} {'lag (frames)':>13s}")
    for field in report["none"]:
        for method in methods:
            numbers = report[method][field]
            print(f"  {field:<22s} {method:<7s} {numbers['jitter']:10.2e} {numbers['rms']:10.4f} "
                  f"{numbers['lag']:13.2f}")


def bench_detail(repeat: int) -> None:
    from media import face_box, photo

    from talkinghead.pipelines.gagavatar_enhance.detail import DetailConfig, enhance_details
    from talkinghead.pipelines.gagavatar_enhance.evaluation import (detail_metrics, photo_detail_scene,
                                                                    synthetic_detail_scene)

    print("\n[2] detail enhancement at 512x512 (default: strength 0.3, gains 1.5/1.2/0.8/0.4, edge-aware)")
    scenes = {"synthetic": synthetic_detail_scene(size=512, seed=0)}
    for face in ("grace_hopper", "astronaut"):
        scene = photo_detail_scene(photo(face), face_box(face), size=512)
        scenes[f"photo {face}"] = {**scene, "flat": scene["texture"]}  # photos have no flat area
    print(f"  {'scene':<20s} {'weighting':<10s} {'HF gain':>8s} {'halo mean':>10s} {'halo max':>9s} "
          f"{'flat max':>9s} {'outside':>8s} {'wall ms':>8s} {'CPU ms':>7s}")
    for name, scene in scenes.items():
        frames = np.repeat(scene["image"][None], 4, axis=0)
        mask = scene["face"].astype(np.float32)
        for weighting, config in (("edge-aware", DetailConfig()), ("plain", DetailConfig(edge_suppression=0.0))):
            out, wall, cpu = timed(lambda: enhance_details(frames, mask, config), repeat)
            m = detail_metrics(scene["image"], out[0], scene)
            flat = "n/a" if name.startswith("photo") else f"{m['flat_max_change']:.1e}"
            print(f"  {name:<20s} {weighting:<10s} {m['hf_gain']:8.2f} {m['overshoot_mean']:10.1e} "
                  f"{m['overshoot_max']:9.3f} {flat:>9s} {m['background_max_change']:8.1e} "
                  f"{1e3 * wall / len(frames):8.2f} {1e3 * cpu / len(frames):7.2f}")


def bench_expression(frames: int, repeat: int) -> None:
    from talkinghead.models.flame import load_flame
    from talkinghead.pipelines.gagavatar_enhance.expression import RegionExpressionTransfer, box_regions

    print("\n[3] region-aware expression transfer (blend 0.8; weights eyes .9 brows .9 nose .95 mouth .7 cheeks .85)")
    rng = np.random.default_rng(0)
    expcode = rng.normal(size=(frames, 100)).astype(np.float32)
    flame = load_flame(FLAME_FIXTURE)
    transfer, wall, _ = timed(lambda: RegionExpressionTransfer.from_flame(flame), 1)
    _report_transfer("synthetic FLAME file (V=64, landmark regions)", transfer, expcode, wall, repeat)
    # Real-FLAME-sized basis (15,069 x 100) on a random 0.1-radius ellipsoid with box regions.  Each component is a
    # smooth Gaussian bump (sigma 2 cm) with a random direction, like FLAME's smooth expression fields; a spatially
    # white random basis cannot isolate any region (all ratios ~0.98) and real FLAME is not available offline.
    direction = rng.normal(size=(5023, 3))
    template = 0.1 * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    centres = template[rng.integers(0, 5023, 100)]
    bumps = np.exp(-np.sum((template[:, None] - centres[None]) ** 2, axis=-1) / (2 * 0.02**2))
    basis = 1e-3 * bumps[:, None, :] * rng.normal(size=(100, 3)).T[None]
    transfer, wall, _ = timed(lambda: RegionExpressionTransfer(basis, box_regions(template)), 1)
    _report_transfer("smooth bump basis V=5023 (box regions)", transfer, expcode, wall, repeat)


def _report_transfer(label, transfer, expcode, build_seconds, repeat) -> None:
    _, wall, cpu = timed(lambda: transfer.transfer(expcode), repeat)
    print(f"  {label}: build (pinv, once) {1e3 * build_seconds:.1f} ms")
    per_frame("transfer", wall, cpu, len(expcode))
    for name, numbers in transfer.region_report(expcode).items():
        print(f"    {name:<11s} vertices {numbers['vertices']:5d}  ratio {numbers['ratio']:.3f}  requested "
              f"{numbers['requested']:.3f}  LS residual {numbers['residual']:.3f}")


def bench_gaze(frames: int, repeat: int) -> None:
    from talkinghead.models.flame import load_flame
    from talkinghead.pipelines.gagavatar_enhance.gaze import (GazeConfig, correct_gaze, eye_centres_from_flame,
                                                              enhance_eyes, gaze_angles, project_points)
    from talkinghead.pipelines.gagavatar_enhance.evaluation import synthetic_detail_scene, synthetic_driver_track

    print("\n[4] gaze correction (eye centres from the synthetic FLAME file, camera from the driver)")
    truth, _ = synthetic_driver_track(num_frames=frames, seed=1)
    flame = load_flame(FLAME_FIXTURE)
    centres, wall, cpu = timed(lambda: eye_centres_from_flame(flame, np.zeros(300), truth["expcode"],
                                                              truth["posecode"]), repeat)
    per_frame("eye centres (FLAME joints)", wall, cpu, frames)
    before = np.degrees(gaze_angles(truth, centres))
    for strength in (0.3, 0.7, 1.0):
        corrected, wall, cpu = timed(lambda: correct_gaze(truth, centres, GazeConfig(strength=strength)), repeat)
        after = np.degrees(gaze_angles(corrected, centres))
        error = np.abs(after - (1 - strength) * before).max()
        print(f"  strength {strength:.1f}: angle to camera {before.mean():6.2f} -> {after.mean():6.2f} deg "
              f"(max |after - (1-s) before| = {error:.1e} deg), {1e3 * wall / frames:.3f} ms/frame")
    scene = synthetic_detail_scene(size=512, seed=0)
    frames_512 = np.repeat(scene["image"][None], 4, axis=0)
    pixels = project_points(centres[:4], truth["transform_matrix"][:4], (512, 512))
    _, wall, cpu = timed(lambda: enhance_eyes(frames_512, pixels), repeat)
    per_frame("eye-region sharpening 512x512", wall, cpu, 4)


def bench_preset(frames: int, repeat: int) -> None:
    from talkinghead.models.flame import load_flame
    from talkinghead.pipelines.gagavatar_enhance import enhance_driver, enhance_frames, get_preset
    from talkinghead.pipelines.gagavatar_enhance.evaluation import synthetic_detail_scene, synthetic_driver_track

    print("\n[5] 'enhanced' preset end to end")
    _, noisy = synthetic_driver_track(num_frames=frames, seed=2)
    flame = load_flame(FLAME_FIXTURE)
    preset = get_preset("enhanced")
    driver, wall, cpu = timed(lambda: enhance_driver(noisy, preset, flame=flame), repeat)
    per_frame(f"driver side ({frames} frames)", wall, cpu, frames)
    scene = synthetic_detail_scene(size=512, seed=0)
    rendered = np.repeat(scene["image"][None], 4, axis=0)
    short = {k: v[:4] for k, v in driver.items()}
    _, wall, cpu = timed(lambda: enhance_frames(rendered, preset, face_mask=scene["face"], driver=short,
                                                flame=flame), repeat)
    per_frame("frame side 512x512 (detail + eyes)", wall, cpu, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=250, help="driver length for the driver-side stages")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV / torch threads")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best wall time is kept)")
    args = parser.parse_args()
    load_pack()
    import cv2
    import torch

    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"GAGAvatar enhancements benchmark: {args.threads} thread(s), best of {args.repeat}")
    bench_smoothing(args.frames, args.repeat)
    bench_detail(args.repeat)
    bench_expression(args.frames, args.repeat)
    bench_gaze(args.frames, args.repeat)
    bench_preset(args.frames, args.repeat)


if __name__ == "__main__":
    main()
