"""GAGAvatar camera geometry: source plane points, direction encoding and 3DGS camera matrices.

It lives under models/ because the network itself needs ``plane_points`` and ``harmonic_embedding`` to encode a
source; the pipelines (animation, tracker, gaze) import it from here, so there is one camera and one focal length.

Camera convention: ``transform_matrix`` [3,4] is a PyTorch3D ``[R|T]`` acting on row vectors,
``X_cam = X_world @ R + T`` with +X left, +Y up, +Z forward; focal 12 in NDC units (``tanfov = 1/12``, principal point
at the exact centre).  All functions accept numpy arrays or torch tensors (any leading batch dims) and return the same
kind.  The maths runs in the input's floating dtype (float32 for other input), in the reference's order of
operations, so float32 input reproduces the reference's float32 rounding (the plane points match it bit for bit).
"""
from __future__ import annotations

import math

import numpy as np
import torch

FOCAL_LENGTH = 12.0  # NDC focal of every GAGAvatar camera (data config FOCAL_LENGTH; tan(fov/2) = 1/12)
NEAR, FAR = 0.01, 100.0
HARMONIC_FREQUENCIES = (1.0, 2.0, 4.0, 8.0)


def _as_float_tensor(value) -> tuple[torch.Tensor, bool]:
    is_numpy = not isinstance(value, torch.Tensor)
    tensor = torch.as_tensor(np.asarray(value)) if is_numpy else value
    return (tensor if tensor.is_floating_point() else tensor.float()), is_numpy


def _restore(tensor: torch.Tensor, is_numpy: bool):
    return tensor.cpu().numpy() if is_numpy else tensor


def _check_transform(transform: torch.Tensor, name: str = "transform") -> None:
    if transform.shape[-2:] != (3, 4):
        raise ValueError(f"{name} must be a PyTorch3D [R|T] camera of shape [...,3,4], got {tuple(transform.shape)}")


def plane_points(size: int, transform, focal: float = FOCAL_LENGTH):
    """Points of the source camera's ``size``×``size`` ray grid on the plane through the world origin.

    Returns (points [..., size*size, 3], direction [..., 3]); row-major pixel order, column 0 = the image's left edge
    (x = +1), row 0 = top (y = +1), endpoints included.  ``direction`` is the view axis in world space.
    """
    if int(size) < 2:
        raise ValueError(f"plane size must be at least 2, got {size}")
    transform, is_numpy = _as_float_tensor(transform)
    _check_transform(transform)
    rotation, translation = transform[..., :3, :3], transform[..., :3, 3]
    grid = torch.linspace(1.0, -1.0, int(size), dtype=transform.dtype, device=transform.device)
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    rays = torch.stack([x / focal, y / focal, torch.ones_like(x)], dim=-1).reshape(-1, 3)
    rays_world = rays @ rotation.transpose(-1, -2)  # R @ ray for every ray
    direction = rotation[..., :, 2]  # R @ [0,0,1]
    origin = -(rotation @ translation[..., None])[..., 0]
    distance = (origin * direction).sum(-1, keepdim=True).abs()
    points = origin[..., None, :] + distance[..., None, :] * rays_world
    return _restore(points, is_numpy), _restore(direction, is_numpy)


def harmonic_embedding(dirs):
    """PyTorch3D ``HarmonicEmbedding(n_harmonic_functions=4)`` with the input appended: [..., 3] -> [..., 27].

    Order: sin(d_j·f_k) for j = x,y,z and f = 1,2,4,8 (12 values), the matching cosines (computed as sin(v + π/2) like
    the reference), then d itself.
    """
    dirs, is_numpy = _as_float_tensor(dirs)
    if dirs.shape[-1] != 3:
        raise ValueError(f"directions must be [...,3], got {tuple(dirs.shape)}")
    frequencies = torch.tensor(HARMONIC_FREQUENCIES, dtype=dirs.dtype, device=dirs.device)
    scaled = (dirs[..., None] * frequencies).flatten(-2)
    embedding = torch.cat([torch.sin(scaled), torch.sin(scaled + math.pi / 2), dirs], dim=-1)
    return _restore(embedding, is_numpy)


def camera_tanfov(focal: float = FOCAL_LENGTH) -> tuple[float, float]:
    """(tanfovx, tanfovy) of the square NDC-focal camera: tan(fov/2) = 1/focal."""
    return 1.0 / focal, 1.0 / focal


def camera_matrices(transform, focal: float = FOCAL_LENGTH):
    """Original-3DGS (viewmatrix, projmatrix), each [..., 4, 4], in the row-vector layout the CUDA rasteriser reads.

    ``viewmatrix``: rows 0-2 = R, row 3 = T, then columns 0 and 1 negated (PyTorch3D -> OpenCV x/y flip).
    ``projmatrix = viewmatrix @ K4ᵀ`` with K4[0,0] = K4[1,1] = focal, K4[3,2] = 1 and the z rows for near 0.01 /
    far 100.  Pair with :func:`camera_tanfov`.
    """
    transform, is_numpy = _as_float_tensor(transform)
    _check_transform(transform)
    view = torch.zeros(*transform.shape[:-2], 4, 4, dtype=transform.dtype, device=transform.device)
    view[..., :3, :3] = transform[..., :3, :3]
    view[..., 3, :3] = transform[..., :3, 3]
    view[..., 3, 3] = 1.0
    view[..., :, :2] = -view[..., :, :2]
    intrinsics = torch.zeros(4, 4, dtype=transform.dtype, device=transform.device)
    intrinsics[0, 0] = intrinsics[1, 1] = focal
    intrinsics[2, 2] = FAR / (FAR - NEAR)
    intrinsics[2, 3] = -FAR * NEAR / (FAR - NEAR)
    intrinsics[3, 2] = 1.0
    projection = view @ intrinsics.T
    return _restore(view, is_numpy), _restore(projection, is_numpy)
