"""GAGAvatar animation: encode a source once, then per driver frame FLAME -> Gaussians -> 32-channel splat -> refiner.

Per frame: ``t_points = FLAME(source shape, driver expression, driver posecode, driver eyecode)``
× 5 (the FLAME layer's scale) replaces the xyz of the 5,023 expression Gaussians; the whole set is splatted
with the DRIVER camera (``transform_matrix``, focal 12, zero 32-channel background, the refiner's size = 512²) and
the StyleUNet turns the splat into RGB, clamped to [0,1].

FLAME pose convention: tracked ``posecode = [0,0,0, jaw]`` — the global rotation is always 0 and the head
pose lives in the camera, so the lifted Gaussians stay where the SOURCE camera put them and the driver camera alone
moves the view.  The posecode is passed to FLAME unchanged, like the reference.

Unlike the reference, the source encoding is cached by CONTENT (image bytes + transform + model), so a
new source image never reuses a stale encoding and the same one is never encoded twice.

``splat_frames`` + ``refine_splats`` split ``animate`` in two (ComfyUI: an "animate" node emitting the splats as a
LATENT and a "refine" node turning them into IMAGE).  Half precision (``autocast_dtype``, bf16/fp16) runs the
networks under autocast on any device (weights stay fp32); None = exact fp32.
"""
from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...models.camera_geometry import FOCAL_LENGTH, camera_matrices, camera_tanfov
from ...models.speed import autocast, split_on_oom
from .driver import TrackedDriver, as_driver

Progress = Callable[[int, int], None] | None

_SOURCE_CACHE: "weakref.WeakKeyDictionary[torch.nn.Module, OrderedDict]" = weakref.WeakKeyDictionary()


def _model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    if parameter.device.type != "cuda" and parameter.dtype != torch.float32:
        raise ValueError(f"the GAGAvatar model is {parameter.dtype} on {parameter.device}: half precision is CUDA-only; "
                         "load it with dtype=torch.float32 on CPU")
    return parameter.device, parameter.dtype


def prepare_source_image(image, size: int = 518) -> torch.Tensor:
    """Source crop -> [1,3,size,size] float32 in 0..1 on the CPU.

    ``image``: numpy or torch, [H,W,3] / [1,H,W,3] (IMAGE layout) or [3,H,W] / [1,3,H,W]; float in 0..1 or uint8.
    Non-``size`` crops (the tracker's 512) are resized with antialiased bilinear, as the reference does.
    """
    tensor = torch.as_tensor(np.asarray(image)) if not isinstance(image, torch.Tensor) else image.detach().cpu()
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 3 or 3 not in (tensor.shape[0], tensor.shape[-1]):
        raise ValueError(f"source image must be one RGB crop [H,W,3] or [3,H,W] (batch of 1 allowed), got "
                         f"{tuple(tensor.shape)}")
    if tensor.shape[-1] == 3 and tensor.shape[0] != 3:
        tensor = tensor.permute(2, 0, 1)
    tensor = tensor.float() / 255.0 if tensor.dtype == torch.uint8 else tensor.float()
    tensor = tensor[None].contiguous()
    if tuple(tensor.shape[-2:]) != (size, size):
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return tensor


def _source_key(image: torch.Tensor, transform: torch.Tensor, device, dtype) -> tuple:
    digest = hashlib.sha256()
    for tensor in (image, transform):
        array = np.ascontiguousarray(tensor.numpy())
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest(), str(device), str(dtype)


def encode_source_cached(model, image, transform, cache_size: int = 2):
    """``model.encode_source`` for one source crop, cached by content (image + transform + model identity).

    ``image``: the 512 (or 518) crop, see :func:`prepare_source_image`; ``transform``: its [3,4] (or [1,3,4]) camera.
    Keeps the ``cache_size`` most recently used encodings per model (about 90 MB each at the released size).
    """
    device, dtype = _model_device_dtype(model)
    pixels = prepare_source_image(image, model.image_size)
    camera = torch.as_tensor(np.asarray(transform, dtype=np.float32)) if not isinstance(transform, torch.Tensor) \
        else transform.detach().float().cpu()
    camera = camera.reshape(1, 3, 4) if camera.numel() == 12 else camera
    if tuple(camera.shape) != (1, 3, 4):
        raise ValueError(f"source transform must be one [3,4] PyTorch3D camera, got {tuple(camera.shape)}")
    key = _source_key(pixels, camera, device, dtype)
    entries = _SOURCE_CACHE.setdefault(model, OrderedDict())
    if key in entries:
        entries.move_to_end(key)
        return entries[key]
    with torch.no_grad():
        avatar = model.encode_source(pixels.to(device), camera.to(device))
    entries[key] = avatar
    while len(entries) > max(cache_size, 1):
        entries.popitem(last=False)
    return avatar


def clear_source_cache(model=None) -> None:
    """Forget cached source encodings (of one model, or of all)."""
    if model is None:
        _SOURCE_CACHE.clear()
    else:
        _SOURCE_CACHE.pop(model, None)


def _autocast(device: torch.device, autocast_dtype):
    return autocast(device, autocast_dtype)


def driver_points(flame, source_shape, driver: TrackedDriver, start: int, stop: int) -> torch.Tensor:
    """FLAME vertices × scale [stop-start, V, 3] for driver frames start..stop-1 with the SOURCE identity."""
    shape = torch.as_tensor(source_shape, dtype=torch.float32).reshape(1, -1)
    with torch.no_grad():
        return flame(shape, driver.expcode[start:stop], driver.posecode[start:stop], driver.eyecode[start:stop])


def render_splat(model, avatar, t_points: torch.Tensor, transform, autocast_dtype: torch.dtype | None = None,
                 backend: str = "auto"):
    """One frame's splat with the driver camera ``transform`` [3,4]: (image [C,S,S], alpha [S,S], radii [N]).

    ``t_points`` [V,3]: FLAME vertices × 5 of the frame.  Gaussians are rasterised in float32 with a zero background.
    ``backend``: the rasteriser's ("auto" = gsplat on CUDA when importable, else the pure-PyTorch kernel).
    """
    from ...models.gaussian_rasterizer import rasterize  # lazy: models/gagavatar.py imports this package

    device, _ = _model_device_dtype(model)
    with torch.no_grad(), _autocast(device, autocast_dtype):
        gaussians = model.gaussians(avatar, t_points[None].to(device))
    gaussians = {name: value[0].float() for name, value in gaussians.items()}
    view, projection = camera_matrices(torch.as_tensor(transform, dtype=torch.float32, device=device), FOCAL_LENGTH)
    tanfovx, tanfovy = camera_tanfov(FOCAL_LENGTH)
    size, channels = model.refine_size, gaussians["colors"].shape[-1]
    return rasterize(gaussians["xyz"], gaussians["scales"], gaussians["rotations"], gaussians["opacities"],
                     gaussians["colors"], view, projection, tanfovx, tanfovy, size, size,
                     torch.zeros(channels, device=device), backend=backend)


def splat_batch(model, flame, avatar, source_shape, driver, start, stop, autocast_dtype,
                 on_frame: Callable[[int], None] | None = None,
                 backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Splats [B,C,S,S] and alphas [B,S,S] of driver frames start..stop-1."""
    points = driver_points(flame, source_shape, driver, start, stop)
    splats, alphas = [], []
    for i in range(stop - start):
        image, alpha, _ = render_splat(model, avatar, points[i], driver.transform_matrix[start + i], autocast_dtype,
                                       backend)
        splats.append(image)
        alphas.append(alpha)
        if on_frame is not None:
            on_frame(start + i + 1)
    return torch.stack(splats), torch.stack(alphas)


def refine_batch(model, splats: torch.Tensor, randomize_noise: bool, autocast_dtype) -> np.ndarray:
    """Refiner over one batch of splats [B,C,S,S] -> frames float32 [B,S,S,3] in 0..1.  A CUDA out-of-memory error
    splits the batch and retries (:func:`models.speed.split_on_oom`), for every caller: whole clip, split nodes and
    the stream."""
    device, _ = _model_device_dtype(model)

    def run(start: int, stop: int) -> np.ndarray:
        with torch.no_grad(), _autocast(device, autocast_dtype):
            rgb = model.refine(splats[start:stop].to(device), randomize_noise=randomize_noise)
        return rgb.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    return split_on_oom(run, 0, splats.shape[0], np.concatenate, "GAGAvatar refiner")


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


def splat_frames(model, flame, avatar, source_shape, driver, batch_size: int = 1, progress: Progress = None,
                 autocast_dtype: torch.dtype | None = None, backend: str = "auto", return_alpha: bool = False):
    """The 32-channel splats of every driver frame: float32 CPU tensor [T,32,S,S] (S = 512 released); with
    ``return_alpha`` also the splat's coverage [T,S,S] in 0..1 (the avatar's matte: 0 on the background)."""
    driver, batch_size = as_driver(driver), _check_batch_size(batch_size)
    total = len(driver)
    if total == 0:
        raise ValueError("the driver has no frames")
    report = None if progress is None else (lambda done: progress(done, total))
    batches = [splat_batch(model, flame, avatar, source_shape, driver, start, min(start + batch_size, total),
                            autocast_dtype, report, backend) for start in range(0, total, batch_size)]
    splats = torch.cat([s.cpu() for s, _ in batches])
    return (splats, torch.cat([a.cpu() for _, a in batches])) if return_alpha else splats


def refine_splats(model, splats, batch_size: int = 1, progress: Progress = None, randomize_noise: bool = False,
                  autocast_dtype: torch.dtype | None = None) -> np.ndarray:
    """Refiner over splats [T,32,S,S] -> frames float32 [T,S,S,3] in 0..1 (clamped, like the reference output).

    ``randomize_noise=False`` (default) uses the checkpoint's noise buffers: deterministic, no temporal shimmer;
    True draws fresh noise per frame like the reference.
    """
    batch_size = _check_batch_size(batch_size)
    splats = torch.as_tensor(splats)
    if splats.ndim != 4:
        raise ValueError(f"splats must be [T,C,H,W], got {tuple(splats.shape)}")
    total, frames = splats.shape[0], []
    for start in range(0, total, batch_size):
        frames.append(refine_batch(model, splats[start:start + batch_size], randomize_noise, autocast_dtype))
        if progress is not None:
            for done in range(start + 1, start + frames[-1].shape[0] + 1):
                progress(done, total)
    return np.concatenate(frames) if frames else np.zeros((0, *splats.shape[2:], 3), np.float32)


def preview_from_splats(splats) -> np.ndarray:
    """Cheap refiner-free preview: the splat's first 3 channels (the coarse RGB trained with L1), clamped to 0..1."""
    splats = torch.as_tensor(splats)
    return splats[:, :3].float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


def animate(model, flame, avatar, source_shape, driver, batch_size: int = 1, progress: Progress = None,
            return_splats: bool = False, randomize_noise: bool = False, autocast_dtype: torch.dtype | None = None,
            backend: str = "auto"):
    """Animate an encoded source with a tracked driver: frames float32 [T,S,S,3] in 0..1 (S = 512 released).

    ``model``: loaded GAGAvatar; ``flame``: :func:`models.flame.load_flame` layer (scale 5); ``avatar``: from
    :func:`encode_source_cached`; ``source_shape``: the source's FLAME shapecode [300]; ``driver``:
    :class:`TrackedDriver` or dict of arrays.  ``batch_size`` frames share one FLAME and one refiner call.
    ``progress(done, total)`` is called for every finished frame (exceptions propagate, e.g. to cancel).
    With ``return_splats`` also returns the 32-channel splats [T,32,S,S] (float32 CPU tensor).
    """
    driver, batch_size = as_driver(driver), _check_batch_size(batch_size)
    total = len(driver)
    if total == 0:
        raise ValueError("the driver has no frames")
    frames, kept_splats = [], []
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        splats, _ = splat_batch(model, flame, avatar, source_shape, driver, start, stop, autocast_dtype,
                                 backend=backend)
        frames.append(refine_batch(model, splats, randomize_noise, autocast_dtype))
        if return_splats:
            kept_splats.append(splats.cpu())
        if progress is not None:
            for done in range(start + 1, stop + 1):
                progress(done, total)
    frames = np.concatenate(frames)
    return (frames, torch.cat(kept_splats)) if return_splats else frames
