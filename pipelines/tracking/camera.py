"""Camera maths of the GAGAvatar tracker, written for torch tensors.

Conventions:

- ``transform_matrix`` [3,4] is a PyTorch3D ``[R|T]`` acting on row vectors: ``X_cam = X_world @ R + T``, camera
  looking along +Z with +X to the image's left and +Y up.
- The projection is PyTorch3D's ``PerspectiveCameras`` in NDC units (focal 12, principal point 0) followed by its
  NDC -> screen map for a square image: ``u = S/2 * (1 - f X/Z)``, ``v = S/2 * (1 - f Y/Z)`` (pixels, origin top-left,
  S = 512, no half-pixel offset).
- PyTorch3D's 6D rotation is the first two ROWS of R; decoding runs Gram-Schmidt and stacks the rows.  VGGHead's own
  6D code is different: its three basis vectors become the COLUMNS of R and the second one is ``-(b1 x b3)``.
"""
from __future__ import annotations

import math

import torch

from ...models.camera_geometry import FOCAL_LENGTH
from ...models.flame import rodrigues  # SMPL-style Rodrigues (angle = |v + 1e-8|), the FLAME layer's own

IMAGE_SIZE = 512
# The EMICA-based start camera (OptimEngine.transform_emoca_to_p3d): focal and depth 5000/512, then the
# translation is rescaled by focal/13 (x verts_scale/5 = 1).
START_FOCAL = 5000.0 / IMAGE_SIZE
START_DEPTH = 5000.0 / IMAGE_SIZE
START_TRANSLATION_SCALE = FOCAL_LENGTH / 13.0


def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """PyTorch3D ``rotation_6d_to_matrix``: [...,6] -> [...,3,3], Gram-Schmidt rows."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-2)


def matrix_to_rotation_6d(matrix: torch.Tensor) -> torch.Tensor:
    """PyTorch3D ``matrix_to_rotation_6d``: the first two rows of R, [...,3,3] -> [...,6]."""
    return matrix[..., :2, :].reshape(*matrix.shape[:-2], 6).clone()


def vgghead_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """VGGHead's 6D rotation code -> [...,3,3] (basis vectors as columns; acts on column vectors)."""
    vx, vy = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(vx, dim=-1)
    b3 = torch.nn.functional.normalize(torch.cross(b1, vy, dim=-1), dim=-1)
    b2 = -torch.cross(b1, b3, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues for [...,3] axis-angles -> [...,3,3]."""
    flat = axis_angle.reshape(-1, 3)
    return rodrigues(flat).reshape(*axis_angle.shape[:-1], 3, 3)


def project_to_screen(points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                      focal: float = FOCAL_LENGTH, image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """Pixel coordinates [B,N,2] of world points [B,N,3] seen by PyTorch3D cameras ``R`` [B,3,3], ``T`` [B,3]."""
    camera = points @ rotation + translation[:, None, :]
    ndc = focal * camera[..., :2] / camera[..., 2:3]
    return image_size / 2.0 * (1.0 - ndc)


def start_camera(global_pose: torch.Tensor, model_vertices: torch.Tensor, target_points: torch.Tensor,
                 image_size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """The optimiser's start camera (R [B,3,3], T [B,3]) from DECA's global pose [B,3] (OptimEngine's conversion).

    DECA's axis-angle gets +pi about y and its components reversed (z, y, x) before Rodrigues; the reference then
    applies its OpenCV -> PyTorch3D conversion twice (once through a helper that was meant to invert), which amounts
    to ``R = D R_deca D`` with D = diag(-1,-1,1).  T starts at (0, 0, 5000/512); x/y are set so the centroid of the
    projected ``model_vertices`` [B,V,3] (focal 5000/512) lands on the centroid of ``target_points`` [B,V,2]; finally
    T is scaled by 12/13 for the focal-12 camera.
    """
    pose = global_pose.clone()
    pose[:, 1] = pose[:, 1] + math.pi
    deca_rotation = axis_angle_to_matrix(pose[:, [2, 1, 0]])
    flip = torch.tensor([-1.0, -1.0, 1.0], dtype=pose.dtype, device=pose.device)
    rotation = flip[:, None] * deca_rotation * flip[None, :]
    translation = torch.zeros(len(pose), 3, dtype=pose.dtype, device=pose.device)
    translation[:, 2] = START_DEPTH
    projected = project_to_screen(model_vertices, rotation, translation, START_FOCAL, image_size)
    translation[:, :2] = (projected.mean(1) - target_points.mean(1)) * 2.0 / image_size
    return rotation, translation * START_TRANSLATION_SCALE


def compose_transform(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """[R|T] [...,3,4] from R [...,3,3] and T [...,3]."""
    return torch.cat([rotation, translation[..., None]], dim=-1)
