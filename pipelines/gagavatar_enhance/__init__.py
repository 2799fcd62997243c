"""Inference-time GAGAvatar enhancements (no retraining, no learned weights), framework-free.

Driver side (before rendering), in this order:
1. :mod:`.smoothing` - temporal smoothing of expression / jaw / eyes / camera (default: zero-lag RTS smoother);
2. :mod:`.expression` - region-aware expression transfer in FLAME vertex space;
3. :mod:`.gaze` - eyeball rotation towards the camera (slerp with a strength).
Frame side (after rendering):
4. :mod:`.detail` - edge-aware Laplacian-pyramid detail enhancement inside the face mask;
5. :mod:`.gaze` - eye-region sharpening around the projected eye centres.

:data:`PRESETS` name the enhancement switches; ``"enhanced"`` switches everything on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from ...models.flame import FlameLayer
from ..gagavatar.driver import TrackedDriver, as_driver
from .detail import DetailConfig, enhance_details
from .expression import ExpressionTransferConfig, RegionExpressionTransfer
from .gaze import EyeEnhanceConfig, GazeConfig, correct_gaze, enhance_eyes, eye_centres_from_flame, project_points
from .smoothing import SmoothingConfig, require_track, smooth_driver


@dataclass(frozen=True)
class EnhanceConfig:
    """Which enhancements run (None = off) and their settings."""

    smoothing: SmoothingConfig | None = None
    expression: ExpressionTransferConfig | None = None
    gaze: GazeConfig | None = None
    detail: DetailConfig | None = None
    eyes: EyeEnhanceConfig | None = None

    @property
    def needs_flame(self) -> bool:
        """Expression transfer and gaze (correction and eye sharpening) need the FLAME model."""
        return self.expression is not None or self.gaze is not None or self.eyes is not None


PRESETS = {
    "none": EnhanceConfig(),
    "temporal_smooth": EnhanceConfig(smoothing=SmoothingConfig()),
    "detail_enhance": EnhanceConfig(detail=DetailConfig()),
    "expression_opt": EnhanceConfig(expression=ExpressionTransferConfig()),
    "gaze_correct": EnhanceConfig(gaze=GazeConfig(), eyes=EyeEnhanceConfig()),
    "enhanced": EnhanceConfig(smoothing=SmoothingConfig(), expression=ExpressionTransferConfig(), gaze=GazeConfig(),
                              detail=DetailConfig(), eyes=EyeEnhanceConfig()),
}


def get_preset(name: str) -> EnhanceConfig:
    """Preset by name (see :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown enhancement preset {name!r}; choose one of {list(PRESETS)}")
    return PRESETS[name]


def _require_flame(flame: FlameLayer | None, what: str) -> FlameLayer:
    if flame is None:
        raise ValueError(f"{what} needs the FLAME model: pass flame=models.flame.load_flame(<FLAME_with_eye.pt>)")
    return flame


def driver_eye_centres(driver: Mapping[str, np.ndarray], flame: FlameLayer, shapecode=None) -> np.ndarray:
    """World eye centres [T,2,3] for a driver.  ``shapecode``: the identity rendered (GAGAvatar uses the SOURCE
    shape); defaults to the driver's own ``shapecode``, else the mean shape."""
    expcode = require_track(driver, "expcode", (None,))
    if shapecode is None:
        shapecode = driver.get("shapecode", np.zeros(300))
    return eye_centres_from_flame(flame, shapecode, expcode, driver.get("posecode"))


def enhance_driver(driver: TrackedDriver | Mapping[str, np.ndarray], config: EnhanceConfig,
                   flame: FlameLayer | None = None, shapecode=None, regions: Mapping[str, np.ndarray] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> TrackedDriver | dict:
    """Apply the driver-side enhancements (smoothing, expression transfer, gaze) and return a new driver of the kind
    given: a :class:`TrackedDriver` for a TrackedDriver, a dict for a dict of arrays.

    ``regions``: optional vertex regions for the expression transfer ({region: indices} or FLAME_masks.pkl content).
    """
    stages = [s for s in ("smoothing", "expression", "gaze") if getattr(config, s) is not None]
    tracked = isinstance(driver, TrackedDriver)
    result = driver.as_dict() if tracked else dict(driver)
    for done, stage in enumerate(stages):
        if stage == "smoothing":
            result = smooth_driver(result, config.smoothing)
        elif stage == "expression":
            transfer = RegionExpressionTransfer.from_flame(_require_flame(flame, "expression transfer"), regions,
                                                           config.expression)
            result = transfer.apply(result)
        else:
            centres = driver_eye_centres(result, _require_flame(flame, "gaze correction"), shapecode)
            result = correct_gaze(result, centres, config.gaze)
        if progress is not None:
            progress(done + 1, len(stages))
    return as_driver(result) if tracked else result


def enhance_frames(frames: np.ndarray, config: EnhanceConfig, face_mask: np.ndarray | None = None,
                   driver: TrackedDriver | Mapping[str, np.ndarray] | None = None, flame: FlameLayer | None = None,
                   eye_pixels: np.ndarray | None = None, shapecode=None,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Apply the frame-side enhancements to rendered frames [T,H,W,3] (float 0..1) and return new frames.

    ``face_mask``: rendered alpha or face mask ([H,W] or [T,H,W]); None = whole frame.  Eye sharpening uses
    ``eye_pixels`` [T,2,2] if given, else projects the FLAME eye centres of ``driver`` (the driver that was
    rendered: TrackedDriver or dict) with its cameras.
    """
    if isinstance(driver, TrackedDriver):
        driver = driver.as_dict()
    stage_count = (config.detail is not None) + (config.eyes is not None)
    out = np.array(frames, dtype=np.float32, copy=True) if stage_count == 0 else np.asarray(frames)
    if config.detail is not None:
        out = enhance_details(out, face_mask, config.detail, _stage_progress(progress, 0, stage_count))
    if config.eyes is not None:
        if eye_pixels is None:
            if driver is None:
                raise ValueError("eye sharpening needs eye_pixels [T,2,2] or the rendered driver (and flame)")
            centres = driver_eye_centres(driver, _require_flame(flame, "eye sharpening"), shapecode)
            transform = require_track(driver, "transform_matrix", (3, 4))
            eye_pixels = project_points(centres, transform, out.shape[1:3])
        out = enhance_eyes(out, eye_pixels, config.eyes, face_mask, _stage_progress(progress, stage_count - 1,
                                                                                    stage_count))
    return out


def _stage_progress(progress: Callable[[int, int], None] | None, stage: int, stage_count: int):
    """Report a per-frame stage as one continuous progress over all stages."""
    if progress is None:
        return None
    return lambda done, total: progress(stage * total + done, stage_count * total)


def animate_enhanced(model, flame: FlameLayer, avatar, source_shape, driver, config: EnhanceConfig,
                     batch_size: int = 1, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The whole enhanced pipeline in one call, wired like the multi-node enhanced workflow: driver enhancements,
    splats (with the rendered alpha), refiner, detail enhancement inside the alpha, eye sharpening.

    ``model``/``avatar``/``source_shape``: as :func:`pipelines.gagavatar.animate`; ``driver``: ``TrackedDriver`` or
    dict.  Detail enhancement is limited to the avatar's alpha, so background pixels (alpha 0) are exactly the
    refiner's.  Returns frames float32 [T,S,S,3] in 0..1.  ``progress(done, total)`` over splat, refine and enhance.
    """
    from ..gagavatar import refine_splats, splat_frames

    rendered = enhance_driver(as_driver(driver), config, flame=flame, shapecode=source_shape)
    total = len(rendered)
    stages = 2 + (config.detail is not None) + (config.eyes is not None)

    def stage(k):
        return None if progress is None else (lambda done, _total: progress(k * total + done, stages * total))

    splats, alpha = splat_frames(model, flame, avatar, source_shape, rendered, batch_size=batch_size,
                                 progress=stage(0), return_alpha=True)
    frames = refine_splats(model, splats, batch_size=batch_size, progress=stage(1))
    if config.detail is not None:  # inside the rendered alpha only: the background stays the refiner's
        frames = enhance_details(frames, alpha.clamp(0, 1).numpy(), config.detail, stage(2))
    if config.eyes is not None:
        frames = enhance_frames(frames, EnhanceConfig(eyes=config.eyes), driver=rendered, flame=flame,
                                shapecode=source_shape, progress=stage(stages - 1))
    return frames
