"""Per-frame camera and eye-pose fitting (the reference's ``OptimEngine.lightning_optimize``).

Given EMICA's FLAME codes (shape, expression, jaw) the optimiser moves only the eyeballs (6), the camera rotation
(PyTorch3D 6D, 6) and the camera translation (3) of each frame, with Adam for 300 steps, so that

- all FLAME vertices, projected by the focal-12 camera, land on VGGHead's own reprojected FLAME vertices (x80),
- landmarks 17:68 land on the detected 70-point landmarks (x10), and the pupils 68:70 on the detected pupils (x25),

each term a mean squared pixel error / 512.  The two landmark terms only count frames whose detected landmarks agree
with VGGHead's (mean distance over 17:68 below 8.96 px); the others are fitted to the VGGHead vertices alone.  The
FLAME global rotation stays 0: the whole head pose is the camera.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .camera import (compose_transform, matrix_to_rotation_6d, project_to_screen, rotation_6d_to_matrix,
                     start_camera, vgghead_6d_to_matrix)
from .landmarks import FITTED_FACE, PUPILS, reselect_eyelids

STEPS = 300
LEARNING_RATES = {"eyes": 1e-3, "rotation": 5e-4, "translation": 1e-2}
LOSS_WEIGHTS = {"vertices": 80.0, "landmarks": 10.0, "pupils": 25.0}
LANDMARK_AGREEMENT_PX = 8.96
VGGHEAD_MESH_OFFSET_Z = 0.05  # VGGHead's FLAME mesh is shifted by +0.05 in z (unit scale) before its transform

Progress = Callable[[int, int], None] | None


@dataclass
class FitTargets:
    """2D targets of a batch of frames, in pixels of the 512 crop.

    vertices [B,V,2]: VGGHead's reprojected FLAME vertices; vgg_landmarks [B,70,2]: VGGHead's 70 landmarks (only used
    to judge the detected ones); landmarks [B,70,2]: the detected 70 landmarks.
    """

    vertices: torch.Tensor
    vgg_landmarks: torch.Tensor
    landmarks: torch.Tensor


@dataclass
class FitResult:
    """eyecode [B,6]; transform [B,3,4] PyTorch3D [R|T]; landmarks_used [B] (False: the detected landmarks disagreed
    with VGGHead and only the vertex term fitted that frame); final per-term losses."""

    eyecode: torch.Tensor
    transform: torch.Tensor
    landmarks_used: torch.Tensor
    losses: dict


def vgghead_targets(flame, shapecode, expcode, jaw, rotation_6d, translation, scale, padding, letterbox_scale,
                    landmarks) -> FitTargets:
    """Reproject VGGHead's FLAME fit into the image it saw (weak perspective), as ``reproject_vertices`` does.

    FLAME at unit scale (shape, expression, [0,0,0,jaw], eyes 0), z + 0.05, rotated by VGGHead's 6D code, scaled by
    its scale, shifted by its translation (640² letterbox pixels), then mapped back through the letterbox
    (``padding`` [B,2], ``letterbox_scale`` [B]).  ``landmarks`` [B,70,2]: the detected points, passed through.
    """
    pose = torch.cat([torch.zeros_like(jaw), jaw], dim=1)
    vertices = flame(shapecode, expcode, pose, torch.zeros_like(pose)) / flame.scale
    vertices = vertices + torch.tensor([0.0, 0.0, VGGHEAD_MESH_OFFSET_Z], dtype=vertices.dtype, device=vertices.device)
    vgg_landmarks = reselect_eyelids(vertices, flame.landmarks(vertices))
    rotation = vgghead_6d_to_matrix(rotation_6d).to(vertices.dtype)
    size = scale.reshape(-1, 1, 1).clamp_min(1e-8)

    def to_image(points):
        placed = (points @ rotation.transpose(1, 2)) * size + translation[:, None, :]
        return (placed[..., :2] - padding[:, None, :]) / letterbox_scale.reshape(-1, 1, 1)

    return FitTargets(vertices=to_image(vertices), vgg_landmarks=to_image(vgg_landmarks), landmarks=landmarks)


def _scaled_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(prediction, target) / 512.0


def _autograd_ready(module: torch.nn.Module) -> None:
    """Replace inference-mode buffers (a module built under ``torch.inference_mode``, as ComfyUI runs nodes) by
    ordinary copies so they can take part in a backward pass."""
    for sub in module.modules():
        for name, buffer in sub._buffers.items():
            if buffer is not None and buffer.is_inference():
                sub._buffers[name] = buffer.clone()


def fit_camera_and_eyes(flame, shapecode, expcode, jaw, global_pose, targets: FitTargets, steps: int = STEPS,
                        progress: Progress = None) -> FitResult:
    """Fit eye pose, camera rotation and translation of every frame of a batch (see module doc).

    ``flame``: the FLAME layer with the 70-point embedding, scale 5; ``shapecode`` [B,300], ``expcode`` [B,100],
    ``jaw`` [B,3]: EMICA's codes (fixed); ``global_pose`` [B,3]: DECA's head pose, only used to start the camera.
    Runs with gradients even when called under ``torch.inference_mode``.
    """
    with torch.inference_mode(False), torch.enable_grad():
        _autograd_ready(flame)
        device = flame.v_template.device
        shapecode, expcode, jaw, global_pose = (t.detach().clone().float().to(device)
                                                for t in (shapecode, expcode, jaw, global_pose))
        target_vertices, vgg_landmarks, landmarks = (t.detach().clone().float().to(device) for t in
                                                     (targets.vertices, targets.vgg_landmarks, targets.landmarks))
        pose = torch.cat([torch.zeros_like(jaw), jaw], dim=1)
        with torch.no_grad():
            start_vertices = flame(shapecode, expcode, pose, torch.zeros_like(pose))
            start_rotation, start_translation = start_camera(global_pose, start_vertices, target_vertices)
        rotation = torch.nn.Parameter(matrix_to_rotation_6d(start_rotation))
        translation = torch.nn.Parameter(start_translation.clone())
        eyes = torch.nn.Parameter(torch.zeros_like(pose))
        optimizer = torch.optim.Adam([
            {"params": [eyes], "lr": LEARNING_RATES["eyes"]},
            {"params": [rotation], "lr": LEARNING_RATES["rotation"]},
            {"params": [translation], "lr": LEARNING_RATES["translation"]},
        ])
        agreement = (landmarks[:, FITTED_FACE] - vgg_landmarks[:, FITTED_FACE]).norm(dim=-1).mean(dim=-1)
        use_landmarks = agreement < LANDMARK_AGREEMENT_PX
        losses = {}
        for step in range(steps):
            vertices, model_landmarks = flame(shapecode, expcode, pose, eyes, return_landmarks=True)
            matrix = rotation_6d_to_matrix(rotation)
            losses = {"vertices": _scaled_mse(project_to_screen(vertices, matrix, translation), target_vertices)
                      * LOSS_WEIGHTS["vertices"]}
            if use_landmarks.any():
                projected = project_to_screen(model_landmarks, matrix, translation)[use_landmarks]
                wanted = landmarks[use_landmarks]
                losses["landmarks"] = _scaled_mse(projected[:, FITTED_FACE], wanted[:, FITTED_FACE]) \
                    * LOSS_WEIGHTS["landmarks"]
                losses["pupils"] = _scaled_mse(projected[:, PUPILS], wanted[:, PUPILS]) * LOSS_WEIGHTS["pupils"]
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            losses = {name: value.detach() for name, value in losses.items()}
            if progress is not None:
                progress(step + 1, steps)
        transform = compose_transform(rotation_6d_to_matrix(rotation), translation).detach()
        return FitResult(eyecode=eyes.detach(), transform=transform, landmarks_used=use_landmarks,
                         losses={name: value.item() for name, value in losses.items()})
