"""Real-ESRGAN files: spandrel by default; the original basicsr network as an optional backend behind the pack's
torchvision alias, with the same outputs."""
from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from talkinghead.models.realesrgan import install_torchvision_alias, load_realesrgan


def _x2plus_file(tmp_path):
    """A small RealESRGAN_x2plus-layout file (basicsr RRDBNet keys, {"params_ema": ...}) with random weights."""
    install_torchvision_alias()
    rrdb = pytest.importorskip("basicsr.archs.rrdbnet_arch")
    torch.manual_seed(0)
    net = rrdb.RRDBNet(num_in_ch=3, num_out_ch=3, scale=2, num_feat=16, num_block=2, num_grow_ch=32)  # grow 32 as released
    path = tmp_path / "RealESRGAN_x2plus.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    return path


def test_torchvision_alias_serves_the_removed_module():
    install_torchvision_alias()
    legacy = importlib.import_module("torchvision.transforms.functional_tensor")
    image = torch.rand(3, 8, 8)
    assert torch.equal(legacy.rgb_to_grayscale(image), importlib.import_module(
        "torchvision.transforms.functional").rgb_to_grayscale(image))
    install_torchvision_alias()  # idempotent
    assert sys.modules["torchvision.transforms.functional_tensor"] is legacy


def test_basicsr_backend_matches_spandrel_on_the_same_file(tmp_path):
    path = _x2plus_file(tmp_path)
    default = load_realesrgan(path)
    original = load_realesrgan(path, backend="basicsr")
    assert default.scale == original.scale == 2 and "basicsr" in original.tags
    x = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = default(x), original(x)
    assert a.shape == (1, 3, 48, 40)
    assert torch.allclose(a, b, atol=1e-5)


def test_unknown_backend_is_refused(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        load_realesrgan(tmp_path / "x.pth", backend="onnx")
