"""Measure the Diff2Lip enhancement stages on a real-photo talking clip (tests/media.py, astronaut or Grace Hopper).

The "generated" frames replace the lower face box with a shifted, blurred and re-coloured copy (as a generator's
paste-in); flicker is per-frame colour gain and noise inside the box on a clip with head motion. Prints per-frame
cost of every stage (wall ms) and its measured effect:
seam energy hard box vs feathered lip mask, flicker before/after flow vs plain EMA (and edge error = ghosting),
boundary ΔE before/after colour matching, residual noise std before/after denoising, sharpening edge gradient.

    .venv/bin/python benchmarks/diff2lip_enhance.py [--face astronaut] [--frames 12] [--size 512]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from pack import load_pack


def _modules():
    """Import the pack under a fixed name (its modules use relative imports) and the test-media helpers."""
    load_pack()
    import diff2lip_enhance_media
    from talkinghead.pipelines import diff2lip_enhance

    return diff2lip_enhance_media, diff2lip_enhance


def _timed(label: str, frames: int, function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    print(f"  {label:<34s} {1000 * (time.perf_counter() - start) / frames:8.1f} ms/frame")
    return result


def _edge_error(output, clean, region):
    gradient = np.stack([np.hypot(*np.gradient(frame.mean(-1))) for frame in clean])
    edges = (gradient > 0.05) & (region > 0.5)
    edges[0] = False
    return float(np.abs(output - clean).mean(-1)[edges].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--face", default="astronaut", choices=["astronaut", "grace_hopper"])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    media, enhance = _modules()
    size = (args.size, args.size)
    clip = media.enhance_clip(args.face, args.frames, size, motion=3.0)
    count = args.frames
    original, generated, region = clip.original, clip.generated, clip.region
    print(f"{args.face}, {count} frames {args.size}x{args.size}, region {int(region.sum() / count)} px/frame")

    print("cost (wall, this machine)")
    lip, info = _timed("lip_composite_masks (FaceMesh x2)", count, enhance.lip_composite_masks, original, generated,
                       region)
    _timed("  adaptive (gain 1)", count, enhance.lip_composite_masks, original, generated, region, adaptive_gain=1.0)
    hard = _timed("composite hard box", count, enhance.composite, original, generated, region)
    soft = _timed("composite lip mask", count, enhance.composite, original, generated, region, lip)
    matched = _timed("match_color lab_meanstd", count, enhance.match_color, original, hard, region)
    matched_hist = _timed("match_color histogram", count, enhance.match_color, original, hard, region,
                          method="histogram")
    flicker = media.flickering(original, region)
    flow_out = _timed("flow_temporal_smooth dis 0.5", count, enhance.flow_temporal_smooth, flicker, region, 0.5)
    _timed("flow_temporal_smooth farneback 0.5", count, enhance.flow_temporal_smooth, flicker, region, 0.5,
           method="farneback")
    ema_out = _timed("ema_temporal_smooth 0.5", count, enhance.ema_temporal_smooth, flicker, region, 0.5)
    noisy = np.clip(original + np.random.default_rng(0).normal(0, 0.03, original.shape).astype(np.float32)
                    * region[..., None], 0, 1)
    denoised = {method: _timed(f"denoise_region {method}", count, enhance.denoise_region, noisy, region, method)
                for method in enhance.denoise.DENOISE_METHODS}
    sharpened = _timed("sharpen_region 0.3", count, enhance.sharpen_region, original, region, 0.3)
    _timed("quality_report (with FaceMesh)", count, enhance.quality_report, original, soft, region, lip, generated)

    print(f"seam energy (mean colour |grad| on the ±2 px ring, minus seam-free reference; {info['num_fallback']} "
          "FaceMesh fallbacks)")
    for name, output, mask in (("hard box", hard, region), ("feathered lip mask", soft, lip)):
        with_generated = enhance.seam_energy(output, original, mask, generated)
        plain = enhance.seam_energy(output, original, mask)
        print(f"  {name:<20s} vs generated+original reference {with_generated:+.5f}   vs original only {plain:+.5f}")
    print("flicker (warped frame-to-frame |diff| in the region, flow from the clean clip)")
    for name, frames in (("clean clip (floor)", original), ("flickering", flicker), ("flow smoothed", flow_out),
                         ("plain EMA", ema_out)):
        error = "" if frames is original else f"   edge error vs clean {_edge_error(frames, original, region):.4f}"
        print(f"  {name:<20s} {enhance.warped_flicker(frames, region, flow_frames=original):.4f}{error}")
    print("boundary ΔE76 (mean Lab inside vs outside the region edge, 6 px bands)")
    for name, frames in (("original (natural)", original), ("hard paste", hard), ("lab mean/std", matched),
                         ("histogram", matched_hist)):
        print(f"  {name:<20s} {enhance.boundary_delta_e(frames, region):.2f}")
    inside = region > 0.5
    print("residual noise std in the region (added σ = 0.03), std of (output − clean)")
    print(f"  {'noisy':<20s} {(noisy - original)[inside].std():.4f}")
    for method, frames in denoised.items():
        print(f"  {method:<20s} {(frames - original)[inside].std():.4f}")
    gradient = lambda frames: np.mean([np.hypot(*np.gradient(f.mean(-1)))[m].mean()  # noqa: E731
                                       for f, m in zip(frames, inside)])
    print(f"sharpening: mean luma |grad| in the region {gradient(original):.4f} -> {gradient(sharpened):.4f} "
          "(strength 0.3)")


if __name__ == "__main__":
    main()
