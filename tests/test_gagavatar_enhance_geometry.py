"""GAGAvatar enhancements, part 2: region-aware expression transfer and gaze (FLAME geometry, camera, eyes)."""
from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
import torch

from talkinghead.models.flame import load_flame
from talkinghead.pipelines.gagavatar_enhance.expression import (REGIONS, ExpressionTransferConfig,
                                                                RegionExpressionTransfer, landmark_regions,
                                                                load_region_masks, regions_from_flame_masks)
from talkinghead.pipelines.gagavatar_enhance.gaze import (EyeEnhanceConfig, GazeConfig, camera_centres,
                                                          correct_gaze, enhance_eyes, eye_centres_from_flame,
                                                          eye_masks, gaze_angles, gaze_directions, project_points)
from talkinghead.pipelines.gagavatar_enhance.rotations import quat_exp, quat_rotate
from talkinghead.pipelines.gagavatar_enhance.evaluation import high_frequency_energy, synthetic_driver_track


@pytest.fixture(scope="module")
def flame_file(gagavatar_fixtures):
    return gagavatar_fixtures / "flame_synthetic_small.pt"


@pytest.fixture(scope="module")
def flame(flame_file):
    return load_flame(flame_file)


# ---------------------------------------------------------------------------------------------------------------
# Expression transfer


def test_separable_basis_gets_exactly_the_requested_region_ratios():
    # Components that each move one region only: W d stays in the span of B, so the residual is 0 and the
    # achieved ratios equal blend * w + (1 - blend) exactly.
    rng = np.random.default_rng(0)
    regions = {name: np.arange(8 * i, 8 * i + 8) for i, name in enumerate(REGIONS)}  # vertices 40-43: other
    basis = np.zeros((44, 3, 2 * len(REGIONS)))
    for i, indices in enumerate(regions.values()):
        basis[indices, :, 2 * i: 2 * i + 2] = rng.normal(size=(8, 3, 2))
    basis[40:, :, 0] = rng.normal(size=(4, 3))  # an eyes component that also moves 'other' vertices
    transfer = RegionExpressionTransfer(basis, regions)
    expcode = rng.normal(size=(30, basis.shape[2]))
    report = transfer.region_report(expcode)
    weights = ExpressionTransferConfig().region_weights
    for name in ("brows", "nose", "mouth", "cheeks_jaw"):
        assert report[name]["residual"] < 1e-12
        assert report[name]["ratio"] == pytest.approx(0.8 * weights[name] + 0.2, abs=1e-12)
    mouth = [2 * REGIONS.index("mouth"), 2 * REGIONS.index("mouth") + 1]
    np.testing.assert_allclose(transfer.transfer(expcode)[:, mouth], (0.8 * 0.7 + 0.2) * expcode[:, mouth], atol=1e-12)
    # The mixed eyes/other component cannot scale the eyes alone: a residual appears and bounds the error.
    assert report["eyes"]["residual"] > 0.01
    assert abs(report["eyes"]["ratio"] - report["eyes"]["requested"]) <= 0.8 * report["eyes"]["residual"] + 1e-12


def test_flame_file_transfer_matches_least_squares_and_stays_within_the_residual(flame):
    transfer = RegionExpressionTransfer.from_flame(flame)
    assert set(transfer.regions) == set(REGIONS)
    rng = np.random.default_rng(1)
    expcode = rng.normal(size=(20, 100)).astype(np.float32)
    out = transfer.transfer(expcode)
    assert out.dtype == np.float32 and out.shape == expcode.shape

    # Independent computation: least squares of the region-scaled displacement, then the 0.8/0.2 blend.
    basis = flame.expression_basis.double().reshape(-1, 100).numpy()
    weights = np.ones(flame.num_vertices)
    for name, indices in transfer.regions.items():
        weights[indices] = ExpressionTransferConfig().region_weights[name]
    scaled = (expcode.astype(np.float64) @ basis.T) * np.repeat(weights, 3)
    least_squares = np.linalg.lstsq(basis, scaled.T, rcond=None)[0].T
    np.testing.assert_allclose(out, 0.8 * least_squares + 0.2 * expcode, rtol=1e-5, atol=1e-5)

    report = transfer.region_report(expcode)
    for name, numbers in report.items():
        assert abs(numbers["ratio"] - numbers["requested"]) <= 0.8 * numbers["residual"] + 1e-9, name
        assert 0.0 < numbers["residual"] < 1.0, name


def _toy_landmarks() -> np.ndarray:
    """A frontal 70-point layout (iBUG order + 2 eye centres) in metres, face towards +z."""
    points = np.zeros((70, 3))
    jaw_angle = np.linspace(-0.45 * np.pi, 0.45 * np.pi, 17)
    points[0:17] = np.stack([0.07 * np.sin(jaw_angle), -0.07 * np.cos(jaw_angle) + 0.02, np.zeros(17)], 1)
    points[17:27, 0] = np.concatenate([np.linspace(-0.055, -0.015, 5), np.linspace(0.015, 0.055, 5)])
    points[17:27, 1] = 0.05
    points[27:31] = np.stack([np.zeros(4), np.linspace(0.035, 0.0, 4), np.linspace(0.0, 0.02, 4)], 1)
    points[31:36] = np.stack([np.linspace(-0.015, 0.015, 5), np.full(5, -0.005), np.full(5, 0.01)], 1)
    eye = np.stack([0.012 * np.cos(np.linspace(0, 2 * np.pi, 6, endpoint=False)), np.zeros(6), np.zeros(6)], 1)
    points[36:42] = eye + [-0.032, 0.035, 0.0]
    points[42:48] = eye + [0.032, 0.035, 0.0]
    for first, count, width, height in ((48, 12, 0.025, 0.008), (60, 8, 0.015, 0.004)):  # outer / inner lip
        angle = np.pi - np.arange(count) * 2 * np.pi / count  # from the left corner over the upper lip
        points[first:first + count] = np.stack([width * np.cos(angle), height * np.sin(angle) - 0.03,
                                                np.zeros(count)], 1)
    points[68], points[69] = [-0.032, 0.035, 0.0], [0.032, 0.035, 0.0]
    return points


def test_landmark_rule_puts_vertices_in_the_expected_regions():
    landmarks = _toy_landmarks()
    probes = {
        "eyes": [-0.032, 0.037, 0.0], "brows": [0.03, 0.052, 0.0], "nose": [0.0, 0.005, 0.018],
        "mouth": [0.01, -0.031, 0.0], "cheeks_jaw": 0.5 * (landmarks[2] + landmarks[31]),
    }
    template = np.array(list(probes.values()) + [[0.0, 0.0, -0.1], [0.0, 0.15, 0.0]])  # back of head, scalp
    regions = landmark_regions(template, landmarks)
    for index, name in enumerate(probes):
        assert regions[name].tolist() == [index], name
    assigned = np.concatenate(list(regions.values()))
    assert 5 not in assigned and 6 not in assigned


def test_flame_masks_file_is_mapped_to_disjoint_regions(tmp_path, flame):
    masks = {
        "lips": np.array([1, 2, 3]), "nose": np.array([4, 5]), "forehead": np.array([6, 7, 8]),
        "left_eye_region": np.array([8, 9]), "right_eye_region": np.array([10]), "left_eyeball": np.array([11]),
        "right_eyeball": np.array([12]), "face": np.arange(0, 20), "scalp": np.array([30, 31]),
    }
    path = tmp_path / "FLAME_masks.pkl"
    path.write_bytes(pickle.dumps(masks, protocol=2))
    regions = regions_from_flame_masks(load_region_masks(path), flame.num_vertices)
    assert regions["mouth"].tolist() == [1, 2, 3] and regions["nose"].tolist() == [4, 5]
    assert regions["eyes"].tolist() == [8, 9, 10, 11, 12]
    assert regions["brows"].tolist() == [6, 7]  # 8 went to the eyes (priority)
    assert regions["cheeks_jaw"].tolist() == [0, 13, 14, 15, 16, 17, 18, 19]
    transfer = RegionExpressionTransfer.from_flame(flame, regions=load_region_masks(path))
    assert transfer.regions["eyes"].tolist() == [8, 9, 10, 11, 12]
    with pytest.raises(ValueError, match="lips"):
        regions_from_flame_masks({"face": np.arange(3)}, flame.num_vertices)
    with pytest.raises(ValueError, match="outside"):
        RegionExpressionTransfer(np.zeros((4, 3, 2)), {"eyes": [7]})
    with pytest.raises(ValueError, match="unknown"):
        RegionExpressionTransfer(np.zeros((4, 3, 2)), {"ears": [1]})
    with pytest.raises(ValueError, match="blend"):
        RegionExpressionTransfer(np.zeros((4, 3, 2)), {}, ExpressionTransferConfig(blend=1.5))


# ---------------------------------------------------------------------------------------------------------------
# Gaze


@pytest.fixture(scope="module")
def posed_driver():
    truth, _ = synthetic_driver_track(num_frames=40, seed=4)
    posecode = truth["posecode"].copy()
    posecode[:, :3] = [0.15, -0.3, 0.05]  # a global FLAME rotation (0 in tracked data, allowed here)
    return {**truth, "posecode": posecode}


@pytest.mark.parametrize("strength", [0.0, 0.3, 0.7, 1.0])
def test_gaze_angle_to_camera_drops_to_one_minus_strength(flame, posed_driver, strength):
    centres = eye_centres_from_flame(flame, np.zeros(300), posed_driver["expcode"], posed_driver["posecode"])
    before = gaze_angles(posed_driver, centres)
    assert np.degrees(before.mean()) > 5.0
    corrected = correct_gaze(posed_driver, centres, GazeConfig(strength=strength))
    assert corrected["eyecode"].dtype == np.float32 and corrected["expcode"] is posed_driver["expcode"]
    np.testing.assert_allclose(gaze_angles(corrected, centres), (1.0 - strength) * before, atol=1e-6)


def test_gaze_towards_a_chosen_point(flame, posed_driver):
    centres = eye_centres_from_flame(flame, np.zeros(300), posed_driver["expcode"], posed_driver["posecode"])
    target = np.array([1.0, 0.5, 4.0])
    corrected = correct_gaze(posed_driver, centres, GazeConfig(strength=1.0, target=target))
    expected = (target - centres) / np.linalg.norm(target - centres, axis=-1, keepdims=True)
    np.testing.assert_allclose(gaze_directions(corrected), expected, atol=1e-6)
    with pytest.raises(ValueError, match="strength"):
        correct_gaze(posed_driver, centres, GazeConfig(strength=1.5))
    with pytest.raises(ValueError, match="eye_centres"):
        correct_gaze(posed_driver, centres[:, :1])


def test_eye_centres_are_the_pivots_of_the_flame_eyeballs(flame_file):
    # Make vertices 0-3 / 4-7 follow only eye joints 3 / 4 and drop the pose correctives, then check that the FLAME
    # layer moves them rigidly about our eye centres by R_global R_eye.
    data = torch.load(flame_file, weights_only=True)
    model = dict(data["flame_model"])
    weights = model["weights"].clone()
    weights[0:4], weights[4:8] = torch.eye(5)[3], torch.eye(5)[4]
    model["weights"], model["posedirs"] = weights, torch.zeros_like(model["posedirs"])
    layer = load_flame({**data, "flame_model": model})
    rng = np.random.default_rng(5)
    shape, expression = rng.normal(size=(1, 300)), rng.normal(size=(1, 100))
    pose = np.array([[0.2, -0.4, 0.1, 0.3, 0.0, 0.0]])
    eyes = np.array([[0.1, 0.3, 0.0, -0.2, 0.25, 0.05]])
    rest_vertices = layer(shape, expression, np.zeros((1, 6)), np.zeros((1, 6))).double().numpy()[0]
    posed_vertices = layer(shape, expression, pose, eyes).double().numpy()[0]
    rest_centres = eye_centres_from_flame(layer, shape, expression)[0]
    posed_centres = eye_centres_from_flame(layer, shape, expression, pose)[0]
    for eye, vertices in ((0, slice(0, 4)), (1, slice(4, 8))):
        rotation = quat_exp(pose[0, :3])[None]
        rotation_eye = quat_exp(eyes[0, 3 * eye: 3 * eye + 3])[None]
        expected = posed_centres[eye] + quat_rotate(rotation, quat_rotate(rotation_eye,
                                                                          rest_vertices[vertices] - rest_centres[eye]))
        np.testing.assert_allclose(posed_vertices[vertices], expected, atol=2e-5)


def test_projection_matches_the_rasteriser_fixture_and_camera_centre(gagavatar_fixtures):
    scene = np.load(gagavatar_fixtures / "gs_raster_64.npz")
    visible = scene["depths"] > 0.2
    pixels = project_points(scene["means"][visible][None], scene["transform_p3d"][None], (64, 64))[0]
    np.testing.assert_allclose(pixels, scene["means2d"][visible], atol=1e-4)
    transform = scene["transform_p3d"][None].astype(np.float64)
    centre = camera_centres(transform)
    np.testing.assert_allclose(centre @ transform[0, :, :3] + transform[0, :, 3], 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="behind"):
        project_points(centre[:, None] - 1.0 * transform[0, :, 2][None, None], transform)


def test_eye_sharpening_stays_inside_the_eye_masks():
    rng = np.random.default_rng(6)
    frame = np.full((128, 128, 3), 0.7, np.float32) + rng.normal(0, 0.02, (128, 128, 1)).astype(np.float32)
    ys, xs = np.mgrid[0:128, 0:128]
    eye_pixels = np.array([[[44.0, 60.0], [84.0, 60.0]]])
    for x, y in eye_pixels[0]:
        frame[(xs - x) ** 2 + (ys - y) ** 2 < 36] = 0.2
    frame = cv2.GaussianBlur(frame, (0, 0), 1.2)[None]
    masks = eye_masks(eye_pixels, (128, 128))
    inside, outside = masks[0] > 0.5, masks[0] == 0
    assert inside.sum() > 400 and outside.sum() > 10000  # sigma = 0.3 * 40 px, cut at 2.5 sigma
    out = enhance_eyes(frame, eye_pixels)
    assert high_frequency_energy(out[0], inside) > 1.3 * high_frequency_energy(frame[0], inside)  # measured 1.48
    np.testing.assert_array_equal(out[0][outside], frame[0][outside])
    face = np.zeros((128, 128), np.float32)
    np.testing.assert_array_equal(enhance_eyes(frame, eye_pixels, EyeEnhanceConfig(), face_mask=face), frame)
    with pytest.raises(ValueError, match="eye_pixels"):
        enhance_eyes(frame, eye_pixels[:, :1])
