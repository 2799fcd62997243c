"""Face landmarks any product may use: MediaPipe FaceMesh (468 points, model inside the mediapipe 0.10.21 wheel) and
face-alignment's 68-point 2D-FAN with its weights read from a LOCAL file (never downloaded).

``facemesh_landmarks(frames) -> (points [N,468,2] float32 px, NaN where no face; found [N] bool)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .face_detection import mediapipe_hint
from .frames import as_frames, to_uint8

MEDIAPIPE_HINT = mediapipe_hint("MediaPipe FaceMesh")
FACE_ALIGNMENT_HINT = "the 68-point FAN option needs face-alignment 1.5: pip install face-alignment==1.5.0"


def _import_mediapipe():
    try:
        import mediapipe as mp
        return mp.solutions.face_mesh
    except (ImportError, AttributeError) as error:
        raise ImportError(MEDIAPIPE_HINT) from error


def facemesh_landmarks(frames, region_mask=None, progress: Callable[[int, int], None] | None = None,
                       min_detection_confidence: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """468 FaceMesh points per frame (the first face found), each frame detected independently.

    ``region_mask`` is accepted for signature compatibility with :class:`FanLandmarker` and ignored.
    Returns ``(points [N,468,2] float32 px with NaN where no face, found [N] bool)``.
    """
    frames = as_frames(frames)
    face_mesh = _import_mediapipe()
    count, height, width = frames.shape[:3]
    points = np.full((count, 468, 2), np.nan, dtype=np.float32)
    found = np.zeros(count, dtype=bool)
    with face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                            min_detection_confidence=min_detection_confidence) as mesh:
        for index in range(count):
            faces = mesh.process(to_uint8(frames[index])).multi_face_landmarks
            if faces:
                landmark = faces[0].landmark
                points[index] = [(p.x * width, p.y * height) for p in landmark[:468]]
                found[index] = True
            if progress is not None:
                progress(index + 1, count)
    return points, found


def local_file_aligner(face_alignment, path: Path, device: str, flip_input: bool):
    """A ``face_alignment.FaceAlignment`` whose FAN weights come from ``path`` and whose detector is the no-weight
    'folder' detector (boxes are always passed in)."""
    from ..models.state_dict_file import read_state_dict

    class LocalFileFaceAlignment(face_alignment.FaceAlignment):
        def _load_native(self, network_name, network_size, device, dtype):
            network = face_alignment.models.FAN(network_size)
            state = read_state_dict(path, "2D-FAN")  # the pack's checked reader (clear errors, no code)
            try:
                network.load_state_dict(state)
            except (RuntimeError, TypeError, AttributeError) as error:
                raise ValueError(f"checkpoint_path: {path} is not a face-alignment 1.5 2D-FAN state dict "
                                 f"(official 2DFAN4-*.pth.tar expected): {error}") from error
            return network.to(device, dtype=dtype).eval()

    return LocalFileFaceAlignment(face_alignment.LandmarksType.TWO_D, device=device, flip_input=flip_input,
                                  face_detector="folder", compile=False)
