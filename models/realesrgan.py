"""Real-ESRGAN super-resolution networks (``RealESRGAN_x2plus.pth`` / ``RealESRGAN_x4plus.pth``) for the generated
mouth crop, returned as spandrel ``ImageModelDescriptor`` s — the same object ComfyUI core's ``UPSCALE_MODEL`` is.

Backends:
- ``spandrel`` (default): spandrel reads the official files and runs its own RRDBNet; its outputs are identical to
  basicsr's for the same weights (both run the same RRDBNet).  No extra package.
- ``basicsr`` (optional): the original ``basicsr.archs.rrdbnet_arch.RRDBNet`` with the same weights, for users who
  have basicsr / realesrgan installed.  basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, which
  torchvision 0.17 removed; :func:`install_torchvision_alias` (owned by this pack) registers the public
  ``torchvision.transforms.functional`` under that name — basicsr only uses its ``rgb_to_grayscale`` — and is
  installed only when this backend is asked for.
"""
from __future__ import annotations

import re
import sys

from .state_dict_file import read_checkpoint

BACKENDS = ("spandrel", "basicsr")
_LEGACY_MODULE = "torchvision.transforms.functional_tensor"


def install_torchvision_alias() -> None:
    """Let basicsr 1.4.2 / realesrgan 0.3.0 import under torchvision >= 0.17 (a no-op where the module exists)."""
    if _LEGACY_MODULE in sys.modules:
        return
    try:
        __import__(_LEGACY_MODULE)
    except ImportError:
        import torchvision.transforms.functional as public

        sys.modules[_LEGACY_MODULE] = public


def _realesrgan_state(path: str) -> dict:
    return read_checkpoint(path, "Real-ESRGAN")


def _basicsr_rrdbnet(state: dict):
    """basicsr's RRDBNet sized from a Real-ESRGAN state dict (new-arch keys: ``conv_first``, ``body.N.rdbK``)."""
    install_torchvision_alias()
    try:
        from basicsr.archs.rrdbnet_arch import RRDBNet
    except ImportError as error:
        raise ImportError("backend 'basicsr' needs basicsr 1.4.2 (optional): pip install --no-build-isolation "
                          "--no-deps basicsr==1.4.2; or use the default backend 'spandrel'") from error
    if "conv_first.weight" not in state:
        raise ValueError("backend 'basicsr' reads Real-ESRGAN RRDBNet files (keys conv_first/body/conv_up*); this "
                         "file has another layout: use backend 'spandrel'")
    in_channels, features = state["conv_first.weight"].shape[1], state["conv_first.weight"].shape[0]
    scale = {3: 4, 12: 2, 48: 1}.get(in_channels)
    if scale is None:
        raise ValueError(f"unexpected RRDBNet input width {in_channels} (3, 12 or 48 for x4, x2, x1)")
    blocks = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k)))
    grow = state["body.0.rdb1.conv1.weight"].shape[0]
    net = RRDBNet(num_in_ch=3, num_out_ch=3, scale=scale, num_feat=features, num_block=blocks, num_grow_ch=grow)
    net.load_state_dict(state, strict=True)
    return net.eval()


def load_realesrgan(path, backend: str = "spandrel", device="cpu"):
    """A spandrel ``ImageModelDescriptor`` for a Real-ESRGAN ``.pth`` (call it on [B,3,H,W] in 0..1)."""
    import spandrel

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    state = _realesrgan_state(str(path))  # read here, not by spandrel: the pack's one checked reader
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise ValueError(f"{path}: spandrel does not recognise this network; choose a Real-ESRGAN / "
                         "super-resolution file") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ValueError(f"{path}: not an image super-resolution model")
    if backend == "basicsr":
        descriptor = spandrel.ImageModelDescriptor(
            model=_basicsr_rrdbnet(state), state_dict=state, architecture=descriptor.architecture,
            purpose=descriptor.purpose, tags=[*descriptor.tags, "basicsr"], supports_half=descriptor.supports_half,
            supports_bfloat16=descriptor.supports_bfloat16, scale=descriptor.scale,
            input_channels=descriptor.input_channels, output_channels=descriptor.output_channels,
            size_requirements=descriptor.size_requirements)
    return descriptor.to(device).eval()
