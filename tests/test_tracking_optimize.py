"""Tracker camera maths and the per-frame camera/eye optimiser on synthetic FLAME data with a known camera."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gagavatar_synth import synthetic_flame
from talkinghead.models.flame import load_flame
from talkinghead.pipelines.tracking.camera import (matrix_to_rotation_6d, project_to_screen, rotation_6d_to_matrix,
                                                  start_camera, vgghead_6d_to_matrix)
from talkinghead.pipelines.tracking.optimize import FitTargets, fit_camera_and_eyes, vgghead_targets

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors

BATCH = 2


def _random_rotations(count: int, seed: int) -> torch.Tensor:
    from scipy.spatial.transform import Rotation

    return torch.as_tensor(Rotation.random(count, random_state=seed).as_matrix(), dtype=torch.float64)


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cosine = ((a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.acos(cosine.clamp(-1, 1)))


@pytest.fixture(scope="module")
def flame():
    return load_flame(synthetic_flame(num_vertices=64, num_faces=120, seed=3), scale=5.0)


@pytest.fixture(scope="module")
def scene(flame):
    """Two frames: FLAME codes, DECA-style head poses, true eye poses and true PyTorch3D cameras."""
    generator = torch.Generator().manual_seed(0)
    shape = torch.randn(BATCH, 300, generator=generator) * 0.5
    expression = torch.randn(BATCH, 100, generator=generator) * 0.5
    jaw = torch.tensor([[0.12, 0.0, 0.0], [0.05, 0.02, 0.0]])
    global_pose = torch.tensor([[0.10, -0.20, 0.05], [-0.15, 0.25, -0.08]])
    eyes = torch.randn(BATCH, 6, generator=generator) * 0.05
    pose = torch.cat([torch.zeros_like(jaw), jaw], 1)
    vertices, landmarks = flame(shape, expression, pose, eyes, return_landmarks=True)
    rotation, _ = start_camera(global_pose, vertices, torch.full((BATCH, 1, 2), 256.0))
    translation = torch.tensor([[0.05, -0.03, 9.3], [-0.10, 0.02, 8.8]])
    return dict(shape=shape, expression=expression, jaw=jaw, global_pose=global_pose, eyes=eyes,
                rotation=rotation, translation=translation,
                vertices_2d=project_to_screen(vertices, rotation, translation),
                landmarks_2d=project_to_screen(landmarks, rotation, translation))


def test_projection_follows_pytorch3d_screen_convention():
    points = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 2.0]]])
    pixels = project_to_screen(points, torch.eye(3)[None], torch.tensor([[0.0, 0.0, 10.0]]))
    # u = 256 (1 - 12 X / Z), v = 256 (1 - 12 Y / Z): +X is image-left, +Y image-up
    expected = torch.tensor([[[256.0, 256.0], [256 * (1 - 1.2), 256.0], [256.0, 256 * (1 - 0.5)]]])
    torch.testing.assert_close(pixels, expected)


def test_rotation_6d_round_trip_and_gram_schmidt():
    rotations = _random_rotations(8, seed=1)
    torch.testing.assert_close(rotation_6d_to_matrix(matrix_to_rotation_6d(rotations)), rotations)
    noisy = matrix_to_rotation_6d(rotations) + 0.05 * torch.randn(8, 6, dtype=torch.float64)
    decoded = rotation_6d_to_matrix(noisy)
    torch.testing.assert_close(decoded @ decoded.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(8, 3, 3))
    torch.testing.assert_close(torch.linalg.det(decoded), torch.ones(8, dtype=torch.float64))
    torch.testing.assert_close(decoded[:, 0], torch.nn.functional.normalize(noisy[:, :3], dim=-1))  # row 0 kept


def test_vgghead_6d_builds_columns():
    identity = vgghead_6d_to_matrix(torch.tensor([[1.0, 0, 0, 0, 1, 0]]))
    torch.testing.assert_close(identity, torch.eye(3)[None])
    rotations = _random_rotations(4, seed=2)
    code = torch.cat([rotations[:, :, 0], rotations[:, :, 1]], dim=1)  # first two COLUMNS
    torch.testing.assert_close(vgghead_6d_to_matrix(code), rotations)


def test_start_camera_of_a_frontal_pose(flame):
    vertices = flame(torch.zeros(1, 300), torch.zeros(1, 100), torch.zeros(1, 6), torch.zeros(1, 6))
    target = torch.full((1, vertices.shape[1], 2), 200.0)
    rotation, translation = start_camera(torch.zeros(1, 3), vertices, target)
    # DECA's frontal pose becomes a camera on +Z looking back at the face: diag(-1, 1, -1)
    torch.testing.assert_close(rotation, torch.diag(torch.tensor([-1.0, 1.0, -1.0]))[None], atol=1e-6, rtol=0)
    assert translation[0, 2].item() == pytest.approx(5000 / 512 * 12 / 13)
    unscaled = translation / (12 / 13)
    centroid = project_to_screen(vertices, rotation, unscaled, focal=5000 / 512).mean(1)
    torch.testing.assert_close(centroid, target.mean(1), atol=0.5, rtol=0)  # first-order centring


def _fit(flame, scene, landmarks=None, noise_seed=0):
    generator = torch.Generator().manual_seed(noise_seed)
    start_pose = scene["global_pose"] + 0.03 * torch.randn(BATCH, 3, generator=generator)
    landmarks = scene["landmarks_2d"] if landmarks is None else landmarks
    targets = FitTargets(vertices=scene["vertices_2d"], vgg_landmarks=scene["landmarks_2d"], landmarks=landmarks)
    return fit_camera_and_eyes(flame, scene["shape"], scene["expression"], scene["jaw"], start_pose, targets)


def test_fit_recovers_known_camera_and_eyes(flame, scene):
    result = _fit(flame, scene)
    rotation, translation = result.transform[:, :, :3], result.transform[:, :, 3]
    start_error = _angle_deg(start_camera(scene["global_pose"] + 0.03 * torch.randn(
        BATCH, 3, generator=torch.Generator().manual_seed(0)), flame(
        scene["shape"], scene["expression"], torch.cat([torch.zeros_like(scene["jaw"]), scene["jaw"]], 1),
        torch.zeros(BATCH, 6)), scene["vertices_2d"])[0], scene["rotation"])
    assert (start_error > 1.0).all(), "the start camera must be off for the test to measure recovery"
    assert (_angle_deg(rotation, scene["rotation"]) < 0.25).all()
    assert (translation - scene["translation"]).abs().max() < 5e-3
    assert (result.eyecode - scene["eyes"]).abs().max() < 0.02
    assert result.landmarks_used.all()
    pose = torch.cat([torch.zeros_like(scene["jaw"]), scene["jaw"]], 1)
    vertices = flame(scene["shape"], scene["expression"], pose, result.eyecode)
    residual = project_to_screen(vertices, rotation, translation) - scene["vertices_2d"]
    assert residual.norm(dim=-1).mean() < 0.2  # pixels at 512²


def test_disagreeing_landmarks_are_ignored(flame, scene):
    shifted = scene["landmarks_2d"].clone()
    shifted[1] += 20.0  # frame 1's detector is off by 20 px: above the 8.96 px agreement limit
    result = _fit(flame, scene, landmarks=shifted)
    assert result.landmarks_used.tolist() == [True, False]
    assert (_angle_deg(result.transform[:, :, :3], scene["rotation"]) < 0.25).all()
    assert (result.transform[:, :, 3] - scene["translation"]).abs().max() < 5e-3


def test_fit_under_inference_mode_matches(flame, scene):
    reference = _fit(flame, scene)
    with torch.inference_mode():
        inference_flame = load_flame(synthetic_flame(num_vertices=64, num_faces=120, seed=3), scale=5.0)
        result = _fit(inference_flame, scene)
    torch.testing.assert_close(result.transform, reference.transform)
    torch.testing.assert_close(result.eyecode, reference.eyecode)


def test_vgghead_targets_map_back_through_letterbox(flame):
    """A VGGHead fit with identity rotation, scale s and translation t puts unit-scale vertex v at
    ((s·v + t)_xy - padding) / letterbox_scale."""
    shape, expression, jaw = torch.zeros(1, 300), torch.zeros(1, 100), torch.zeros(1, 3)
    six_d = torch.tensor([[1.0, 0, 0, 0, 1, 0]])
    targets = vgghead_targets(flame, shape, expression, jaw, six_d, torch.tensor([[320.0, 300.0, 0.0]]),
                              torch.tensor([[400.0]]), torch.tensor([[10.0, 40.0]]), torch.tensor([1.25]),
                              torch.zeros(1, 70, 2))
    vertices = flame.v_template[None] + torch.tensor([0.0, 0.0, 0.05])
    expected = (vertices[..., :2] * 400.0 + torch.tensor([320.0, 300.0]) - torch.tensor([10.0, 40.0])) / 1.25
    torch.testing.assert_close(targets.vertices, expected, atol=1e-3, rtol=0)
    assert targets.vgg_landmarks.shape == (1, 70, 2)
    assert np.isfinite(targets.vgg_landmarks.numpy()).all() and not math.isnan(float(targets.vertices.sum()))
