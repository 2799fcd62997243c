"""Lip landmarks: MediaPipe FaceMesh (default, 468 points, model inside the mediapipe 0.10.21 wheel) and
face-alignment's 68-point 2D-FAN loaded from a LOCAL file (optional).  The face-generic parts (FaceMesh, the
local-file FAN) live in :mod:`pipelines.face_landmarks`, shared with the GAGAvatar tracker.

Both landmarkers share one call signature, ``landmarker(frames, region_mask=None, progress=None) -> (points, found)``:
``points`` float32 [N,K,2] in pixel (x, y), NaN where no face was found, and ``found`` bool [N]. ``LIP_SCHEMES`` says
which indices form the outer lip contour and the mouth-opening pair of each point layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..face_landmarks import FACE_ALIGNMENT_HINT, facemesh_landmarks, local_file_aligner
from ..frames import to_uint8
from ._arrays import as_frames, as_masks
from .masks import face_box_from_region

__all__ = ["FACEMESH_LIP_POINTS", "LIP_SCHEMES", "FanLandmarker", "LipScheme", "facemesh_landmarks"]


@dataclass(frozen=True)
class LipScheme:
    """Indices of one landmark layout: ordered outer lip contour, inner-lip gap pair, mouth-corner pair."""
    outer_contour: tuple[int, ...]
    gap_pair: tuple[int, int]
    corner_pair: tuple[int, int]
    num_points: int


LIP_SCHEMES = {
    # Outer cycle of mediapipe's FACEMESH_LIPS edge set, walked from the left corner 61 along the lower lip.
    "facemesh": LipScheme(outer_contour=(61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0,
                                         37, 39, 40, 185),
                          gap_pair=(13, 14), corner_pair=(61, 291), num_points=468),
    # iBUG 68-point layout: 48-59 outer lip, 60-67 inner lip; 62/66 are the inner-lip centres.
    "fan68": LipScheme(outer_contour=tuple(range(48, 60)), gap_pair=(62, 66), corner_pair=(48, 54), num_points=68),
}


# The 40 indices of mediapipe's FACEMESH_LIPS (outer and inner lip contours).
FACEMESH_LIP_POINTS = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267,
                       269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415)


class FanLandmarker:
    """face-alignment 1.5's 2D-FAN (68 points) from a local official ``2DFAN4-*.pth.tar`` state dict, no download.

    The face box of each frame comes from the Diff2Lip region mask (its lower half, see ``face_box_from_region``),
    so no face-detector weights are needed. ``compile=False``: torch.compile would add minutes on the first call.
    """

    def __init__(self, checkpoint_path: str | Path, device: str = "cpu", flip_input: bool = False):
        path = Path(checkpoint_path)
        if not path.is_file():
            raise ValueError(f"checkpoint_path: no FAN file at {path}; download face-alignment's "
                             "2DFAN4-11f355bf06.pth.tar and pass its local path")
        try:
            import face_alignment
        except ImportError as error:
            raise ImportError(FACE_ALIGNMENT_HINT) from error
        self._aligner = local_file_aligner(face_alignment, path, device, flip_input)

    def __call__(self, frames, region_mask=None, progress: Callable[[int, int], None] | None = None):
        """68 points per frame; frames with an empty region mask (no face box) are reported as not found."""
        frames = as_frames(frames)
        if region_mask is None:
            raise ValueError("region_mask: the FAN landmarker needs the Diff2Lip region mask to place the face box")
        masks = as_masks(region_mask, frames, "region_mask")
        points = np.full((len(frames), 68, 2), np.nan, dtype=np.float32)
        found = np.zeros(len(frames), dtype=bool)
        for index in range(len(frames)):
            box = face_box_from_region(masks[index])
            if box is not None:
                result = self._aligner.get_landmarks_from_image(to_uint8(frames[index]), detected_faces=[box])
                if result:
                    points[index] = result[0][:, :2]
                    found[index] = True
            if progress is not None:
                progress(index + 1, len(frames))
        return points, found
