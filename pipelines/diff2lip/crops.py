"""Face boxes, square face crops and paste-back, as Diff2Lip's ``face_detect``/``generate.py``."""
from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from ..frames import to_float

Upscale = Callable[[np.ndarray], np.ndarray]


def smooth_boxes(rects_xyxy, frame_hw: tuple[int, int], pads: Sequence[int] = (0, 0, 0, 0),
                 window: int = 5) -> np.ndarray:
    """Pad, clip and temporally smooth detector boxes; returns int64 [N,4] as (y1, y2, x1, x2).

    ``pads`` = (top, bottom, left, right) pixels.  Smoothing is the reference's: in place on an int array,
    ``boxes[i] = trunc(mean(boxes[i:i+window]))``, and near the end the window is the last ``window`` boxes, which
    already hold smoothed values.  For clips shorter than ``window`` the window is the whole clip (the reference's
    negative slice would look at only the last few boxes).
    """
    rects = np.asarray(rects_xyxy)
    if rects.ndim != 2 or rects.shape[1] < 4 or len(rects) == 0:
        raise ValueError(f"rects_xyxy must be [N,4] (x1, y1, x2, y2) with N >= 1, got shape {rects.shape}")
    if len(pads) != 4:
        raise ValueError(f"pads must be (top, bottom, left, right), got {pads}")
    height, width = frame_hw
    top, bottom, left, right = (int(p) for p in pads)
    rects = rects[:, :4].astype(np.int64)
    boxes = np.stack([np.maximum(0, rects[:, 0] - left), np.maximum(0, rects[:, 1] - top),
                      np.minimum(width, rects[:, 2] + right), np.minimum(height, rects[:, 3] + bottom)], axis=1)
    window = max(1, min(int(window), len(boxes)))
    for i in range(len(boxes)):
        start = min(i, len(boxes) - window)
        boxes[i] = np.mean(boxes[start:start + window], axis=0)
    return boxes[:, [1, 3, 0, 2]]


def crop_faces(frames: Sequence[np.ndarray], boxes: np.ndarray, size: int) -> np.ndarray:
    """``cv2.resize(frame[y1:y2, x1:x2], (size, size))`` (bilinear) for every frame; keeps the frames' dtype."""
    return np.stack([cv2.resize(frame[y1:y2, x1:x2], (size, size)) for frame, (y1, y2, x1, x2) in zip(frames, boxes)])


def crops_to_model(crops: np.ndarray) -> torch.Tensor:
    """[N,S,S,3] uint8 (0..255) or float (0..1) crops -> NCHW float32 in [-1, 1]."""
    return (torch.from_numpy(to_float(crops)).permute(0, 3, 1, 2) * 2 - 1).clamp(-1, 1)


def model_to_crops(images: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """NCHW [-1, 1] -> [N,S,S,3] in ``dtype``: uint8 with the reference's truncating cast, or float 0..1."""
    unit = ((images.float() + 1) * 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return (unit * 255).astype(np.uint8) if dtype == np.uint8 else unit.astype(dtype)


def paste_face(frame: np.ndarray, face: np.ndarray, box, upscale: Upscale | None = None,
               lower_half: bool = False) -> tuple[int, int, int, int]:
    """Write ``face`` (enlarged by ``upscale`` first when the box is larger than it) resized into ``box`` of ``frame``,
    in place.

    The reference writes the whole box (upper half resampled twice); ``lower_half=True`` writes only the box rows
    from ``(y2 - y1) // 2`` down, i.e. the generated half, and leaves the rest of the frame bit-identical.
    Returns the written region (y1, y2, x1, x2).
    """
    y1, y2, x1, x2 = (int(v) for v in box)
    # Super-resolution only pays off when the box is larger than the generated crop.
    if upscale is not None and (y2 - y1 > face.shape[0] or x2 - x1 > face.shape[1]):
        face = np.asarray(upscale(face))
        if face.ndim != 3 or face.shape[2] != 3:
            raise ValueError(f"upscale must return an [H,W,3] crop, got shape {face.shape}")
        if frame.dtype == np.uint8 and face.dtype != np.uint8:
            face = np.clip(face, 0, 255).astype(np.uint8)
    resized = cv2.resize(face.astype(frame.dtype, copy=False), (x2 - x1, y2 - y1))
    top = (y2 - y1) // 2 if lower_half else 0
    frame[y1 + top:y2, x1:x2] = resized[top:]
    return y1 + top, y2, x1, x2


def paste_faces(frames: np.ndarray, faces: np.ndarray, boxes: np.ndarray, upscale: Upscale | None = None,
                lower_half: bool = False) -> np.ndarray:
    """A copy of ``frames`` with every face pasted into its box (see :func:`paste_face`)."""
    pasted = frames.copy()
    for frame, face, box in zip(pasted, faces, boxes):
        paste_face(frame, face, box, upscale=upscale, lower_half=lower_half)
    return pasted
