"""Face box for EMICA's crops: S3FD faces -> 68-point 2D-FAN -> min/max box of the largest face's landmarks.

As the tracker's ``FANDetector`` (face-alignment, ``face_detector='sfd'``, score threshold 0.5, no flipped pass), with
both weight files read from local paths: S3FD through :class:`pipelines.face_detection.S3FDDetector` and FAN through
the pack's local-file face-alignment wrapper.  Nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..face_detection import BlazeFaceDetector, S3FDDetector, pick_face
from ..face_landmarks import local_file_aligner


class FanFaceBox:
    """``finder(image uint8 [H,W,3]) -> box [4] (x0, y0, x1, y1) | None``."""

    def __init__(self, s3fd_path, fan_path, device: str = "cpu"):
        import face_alignment

        self.detector = S3FDDetector(s3fd_path, device=device, score_threshold=0.5)
        self.aligner = local_file_aligner(face_alignment, Path(fan_path), device, flip_input=False)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        faces = self.detector(image)
        if not faces:
            return None
        points = self.aligner.get_landmarks_from_image(image, detected_faces=[np.asarray(f) for f in faces])
        if not points:
            return None
        boxes = np.array([[p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()] for p in points])
        return boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]


class BlazeFaceBox:
    """Fallback without the S3FD/FAN files: the largest MediaPipe BlazeFace box (from inside the mediapipe wheel).

    Not the reference's box (that is the min/max of FAN's 68 landmarks, from the brows down); EMICA's crops are
    placed from it all the same, so expect slightly different crops and codes than the official tracker.
    """

    def __init__(self, min_confidence: float = 0.5):
        self.detector = BlazeFaceDetector(min_confidence=min_confidence)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        face = pick_face(self.detector(image), "largest")
        return None if face is None else np.asarray(face[:4], dtype=np.float64)
