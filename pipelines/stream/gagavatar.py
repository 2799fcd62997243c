"""GAGAvatar as a stream: driver frames in, rendered frames out, one batch of 32-channel splats at a time.

The driver (FLAME codes and cameras, a few hundred bytes a frame) stays whole, so driver-side enhancements (smoothing,
region expression, gaze) run on the whole track before rendering, exactly as in the IMAGE path.  The source renders
``batch_size`` frames (splat, then refine) per step, so the splats of the whole clip never exist; each rendered frame
carries the splat's alpha as its ``alpha`` mask.  Frame-side enhancements are per-frame stages.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..media import exact_rate
from .core import FrameItem, PerFrameRun, Source, Stage, StreamInfo, not_signed


@dataclass(frozen=True, eq=False)
class AvatarRenderSource(Source):
    """Frames of an encoded avatar driven by a tracked driver (see :func:`pipelines.gagavatar.animate`); batches start
    at multiples of ``batch_size`` from frame 0, as in the whole-clip functions, so the pixels are the same."""
    model: object = not_signed()
    flame: object = not_signed()
    avatar: object = not_signed()
    source_shape: object = not_signed()
    driver: object = not_signed()
    identity: str = ""  # model file, source and driver, for the signature
    batch_size: int = 1
    randomize_noise: bool = False
    autocast_dtype: object = None
    backend: str = "auto"

    def info(self) -> StreamInfo:
        fps = exact_rate(self.driver.fps or 25.0)
        size = self.model.refine_size
        return StreamInfo(fps, size, size, len(self.driver), None)

    def frames(self, start: int = 0) -> Iterator[np.ndarray]:
        for item in self.items(start):
            yield item.image

    def items(self, start: int = 0) -> Iterator[FrameItem]:
        from ..gagavatar.animation import refine_batch, splat_batch
        from ..gagavatar.driver import as_driver

        driver, total = as_driver(self.driver), len(self.driver)
        if total == 0:
            raise ValueError("the driver has no frames")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for first in range(start - start % self.batch_size, total, self.batch_size):
            stop = min(first + self.batch_size, total)
            splats, alphas = splat_batch(self.model, self.flame, self.avatar, self.source_shape, driver, first, stop,
                                          self.autocast_dtype, backend=self.backend)
            rgb = refine_batch(self.model, splats, self.randomize_noise, self.autocast_dtype)
            alphas = alphas.clamp(0, 1).float().cpu().numpy()
            del splats  # the only splats alive are this batch's
            for k in range(stop - first):
                if first + k >= start:
                    item = FrameItem(first + k, rgb[k], rgb[k])
                    item.set_mask("alpha", alphas[k])
                    yield item

    def signature(self) -> dict:
        return {"avatar_render": self.identity, "batch_size": self.batch_size, "noise": self.randomize_noise,
                "autocast": repr(self.autocast_dtype), "backend": self.backend}


@dataclass(frozen=True)
class DetailEnhanceStage(Stage):
    """Detail Enhance (GAGAvatar) inside the rendered alpha (``use_alpha``) or on the whole frame."""
    strength: float = 0.3
    use_alpha: bool = True

    def start(self, info):
        from ..gagavatar_enhance import DetailConfig, EnhanceConfig, enhance_frames

        config = EnhanceConfig(detail=DetailConfig(strength=self.strength))

        def apply(items):
            item = items[0]
            mask = item.masks.get("alpha") if self.use_alpha else None
            item.image = enhance_frames(item.image[None], config, None if mask is None else mask[None])[0]
        return PerFrameRun(apply)


@dataclass(frozen=True, eq=False)
class EyeEnhanceStage(Stage):
    """Eye Enhance (GAGAvatar): the eye positions of the whole driver are projected once (small), frames are
    sharpened one by one."""
    driver: object = not_signed()
    flame: object = not_signed()
    shapecode: object = not_signed(default=None)
    identity: str = ""
    strength: float = 0.5

    def start(self, info):
        from dataclasses import replace

        from ..gagavatar_enhance import EnhanceConfig, EyeEnhanceConfig, driver_eye_centres, enhance_frames
        from ..gagavatar_enhance.gaze import project_points
        from ..gagavatar_enhance.smoothing import require_track

        eyes = EyeEnhanceConfig()
        config = EnhanceConfig(eyes=replace(eyes, detail=replace(eyes.detail, strength=self.strength)))
        driver = self.driver.as_dict()
        centres = driver_eye_centres(driver, self.flame, self.shapecode)
        # As enhance_frames does for a whole clip (FLAME over the whole track at once: the same numbers)
        pixels = project_points(centres, require_track(driver, "transform_matrix", (3, 4)), (info.height, info.width))

        def apply(items):
            item = items[0]
            item.image = enhance_frames(item.image[None], config, eye_pixels=pixels[item.index:item.index + 1])[0]
        return PerFrameRun(apply)
