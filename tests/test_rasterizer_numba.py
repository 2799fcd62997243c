"""The CPU rasteriser's numba per-pixel compositor against the tensor compositor (same rules, float rounding)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from talkinghead.models import gaussian_rasterizer as gr

pytest.importorskip("numba")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the benchmark's head-like scene


def _render(args, **kwargs):
    return gr.rasterize(*args, backend="torch", **kwargs)


def test_numba_compositor_matches_the_tensor_compositor_on_the_fixture(gagavatar_fixtures):
    data = np.load(gagavatar_fixtures / "gs_raster_64.npz")
    fx = {key: torch.from_numpy(np.asarray(data[key])) for key in data.files}
    args = (fx["means"], fx["scales"], fx["quats"], fx["opacities"], fx["colors"], fx["viewmatrix_3dgs"],
            fx["projmatrix_3dgs"], float(fx["tanfovx"]), float(fx["tanfovy"]), 64, 64, fx["background"])
    image, alpha, radii = _render(args)
    ref_image, ref_alpha, ref_radii = _render(args, use_numba=False)
    assert torch.equal(radii, ref_radii)
    assert (image - ref_image).abs().max().item() < 2e-5
    assert (alpha - ref_alpha).abs().max().item() < 2e-5
    assert alpha.max().item() > 0.5  # a real scene, not an empty image


def test_numba_compositor_matches_on_a_head_like_scene_and_uses_torch_threads():
    import numba
    from gaussian_rasterizer import front_camera, head_like_cloud

    means, scales, rotations, opacities, features = head_like_cloud(channels=8, plane_side=60, surface_points=500)
    view, proj, tanfov = front_camera()
    args = (means, scales * 2, rotations, opacities, features, view, proj, tanfov, tanfov, 96, 80, torch.zeros(8))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        image, alpha, _ = _render(args, return_depth=False)
        assert numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    ref_image, ref_alpha, _ = _render(args, use_numba=False)
    assert image.shape == (8, 96, 80)
    assert 0.3 < alpha.mean().item() < 1.0
    assert (image - ref_image).abs().max().item() < 1e-4
    assert (alpha - ref_alpha).abs().max().item() < 1e-4


def test_numba_tile_lists_equal_the_tensor_sort():
    from gaussian_rasterizer import front_camera, head_like_cloud

    means, scales, rotations, opacities, _ = head_like_cloud(channels=4, plane_side=60, surface_points=500)
    view, proj, tanfov = front_camera()
    projected = gr.project_gaussians(means, scales * 2, rotations, view, proj, tanfov, tanfov, 96, 80)
    opacity = opacities.reshape(-1)[projected.index].float()
    counted = gr.bin_tiles(projected, opacity, 96, 80, use_numba=True)
    sorted_ = gr.bin_tiles(projected, opacity, 96, 80, use_numba=False)
    assert counted.gaussians.numel() > projected.index.numel()  # a real scene: Gaussians spanning several tiles
    assert torch.equal(counted.gaussians, sorted_.gaussians)
    assert torch.equal(counted.offsets, sorted_.offsets)
    assert counted.gaussians.dtype == sorted_.gaussians.dtype == torch.int64
