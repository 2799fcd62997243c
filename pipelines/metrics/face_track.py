"""The face-track crop SyncNet is scored on, by the reference pipeline's rule (joonson/syncnet_python
``run_pipeline.crop_video``): box half-size and centre median-filtered over 13 frames, a square crop from the box
top down past the chin, 2.8x the half-size wide, the frame padded with grey 110, resized to 224x224 (bilinear).

Boxes come from the pack's own detector rather than the reference's S3FD shot/track logic; frames without a face take
the box interpolated from their neighbours.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

CROP_SCALE = 0.4
PAD_VALUE = 110
SMOOTH_KERNEL = 13
FACE_SIZE = 224


def fill_missing_boxes(boxes: Sequence) -> np.ndarray:
    """[N, 4] float64 (x1, y1, x2, y2) from per-frame boxes (None where no face), missing frames interpolated
    linearly (held at the ends). ValueError when no frame has a face."""
    rows = np.full((len(boxes), 4), np.nan)
    for index, box in enumerate(boxes):
        if box is not None:
            rows[index] = np.asarray(box, dtype=np.float64)[:4]
    present = np.isfinite(rows).all(axis=1)
    if not present.any():
        raise ValueError("no face was found in any frame, so there is no face track to score")
    frames = np.arange(len(rows))
    for column in range(4):
        rows[:, column] = np.interp(frames, frames[present], rows[present, column])
    return rows


def syncnet_face_crops(frames_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """BGR uint8 [N, 224, 224, 3] crops (what the reference writes and SyncNet reads) of RGB uint8 frames along the
    [N, 4] face boxes."""
    from scipy.signal import medfilt

    boxes = np.asarray(boxes, dtype=np.float64)
    # scipy's medfilt zero-pads like the reference; a kernel no longer than the clip keeps every median a real value
    kernel = min(SMOOTH_KERNEL, len(boxes) - (1 - len(boxes) % 2))
    half = medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, kernel)
    centre_y = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel)
    centre_x = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel)
    crops = []
    for index, frame in enumerate(frames_rgb):
        size = half[index]
        pad = int(size * (1 + 2 * CROP_SCALE))
        padded = np.pad(frame[..., ::-1], ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
        my, mx = centre_y[index] + pad, centre_x[index] + pad
        face = padded[int(my - size):int(my + size * (1 + 2 * CROP_SCALE)),
                      int(mx - size * (1 + CROP_SCALE)):int(mx + size * (1 + CROP_SCALE))]
        if face.size == 0:
            raise ValueError(f"frame {index}: the face box is empty or outside the frame")
        crops.append(cv2.resize(np.ascontiguousarray(face), (FACE_SIZE, FACE_SIZE)))
    return np.stack(crops)
