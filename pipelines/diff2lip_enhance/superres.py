"""Super-resolution of the generated face crop before it is resized into a larger face box.

The Diff2Lip UNet works at 128x128; a 400 px face box gets a 3x bilinear blow-up of that crop in the reference.
Here a super-resolution network (Real-ESRGAN x2/x4 ``.pth`` files loaded by spandrel — ComfyUI core's
``UPSCALE_MODEL`` — or any module with the same call convention) enlarges the crop first.  Large crops are processed
in overlapping tiles so memory stays bounded.
"""
from __future__ import annotations

import time
import numpy as np
import torch

from ..frames import to_float, to_uint8_half_up


def _module_scale(model) -> int:
    scale = getattr(model, "scale", None)
    if not isinstance(scale, int) or scale < 1:
        raise ValueError("upscale_model: expected a super-resolution model with an integer .scale (a spandrel "
                         "ImageModelDescriptor, e.g. ComfyUI's UPSCALE_MODEL from a RealESRGAN_x2plus/x4plus .pth)")
    return scale


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def upscale_tiled(model, image: torch.Tensor, tile: int = 256, overlap: int = 16) -> torch.Tensor:
    """Apply ``model`` ([B,3,h,w] 0..1 -> [B,3,h·s,w·s]) tile by tile with linear blending of the overlaps."""
    scale = _module_scale(model)
    _, channels, height, width = image.shape
    if height <= tile and width <= tile:
        return model(image).clamp(0, 1)
    out = torch.zeros(image.shape[0], channels, height * scale, width * scale, dtype=image.dtype, device=image.device)
    weight = torch.zeros(1, 1, height * scale, width * scale, dtype=image.dtype, device=image.device)
    ramp_len = max(1, overlap * scale)
    for y in _tile_starts(height, tile, overlap):
        for x in _tile_starts(width, tile, overlap):
            piece = model(image[:, :, y:y + tile, x:x + tile]).clamp(0, 1)
            th, tw = piece.shape[-2:]
            ramp_y = torch.clamp(torch.minimum(torch.arange(th) + 1, th - torch.arange(th)) / ramp_len, max=1.0)
            ramp_x = torch.clamp(torch.minimum(torch.arange(tw) + 1, tw - torch.arange(tw)) / ramp_len, max=1.0)
            w = (ramp_y[:, None] * ramp_x[None, :]).to(image)[None, None]
            out[:, :, y * scale:y * scale + th, x * scale:x * scale + tw] += piece * w
            weight[:, :, y * scale:y * scale + th, x * scale:x * scale + tw] += w
    return out / weight


class CropUpscaler:
    """``paste_face``'s ``upscale`` hook: [S,S,3] crop (uint8 or float 0..1) -> [S·s,S·s,3] of the same dtype.

    Keeps per-call timings so the node can report milliseconds per frame.
    """

    def __init__(self, model, device: torch.device | str = "cpu", tile: int = 256, overlap: int = 16):
        self.model, self.device, self.tile, self.overlap = model, torch.device(device), tile, overlap
        self.scale = _module_scale(model)
        self.seconds: list[float] = []

    @torch.no_grad()
    def __call__(self, crop: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        tensor = torch.from_numpy(to_float(crop)).permute(2, 0, 1)[None].to(self.device)
        result = upscale_tiled(self.model, tensor, self.tile, self.overlap)[0].permute(1, 2, 0).float().cpu().numpy()
        self.seconds.append(time.perf_counter() - started)
        return to_uint8_half_up(result) if crop.dtype == np.uint8 else result.astype(crop.dtype)

    def ms_per_crop(self) -> float:
        return 1000.0 * float(np.mean(self.seconds)) if self.seconds else 0.0

