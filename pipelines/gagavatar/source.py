"""The avatar's source: one tracked, matted 512² crop with its FLAME shape and camera."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .driver import TrackedDriver


@dataclass
class TrackedSource:
    image: np.ndarray  # uint8 [512,512,3] matted crop (black background, as the tracker writes it)
    shapecode: np.ndarray  # [300] FLAME identity
    transform: np.ndarray  # [3,4] PyTorch3D camera of the crop
    key: str = ""


def source_from_tracked(tracked: TrackedDriver, index: int = 0) -> TrackedSource:
    """Frame ``index`` of a tracked record as a source; the crop must be present (img_lmdb or the record's image)."""
    if not 0 <= index < len(tracked):
        raise ValueError(f"frame_index {index} is outside the tracked data (0..{len(tracked) - 1})")
    images = tracked.images
    if images is None:
        raise ValueError(f"{tracked.source_path}: the tracked data has no images (img_lmdb/ missing); the source "
                         "needs its 512x512 crop")
    return TrackedSource(image=np.asarray(images[index]), shapecode=np.asarray(tracked.shapecode[index], np.float32),
                         transform=np.asarray(tracked.transform_matrix[index], np.float32), key=str(tracked.keys[index]))
