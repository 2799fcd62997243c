"""SCRFD-10G face detector with 5 keypoints (``ins_scrfd_10g_bnkps.onnx``), run with onnxruntime.

Used by the tracker only to place the ArcFace crop for MICA: on the 320² EMICA crop it finds
the largest face and its 5 keypoints (eyes, nose tip, mouth corners).

Released output layout (insightface ``*_bnkps`` export): nine outputs, ``[scores s8, s16, s32, box distances s8,
s16, s32, keypoint distances s8, s16, s32]``, each ``[K, C]`` (or ``[1, K, C]``) with K = (H/s)·(W/s)·2 anchors
(two per cell, row-major cells) and C = 1, 4, 10.  Distances are in stride units from the anchor centre
(x·s, y·s).  Pre-processing: pad to a square on the right/bottom with zeros, resize to 320 (antialias),
(RGB - 127.5) / 128.  Decoding: score >= 0.5, NMS at IoU 0.4 across strides.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torchvision.ops import nms

INPUT_SIZE = 320
STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2
SCORE_THRESHOLD = 0.5
NMS_IOU = 0.4
MEAN, STD = 127.5, 128.0


def _anchor_centres(height: int, width: int, stride: int) -> np.ndarray:
    rows, cols = np.mgrid[:height, :width]
    centres = np.stack([cols, rows], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, ANCHORS_PER_CELL, axis=0)


def decode_scrfd(outputs: list[np.ndarray], input_height: int, input_width: int,
                 threshold: float = SCORE_THRESHOLD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores [N], boxes [N,4] and keypoints [N,5,2] (input pixels) of the anchors above ``threshold``."""
    if len(outputs) != 3 * len(STRIDES):
        raise ValueError(f"SCRFD model returned {len(outputs)} outputs, expected 9 (scores, boxes, keypoints per "
                         "stride 8/16/32): not the released ins_scrfd_10g_bnkps.onnx")
    scores, boxes, points = [], [], []
    for level, stride in enumerate(STRIDES):
        level_scores, distances, kps = (np.asarray(outputs[level + k * 3]) for k in range(3))
        level_scores, distances, kps = (a[0] if a.ndim == 3 else a for a in (level_scores, distances, kps))
        centres = _anchor_centres(input_height // stride, input_width // stride, stride)
        keep = level_scores[:, 0] >= threshold
        distances, kps = distances[keep] * stride, kps[keep] * stride
        anchor = centres[keep]
        scores.append(level_scores[keep, 0])
        boxes.append(np.concatenate([anchor - distances[:, :2], anchor + distances[:, 2:4]], axis=1))
        points.append(anchor[:, None, :] + kps.reshape(len(kps), kps.shape[1] // 2, 2))
    return np.concatenate(scores), np.concatenate(boxes), np.concatenate(points)


class SCRFDDetector:
    """``detector(image [3,H,W] float 0..255) -> (boxes [N,5] xyxy+score, keypoints [N,5,2])`` in input pixels."""

    def __init__(self, session):
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def __call__(self, image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        image = image.detach().float().cpu()
        _, height, width = image.shape
        side = max(height, width)
        square = TF.pad(image, [0, 0, side - width, side - height])  # zeros on the right / bottom
        scale = INPUT_SIZE / side
        pixels = TF.resize(square, [INPUT_SIZE, INPUT_SIZE], antialias=True)
        blob = ((pixels - MEAN) / STD)[None].numpy().astype(np.float32)
        outputs = self.session.run(None, {self.input_name: blob})
        scores, boxes, points = decode_scrfd(outputs, INPUT_SIZE, INPUT_SIZE)
        boxes, points = boxes / scale, points / scale
        keep = nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(), NMS_IOU).numpy()
        return np.concatenate([boxes[keep], scores[keep, None]], axis=1), points[keep]

    def largest_face(self, image: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
        """(box [5], keypoints [5,2]) of the largest detected face, or None."""
        boxes, points = self(image)
        if len(boxes) == 0:
            return None
        best = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        return boxes[best], points[best]


def load_scrfd(path, device: str = "cpu") -> SCRFDDetector:
    """Open ``ins_scrfd_10g_bnkps.onnx`` with onnxruntime (CUDA provider when ``device`` is cuda and available)."""
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SCRFD file {path} not found")
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types for foreign files
        raise ValueError(f"cannot open {path} as an ONNX model (expected ins_scrfd_10g_bnkps.onnx): {error}") \
            from error
    return SCRFDDetector(session)
