"""Super-resolution of the generated crop: tiling is exact for a local operator, dtype/range preserved, and a
Real-ESRGAN-layout file loads through spandrel (the same loader ComfyUI core's UPSCALE_MODEL uses)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from talkinghead.pipelines.diff2lip.crops import paste_face
from talkinghead.pipelines.diff2lip_enhance.superres import CropUpscaler, upscale_tiled


class NearestX2(torch.nn.Module):
    scale = 2

    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="nearest")


def test_tiled_upscale_equals_whole_image_for_a_local_operator():
    image = torch.rand(1, 3, 300, 170, generator=torch.Generator().manual_seed(0))
    whole = NearestX2()(image)
    tiled = upscale_tiled(NearestX2(), image, tile=64, overlap=8)
    assert tiled.shape == (1, 3, 600, 340)
    assert torch.allclose(tiled, whole, atol=1e-6)


def test_crop_upscaler_keeps_dtype_and_range_and_pastes_into_a_large_box():
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 256, size=(128, 128, 3), dtype=np.uint8)
    up = CropUpscaler(NearestX2(), tile=64, overlap=8)
    big = up(crop)
    assert big.shape == (256, 256, 3) and big.dtype == np.uint8
    assert np.array_equal(big[::2, ::2], crop)  # nearest x2 of a uint8 image round-trips exactly
    assert up.ms_per_crop() > 0
    frame = np.zeros((400, 400, 3), np.uint8)
    y1, y2, x1, x2 = paste_face(frame, crop, (50, 350, 60, 360), upscale=up, lower_half=True)
    assert (y1, y2, x1, x2) == (200, 350, 60, 360) and frame[:200].max() == 0 and frame[200:350, 60:360].any()


def test_realesrgan_layout_file_loads_with_spandrel_and_upscales(tmp_path):
    spandrel = pytest.importorskip("spandrel")
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2)
    path = tmp_path / "tiny_x2.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    assert descriptor.scale == 2
    crop = np.random.default_rng(2).random((32, 32, 3)).astype(np.float32)
    out = CropUpscaler(descriptor, tile=16, overlap=4)(crop)
    assert out.shape == (64, 64, 3) and out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
