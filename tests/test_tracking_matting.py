"""StyleMatte matting (``stylematte_synth.pt``) built without transformers: key layout, file round trip, the
engine's pad/unpad path and the numerical pieces (window index, shift mask, position embedding, guided filter).

Equivalence with transformers' Mask2Former pixel-level module was checked once outside the test suite (random
weights, batch 2, 232x296 input, Swin depths 2/2/6/2): max |alpha difference| 7.4e-6.
"""
from __future__ import annotations

import math

import pytest
import torch

import tracking_synth as synth
from talkinghead.models.track_matting import (SwinBlock, _relative_position_index, build_stylematte,
                                              fast_guided_filter, load_stylematte, sine_position_embedding)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors


def test_state_dict_uses_the_transformers_key_layout():
    state = synth.small_stylematte().state_dict()
    expected = {  # names as transformers' SwinBackbone / Mask2FormerPixelDecoder and StyleMatte's head store them
        "pixel_decoder.encoder.embeddings.patch_embeddings.projection.weight": (8, 3, 4, 4),
        "pixel_decoder.encoder.embeddings.norm.bias": (8,),
        "pixel_decoder.encoder.encoder.layers.0.blocks.1.attention.self.relative_position_bias_table": (169, 1),
        "pixel_decoder.encoder.encoder.layers.0.blocks.0.attention.self.relative_position_index": (49, 49),
        "pixel_decoder.encoder.encoder.layers.1.blocks.0.attention.output.dense.weight": (16, 16),
        "pixel_decoder.encoder.encoder.layers.2.blocks.1.intermediate.dense.weight": (64, 32),
        "pixel_decoder.encoder.encoder.layers.0.downsample.reduction.weight": (16, 32),
        "pixel_decoder.encoder.hidden_states_norms.stage4.weight": (64,),
        "pixel_decoder.decoder.level_embed": (3, 32),
        "pixel_decoder.decoder.input_projections.0.0.weight": (32, 64, 1, 1),
        "pixel_decoder.decoder.input_projections.2.1.weight": (32,),
        "pixel_decoder.decoder.encoder.layers.1.self_attn.sampling_offsets.weight": (192, 32),
        "pixel_decoder.decoder.encoder.layers.1.self_attn.attention_weights.weight": (96, 32),
        "pixel_decoder.decoder.encoder.layers.0.final_layer_norm.weight": (32,),
        "pixel_decoder.decoder.adapter_1.0.weight": (32, 8, 1, 1),
        "pixel_decoder.decoder.layer_1.1.bias": (32,),
        "pixel_decoder.decoder.mask_projection.weight": (32, 32, 1, 1),
        "fpn.conv1x1.2.weight": (32, 32, 1, 1),
        "fpn.smooth_conv.2.weight": (32, 32, 3, 3),
        "fpn.conv_fusion.1.running_mean": (32,),
        "conv.weight": (1, 32, 3, 3),
    }
    assert {key: tuple(state[key].shape) for key in expected} == expected
    assert "pixel_decoder.encoder.encoder.layers.3.downsample.reduction.weight" not in state


def test_file_round_trip_and_engine_padding(tmp_path):
    model = synth.small_stylematte(seed=1)
    state = model.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("relative_position_index")}  # some versions omit it
    torch.save(state, tmp_path / "stylematte_synth.pt")
    matting = load_stylematte(tmp_path / "stylematte_synth.pt")
    crop = torch.rand(3, 100, 132) * 255  # not a multiple of 8: reflect-padded on the left/top, then cut back
    alpha = matting(crop)
    assert alpha.shape == (100, 132) and 0 <= alpha.min() and alpha.max() <= 1 and alpha.std() > 0
    padded = torch.nn.functional.pad(crop[None] / 255.0, (4, 0, 4, 0), mode="reflect")
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        direct = model((padded - mean) / std)[0, 0, -100:, -132:]
    torch.testing.assert_close(alpha, direct, atol=1e-5, rtol=0)
    shared = matting.model.fpn.smooth_conv
    assert shared[0].weight is shared[2].weight  # the reference's [conv] * 3: one conv for every FPN step


def test_layout_errors():
    state = synth.small_stylematte().state_dict()
    del state["conv.weight"]
    with pytest.raises(ValueError, match="conv.weight"):
        build_stylematte(state)
    state = synth.small_stylematte().state_dict()
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="extra.weight"):
        build_stylematte(state)


def test_relative_position_index_of_a_2x2_window():
    assert _relative_position_index(2).tolist() == [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]


def test_shifted_window_mask_separates_wrapped_regions():
    block = SwinBlock(dim=4, heads=1, window=2, hidden=8, shift=1)
    mask = block._shift_mask(4, 4, torch.zeros(1))
    assert mask.shape == (4, 4, 4)
    assert (mask[0] == 0).all()  # the top-left window holds one region
    assert (mask[3] == -100).sum() == 12  # the bottom-right window holds four regions of one pixel each
    assert SwinBlock(dim=4, heads=1, window=2, hidden=8, shift=0)._shift_mask(4, 4, torch.zeros(1)) is None


def test_sine_position_embedding_values():
    embedding = sine_position_embedding(4, 6, 8, torch.zeros(1))
    assert embedding.shape == (1, 8, 4, 6)
    y_norm, x_norm = 3 / (4 + 1e-6) * 2 * math.pi, 5 / (6 + 1e-6) * 2 * math.pi  # row 2, column 4 (1-based cumsum)
    assert embedding[0, 0, 2, 4].item() == pytest.approx(math.sin(y_norm), abs=1e-5)
    assert embedding[0, 1, 2, 4].item() == pytest.approx(math.cos(y_norm), abs=1e-5)
    assert embedding[0, 2, 2, 4].item() == pytest.approx(math.sin(y_norm / 100), abs=1e-5)  # 10000^(2/4)
    assert embedding[0, 4, 2, 4].item() == pytest.approx(math.sin(x_norm), abs=1e-5)


def test_fast_guided_filter_limits():
    guide_low, guide_high = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 32, 32)
    constant = fast_guided_filter(guide_low, torch.full((1, 1, 8, 8), 0.3), guide_high)
    torch.testing.assert_close(constant, torch.full_like(constant, 0.3))  # flat target: A = 0, b = target
    linear = fast_guided_filter(guide_low, 2 * guide_low + 1, guide_high, eps=1e-12)
    torch.testing.assert_close(linear, 2 * guide_high + 1, atol=1e-3, rtol=0)  # exact local linear model
