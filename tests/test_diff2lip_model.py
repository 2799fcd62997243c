"""Diff2Lip UNet: reference forward pass of the tiny checkpoint, architecture inference, strict loading errors."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from talkinghead.models.diff2lip import RELEASE_CONFIG, load_diff2lip

FORWARD_ATOL = 1e-4  # fixture README: suggested tolerance for an fp32 re-implementation


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_state(diff2lip_fixtures):
    return torch.load(diff2lip_fixtures / "tiny_unet.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def forward_case(diff2lip_fixtures):
    data = np.load(diff2lip_fixtures / "tiny_forward.npz")
    return {key: torch.from_numpy(data[key]) for key in data.files}


def _forward(model, case, tag, **audio):
    audio = audio or {"indiv_mels": case["indiv_mels"]}
    with torch.no_grad():
        return model(case["x_t"], case[f"timesteps_{tag}"], cond_img=case["cond_img"], mask=case["mask"],
                     ref_img=case["ref_img"], **audio)


@pytest.mark.parametrize("attention", ["sdpa", "legacy"])
@pytest.mark.parametrize("tag", ["t10", "t960"])
def test_tiny_forward_matches_reference(tiny, forward_case, tag, attention):
    tiny.set_attention(attention)
    try:
        out = _forward(tiny, forward_case, tag)
    finally:
        tiny.set_attention("sdpa")
    assert out.shape == (2, 6, 32, 32)
    torch.testing.assert_close(out, forward_case[f"out_{tag}"], atol=FORWARD_ATOL, rtol=0)


@pytest.mark.parametrize("tag", ["t10", "t960"])
def test_tiny_intermediates_match_reference(tiny, forward_case, tag):
    case = forward_case
    with torch.no_grad():
        net_in = tiny.network_input(case["x_t"], case["cond_img"], case["mask"], case["ref_img"])
        time_emb = tiny.time_embedding(case[f"timesteps_{tag}"])
        audio_feat = tiny.audio_features(case["indiv_mels"])
        audio_style = tiny.encode_audio(case["indiv_mels"])
    torch.testing.assert_close(net_in, case[f"net_in_{tag}"], atol=0, rtol=0)
    torch.testing.assert_close(time_emb, case[f"time_emb_{tag}"], atol=1e-5, rtol=0)
    torch.testing.assert_close(audio_feat, case[f"audio_feat_{tag}"], atol=FORWARD_ATOL, rtol=0)
    torch.testing.assert_close(audio_style, case[f"audio_style_{tag}"], atol=FORWARD_ATOL, rtol=0)


def test_cached_audio_conditioning_equals_naive_path(tiny, forward_case):
    naive = _forward(tiny, forward_case, "t960", mels=forward_case["indiv_mels"])
    with torch.no_grad():
        style = tiny.encode_audio(forward_case["indiv_mels"])
    cached = _forward(tiny, forward_case, "t960", audio_style=style)
    assert torch.equal(naive, cached)


def test_audio_changes_the_prediction(tiny, forward_case):
    """Audio enters only through the embedding, but it must reach the output."""
    silent = torch.full_like(forward_case["indiv_mels"], -4.0)
    delta = (_forward(tiny, forward_case, "t10") - _forward(tiny, forward_case, "t10", mels=silent)).abs().max()
    assert delta > 1e-3


def test_half_precision_convs_stay_close_to_fp32(diff2lip_fixtures, forward_case):
    """The CUDA mixed-precision layout (fp16 convs, fp32 norms/linears/head), run on CPU: the reference's fp16 path
    differs from fp32 by 6.8e-3 on this forward."""
    model = load_diff2lip(diff2lip_fixtures / "tiny_unet.pt", num_head_channels=32).convert_convs(torch.float16)
    assert model.compute_dtype == torch.float16 and model.out[2].weight.dtype == torch.float32
    assert model.time_embed[0].weight.dtype == torch.float32
    out = _forward(model, forward_case, "t10")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, forward_case["out_t10"], atol=1e-2, rtol=0)


def test_half_precision_request_on_cpu_falls_back_to_fp32(diff2lip_fixtures):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_diff2lip(diff2lip_fixtures / "tiny_unet.pt", num_head_channels=32, dtype=torch.float16)
    assert model.compute_dtype == torch.float32
    assert any("CUDA only" in str(w.message) for w in caught)


def test_tiny_architecture_is_inferred(tiny):
    config = tiny.config
    assert (config.model_channels, config.level_channels, config.num_res_blocks) == (32, (32, 64), 1)
    assert config.channel_mult == (1, 2)
    assert config.attention_levels == (1,) and config.attention_resolutions == (16,)
    assert config.time_embed_dim == 128 and tiny.image_size == 32
    assert tiny.middle_block[1].num_heads == 2


def test_release_manifest_loads_strictly_with_inferred_architecture(diff2lip_fixtures):
    manifest = json.loads((diff2lip_fixtures / "unet_full_keys.json").read_text())
    state = {key: torch.empty(shape) for key, shape, _ in manifest["keys"]}
    model = load_diff2lip(state)
    config = model.config
    assert config == RELEASE_CONFIG
    assert config.model_channels == 128 and config.time_embed_dim == 512
    assert config.level_channels == (128, 128, 256, 384, 512) and config.channel_mult == (1, 1, 2, 3, 4)
    assert config.num_res_blocks == 2 and config.attention_resolutions == (32, 16, 8)
    assert model.image_size == 128 and (config.in_channels, config.out_channels) == (3, 6)
    assert [block.num_heads for block in (model.input_blocks[7][1], model.input_blocks[10][1],
                                          model.middle_block[1])] == [4, 6, 8]
    assert list(model.state_dict()) == [key for key, _, _ in manifest["keys"]]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_elements"] == 101_670_630
    # down-ResBlocks at input blocks 3, 6, 9, 12 and up-ResBlocks ending output blocks 2, 5, 8, 11
    downs = [i for i, block in enumerate(model.input_blocks) if getattr(block[0], "resample", None) == (2, 2)]
    ups = [i for i, block in enumerate(model.output_blocks) if getattr(block[-1], "resample", None) == "up"]
    assert downs == [3, 6, 9, 12] and ups == [2, 5, 8, 11]


def test_wrapped_and_prefixed_state_dict_loads(tiny_state, tiny, forward_case):
    wrapped = {"state_dict": {f"module.{key}": value for key, value in tiny_state.items()}}
    model = load_diff2lip(wrapped, num_head_channels=32)
    assert torch.equal(_forward(model, forward_case, "t10"), _forward(tiny, forward_case, "t10"))


def test_missing_key_is_named(tiny_state):
    state = dict(tiny_state)
    del state["output_blocks.1.1.qkv.bias"]
    with pytest.raises(ValueError, match=r"missing keys \(1\): output_blocks\.1\.1\.qkv\.bias"):
        load_diff2lip(state, num_head_channels=32)


def test_unexpected_key_is_named(tiny_state):
    state = {**tiny_state, "label_emb.weight": torch.zeros(4, 128)}
    with pytest.raises(ValueError, match=r"unexpected keys \(1\): label_emb\.weight"):
        load_diff2lip(state, num_head_channels=32)


def test_scale_shift_norm_checkpoint_is_rejected(tiny_state):
    """guided-diffusion's default (scale-shift norm) doubles emb_layers; the release has it off (C_out wide)."""
    state = dict(tiny_state)
    state["input_blocks.1.0.emb_layers.1.weight"] = torch.zeros(64, 128)
    with pytest.raises(ValueError, match=r"wrong shapes \(1\): input_blocks\.1\.0\.emb_layers\.1\.weight"):
        load_diff2lip(state, num_head_channels=32)


def test_foreign_state_dict_is_rejected():
    with pytest.raises(ValueError, match="not a Diff2Lip UNet"):
        load_diff2lip({"conv.weight": torch.zeros(3, 3)})


def test_head_width_must_divide_attention_width(tiny_state):
    with pytest.raises(ValueError, match="num_head_channels=48"):
        load_diff2lip(tiny_state, num_head_channels=48)


def test_mels_in_the_wrong_layout_are_rejected(tiny, forward_case):
    with pytest.raises(ValueError, match=r"\[N, 80, 16\]"):
        _forward(tiny, forward_case, "t10", mels=forward_case["indiv_mels"].transpose(1, 2))
