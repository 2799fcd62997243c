"""Time the original-3DGS rasteriser on a head-sized scene: 180k Gaussians, 512×512, 32 channels.

The cloud imitates GAGAvatar's layout (5,023 points on a head-sized ellipsoid plus two 296² lifted planes) with
scales and opacities chosen so the projected radii match the formula-weight render fixture (mean ≈ 33 px,
5th–95th percentile ≈ 22–47 px, ~4.1 M Gaussian–tile rectangle pairs).

    .venv/bin/python benchmarks/gaussian_rasterizer.py [--repeat 2] [--threads 2] [--backend torch|gsplat]

Without --backend it times the torch path, and on CUDA also the gsplat path when gsplat imports.  On a CPU shared
with other busy processes, torch's OpenMP threads wait on each other at every operation and 2 threads can be many
times slower than 1 (compare --threads 1).
"""
from __future__ import annotations

import argparse
import time

import torch

from pack import load_pack


def _import_rasterizer():
    """Import the pack under a fixed name (its modules use relative imports, the folder name is the user's)."""
    load_pack()
    from talkinghead.models import gaussian_rasterizer

    return gaussian_rasterizer


def front_camera(distance: float = 9.0):
    """GAGAvatar's camera (models.camera_geometry.camera_matrices) looking at the origin from ``distance`` along +z."""
    from talkinghead.models.camera_geometry import FOCAL_LENGTH, camera_matrices, camera_tanfov

    transform = torch.zeros(3, 4)
    transform[:, :3] = torch.eye(3)
    transform[2, 3] = distance
    view, proj = camera_matrices(transform, FOCAL_LENGTH)
    return view, proj, camera_tanfov(FOCAL_LENGTH)[0]


def head_like_cloud(seed: int = 0, channels: int = 32, plane_side: int = 296, surface_points: int = 5023):
    """Random Gaussians shaped like GAGAvatar's output (world units: FLAME × 5, the image spans ±0.75)."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(surface_points, 3, generator=gen)
    surface = direction / direction.norm(dim=1, keepdim=True) * torch.tensor([0.45, 0.6, 0.5])

    axis = torch.linspace(0.75, -0.75, plane_side)
    grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1)
    silhouette = torch.clamp(1.0 - (grid[:, 0] / 0.5) ** 2 - (grid[:, 1] / 0.65) ** 2, min=0.0).sqrt()
    lift = [sign * 0.5 * silhouette * torch.rand(grid.shape[0], generator=gen) for sign in (1.0, -1.0)]
    planes = [torch.cat([grid, z[:, None]], dim=1) for z in lift]

    means = torch.cat([surface, *planes])
    n = means.shape[0]
    scales = 0.027 * torch.exp(0.25 * torch.randn(n, 3, generator=gen))
    rotations = torch.randn(n, 4, generator=gen)
    rotations = rotations / rotations.norm(dim=1, keepdim=True)
    opacities = 0.3 + 0.35 * torch.rand(n, generator=gen)
    features = torch.randn(n, channels, generator=gen)
    return means, scales, rotations, opacities, features


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", choices=["torch", "gsplat", "auto"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiles-per-batch", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    raster = _import_rasterizer()

    means, scales, rotations, opacities, features = head_like_cloud(channels=args.channels)
    view, proj, tanfov = front_camera()
    tensors = [t.to(args.device) for t in (means, scales, rotations, opacities, features, view, proj)]
    means, scales, rotations, opacities, features, view, proj = tensors
    background = torch.zeros(args.channels, device=args.device)

    projected = raster.project_gaussians(means, scales, rotations, view, proj, tanfov, tanfov, args.size, args.size)
    rects = projected.tile_rects
    rect_pairs = int(((rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])).sum())
    lists = raster.bin_tiles(projected, opacities[projected.index], args.size, args.size)
    radii = projected.radii.float()
    print(
        f"{means.shape[0]} Gaussians, {projected.index.numel()} visible, radius mean {radii.mean():.1f} px "
        f"(p5 {radii.quantile(0.05):.0f}, p95 {radii.quantile(0.95):.0f}); tile-Gaussian pairs: {rect_pairs} in "
        f"the tile rectangles, {lists.gaussians.numel()} after the alpha >= 1/255 tile test"
    )

    backends = [args.backend] if args.backend else ["torch"]
    if args.backend is None and args.device.startswith("cuda") and raster._gsplat_importable():
        backends.append("gsplat")
    for backend in backends:
        for run in range(args.repeat):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            image, alpha, _ = raster.rasterize(
                means, scales, rotations, opacities, features, view, proj, tanfov, tanfov, args.size, args.size,
                background, backend=backend, tiles_per_batch=args.tiles_per_batch, chunk_size=args.chunk_size,
            )
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            print(
                f"run {run}: {seconds:.2f} s  backend={backend} device={args.device} threads={args.threads} "
                f"{args.size}x{args.size}x{args.channels}  mean alpha {alpha.mean():.4f}"
            )


if __name__ == "__main__":
    main()
