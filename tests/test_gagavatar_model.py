"""GAGAvatar network: strict loading of the released layout, numerics against the formula-weight fixtures
(tests/fixtures/gagavatar), a tiny same-family model through the inference path, and loader errors.

The full-size model is built once per module from formula weights (no stored weights) and runs one encoder pass and
one refiner pass: ~35 s of CPU time on 2 cores (up to ~60 s wall on the shared machine), ~2 GB RAM peak.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import gagavatar_synth as synth
from gagavatar_synth import e2e_source_image, formula_tensor, refiner_input
from talkinghead.models.gagavatar import load_gagavatar

ATOL = RTOL = 1e-4  # features and Gaussian parameters (rtol) and refiner (abs): float32 CPU reruns of the fixtures
GROUPS = {"global": slice(0, 5023), "local0": slice(5023, 92639), "local1": slice(92639, 180255)}
TRAINING_ONLY = ("percep_loss.", "upsampler.toRGB.", "base_model.dino_model.mask_token")


@pytest.fixture(scope="module")
def manifest(gagavatar_fixtures):
    return json.loads((gagavatar_fixtures / "model_full_keys.json").read_text())


@pytest.fixture(scope="module")
def e2e(gagavatar_fixtures):
    return np.load(gagavatar_fixtures / "e2e_formula_weights.npz")


@pytest.fixture(scope="module")
def e2e_summary(gagavatar_fixtures):
    return json.loads((gagavatar_fixtures / "e2e_formula_weights_summary.json").read_text())


@pytest.fixture(scope="module")
def full_model(manifest):
    """The released configuration with formula weights, loaded strictly from the official container layout."""
    state = {name: torch.from_numpy(formula_tensor(name, shape, k))
             for k, (name, shape, *_) in enumerate(manifest["keys"])}
    model = load_gagavatar({"model": state, "meta_cfg": {"MODEL": {"NAME": "GAGAvatar"}}})
    del state
    return model


@pytest.fixture(scope="module")
def full_avatar(full_model, e2e):
    image = torch.from_numpy(e2e_source_image())[None]
    return full_model.encode_source(image, torch.from_numpy(e2e["f_transform"])[None])


@pytest.fixture(scope="module")
def full_gaussians(full_model, full_avatar, e2e):
    return full_model.gaussians(full_avatar, torch.from_numpy(e2e["t_points"])[None])


# ---------------------------------------------------------------- full size: layout and numerics
def test_formula_generator_matches_reference_checks(manifest, e2e_summary):
    for name, check in e2e_summary["formula_checks"].items():
        key, shape, *_ = manifest["keys"][check["index"]]
        assert key == name
        value = formula_tensor(key, shape, check["index"])
        np.testing.assert_array_equal(value.ravel()[:4], np.float32(check["first4"]))
        assert value.astype(np.float64).sum() == pytest.approx(check["sum_f64"], rel=1e-12, abs=1e-9)


def test_released_layout_loads_strictly(full_model, manifest):
    """Every manifest tensor except the training-only ones is a model tensor of the same shape, and vice versa."""
    expected = {name: tuple(shape) for name, shape, *_ in manifest["keys"] if not name.startswith(TRAINING_ONLY)}
    actual = {name: tuple(t.shape) for name, t in full_model.state_dict().items()}
    assert len(manifest["keys"]) == 597 and len(expected) == 546
    assert actual == expected
    sizes = (full_model.image_size, full_model.plane_size, full_model.num_vertices, full_model.refine_size)
    assert sizes == (518, 296, 5023, 512)
    assert not any(p.requires_grad for p in full_model.parameters()) and not full_model.training


def test_encoder_matches_formula_fixture(full_avatar, e2e):
    assert tuple(full_avatar.global_feature.shape) == (1, 768)
    assert tuple(full_avatar.local_feature.shape) == (1, 256, 296, 296)
    assert tuple(full_avatar.plane_points.shape) == (1, 87616, 3) and tuple(full_avatar.plane_dirs.shape) == (1, 3)
    np.testing.assert_allclose(full_avatar.plane_points[0].numpy(), e2e["plane_points"], rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(full_avatar.plane_dirs[0].numpy(), e2e["plane_dirs"], rtol=RTOL, atol=1e-6)
    # the global feature is the first PATCH token of the normed last block: CLS would not match
    np.testing.assert_allclose(full_avatar.global_feature[0].numpy(), e2e["f_feature1"], rtol=RTOL, atol=ATOL)
    local = full_avatar.local_feature[0]
    np.testing.assert_allclose(local.mean(dim=(1, 2)).numpy(), e2e["f_feature0_channel_mean"], rtol=RTOL, atol=ATOL)
    rows, cols = e2e["f_feature0_pix_rc"].T
    np.testing.assert_allclose(local[:, rows, cols].T.numpy(), e2e["f_feature0_at_pix"], rtol=RTOL, atol=ATOL)


def test_gaussians_match_formula_fixture(full_gaussians, e2e):
    index = torch.from_numpy(e2e["gs_index"])
    for name in ("xyz", "colors", "opacities", "scales", "rotations"):
        assert full_gaussians[name].shape[:2] == (1, 180255) and full_gaussians[name].dtype == torch.float32
        np.testing.assert_allclose(full_gaussians[name][0, index].numpy(), e2e[f"gs_{name}"], rtol=RTOL, atol=ATOL,
                                   err_msg=name)


def test_gaussian_sums_match_formula_fixture(full_gaussians, e2e_summary):
    """Sums over all 180,255 Gaussians per group: catches any wrong pixel the 207 samples miss."""
    for group, rows in GROUPS.items():
        for name, (ref_sum, ref_abssum) in e2e_summary["summary_sum_abssum"][group].items():
            values = full_gaussians[name][0, rows].double()
            tolerance = RTOL * ref_abssum
            assert abs(values.sum().item() - ref_sum) <= tolerance, (group, name)
            assert abs(values.abs().sum().item() - ref_abssum) <= tolerance, (group, name)


def test_gaussian_quirks_are_reproduced(full_gaussians, e2e):
    rotations = full_gaussians["rotations"][0]
    # global quaternions normalised across the 5023 vertices, so each is short (~0.03)
    np.testing.assert_allclose(rotations[:5023].pow(2).sum(dim=0).numpy(), np.ones(4), atol=1e-5)
    assert rotations[:5023].norm(dim=1).max() < 0.1
    np.testing.assert_allclose(rotations[5023:].norm(dim=1).numpy(), 1.0, atol=1e-5)
    # local colour sigmoid hits image columns 0-2 (all 32 channels), nothing else
    local = full_gaussians["colors"][0, 5023:92639].reshape(296, 296, 32)
    assert 0 < local[:, :3].min() and local[:, :3].max() < 1
    assert local[:, 3:].min() < -1 and local[:, 3:].max() > 1
    np.testing.assert_array_equal(full_gaussians["xyz"][0, :5023].numpy(), e2e["t_points"])


def test_refiner_matches_formula_fixture(full_model, gagavatar_fixtures):
    reference = np.load(gagavatar_fixtures / "upsampler_formula_weights.npz")
    features = refiner_input()
    assert features.astype(np.float64).sum() == pytest.approx(float(reference["input_sum_f64"]), abs=1e-6)
    rgb = full_model.refine(torch.from_numpy(features)[None])[0].numpy()
    assert np.abs(rgb - reference["output_rgb"]).max() <= 1e-4
    assert rgb.astype(np.float64).sum() == pytest.approx(float(reference["output_sum_f64"]), rel=1e-6)


# ---------------------------------------------------------------- tiny model of the same family
TINY_VERTICES = 64


def tiny_checkpoint(seed: int = 0) -> dict:
    """Official container of a small random GAGAvatar, with the training-only tensors a real file carries."""
    state = synth.tiny_gagavatar_state_dict(num_vertices=TINY_VERTICES, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for name, shape in (("upsampler.toRGB.0.weight", (3, 8, 1, 1)), ("upsampler.toRGB.0.bias", (3,)),
                        ("percep_loss.net.slice1.0.weight", (4, 3, 3, 3))):
        state[name] = torch.randn(shape, generator=generator)
    return {"model": state, "meta_cfg": {"MODEL": {"NAME": "GAGAvatar"}}}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("gagavatar") / "tiny.pt"
    torch.save(tiny_checkpoint(), path)
    return load_gagavatar(str(path))


def _source_batch(batch: int = 2):
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(batch, 3, 518, 518, generator=generator)
    transforms = torch.zeros(batch, 3, 4)
    transforms[:, :, :3] = torch.eye(3)
    transforms[:, 2, 3] = 9.3
    transforms[:, 0, 3] = 0.05 * torch.arange(batch)
    return images, transforms


def test_tiny_model_infers_sizes_and_produces_the_right_shapes(tiny_model):
    """Sizes come from the tensors: DINO width 64 / 2 blocks on 28² input, 16² plane, 64 vertices, 64² refiner."""
    sizes = (tiny_model.image_size, tiny_model.plane_size, tiny_model.num_vertices, tiny_model.refine_size)
    assert sizes == (28, 16, 64, 64)
    images, transforms = _source_batch()  # 518² input: resized to the model's 28² like the reference's 512->518
    avatar = tiny_model.encode_source(images, transforms)
    assert tuple(avatar.global_feature.shape) == (2, 64) and tuple(avatar.local_feature.shape) == (2, 16, 16, 16)
    assert tuple(avatar.plane_points.shape) == (2, 256, 3) and tuple(avatar.plane_dirs.shape) == (2, 3)
    points = torch.randn(2, TINY_VERTICES, 3)
    gaussians = tiny_model.gaussians(avatar, points)
    count = TINY_VERTICES + 2 * 256
    widths = {"xyz": 3, "colors": 32, "opacities": 1, "scales": 3, "rotations": 4}
    assert {k: tuple(v.shape) for k, v in gaussians.items()} == {k: (2, count, w) for k, w in widths.items()}
    torch.testing.assert_close(gaussians["xyz"][:, :TINY_VERTICES], points)
    # dual lifting: l0 pushed along the source view axis by sigmoid in (0,1), l1 against it
    planes, axis = avatar.plane_points, avatar.plane_dirs[:, None]
    along0 = ((gaussians["xyz"][:, TINY_VERTICES:TINY_VERTICES + 256] - planes) * axis).sum(-1)
    along1 = ((gaussians["xyz"][:, TINY_VERTICES + 256:] - planes) * axis).sum(-1)
    assert 0 < along0.min() and along0.max() < 1 and -1 < along1.min() and along1.max() < 0
    assert 0 < gaussians["opacities"].min() and gaussians["scales"].max() < 0.05


def test_tiny_batch_matches_single_encodings(tiny_model):
    images, transforms = _source_batch()
    both = tiny_model.encode_source(images, transforms)
    second = tiny_model.encode_source(images[1:], transforms[1:])
    torch.testing.assert_close(both.local_feature[1:], second.local_feature, atol=1e-5, rtol=1e-5)
    for name in ("colors", "rotations", "xyz"):
        torch.testing.assert_close(both.gaussians[name][1:], second.gaussians[name], atol=1e-5, rtol=1e-5)
    assert (both.plane_points[0] - both.plane_points[1]).abs().max() > 1e-3  # each source keeps its own camera


def test_tiny_refiner_noise_modes(tiny_model):
    features = torch.rand(2, 32, 64, 64, generator=torch.Generator().manual_seed(2))
    fixed = tiny_model.refine(features)
    assert tuple(fixed.shape) == (2, 3, 64, 64) and 0 <= fixed.min() and fixed.max() <= 1 and fixed.std() > 0.01
    torch.testing.assert_close(tiny_model.refine(features), fixed, atol=0, rtol=0)
    torch.manual_seed(7)
    fresh = tiny_model.refine(features, randomize_noise=True)
    torch.manual_seed(7)
    torch.testing.assert_close(tiny_model.refine(features, randomize_noise=True), fresh, atol=0, rtol=0)
    assert (fresh - fixed).abs().max() > 1e-4
    with pytest.raises(ValueError, match="features"):
        tiny_model.refine(torch.rand(1, 32, 32, 32))


# ---------------------------------------------------------------- loader errors
def _load_tiny_with(edit) -> None:
    checkpoint = tiny_checkpoint()
    edit(checkpoint["model"])
    load_gagavatar(checkpoint)


def test_unexpected_key_is_named():
    def add(state):
        state["upsampler.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected keys \(1\): upsampler\.extra_head\.weight"):
        _load_tiny_with(add)


def test_missing_keys_are_named():
    with pytest.raises(ValueError, match=r"missing keys \(1\): gs_generator_l1\.gaussian_conv\.2\.bias"):
        _load_tiny_with(lambda state: state.pop("gs_generator_l1.gaussian_conv.2.bias"))
    with pytest.raises(ValueError, match=r"upsampler\.stylegan_decoder\.noises\.noise3"):
        _load_tiny_with(lambda state: state.pop("upsampler.stylegan_decoder.noises.noise3"))
    # a tensor the sizes are read from
    with pytest.raises(ValueError, match=r"base_model\.output_conv\.weight"):
        _load_tiny_with(lambda state: state.pop("base_model.output_conv.weight"))


def test_wrong_shape_and_bad_sources_are_rejected(tmp_path):
    def reshape(state):
        state["gs_generator_g.opacity_layers.0.bias"] = torch.zeros(7)
    with pytest.raises(ValueError, match=r"gs_generator_g\.opacity_layers\.0\.bias"):
        _load_tiny_with(reshape)
    with pytest.raises(ValueError, match="not found"):
        load_gagavatar(str(tmp_path / "absent.pt"))
    with pytest.raises(ValueError, match="state dict"):
        load_gagavatar({"model": {"head_base": "not a tensor"}})


def test_training_only_keys_are_ignored(tiny_model):
    checkpoint = tiny_checkpoint()
    assert sum(k.startswith(TRAINING_ONLY) for k in checkpoint["model"]) == 4  # mask token, toRGB, percep
    model = load_gagavatar(checkpoint["model"])  # bare state dict form
    assert not any(k.startswith(TRAINING_ONLY) for k in model.state_dict())
    assert len(model.state_dict()) == len(checkpoint["model"]) - 4


def test_tiny_model_runs_in_bfloat16(tiny_model):
    """dtype= casts the network; Gaussians still come out float32 and stay close to the fp32 model's."""
    half = load_gagavatar(tiny_checkpoint(), dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    images, transforms = _source_batch(1)
    reference = tiny_model.encode_source(images, transforms)
    avatar = half.encode_source(images, transforms)
    assert avatar.gaussians["colors"].dtype == torch.float32
    assert (avatar.gaussians["opacities"] - reference.gaussians["opacities"]).abs().max() < 0.05
    assert (avatar.gaussians["xyz"] - reference.gaussians["xyz"]).abs().max() < 0.05
    rgb = half.refine(torch.rand(1, 32, 64, 64))
    assert rgb.dtype == torch.bfloat16 and torch.isfinite(rgb).all()
