"""FLAME layer against the reference fixture, LBS properties, and the chumpy-free generic_model.pkl converter."""
from __future__ import annotations

import os
import pickle
import sys

import numpy as np
import pytest
import torch

from talkinghead.models.flame import convert_flame_pkl, load_flame, load_legacy_pickle
import gagavatar_synth as synth


@pytest.fixture(scope="module")
def reference(gagavatar_fixtures):
    return np.load(gagavatar_fixtures / "flame_forward_small.npz")


@pytest.fixture(scope="module")
def small_flame(gagavatar_fixtures):
    return load_flame(gagavatar_fixtures / "flame_synthetic_small.pt")


def _forward(flame, data, **kwargs):
    return flame(data["shape_params"], data["expression_params"], data["pose_params"], data["eye_pose_params"],
                 **kwargs)


def test_vertices_and_landmarks_match_reference(small_flame, reference):
    vertices, landmarks = _forward(small_flame, reference, return_landmarks=True)
    assert vertices.shape == (4, 64, 3)
    assert np.abs(vertices.numpy() - reference["vertices_scaled5"]).max() < 1e-5
    # landmarks come at the vertices' scale (×5); the fixture stores them at scale 1
    assert np.abs(landmarks.numpy() / 5 - reference["landmarks70_scale1"]).max() < 1e-5
    assert np.abs(vertices[0].numpy() - 5 * small_flame.v_template.numpy()).max() < 1e-6


def test_exposes_bases_template_and_faces(small_flame, gagavatar_fixtures):
    raw = torch.load(gagavatar_fixtures / "flame_synthetic_small.pt", weights_only=True)["flame_model"]
    assert torch.equal(small_flame.shape_basis, raw["shapedirs"][:, :, :300])
    assert torch.equal(small_flame.expression_basis, raw["shapedirs"][:, :, 300:400])
    assert torch.equal(small_flame.faces, raw["f"]) and small_flame.num_vertices == 64
    # kintree parent of the root is forced to -1 without touching the caller's data
    assert small_flame.parents == [-1, 0, 1, 1, 1]


def test_expression_is_linear_at_zero_pose(small_flame):
    expression = torch.zeros(1, 100)
    expression[0, 7] = 2.0
    moved = small_flame(torch.zeros(1, 300), expression, torch.zeros(1, 6), torch.zeros(1, 6))
    expected = 5 * (small_flame.v_template + 2.0 * small_flame.expression_basis[:, :, 7])
    # joints move with the expression offsets, but at zero pose LBS is the identity
    assert torch.allclose(moved[0], expected, atol=1e-6)


def test_global_rotation_rotates_about_root_joint(small_flame, reference):
    data = {k: torch.as_tensor(reference[k][1:2]) for k in reference.files}
    rest = _forward(small_flame, data)[0]
    rotated_pose = data["pose_params"].clone()
    rotated_pose[0, :3] = torch.tensor([0.3, -0.5, 0.2])
    rotated = small_flame(data["shape_params"], data["expression_params"], rotated_pose, data["eye_pose_params"])[0]
    angle = rotated_pose[0, :3].norm()
    axis = rotated_pose[0, :3] / angle
    skew = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = torch.eye(3) + torch.sin(angle) * skew + (1 - torch.cos(angle)) * skew @ skew
    v_shaped = small_flame.v_template + torch.einsum("l,vkl->vk", torch.cat([data["shape_params"][0],
                                                                               data["expression_params"][0]]),
                                                     small_flame.shapedirs)
    root = 5 * (small_flame.J_regressor[0] @ v_shaped)
    assert torch.allclose(rotated, (rest - root) @ rotation.T + root, atol=2e-5)
    assert (rotated - rest).abs().max() > 0.1  # the check above is not vacuous


def test_single_identity_broadcasts_over_frames(small_flame, reference):
    data = {k: torch.as_tensor(reference[k]) for k in reference.files}
    shared = small_flame(data["shape_params"][2:3], data["expression_params"], data["pose_params"],
                         data["eye_pose_params"])
    one_by_one = small_flame(data["shape_params"][2:3].expand(4, -1), data["expression_params"], data["pose_params"],
                             data["eye_pose_params"])
    assert torch.equal(shared, one_by_one)


def test_bad_inputs_raise_value_errors(small_flame, tmp_path, gagavatar_fixtures):
    with pytest.raises(ValueError, match="expression"):
        small_flame(torch.zeros(1, 300), torch.zeros(1, 120), torch.zeros(1, 6), torch.zeros(1, 6))
    with pytest.raises(ValueError, match="batch"):
        small_flame(torch.zeros(2, 300), torch.zeros(3, 100), torch.zeros(1, 6), torch.zeros(1, 6))
    with pytest.raises(ValueError, match="not found"):
        load_flame(tmp_path / "missing.pt")
    raw = torch.load(gagavatar_fixtures / "flame_synthetic_small.pt", weights_only=True)
    raw["flame_model"]["shapedirs"] = raw["flame_model"]["shapedirs"][:, :, :350]
    with pytest.raises(ValueError, match="400"):
        load_flame(raw)


def test_converter_reads_chumpy_pickle_without_chumpy(tmp_path):
    flame = synth.synthetic_flame(num_vertices=40, num_faces=60, seed=3)
    synth.write_generic_model_pkl(tmp_path / "generic_model.pkl", flame)
    assert "chumpy" not in sys.modules
    payload = (tmp_path / "generic_model.pkl").read_bytes()
    assert b"chumpy.ch\nCh" in payload and b"scipy.sparse.csc\ncsc_matrix" in payload

    written = convert_flame_pkl(tmp_path / "generic_model.pkl", tmp_path / "out" / "FLAME_with_eye.pt")
    model = torch.load(tmp_path / "out" / "FLAME_with_eye.pt", weights_only=True)["flame_model"]
    assert sorted(model) == sorted(flame["flame_model"]) and sorted(written["flame_model"]) == sorted(model)
    assert model["kintree_table"].dtype == torch.int64 and model["kintree_table"][0].tolist() == [-1, 0, 1, 1, 1]
    assert model["J_regressor"].shape == (5, 40)  # dense
    assert torch.allclose(model["J_regressor"], flame["flame_model"]["J_regressor"])
    assert torch.allclose(model["shapedirs"], flame["flame_model"]["shapedirs"])

    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(3, n, generator=generator) * s for n, s in ((300, 1), (100, 1), (6, 0.2), (6, 0.1))]
    converted, original = load_flame(tmp_path / "out" / "FLAME_with_eye.pt"), load_flame(flame)
    assert torch.allclose(converted(*inputs), original(*inputs), atol=1e-6)
    assert converted.parents == [-1, 0, 1, 1, 1]
    assert not converted.has_landmarks  # generic_model.pkl has no landmark embedding
    with pytest.raises(ValueError, match="landmark"):
        converted(*inputs, return_landmarks=True)
    # load_flame accepts the pkl directly too
    assert torch.allclose(load_flame(tmp_path / "generic_model.pkl")(*inputs), original(*inputs), atol=1e-6)


def test_converter_merges_landmark_files(tmp_path):
    flame = synth.synthetic_flame(num_vertices=40, num_faces=60, seed=4)
    synth.write_generic_model_pkl(tmp_path / "generic_model.pkl", flame)
    marks = {k: v.numpy() for k, v in flame["lmk_embeddings"].items()}
    with open(tmp_path / "flame_static_embedding.pkl", "wb") as handle:  # FLAME's own file: uint32 + float64
        pickle.dump({"lmk_face_idx": marks["static_lmk_faces_idx"].astype(np.uint32),
                     "lmk_b_coords": marks["static_lmk_bary_coords"].astype(np.float64)}, handle, protocol=2)
    np.save(tmp_path / "flame_dynamic_embedding.npy",
            {"lmk_face_idx": marks["dynamic_lmk_faces_idx"], "lmk_b_coords": marks["dynamic_lmk_bary_coords"]},
            allow_pickle=True)
    torch.save(flame, tmp_path / "with_eye_source.pt")
    converted = convert_flame_pkl(tmp_path / "generic_model.pkl", tmp_path / "FLAME_with_eye.pt",
                                  landmark_files=[tmp_path / "flame_static_embedding.pkl",
                                                  tmp_path / "flame_dynamic_embedding.npy",
                                                  tmp_path / "with_eye_source.pt"])
    for key, value in flame["lmk_embeddings"].items():
        assert torch.allclose(converted["lmk_embeddings"][key].to(value.dtype), value), key
    layer = load_flame(tmp_path / "FLAME_with_eye.pt")
    zeros = [torch.zeros(1, n) for n in (300, 100, 6, 6)]
    vertices, landmarks = layer(*zeros, return_landmarks=True)
    corner = vertices[0, layer.faces[layer.landmark_faces_idx[5]]]
    assert torch.allclose(landmarks[0, 5], layer.landmark_bary_coords[5] @ corner, atol=1e-6)


def test_restricted_pickle_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            # os.getcwd: harmless if it ran, and (unlike print) never replaced by other libraries such as Ray
            return (os.getcwd, ())

    with pytest.raises(ValueError, match="getcwd"):
        load_legacy_pickle(pickle.dumps({"v_template": Evil()}))
    with pytest.raises(ValueError, match="landmark"):
        convert_flame_pkl(_write(tmp_path / "g.pkl", synth.synthetic_flame(num_vertices=20, num_faces=10)),
                          tmp_path / "o.pt", landmark_files=[{"unrelated": np.zeros(3)}])


def _write(path, flame):
    synth.write_generic_model_pkl(path, flame)
    return path
