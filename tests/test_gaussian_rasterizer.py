"""Original-3DGS forward rasteriser: fixture parity, the individual kernel rules with numbers, and the work split."""
from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch

from talkinghead.models import gaussian_rasterizer as gr


def camera(width, height, tanfovx=1 / 12, tanfovy=1 / 12, z_near=0.01, z_far=100.0):
    """3DGS matrices (transposed layout) of a camera at the origin looking down +z: view = identity."""
    view = torch.eye(4)
    k4 = torch.zeros(4, 4)
    k4[0, 0], k4[1, 1], k4[3, 2] = 1 / tanfovx, 1 / tanfovy, 1.0
    k4[2, 2] = z_far / (z_far - z_near)
    k4[2, 3] = -z_far * z_near / (z_far - z_near)
    return view, view @ k4.T, tanfovx, tanfovy


def point_at_pixel(u, v, z, width, height, tanfovx=1 / 12, tanfovy=1 / 12):
    """World point (identity view) whose pixel mean is (u, v) in the integer-centre convention."""
    return [(2 * u + 1 - width) / width * z * tanfovx, (2 * v + 1 - height) / height * z * tanfovy, z]


def render(means, scales, quats, opacities, features, width, height, background=None, **kwargs):
    view, proj, tx, ty = camera(width, height)
    features = torch.as_tensor(features, dtype=torch.float32)
    if background is None:
        background = torch.zeros(features.shape[1])
    return gr.rasterize(
        torch.tensor(means, dtype=torch.float32), torch.tensor(scales, dtype=torch.float32),
        torch.tensor(quats, dtype=torch.float32), torch.tensor(opacities, dtype=torch.float32), features,
        view, proj, tx, ty, height, width, torch.as_tensor(background, dtype=torch.float32), **kwargs,
    )


@pytest.fixture(scope="module")
def raster64(gagavatar_fixtures):
    data = np.load(gagavatar_fixtures / "gs_raster_64.npz")
    return {key: torch.from_numpy(np.asarray(data[key])) for key in data.files}


def render_fixture(fx, quats="quats", **kwargs):
    return gr.rasterize(
        fx["means"], fx["scales"], fx[quats], fx["opacities"], fx["colors"], fx["viewmatrix_3dgs"],
        fx["projmatrix_3dgs"], float(fx["tanfovx"]), float(fx["tanfovy"]), int(fx["height"]), int(fx["width"]),
        fx["background"], **kwargs,
    )


@pytest.mark.parametrize(
    "quats,image,alpha,radii",
    [("quats", "image", "alpha", "radii"), ("quats_unnormalized", "image_unnormq", "alpha_unnormq", "radii_unnormq")],
)
def test_matches_gs_raster_64_fixture(raster64, quats, image, alpha, radii):
    out_image, out_alpha, out_radii = render_fixture(raster64, quats)
    assert out_image.shape == (32, 64, 64) and out_alpha.shape == (64, 64)
    np.testing.assert_allclose(out_image.numpy(), raster64[image].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(out_alpha.numpy(), raster64[alpha].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(out_radii.numpy(), raster64[radii].numpy())


def test_unnormalised_quaternions_are_used_as_given(raster64):
    # The two fixture variants differ only by quaternion scale; the kernel must not normalise them away.
    normalised, _, _ = render_fixture(raster64, "quats")
    raw, _, _ = render_fixture(raster64, "quats_unnormalized")
    assert (normalised - raw).abs().max() > 1e-2


def test_projection_matches_fixture_means_conics_depths(raster64):
    fx = raster64
    projected = gr.project_gaussians(
        fx["means"], fx["scales"], fx["quats"], fx["viewmatrix_3dgs"], fx["projmatrix_3dgs"], float(fx["tanfovx"]),
        float(fx["tanfovy"]), 64, 64,
    )
    idx = projected.index
    assert set(idx.tolist()) == set(torch.nonzero(fx["radii"] > 0).squeeze(1).tolist())
    np.testing.assert_allclose(projected.means2d.numpy(), fx["means2d"][idx].numpy(), atol=1e-4)
    np.testing.assert_allclose(projected.conics.numpy(), fx["conics"][idx].numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(projected.depths.numpy(), fx["depths"][idx].numpy(), rtol=1e-6)


def test_single_gaussian_peak_position_value_and_low_pass_width():
    width, height, z, scale, opacity = 64, 48, 4.0, 0.004, 0.8
    mean = point_at_pixel(20, 30, z, width, height)
    feature, background = [2.0, -1.0], [0.5, 0.25]
    image, alpha, radii = render([mean], [[scale] * 3], [[1, 0, 0, 0]], [opacity], [feature], width, height, background)

    assert divmod(int(torch.argmax(alpha)), width) == (30, 20)
    assert alpha[30, 20].item() == pytest.approx(opacity, abs=1e-5)
    blended = [opacity * f + (1 - opacity) * b for f, b in zip(feature, background)]
    assert image[:, 30, 20].tolist() == pytest.approx(blended, abs=1e-5)
    # Isotropic Σ = s²I: Σ2D = J Jᵀ s² + 0.3 I (rule 3) with focal W/(2 tanfovx) = 384 px and H/(2 tanfovy) = 288 px.
    x, y = mean[0] / z, mean[1] / z
    jac = np.array([[384 / z, 0, -384 * x / z], [0, 288 / z, -288 * y / z]])
    cov = scale**2 * jac @ jac.T + 0.3 * np.eye(2)
    conic = np.linalg.inv(cov)
    assert alpha[30, 21].item() == pytest.approx(opacity * math.exp(-0.5 * conic[0, 0]), rel=1e-4)
    diagonal_step = -0.5 * (conic[0, 0] + conic[1, 1]) - conic[0, 1]
    assert alpha[31, 21].item() == pytest.approx(opacity * math.exp(diagonal_step), rel=1e-4)
    lambda_max = np.linalg.eigvalsh(cov).max()
    assert int(radii[0]) == math.ceil(3 * math.sqrt(lambda_max))


def test_alpha_is_clamped_to_0_99_and_faint_pixels_are_skipped():
    width = height = 32
    mean = point_at_pixel(16, 16, 4.0, width, height)
    _, alpha, radii = render([mean], [[0.004] * 3], [[1, 0, 0, 0]], [1.0], [[1.0]], width, height)
    assert alpha[16, 16].item() == pytest.approx(0.99, abs=1e-6)
    assert alpha.min().item() == 0.0  # beyond the 1/255 cut-off nothing is added ...
    ring = alpha[(alpha > 0)]
    assert ring.min().item() >= 1 / 255 - 1e-7  # ... and every added value is >= 1/255
    assert int(radii[0]) > 0


def test_front_to_back_early_stop_before_transmittance_drops_below_1e_4():
    width = height = 16
    # Five identical opaque Gaussians at increasing depth: T after k of them = 0.05^k -> 0.05, 2.5e-3, 1.25e-4,
    # then 6.25e-6 < 1e-4, so the 4th (and 5th) must not be added at the centre pixel.
    means = [point_at_pixel(8, 8, z, width, height) for z in (3.0, 3.5, 4.0, 4.5, 5.0)]
    scales = [[0.002 * z / 3.0] * 3 for z in (3.0, 3.5, 4.0, 4.5, 5.0)]
    features = np.zeros((5, 5), np.float32)
    features[np.arange(5), np.arange(5)] = [1, 1, 1, 1e6, 1e6]
    order = [4, 2, 0, 3, 1]  # input order must not matter, only depth
    image, alpha, _ = render(
        [means[i] for i in order], [scales[i] for i in order], [[1, 0, 0, 0]] * 5, [0.95] * 5, features[order],
        width, height, background=[0.0, 0.0, 0.0, 0.0, 7.0],
    )
    expected = [0.95, 0.95 * 0.05, 0.95 * 0.05**2]
    assert image[:3, 8, 8].tolist() == pytest.approx(expected, rel=1e-5)
    assert image[3, 8, 8].item() == 0.0
    assert image[4, 8, 8].item() == pytest.approx(7.0 * 0.05**3, rel=1e-4)  # background through the final T
    assert alpha[8, 8].item() == pytest.approx(1 - 0.05**3, abs=1e-7)


def test_background_blend_and_near_plane_culling():
    width, height = 40, 24
    background = [0.3, -2.0, 5.0]
    # View z exactly 0.2 (float32), behind the camera, and far outside the image: all culled with radius 0.
    means = [[0.0, 0.0, 0.2], [0.0, 0.0, -1.0], [50.0, 0.0, 4.0]]
    image, alpha, radii = render(
        means, [[0.01] * 3] * 3, [[1, 0, 0, 0]] * 3, [0.9] * 3, np.ones((3, 3)), width, height, background
    )
    assert radii.tolist() == [0, 0, 0]
    assert alpha.abs().max().item() == 0.0
    expected = np.broadcast_to(np.float32(background)[:, None, None], (3, height, width))
    np.testing.assert_array_equal(image.numpy(), expected)
    # Just beyond the near plane the same Gaussian is kept and covers the image.
    _, alpha, radii = render([[0.0, 0.0, 0.2001]], [[0.001] * 3], [[1, 0, 0, 0]], [0.9], np.ones((1, 3)), width, height)
    assert radii[0].item() > 0 and alpha.max().item() > 0.5


def naive_composite(projected, opacities, features, background, height, width):
    """Rules 8–12 pixel by pixel (vectorised over pixels only), straight from the kernel's loop."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    color = np.zeros((features.shape[1], height, width))
    t = np.ones((height, width))
    done = np.zeros((height, width), bool)
    for i in np.argsort(projected.depths.numpy(), kind="stable"):
        x0, y0, x1, y1 = projected.tile_rects[i].tolist()
        in_rect = (xs >= x0 * 16) & (xs < x1 * 16) & (ys >= y0 * 16) & (ys < y1 * 16)
        a, b, c = projected.conics[i].tolist()
        dx, dy = projected.means2d[i, 0].item() - xs, projected.means2d[i, 1].item() - ys
        power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
        alpha = np.minimum(0.99, opacities[i] * np.exp(power))
        use = in_rect & ~done & (power <= 0) & (alpha >= 1 / 255)
        test_t = t * (1 - alpha)
        stop = use & (test_t < 1e-4)
        done |= stop
        use &= ~stop
        color += np.where(use, alpha * t, 0.0)[None] * features[i][:, None, None]
        t = np.where(use, test_t, t)
    return color + t[None] * background[:, None, None], 1 - t


@pytest.mark.parametrize("height,width", [(48, 80), (50, 37)])
def test_non_square_image_matches_naive_per_pixel_loop(height, width):
    gen = torch.Generator().manual_seed(3)
    n = 60
    z = 3.0 + 2.0 * torch.rand(n, generator=gen)
    means = torch.stack([(torch.rand(n, generator=gen) - 0.5) * f * z / 3 for f in (0.4, 0.3)] + [z], 1)
    scales = 0.002 + 0.01 * torch.rand(n, 3, generator=gen)
    quats = torch.randn(n, 4, generator=gen)
    opacities = 0.2 + 0.8 * torch.rand(n, generator=gen)
    features = torch.randn(n, 4, generator=gen)
    background = torch.tensor([0.1, 0.2, -0.3, 1.0])
    view, proj, tx, ty = camera(width, height)
    # A needle across the image (σ of a few hundred px by 0.55 px): exercises the rule-9 rounding guard.
    means[0], scales[0] = torch.tensor([0.0, 0.0, 2.5]), torch.tensor([3.0, 1e-5, 1e-5])
    quats[0] = torch.tensor([0.9, 0.0, 0.0, 0.1])

    image, alpha, radii = gr.rasterize(
        means, scales, quats, opacities, features, view, proj, tx, ty, height, width, background
    )
    assert image.shape == (4, height, width) and alpha.shape == (height, width)
    projected = gr.project_gaussians(means, scales, quats, view, proj, tx, ty, height, width)
    assert gr._compositor_params(projected, opacities[projected.index])[:, -1].sum() == 1  # the needle flag
    ref_image, ref_alpha = naive_composite(
        projected, opacities[projected.index].numpy(), features[projected.index].numpy(), background.numpy(), height,
        width,
    )
    np.testing.assert_allclose(image.numpy(), ref_image, atol=2e-5)
    np.testing.assert_allclose(alpha.numpy(), ref_alpha, atol=2e-5)
    assert alpha.max() > 0.9 and (radii > 0).sum() > n // 2
    # The optical axis lands at ((W - 1)/2, (H - 1)/2): non-square images keep separate x and y scales.
    centre = gr.project_gaussians(
        torch.tensor([[0.0, 0.0, 4.0]]), torch.full((1, 3), 0.01), torch.tensor([[1.0, 0, 0, 0]]), view, proj, tx, ty,
        height, width,
    )
    assert centre.means2d[0].tolist() == pytest.approx([(width - 1) / 2, (height - 1) / 2], abs=1e-9)


def test_three_and_thirty_two_channels_agree(raster64):
    full, alpha_full, _ = render_fixture(raster64)
    fx = dict(raster64, colors=raster64["colors"][:, :3].contiguous(), background=raster64["background"][:3])
    rgb, alpha_rgb, _ = render_fixture(fx)
    assert rgb.shape == (3, 64, 64)
    np.testing.assert_allclose(rgb.numpy(), full[:3].numpy(), atol=1e-6)
    np.testing.assert_array_equal(alpha_rgb.numpy(), alpha_full.numpy())


@pytest.mark.parametrize("tiles_per_batch,chunk_size", [(1, 1), (3, 7), (1000, 256)])
def test_work_sizes_do_not_change_the_result(raster64, tiles_per_batch, chunk_size):
    reference, ref_alpha, _ = render_fixture(raster64)
    image, alpha, _ = render_fixture(raster64, tiles_per_batch=tiles_per_batch, chunk_size=chunk_size)
    np.testing.assert_allclose(image.numpy(), reference.numpy(), atol=2e-6)
    np.testing.assert_allclose(alpha.numpy(), ref_alpha.numpy(), atol=2e-6)


def test_depth_output_is_alpha_weighted_view_depth():
    width = height = 32
    z = 4.0
    mean = point_at_pixel(10, 12, z, width, height)
    _, alpha, _, depth = render([mean], [[0.004] * 3], [[1, 0, 0, 0]], [0.7], [[1.0]], width, height, return_depth=True)
    assert depth.shape == (height, width)
    np.testing.assert_allclose(depth.numpy(), z * alpha.numpy(), rtol=1e-5, atol=1e-7)


def test_tile_culling_keeps_every_pair_that_reaches_alpha_min():
    gen = torch.Generator().manual_seed(7)
    n, height, width = 300, 64, 96
    z = 3.0 + torch.rand(n, generator=gen)
    means = torch.stack([(torch.rand(n, generator=gen) - 0.5) * f * z / 3 for f in (0.5, 0.35)] + [z], 1)
    scales = torch.exp(torch.empty(n, 3).uniform_(math.log(0.001), math.log(0.05), generator=gen))  # incl. needles
    quats = torch.randn(n, 4, generator=gen)
    opacities = torch.rand(n, generator=gen)
    view, proj, tx, ty = camera(width, height)
    projected = gr.project_gaussians(means, scales, quats, view, proj, tx, ty, height, width)
    lists = gr.bin_tiles(projected, opacities[projected.index], height, width)

    kept = set()
    for tile in range(lists.offsets.numel() - 1):
        for g in lists.gaussians[lists.offsets[tile] : lists.offsets[tile + 1]].tolist():
            kept.add((tile, g))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    tile_of_pixel = (ys // 16) * ((width + 15) // 16) + xs // 16
    needed, rect_pairs = set(), 0
    for g in range(projected.index.numel()):
        x0, y0, x1, y1 = projected.tile_rects[g].tolist()
        rect_pairs += (x1 - x0) * (y1 - y0)
        a, b, c = projected.conics[g].tolist()
        dx, dy = projected.means2d[g, 0].item() - xs, projected.means2d[g, 1].item() - ys
        alpha = opacities[projected.index[g]].item() * np.exp(-0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy)
        in_rect = ((xs // 16) >= x0) & ((xs // 16) < x1) & ((ys // 16) >= y0) & ((ys // 16) < y1)
        needed |= {(int(t), g) for t in np.unique(tile_of_pixel[in_rect & (alpha >= 1 / 255)])}
    assert needed <= kept
    assert len(kept) < 0.9 * rect_pairs  # the test does cull
    # Within each tile the list runs front to back.
    for tile in range(lists.offsets.numel() - 1):
        depths = projected.depths[lists.gaussians[lists.offsets[tile] : lists.offsets[tile + 1]]]
        assert bool((depths[1:] >= depths[:-1]).all())


def test_gsplat_inputs_encode_the_same_tile_lists(raster64):
    fx = raster64
    projected = gr.project_gaussians(
        fx["means"], fx["scales"], fx["quats"], fx["viewmatrix_3dgs"], fx["projmatrix_3dgs"], float(fx["tanfovx"]),
        float(fx["tanfovy"]), 64, 64,
    )
    lists = gr.bin_tiles(projected, fx["opacities"][projected.index], 64, 64)
    means2d, conics, offsets, flatten_ids = gr.gsplat_inputs(projected, lists)
    assert means2d.shape == (1, projected.index.numel(), 2) and conics.shape == (1, projected.index.numel(), 3)
    assert offsets.shape == (1, 4, 4) and offsets.dtype == torch.int32 and flatten_ids.dtype == torch.int32
    np.testing.assert_allclose(means2d[0].numpy(), projected.means2d.numpy() + 0.5, atol=1e-5)  # +0.5 pixel centres
    ends = torch.cat([offsets.flatten()[1:], torch.tensor([flatten_ids.numel()], dtype=torch.int32)])
    for tile, (start, end) in enumerate(zip(offsets.flatten().tolist(), ends.tolist())):
        expected = lists.gaussians[lists.offsets[tile] : lists.offsets[tile + 1]]
        assert flatten_ids[start:end].tolist() == expected.tolist()


def test_backend_selection_and_input_errors(raster64):
    fx = raster64
    image, _, _ = render_fixture(fx, backend="auto")  # CPU tensors: auto falls back to torch
    reference, _, _ = render_fixture(fx, backend="torch")
    assert torch.equal(image, reference)
    with pytest.raises(ValueError, match="gsplat"):
        render_fixture(fx, backend="gsplat")
    with pytest.raises(ValueError, match="backend"):
        render_fixture(fx, backend="cuda")
    with pytest.raises(ValueError, match="rotations"):
        render_fixture(dict(fx, quats=fx["quats"][:, :3]))
    with pytest.raises(ValueError, match="background"):
        render_fixture(dict(fx, background=fx["background"][:3]))
    with pytest.raises(ValueError, match="height and width"):
        gr.rasterize(
            fx["means"], fx["scales"], fx["quats"], fx["opacities"], fx["colors"], fx["viewmatrix_3dgs"],
            fx["projmatrix_3dgs"], 0.1, 0.1, 0, 64, fx["background"],
        )


def fake_gsplat_rasterize_to_pixels(
    means2d, conics, colors, opacities, image_width, image_height, tile_size, isect_offsets, flatten_ids,
    backgrounds=None,
):
    """gsplat 1.5.3's CUDA compositor rules (vectorised over a tile's pixels): +0.5 pixel centres, α clamp 0.999,
    a pixel stops when the next T <= 1e-4.  Stands in for gsplat on CPU to check what the gsplat path feeds it."""
    offsets = isect_offsets.flatten().tolist() + [flatten_ids.numel()]
    tiles_y, tiles_x = isect_offsets.shape[-2:]
    channels = colors.shape[-1]
    out = np.zeros((tiles_y * tile_size, tiles_x * tile_size, channels))
    t_out = np.ones((tiles_y * tile_size, tiles_x * tile_size))
    ly, lx = np.mgrid[0:tile_size, 0:tile_size].astype(np.float64)
    for tile in range(tiles_y * tiles_x):
        y0, x0 = (tile // tiles_x) * tile_size, (tile % tiles_x) * tile_size
        t, acc, done = np.ones(ly.shape), np.zeros(ly.shape + (channels,)), np.zeros(ly.shape, bool)
        for g in flatten_ids[offsets[tile] : offsets[tile + 1]].tolist():
            dx = means2d[0, g, 0].item() - (x0 + lx + 0.5)
            dy = means2d[0, g, 1].item() - (y0 + ly + 0.5)
            a, b, c = conics[0, g].tolist()
            sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
            alpha = np.minimum(0.999, opacities[0, g].item() * np.exp(-sigma))
            use = ~done & (sigma >= 0) & (alpha >= 1 / 255)
            stop = use & (t * (1 - alpha) <= 1e-4)
            done |= stop
            use &= ~stop
            acc += np.where(use, alpha * t, 0.0)[..., None] * colors[0, g].numpy()
            t = np.where(use, t * (1 - alpha), t)
        out[y0 : y0 + tile_size, x0 : x0 + tile_size] = acc + t[..., None] * backgrounds[0].numpy()
        t_out[y0 : y0 + tile_size, x0 : x0 + tile_size] = t
    out, t_out = out[:image_height, :image_width], t_out[:image_height, :image_width]
    return torch.from_numpy(out).float()[None], torch.from_numpy(1 - t_out).float()[None, ..., None]


@pytest.mark.parametrize("opacity_cap,tolerance", [(0.99, 2e-5), (1.0, 2e-2)])
def test_gsplat_path_plumbing_against_a_gsplat_rule_stand_in(raster64, monkeypatch, opacity_cap, tolerance):
    stand_in = types.SimpleNamespace(rasterize_to_pixels=fake_gsplat_rasterize_to_pixels)
    monkeypatch.setitem(sys.modules, "gsplat", stand_in)
    fx = raster64
    opacities = torch.clamp(fx["opacities"], max=opacity_cap)
    projected = gr.project_gaussians(
        fx["means"], fx["scales"], fx["quats"], fx["viewmatrix_3dgs"], fx["projmatrix_3dgs"], float(fx["tanfovx"]),
        float(fx["tanfovy"]), 64, 64,
    )
    opacity = opacities[projected.index]
    features = fx["colors"][projected.index][:, :5].contiguous()
    lists = gr.bin_tiles(projected, opacity, 64, 64)
    args = (projected, opacity, features, lists, 64, 64, fx["background"][:5])
    image, t = gr._composite_gsplat(*args)
    ref_image, ref_t = gr._composite_torch(*args, tiles_per_batch=16, chunk_size=32)
    assert image.shape == (5, 64, 64) and t.shape == (64, 64)
    # Opacities <= 0.99 make gsplat's 0.999 clamp irrelevant: only rounding remains.  With the fixture's one
    # Gaussian above 0.99 the clamp difference stays within the documented ~1e-2.
    assert (image - ref_image).abs().max().item() < tolerance
    assert (t - ref_t).abs().max().item() < tolerance


def test_auto_backend_falls_back_to_torch_when_gsplat_fails(raster64, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("gsplat CUDA extension failed to build")

    monkeypatch.setattr(gr, "_resolve_backend", lambda backend, device: "gsplat")
    monkeypatch.setattr(gr, "_composite_gsplat", broken)
    monkeypatch.setattr(gr, "_gsplat_failure", None)
    with pytest.warns(UserWarning, match="failed to build"):
        image, _, _ = render_fixture(raster64, backend="auto")
    np.testing.assert_allclose(image.numpy(), raster64["image"].numpy(), atol=1e-4)
    assert gr._gsplat_failure is not None
    with pytest.raises(RuntimeError):
        render_fixture(raster64, backend="gsplat")
