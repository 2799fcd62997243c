"""Speed settings keep the output: contiguous SDPA, channels_last, batch size per device, precision choice, and the
out-of-memory batch splitting (simulated on CPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from talkinghead.models import speed
from talkinghead.pipelines.diff2lip import ddim_sample, generate_faces, seeded_noise

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def faces():
    generator = torch.Generator().manual_seed(3)
    target = torch.rand(3, 3, 32, 32, generator=generator) * 2 - 1
    mels = torch.rand(3, 80, 16, generator=generator) * 8 - 4
    return target, mels


def _sample(model, faces, steps=3):
    target, mels = faces
    return ddim_sample(model, target, target, mels, seeded_noise(7, model.image_size), steps)


def _model_outputs(model, faces):
    target, mels = faces
    outputs = []
    ddim_sample(model, target, target, mels, seeded_noise(7, model.image_size), 3,
                step_hook=lambda s: outputs.append(s["model_out"]))
    return torch.stack(outputs)


def test_sdpa_attention_matches_the_reference_einsum_attention(tiny, faces):
    tiny.set_attention("legacy")
    try:
        legacy = _model_outputs(tiny, faces)
    finally:
        tiny.set_attention("sdpa")
    assert (legacy - _model_outputs(tiny, faces)).abs().max() < 1e-5


def test_channels_last_keeps_the_model_output_within_1e_4(tiny, faces):
    plain = _model_outputs(tiny, faces)
    tiny.set_speed(channels_last=True)
    try:
        assert tiny.input_blocks[1][0].in_layers[2].weight.is_contiguous(memory_format=torch.channels_last)
        fast = _model_outputs(tiny, faces)
    finally:
        tiny.set_speed(channels_last=False)
    assert fast.dtype == torch.float32 and fast.is_contiguous()
    difference = (fast - plain).abs().max().item()
    assert difference < 1e-4
    assert torch.equal(_model_outputs(tiny, faces), plain)  # switching back restores the exact fp32 path


@pytest.mark.skipif(not speed.half_supported(torch.bfloat16, "cpu"), reason="this CPU has no native bf16")
def test_bf16_autocast_changes_the_output_boundedly(tiny, faces):
    plain = _model_outputs(tiny, faces)
    tiny.set_speed(channels_last=True, autocast_dtype=torch.bfloat16)
    try:
        half = _model_outputs(tiny, faces)
        style = tiny.encode_audio(faces[1])
    finally:
        tiny.set_speed(channels_last=False)
    assert half.dtype == torch.float32 and style.dtype == torch.float32
    difference = (half - plain).abs()
    assert 1e-4 < difference.max().item() < 0.5  # really ran in bf16, and still the same prediction
    assert difference.mean().item() < 0.02


def test_precision_choice_per_device():
    assert speed.resolve_precision("auto", "cpu") is None  # exact on CPU
    assert speed.resolve_precision("fp32", "cpu") is None
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16"):
        speed.resolve_precision("int8", "cpu")
    if speed.half_supported(torch.bfloat16, "cpu"):
        assert speed.resolve_precision("bf16", "cpu") == torch.bfloat16
    else:
        with pytest.warns(UserWarning, match="bf16 is not supported natively on cpu"):
            assert speed.resolve_precision("bf16", "cpu") is None
    assert speed.default_batch_size("cpu") == 1
    assert speed.default_batch_size(torch.device("cuda")) == 8


class _OutOfMemoryAbove(torch.nn.Module):
    """A model that raises CUDA's out-of-memory error for batches larger than ``limit`` (what a full GPU does)."""

    def __init__(self, model, limit: int):
        super().__init__()
        self.model, self.limit, self.batches = model, limit, []
        self.image_size = model.image_size

    def encode_audio(self, mels):
        return self.model.encode_audio(mels)

    def forward(self, x, *args, **kwargs):
        self.batches.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model(x, *args, **kwargs)


def test_out_of_memory_batch_is_split_and_retried(tiny, faces):
    target, mels = faces
    crops = ((target.permute(0, 2, 3, 1).numpy() + 1) / 2).astype(np.float32)
    whole = generate_faces(tiny, crops, mels.numpy(), steps=2)
    limited = _OutOfMemoryAbove(tiny, limit=1)
    split = generate_faces(limited, crops, mels.numpy(), steps=2)
    assert 3 in limited.batches and set(limited.batches) == {1, 2, 3}  # 3 -> 1 + 2 -> 1 + 1 + 1
    assert np.abs(split - whole).max() < 1e-5

    with pytest.raises(RuntimeError, match="Diff2Lip sampling: out of GPU memory even for a single frame"):
        generate_faces(_OutOfMemoryAbove(tiny, limit=0), crops[:2], mels[:2].numpy(), steps=2)


def test_a_failing_torch_compile_falls_back_to_eager_with_a_warning(tiny, faces):
    plain = _model_outputs(tiny, faces)

    def broken(*args):
        raise RuntimeError("C++ compiler not found")

    tiny.set_speed(channels_last=False)
    object.__setattr__(tiny, "_compiled_body", broken)  # what a machine without a toolchain does on the first call
    try:
        with pytest.warns(UserWarning, match="torch.compile failed .*C\\+\\+ compiler not found.*running without it"):
            outputs = _model_outputs(tiny, faces)
        assert tiny._compiled_body is None
    finally:
        tiny.set_speed(channels_last=False)
    assert torch.equal(outputs, plain)


class _RefinerOutOfMemoryAbove(torch.nn.Module):
    """A stand-in refiner (frame = sigmoid of the first three splat channels) that runs out of CUDA memory for
    batches larger than ``limit``."""

    def __init__(self, limit: int):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.limit, self.batches = limit, []

    def refine(self, splats, randomize_noise=False):
        self.batches.append(splats.shape[0])
        if splats.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.sigmoid(splats[:, :3] * self.scale)


def test_refiner_out_of_memory_batch_is_split_for_every_caller():
    from talkinghead.pipelines.gagavatar.animation import refine_batch, refine_splats

    splats = torch.randn(3, 32, 8, 8, generator=torch.Generator().manual_seed(0))
    whole = refine_batch(_RefinerOutOfMemoryAbove(limit=3), splats, False, None)
    limited = _RefinerOutOfMemoryAbove(limit=1)
    split = refine_batch(limited, splats, False, None)  # the step the whole-clip animate and the stream take
    assert limited.batches == [3, 1, 2, 1, 1]
    np.testing.assert_array_equal(split, whole)
    assert whole.shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(refine_splats(_RefinerOutOfMemoryAbove(limit=1), splats, batch_size=3), whole)
    with pytest.raises(RuntimeError, match="GAGAvatar refiner: out of GPU memory even for a single frame"):
        refine_batch(_RefinerOutOfMemoryAbove(limit=0), splats[:2], False, None)
