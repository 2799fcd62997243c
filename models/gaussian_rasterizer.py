"""Forward Gaussian splatting with the exact rules of the original 3DGS CUDA kernel, for any channel count.

GAGAvatar renders with xg-chu's 32-channel fork of Inria's ``diff-gaussian-rasterization`` (not gsplat), which is
CUDA only.  This module reproduces its forward pass:

1. cull if view-space z <= 0.2;
2. Σ = R S² Rᵀ with R built from the quaternion (w, x, y, z) AS GIVEN (the fork does not normalise it);
3. Σ2D = J W Σ Wᵀ Jᵀ with tx/tz, ty/tz clamped to ±1.3·tanfov, then +0.3 on the diagonal (no opacity compensation);
4. skip if det(Σ2D) == 0;  5. radius = ceil(3·sqrt(λmax)), λ = mid ± sqrt(max(0.1, mid² − det));
6. pixel mean = ((ndc + 1)·S − 1)/2 (integer pixel centres);  7. 16×16 tiles inside
   [int((p − r)/16), int((p + r + 15)/16)) clamped to the grid;  8. front to back by view z within each tile;
9. power = −0.5(a·dx² + c·dy²) − b·dx·dy, skip if power > 0;  10. α = min(0.99, o·exp(power)), skip if α < 1/255;
11. stop before a Gaussian that would take T below 1e-4;  12. C = Σ f·α·T + T·bg.

Matrices use the 3DGS layout: ``viewmatrix``/``projmatrix`` are the TRANSPOSED (row-vector) matrices, so
``p_view = [x, y, z, 1] @ viewmatrix`` and ``p_hom = [x, y, z, 1] @ projmatrix``.

Two compositors share the projection and tile binning:

* ``"torch"``: PyTorch, any device; on CPU the compositing step runs as a numba-compiled per-pixel loop, like the
  CUDA kernel (``use_numba``, on when numba is installed, as librosa brings it), and the tensor compositor below
  is the fallback.  The tensor compositor: each batch of tiles walks its depth-sorted Gaussian list in chunks; a chunk
  is composited for all 256 pixels of every tile at once (transmittance by cumulative product, early-stop bookkeeping
  per pixel), and tiles whose pixels have all stopped leave the batch.  Tile–Gaussian pairs whose α stays below
  1/255 on the whole tile are never generated (exact: they cannot change a pixel).
* ``"gsplat"``: CUDA only, gsplat's ``rasterize_to_pixels`` fed with the conics, pixel means and tile lists computed
  here, so gsplat's own projection conventions (quaternion normalisation, eps2d, radius, near plane, tile rectangle)
  never apply.  What remains different is gsplat's α clamp (0.999 instead of 0.99; only Gaussians with opacity above
  0.99 are affected) and its inclusive stop rule (T <= 1e-4); expect up to ~1e-2 where such pixels saturate,
  otherwise agreement to float rounding.  Under ``backend="auto"`` a gsplat failure (for
  example its CUDA extension failing to build) is reported once as a warning and the torch path is used from then on.

Forward only: no gradients flow through either path.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

TILE = 16
NEAR_Z = 0.2
LOW_PASS = 0.3
ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4
# Largest float32 below 1/255: threshold(x, it) keeps exactly the x >= float32(1/255) that the kernel keeps.
_BELOW_ALPHA_MIN = float(np.nextafter(np.float32(ALPHA_MIN), np.float32(0)))
_gsplat_failure: str | None = None  # set when gsplat failed under backend="auto"; auto then stays on torch


@dataclass
class ProjectedGaussians:
    """Screen-space Gaussians (only the visible ones; ``index`` maps them back to the input order)."""

    index: torch.Tensor  # [M] int64 input index
    means2d: torch.Tensor  # [M, 2] pixel means, integer-centre convention
    conics: torch.Tensor  # [M, 3] (a, b, c) of the inverse 2D covariance
    depths: torch.Tensor  # [M] view-space z
    radii: torch.Tensor  # [M] int64
    tile_rects: torch.Tensor  # [M, 4] int64 (x0, y0, x1, y1), half-open, in tiles


@dataclass
class TileLists:
    """Gaussian–tile pairs sorted by tile, then front to back; ``offsets[t]:offsets[t + 1]`` is tile t's list."""

    gaussians: torch.Tensor  # [P] int64 row into ProjectedGaussians
    offsets: torch.Tensor  # [tiles + 1] int64
    grid: tuple[int, int]  # (tiles_y, tiles_x)


@torch.no_grad()
def rasterize(
    means,
    scales,
    rotations,
    opacities,
    features,
    viewmatrix,
    projmatrix,
    tanfovx,
    tanfovy,
    height,
    width,
    background,
    *,
    backend: str = "auto",
    return_depth: bool = False,
    tiles_per_batch: int = 256,
    chunk_size: int = 32,
    use_numba: bool = True,
):
    """Render Gaussians with the original-3DGS forward rules (see the module docstring).

    Args:
        means [N,3], scales [N,3], rotations [N,4] quaternions (w, x, y, z) used as given (not normalised),
        opacities [N] or [N,1] (after the sigmoid), features [N,C] (any C; ``colors_precomp`` of the fork),
        viewmatrix / projmatrix [4,4] in the 3DGS transposed layout, tanfovx / tanfovy (tan of half the field of
        view), height / width in pixels, background [C].
        backend: ``"torch"``, ``"gsplat"`` (CUDA tensors and gsplat required) or ``"auto"`` (gsplat when the inputs
        are on CUDA and gsplat imports, torch otherwise).
        return_depth: also return the fork's depth map Σ z·α·T (not normalised, no background).
        tiles_per_batch, chunk_size: torch-path work sizes (tiles composited together, Gaussians per step); they
        bound memory to about tiles_per_batch·256·chunk_size floats per temporary and do not change the result.
        use_numba: on CPU, when numba is installed, order the tile lists with a numba counting sort (the same lists)
        and composite with the numba-compiled per-pixel loop (same rules, equal to float rounding, faster); False =
        tensors only (the tensor sort and compositor).

    Returns:
        image [C,H,W] float32, alpha [H,W] (1 − final transmittance), radii [N] int32 (0 = culled), and
        depth [H,W] when ``return_depth``.
    """
    inputs = _validated_inputs(
        means, scales, rotations, opacities, features, viewmatrix, projmatrix, tanfovx, tanfovy, height, width,
        background,
    )
    means, scales, rotations, opacities, features, viewmatrix, projmatrix, background, height, width = inputs
    if tiles_per_batch < 1 or chunk_size < 1:
        raise ValueError(f"tiles_per_batch and chunk_size must be >= 1, got {tiles_per_batch} and {chunk_size}")
    resolved = _resolve_backend(backend, means.device)

    projected = project_gaussians(
        means, scales, rotations, viewmatrix, projmatrix, float(tanfovx), float(tanfovy), height, width
    )
    opacity = opacities[projected.index].float()
    lists = bin_tiles(projected, opacity, height, width, use_numba=use_numba)

    feats = features[projected.index].float()
    bg = background.float()
    if return_depth:
        feats = torch.cat([feats, projected.depths.float()[:, None]], dim=1)
        bg = torch.cat([bg, bg.new_zeros(1)])
    image, transmittance = None, None
    if resolved == "gsplat":
        try:
            image, transmittance = _composite_gsplat(projected, opacity, feats, lists, height, width, bg)
        except (ImportError, OSError, RuntimeError) as error:
            if backend != "auto":
                raise
            _remember_gsplat_failure(error)
    if image is None and use_numba and feats.device.type == "cpu" and _numba_importable():
        image, transmittance = _composite_numba(projected, opacity, feats, lists, height, width, bg)
    if image is None:
        image, transmittance = _composite_torch(
            projected, opacity, feats, lists, height, width, bg, tiles_per_batch=tiles_per_batch, chunk_size=chunk_size
        )

    radii = torch.zeros(means.shape[0], dtype=torch.int32, device=means.device)
    radii[projected.index] = projected.radii.to(torch.int32)
    alpha = 1.0 - transmittance
    if return_depth:
        return image[:-1], alpha, radii, image[-1]
    return image, alpha, radii


def _validated_inputs(
    means, scales, rotations, opacities, features, viewmatrix, projmatrix, tanfovx, tanfovy, height, width, background
):
    if not isinstance(means, torch.Tensor) or means.ndim != 2 or means.shape[1] != 3:
        raise ValueError(f"means must be a torch tensor of shape [N, 3], got {getattr(means, 'shape', type(means))}")
    device, n = means.device, means.shape[0]

    def tensor(name, value, shape):
        value = torch.as_tensor(value, device=device)
        if value.ndim == 2 and shape == (n,) and value.shape[1] == 1:
            value = value[:, 0]
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
        if not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {value.dtype}")
        return value

    if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[0] != n:
        raise ValueError(f"features must be a tensor of shape [N={n}, C], got {getattr(features, 'shape', None)}")
    channels = features.shape[1]
    if int(height) != height or int(width) != width or height < 1 or width < 1:
        raise ValueError(f"height and width must be positive integers, got {height} x {width}")
    if not (float(tanfovx) > 0 and float(tanfovy) > 0):
        raise ValueError(f"tanfovx and tanfovy must be > 0 (tan of half the field of view), got {tanfovx}, {tanfovy}")
    return (
        tensor("means", means, (n, 3)),
        tensor("scales", scales, (n, 3)),
        tensor("rotations", rotations, (n, 4)),
        tensor("opacities", opacities, (n,)),
        tensor("features", features, (n, channels)),
        tensor("viewmatrix", viewmatrix, (4, 4)),
        tensor("projmatrix", projmatrix, (4, 4)),
        tensor("background", background, (channels,)),
        int(height),
        int(width),
    )


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in ("auto", "torch", "gsplat"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'gsplat', got {backend!r}")
    if backend == "torch":
        return backend
    if backend == "gsplat":
        if device.type != "cuda" or not _gsplat_importable():
            raise ValueError("backend='gsplat' needs CUDA input tensors and an importable gsplat; use backend='torch'")
        return backend
    return "gsplat" if device.type == "cuda" and _gsplat_failure is None and _gsplat_importable() else "torch"


def _numba_importable() -> bool:
    try:
        import numba  # noqa: F401  (a dependency of librosa, so normally present)
    except ImportError:
        return False
    return True


def _gsplat_importable() -> bool:
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def _remember_gsplat_failure(error: Exception) -> None:
    global _gsplat_failure
    _gsplat_failure = f"{type(error).__name__}: {error}"
    warnings.warn(f"gsplat compositing failed ({_gsplat_failure}); using the PyTorch rasteriser from now on")


def quaternion_scale_covariance(scales: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Σ = R S² Rᵀ [N,3,3], R from the raw quaternion (w, x, y, z) exactly as the fork (no normalisation)."""
    w, x, y, z = rotations.unbind(-1)
    rot = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)
    m = rot * scales[:, None, :]
    return m @ m.transpose(1, 2)


def _projection_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps radius ceilings and tile edges stable (cheap: one pass over N); MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def project_gaussians(
    means, scales, rotations, viewmatrix, projmatrix, tanfovx: float, tanfovy: float, height: int, width: int
) -> ProjectedGaussians:
    """Rules 1–7: cull, 2D covariance with the 0.3 dilation, conic, radius, pixel mean and tile rectangle."""
    dtype = _projection_dtype(means.device)
    means, viewmatrix, projmatrix = means.to(dtype), viewmatrix.to(dtype), projmatrix.to(dtype)
    homogeneous = torch.cat([means, torch.ones_like(means[:, :1])], dim=1)
    p_view = homogeneous @ viewmatrix[:, :3]
    # Compared in float32 like the kernel (z == 0.2f is culled, even though 0.2f > 0.2 in float64).
    keep = torch.nonzero(p_view[:, 2].float() > NEAR_Z).squeeze(1)

    p_view = p_view[keep]
    p_hom = homogeneous[keep] @ projmatrix
    ndc = p_hom[:, :2] / (p_hom[:, 3:4] + 1e-7)
    cov3d = quaternion_scale_covariance(scales[keep].to(dtype), rotations[keep].to(dtype))
    cov2d = _screen_covariance(p_view, cov3d, viewmatrix, tanfovx, tanfovy, height, width)

    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det = a * c - b * b
    mid = 0.5 * (a + c)
    lambda_max = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.1))
    radius = torch.ceil(3.0 * torch.sqrt(lambda_max))
    pixel = torch.stack([((ndc[:, 0] + 1.0) * width - 1.0) * 0.5, ((ndc[:, 1] + 1.0) * height - 1.0) * 0.5], dim=1)
    rects = _tile_rects(pixel, radius, height, width)
    visible = (det != 0) & ((rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1]) > 0)

    det_inv = 1.0 / det[visible]
    conics = torch.stack([c[visible] * det_inv, -b[visible] * det_inv, a[visible] * det_inv], dim=1)
    return ProjectedGaussians(
        index=keep[visible],
        means2d=pixel[visible],
        conics=conics,
        depths=p_view[visible, 2],
        radii=radius[visible].long(),
        tile_rects=rects[visible],
    )


def _screen_covariance(p_view, cov3d, viewmatrix, tanfovx, tanfovy, height, width):
    """J W Σ Wᵀ Jᵀ + 0.3·I with the fork's ±1.3·tanfov clamp of tx/tz, ty/tz before the Jacobian."""
    focal_x, focal_y = width / (2.0 * tanfovx), height / (2.0 * tanfovy)
    tz = p_view[:, 2]
    tx = torch.clamp(p_view[:, 0] / tz, -1.3 * tanfovx, 1.3 * tanfovx) * tz
    ty = torch.clamp(p_view[:, 1] / tz, -1.3 * tanfovy, 1.3 * tanfovy) * tz
    jac = p_view.new_zeros(p_view.shape[0], 2, 3)
    jac[:, 0, 0] = focal_x / tz
    jac[:, 0, 2] = -focal_x * tx / (tz * tz)
    jac[:, 1, 1] = focal_y / tz
    jac[:, 1, 2] = -focal_y * ty / (tz * tz)
    # Row-vector layout: p_cam = p @ V[:3,:3], so the column-vector rotation is W = V[:3,:3]ᵀ.
    t = jac @ viewmatrix[:3, :3].T
    cov2d = t @ cov3d @ t.transpose(1, 2)
    return cov2d + LOW_PASS * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)


def _tile_rects(pixel, radius, height, width):
    grid_x, grid_y = _tile_grid(height, width)
    low = torch.trunc((pixel - radius[:, None]) / TILE)
    high = torch.trunc((pixel + radius[:, None] + TILE - 1) / TILE)
    upper = pixel.new_tensor([grid_x, grid_y])
    low = torch.minimum(torch.clamp(low, min=0), upper)
    high = torch.minimum(torch.clamp(high, min=0), upper)
    return torch.cat([low, high], dim=1).long()


def _tile_grid(height: int, width: int) -> tuple[int, int]:
    return (width + TILE - 1) // TILE, (height + TILE - 1) // TILE


def bin_tiles(projected: ProjectedGaussians, opacity: torch.Tensor, height: int, width: int,
              use_numba: bool = True) -> TileLists:
    """Rules 7–8: the Gaussian–tile pairs of the tile rectangles, sorted by tile and then by view z.

    Pairs whose Gaussian stays below α = 1/255 on every pixel centre of the tile cannot change any pixel and are not
    generated: per Gaussian and tile row, the tiles kept are those overlapping the x-extent of the ellipse
    {α >= 1/255} within the row's pixel band (a conservative bound, see ``_row_column_spans``).
    ``use_numba``: on CPU, order the pairs with a numba counting sort when numba is installed (the same lists as the
    tensor sort, about 3x faster); False = tensors only.
    """
    grid_x, grid_y = _tile_grid(height, width)
    device = projected.means2d.device
    order = torch.sort(projected.depths, stable=True).indices
    rects = _take(projected.tile_rects, order)
    rows_per_gaussian = rects[:, 3] - rects[:, 1]
    row_owner = torch.repeat_interleave(torch.arange(order.numel(), device=device), rows_per_gaussian)
    first_row = torch.cumsum(rows_per_gaussian, 0) - rows_per_gaussian
    tile_y = _take(rects[:, 1], row_owner) + torch.arange(row_owner.numel(), device=device) - _take(first_row, row_owner)
    row_gaussian = _take(order, row_owner)
    column_low, column_count = _row_column_spans(projected, opacity, row_gaussian, tile_y)

    # Pairs are generated row by row (Gaussians in depth order, each row's tiles left to right); ordering them by
    # tile without reordering equal tiles keeps each tile's list front to back.
    first_tile = tile_y * grid_x + column_low
    if use_numba and device.type == "cpu" and _numba_importable():
        sort_pairs = _pairs_by_tile_numba
    else:
        sort_pairs = _pairs_by_tile_torch
    gaussians, offsets = sort_pairs(row_gaussian, first_tile, column_count, grid_x * grid_y)
    return TileLists(gaussians=gaussians, offsets=offsets, grid=(grid_y, grid_x))


def _pairs_by_tile_torch(row_gaussian, first_tile, column_count, tiles):
    """Expand each row's ``column_count`` tiles from ``first_tile`` into pairs and stable-sort them by tile; returns
    the pairs' Gaussians and the per-tile offsets."""
    device = row_gaussian.device
    column_count = column_count.to(torch.int32)
    pair_row = torch.repeat_interleave(torch.arange(row_gaussian.numel(), device=device, dtype=torch.int32),
                                       column_count)
    first_pair = torch.cumsum(column_count, 0, dtype=torch.int32) - column_count
    tile_base = first_tile.to(torch.int32) - first_pair
    tile = _take(tile_base, pair_row) + torch.arange(pair_row.numel(), device=device, dtype=torch.int32)
    tile_dtype = torch.int16 if tiles <= torch.iinfo(torch.int16).max else torch.int32
    tile, by_tile = torch.sort(tile.to(tile_dtype), stable=True)
    counts_per_tile = torch.bincount(tile.long(), minlength=tiles)
    offsets = torch.cat([counts_per_tile.new_zeros(1), torch.cumsum(counts_per_tile, 0)])
    return _take(row_gaussian, _take(pair_row, by_tile)), offsets


def _pairs_by_tile_numba(row_gaussian, first_tile, column_count, tiles):
    """The same as ``_pairs_by_tile_torch`` as a counting sort (stable by construction), without the pair-sized
    temporaries."""
    gaussians, offsets = _numba_compiled(_counting_sort_pairs)(
        row_gaussian.numpy(), first_tile.numpy(), column_count.numpy(), tiles)
    return torch.from_numpy(gaussians), torch.from_numpy(offsets)


def _counting_sort_pairs(row_gaussian, first_tile, column_count, tiles):
    """numba body: count the pairs per tile, prefix-sum the counts into offsets, then place rows in their order."""
    offsets = np.zeros(tiles + 1, dtype=np.int64)
    for r in range(row_gaussian.shape[0]):
        for k in range(column_count[r]):
            offsets[first_tile[r] + k + 1] += 1
    for tile in range(tiles):
        offsets[tile + 1] += offsets[tile]
    cursor = offsets[:-1].copy()
    gaussians = np.empty(offsets[tiles], dtype=row_gaussian.dtype)
    for r in range(row_gaussian.shape[0]):
        for k in range(column_count[r]):
            tile = first_tile[r] + k
            gaussians[cursor[tile]] = row_gaussian[r]
            cursor[tile] += 1
    return gaussians, offsets


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[index]`` along the first axis: the same gather, but ``index_select`` is 2-4x faster than advanced
    indexing on CPU for the millions of Gaussian-tile pairs of a frame."""
    return values.index_select(0, index)


def _row_column_spans(projected, opacity, g, tile_y):
    """First tile column and column count, per (Gaussian, tile row), of the tiles the ellipse {α >= 1/255} reaches.

    With the conic Q = [[a, b], [b, c]] and d = pixel − mean, α >= 1/255 means dᵀQd <= L = 2·ln(255·o) (plus a slack
    of 0.02 so float32 rounding in the compositor can never reach a dropped pair).  Within the row's pixel band the
    ellipse's x-extent is found in closed form: for a fixed dy, dx = (−b·dy ± sqrt(a·L − det·dy²))/a, whose maximum
    over the band is at the band-clamped dy of the ellipse's rightmost point, dy = Σxy·sqrt(L/Σxx) (minimum: the
    mirror point).  The ellipse ∩ band is convex, so a tile's pixel rectangle meets it exactly when the tile's x-range
    meets that extent.
    """
    a, b, c = _take(projected.conics, g).unbind(1)
    mean_x, mean_y = _take(projected.means2d, g).unbind(1)
    det = a * c - b * b
    limit = 2.0 * (torch.log(_take(opacity, g).to(det.dtype)) - math.log(ALPHA_MIN) + 1e-2)
    reach = torch.clamp(a * limit, min=0.0)
    half_height = torch.sqrt(reach / det)
    band_low = torch.maximum((tile_y * TILE).to(det.dtype) - mean_y, -half_height)
    band_high = torch.minimum((tile_y * TILE + TILE - 1).to(det.dtype) - mean_y, half_height)
    rightmost_dy = -b / det * torch.sqrt(torch.clamp(limit, min=0.0) * det / c)  # Σxy·sqrt(L/Σxx)

    def extent_x(dy, sign):
        return (-b * dy + sign * torch.sqrt(torch.clamp(reach - det * dy * dy, min=0.0))) / a

    x_high = mean_x + extent_x(torch.minimum(torch.maximum(rightmost_dy, band_low), band_high), 1.0)
    x_low = mean_x + extent_x(torch.minimum(torch.maximum(-rightmost_dy, band_low), band_high), -1.0)
    rect = _take(projected.tile_rects, g)
    first = torch.maximum(torch.ceil((x_low - (TILE - 1)) / TILE).long(), rect[:, 0])
    last = torch.minimum(torch.floor(x_high / TILE).long(), rect[:, 2] - 1)
    count = torch.where(band_low <= band_high, torch.clamp(last - first + 1, min=0), 0)
    return first, count


def _composite_torch(projected, opacity, features, lists, height, width, background, *, tiles_per_batch, chunk_size):
    """Rules 9–12 for all tiles; returns image [C,H,W] and the final transmittance [H,W]."""
    device = features.device
    grid_y, grid_x = lists.grid
    params = _compositor_params(projected, opacity)
    color = torch.zeros(grid_y * grid_x, TILE * TILE, features.shape[1], device=device)
    transmittance = torch.ones(grid_y * grid_x, TILE * TILE, device=device)
    busy = torch.nonzero(lists.offsets[1:] > lists.offsets[:-1]).squeeze(1)
    for start in range(0, busy.numel(), tiles_per_batch):
        tiles = busy[start : start + tiles_per_batch]
        _composite_tile_batch(tiles, lists, params, features, grid_x, height, width, chunk_size, color, transmittance)

    image = _untile(color.permute(0, 2, 1), grid_y, grid_x, height, width)
    final_t = _untile(transmittance[:, None, :], grid_y, grid_x, height, width)[0]
    return image + final_t[None] * background[:, None, None], final_t


_LOG2_OPACITY = 5
_LOG2_E = 1.0 / math.log(2.0)


def _compositor_params(projected, opacity):
    """Per Gaussian, float32: mean x, mean y, then −a/2, −b, −c/2 and log(opacity) times log2(e), and a 'needle' flag.

    α = o·exp(power) is evaluated as exp2(log2(e)·power + log2(o)): torch's exp2 is several times faster than exp
    on CPU, and the difference is float32 rounding.  The flag marks conics with a condition number above 1e5: the
    conic is positive definite (Σ2D >= 0.3·I), so rule 9 (skip power > 0) can only fire through float32 rounding,
    which needs the rounding error (a few ulp of λmax·|d|²) to exceed λmin·|d|².
    """
    a, b, c = projected.conics.unbind(1)
    spread = torch.sqrt(0.25 * (a - c) ** 2 + b * b)
    mid = 0.5 * (a + c)
    needle = (mid + spread) > 1e5 * (mid - spread)
    scaled = [-0.5 * a, -b, -0.5 * c, torch.log(opacity.to(a.dtype))]
    columns = [projected.means2d[:, 0], projected.means2d[:, 1], *(v * _LOG2_E for v in scaled), needle]
    return torch.stack([v.float() for v in columns], dim=1)


def _untile(values, grid_y, grid_x, height, width):
    """[tiles, C, 256] in tile-major order -> [C, H, W]."""
    channels = values.shape[1]
    image = values.reshape(grid_y, grid_x, channels, TILE, TILE).permute(2, 0, 3, 1, 4)
    return image.reshape(channels, grid_y * TILE, grid_x * TILE)[:, :height, :width]


def _composite_tile_batch(tiles, lists, params, features, grid_x, height, width, chunk_size, out_color, out_t):
    """Front-to-back compositing of a batch of tiles, chunk_size Gaussians of each tile's list per step.

    A pixel is 'done' once it has met a Gaussian that would push T below 1e-4 (rule 11).  A tile leaves the batch
    (its results are written to out_color / out_t) when all its pixels are done or its list is exhausted.
    """
    device = params.device
    offsets = torch.arange(TILE, device=device, dtype=torch.float32)
    pix_x = (tiles % grid_x * TILE).float()[:, None] + offsets  # [b,16]
    pix_y = (tiles // grid_x * TILE).float()[:, None] + offsets
    color = torch.zeros(tiles.numel(), TILE * TILE, features.shape[1], device=device)
    transmittance = torch.ones(tiles.numel(), TILE * TILE, device=device)
    # Pixels beyond the image edge start 'done' so that they never keep a tile busy (they are cropped anyway).
    done = ((pix_y[:, :, None] >= height) | (pix_x[:, None, :] >= width)).flatten(1)
    cursor, end = lists.offsets[tiles], lists.offsets[tiles + 1]
    step = torch.arange(chunk_size, device=device)
    while tiles.numel() > 0:
        slots = cursor[:, None] + step
        valid = slots < end[:, None]
        gaussian = lists.gaussians[torch.where(valid, slots, cursor[:, None])].flatten()
        chunk = params.index_select(0, gaussian).view(*slots.shape, -1)  # [b,K,7]
        chunk[..., _LOG2_OPACITY].masked_fill_(~valid, -math.inf)
        alpha = _chunk_alpha(chunk, pix_x, pix_y)  # [b,256,K]
        weights, t_end, stopped = _chunk_transmittance(alpha, torch.where(done, 0.0, transmittance))
        color.baddbmm_(weights, features.index_select(0, gaussian).view(*slots.shape, -1))
        transmittance = torch.where(done, transmittance, t_end)
        done |= stopped
        cursor = cursor + chunk_size
        finished = done.all(dim=1) | (cursor >= end)
        if bool(finished.any()):
            out_color[tiles[finished]] = color[finished]
            out_t[tiles[finished]] = transmittance[finished]
            keep = ~finished
            tiles, pix_x, pix_y, color, transmittance, done, cursor, end = (
                v[keep] for v in (tiles, pix_x, pix_y, color, transmittance, done, cursor, end)
            )


def _chunk_alpha(chunk, pix_x, pix_y):
    """Rules 9–10 for b tiles × 256 pixels × K Gaussians; skipped Gaussians get α = 0.

    The tile's pixels form a 16×16 grid, so the quadratic splits into per-column and per-row terms plus one
    cross product, built with two full-size operations.  (Boolean full-size tensors are avoided: masked_fill and
    where are an order of magnitude slower than arithmetic on CPU.)
    """
    mean_x, mean_y, half_a, neg_b, half_c, log2_o, needle = chunk.unbind(-1)  # each [b,K]
    dx = mean_x[:, None, :] - pix_x[:, :, None]  # [b,16 cols,K]
    dy = mean_y[:, None, :] - pix_y[:, :, None]  # [b,16 rows,K]
    column_term = half_a[:, None, :] * dx * dx
    row_term = half_c[:, None, :] * dy * dy + log2_o[:, None, :]
    exponent = torch.add(row_term[:, :, None, :], column_term[:, None, :, :])
    exponent = exponent.addcmul_(dy[:, :, None, :], (neg_b[:, None, :] * dx)[:, None, :, :]).flatten(1, 2)
    skipped = exponent > log2_o[:, None, :] if bool(needle.any()) else None  # power > 0 (rule 9)
    # Below 2^-126 the result is a denormal (slow, and far under 1/255 anyway).
    alpha = exponent.clamp_(min=-126.0).exp2_().clamp_(max=ALPHA_MAX)
    torch.nn.functional.threshold_(alpha, _BELOW_ALPHA_MIN, 0.0)  # keeps α >= 1/255 exactly in float32
    return alpha if skipped is None else alpha.masked_fill_(skipped, 0.0)


def _chunk_transmittance(alpha, t_start):
    """Rules 11–12: weights α·T per pixel and Gaussian, the transmittance after the chunk, and which pixels stopped.

    T is the running product t_start·(1 − α1)·(1 − α2)…, in the kernel's order, so it never increases: the
    Gaussians that may be added are exactly the prefix whose running T stays >= 1e-4 (skipped ones have α = 0).
    Only pixels whose T ends below 1e-4 lose a suffix, so only those rows are masked.  Pixels already done come in
    with t_start = 0 and get no weight.
    """
    chunk = alpha.shape[-1]
    factors = alpha.new_empty(*alpha.shape[:-1], chunk + 1)
    factors[..., 0] = t_start
    torch.sub(1.0, alpha, out=factors[..., 1:])
    t_running = torch.cumprod(factors, dim=-1)  # T before each Gaussian, then after the last one
    weights = alpha.mul_(t_running[..., :-1])
    t_end = t_running[..., -1].clone()
    stopped = (t_end < T_MIN) & (t_start > 0)
    rows = torch.nonzero(stopped.flatten()).squeeze(1)
    if rows.numel() > 0:
        t_rows = t_running.flatten(0, -2)[rows]
        admitted = t_rows[:, 1:] >= T_MIN
        weights.view(-1, chunk)[rows] *= admitted
        t_end.view(-1)[rows] = t_rows.gather(1, admitted.sum(dim=1, keepdim=True))[:, 0]
    return weights, t_end, stopped


def _composite_numba(projected, opacity, features, lists, height, width, background):
    """Rules 9-12 pixel by pixel, as the CUDA kernel does, compiled by numba and run over tiles in parallel.

    Same per-Gaussian parameters and float32 arithmetic as the torch compositor (exp2 of the same exponent), so the
    two agree to float rounding; the per-pixel loop stops at the pixel's own early-termination point and never
    builds a full-size temporary, which is faster on CPU.  Uses torch's thread count.
    """
    import numba

    grid_x = lists.grid[1]
    params = _compositor_params(projected, opacity).numpy()
    features = np.ascontiguousarray(features.numpy(), dtype=np.float32)
    gaussians = lists.gaussians.numpy()
    offsets = lists.offsets.numpy()
    busy = np.nonzero(offsets[1:] > offsets[:-1])[0]
    color = np.zeros((height, width, features.shape[1]), dtype=np.float32)  # channels last: one pixel's are adjacent
    transmittance = np.ones((height, width), dtype=np.float32)
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    _numba_compiled(_composite_pixels, parallel=True)(
        busy, offsets, gaussians, params, features, grid_x, height, width, threads, color, transmittance)
    final_t = torch.from_numpy(transmittance)
    # background·T + colour (= colour + background·T exactly): written into the contiguous [C,H,W] product
    return (final_t[None] * background[:, None, None]).add_(torch.from_numpy(color).permute(2, 0, 1)), final_t


_NUMBA_COMPILED: dict = {}
prange = range  # numba.prange once numba is imported (the kernel reads it as a global when compiled)


def _numba_compiled(function, parallel: bool = False):
    """``function`` compiled by numba once per process (a few seconds).  No on-disk cache: numba's cache records
    the module by import name, and the pack is imported under different names (ComfyUI's folder name, tests)."""
    global prange
    if function not in _NUMBA_COMPILED:
        import numba

        prange = numba.prange
        _NUMBA_COMPILED[function] = numba.njit(parallel=parallel)(function)
    return _NUMBA_COMPILED[function]


_F32 = np.float32
_ALPHA_MAX_F32, _ALPHA_MIN_F32, _T_MIN_F32 = _F32(ALPHA_MAX), _F32(ALPHA_MIN), _F32(T_MIN)
# exp2 of an exponent below this is certainly under 1/255 (log2(1/255) = -7.994, minus a margin for exp2 rounding).
_SURELY_FAINT = _F32(math.log2(ALPHA_MIN) - 1e-3)


def _composite_pixels(busy, offsets, gaussians, params, features, grid_x, height, width, threads, color, trans):
    """numba kernel body: tiles are dealt round-robin to ``threads`` workers (neighbouring tiles cost alike).

    Each worker first copies its tile's Gaussian parameters, in list order, into one contiguous column per
    parameter: every pixel of the tile walks that list, and sequential reads beat 256 walks over scattered rows of
    ``params`` (about 1.2x on the benchmark scene; the arithmetic is the same, so the result is bit-identical).
    """
    channels = features.shape[1]
    longest = 0
    for i in range(busy.shape[0]):
        longest = max(longest, offsets[busy[i] + 1] - offsets[busy[i]])
    for worker in prange(threads):
        columns = np.empty((params.shape[1], longest), dtype=np.float32)
        ids = np.empty(longest, dtype=gaussians.dtype)
        for i in range(worker, busy.shape[0], threads):
            tile = busy[i]
            first, count = offsets[tile], offsets[tile + 1] - offsets[tile]
            for j in range(count):
                ids[j] = gaussians[first + j]
                for q in range(params.shape[1]):
                    columns[q, j] = params[ids[j], q]
            mean_x, mean_y, half_a, b, half_c, log2_o, needle = (columns[0], columns[1], columns[2], columns[3],
                                                                   columns[4], columns[5], columns[6])
            x0, y0 = (tile % grid_x) * TILE, (tile // grid_x) * TILE
            for row in range(TILE):
                if y0 + row >= height:
                    break
                pixel_y = _F32(y0 + row)
                for column in range(TILE):
                    if x0 + column >= width:
                        break
                    pixel_x = _F32(x0 + column)
                    out = color[y0 + row, x0 + column]
                    t = _F32(1.0)
                    for j in range(count):
                        dx = mean_x[j] - pixel_x
                        dy = mean_y[j] - pixel_y
                        exponent = (half_c[j] * dy * dy + log2_o[j]) + half_a[j] * dx * dx
                        exponent = exponent + dy * (b[j] * dx)
                        if exponent < _SURELY_FAINT:
                            continue
                        if needle[j] != 0 and exponent > log2_o[j]:  # power > 0 (rule 9)
                            continue
                        alpha = min(_F32(np.exp2(max(exponent, _F32(-126.0)))), _ALPHA_MAX_F32)
                        if alpha < _ALPHA_MIN_F32:
                            continue
                        test_t = t * (_F32(1.0) - alpha)
                        if test_t < _T_MIN_F32:
                            break
                        weight = alpha * t
                        g = ids[j]
                        for c in range(channels):
                            out[c] += features[g, c] * weight
                        t = test_t
                    trans[y0 + row, x0 + column] = t


def gsplat_inputs(projected: ProjectedGaussians, lists: TileLists):
    """Arguments for gsplat's ``rasterize_to_pixels`` with one camera: means2d shifted to gsplat's +0.5 pixel
    centres, conics, per-tile offsets [1, tiles_y, tiles_x] int32 and the flattened Gaussian ids int32."""
    grid_y, grid_x = lists.grid
    means2d = (projected.means2d + 0.5).float()[None]
    conics = projected.conics.float()[None]
    offsets = lists.offsets[:-1].to(torch.int32).reshape(1, grid_y, grid_x)
    return means2d, conics, offsets, lists.gaussians.to(torch.int32)


def _composite_gsplat(projected, opacity, features, lists, height, width, background):
    """gsplat's CUDA compositor on the original-3DGS projection and tile lists (see the module docstring)."""
    from gsplat import rasterize_to_pixels

    means2d, conics, offsets, flatten_ids = gsplat_inputs(projected, lists)
    colors, alphas = rasterize_to_pixels(
        means2d, conics, features[None].contiguous(), opacity[None].contiguous(), width, height, TILE,
        offsets, flatten_ids, backgrounds=background[None],
    )
    return colors[0].permute(2, 0, 1), 1.0 - alphas[0, ..., 0]
