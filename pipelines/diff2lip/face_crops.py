"""The split lip sync (crop -> sample -> paste) on a typed :class:`FaceCrops`, for workflows that edit the crops
between the steps.  Each step is the same code the one-call :func:`.lipsync.lipsync` runs, so the three steps give
its frames exactly (with ``lower_half`` paste)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from .audio import mel_windows, melspectrogram
from .crops import Upscale, crop_faces
from .lipsync import Detector, locate_faces, paste_generated, sample_in_batches


@dataclass(frozen=True)
class FaceCrops:
    """The face crops of one clip.

    images: float32 [M,S,S,3] in 0..1, one per frame with a face; boxes: int64 [M,4] (y1, y2, x1, x2) of each crop in
    its frame; frame_index: the frame of each crop, ascending; num_frames and frame_hw: the clip they were cut from.
    """

    images: np.ndarray
    boxes: np.ndarray
    frame_index: list[int]
    num_frames: int
    frame_hw: tuple[int, int]

    def __len__(self) -> int:
        return len(self.frame_index)

    def with_images(self, images: np.ndarray) -> "FaceCrops":
        return replace(self, images=images)


def crop_clip(frames: np.ndarray, detect: Detector, crop_size: int, pick: str | int = "largest",
              pads: Sequence[int] = (0, 0, 0, 0), progress: Callable[[int, int], None] | None = None,
              max_gap: int = 0) -> FaceCrops:
    """Find, smooth and crop the face of every frame (float frames [N,H,W,3] in 0..1); frames without one are left
    out and pass through at paste time.  ``max_gap``: short detection gaps bridged as in the lip sync."""
    frames = np.asarray(frames)
    boxes = locate_faces(frames, detect, pick, pads, progress=progress, max_gap=max_gap)
    indices = sorted(boxes)
    stacked = np.stack([boxes[i] for i in indices]) if indices else np.zeros((0, 4), np.int64)
    images = crop_faces([frames[i] for i in indices], stacked, crop_size) if indices else \
        np.zeros((0, crop_size, crop_size, 3), np.float32)
    return FaceCrops(images, stacked, indices, len(frames), tuple(frames.shape[1:3]))


def sample_crops(model, crops: FaceCrops, wav_16k: np.ndarray, fps: float, steps: int, seed: int = 7,
                 batch_size: int = 8, active_frames: np.ndarray | None = None,
                 progress: Callable[[int, int], None] | None = None) -> FaceCrops:
    """Re-generate the lower half of every crop for the audio at its frame's time (frames where ``active_frames``
    is False keep their crop); the lip sync's own sampling loop, :func:`.lipsync.sample_in_batches`."""
    mels = mel_windows(melspectrogram(wav_16k), fps=fps, num_frames=crops.num_frames)
    position = {frame: k for k, frame in enumerate(crops.frame_index)}
    todo = [frame for frame in crops.frame_index if active_frames is None or active_frames[frame]]
    out = crops.images.copy()
    for batch, _, generated in sample_in_batches(model, todo, lambda batch: crops.images[[position[f] for f in batch]],
                                                 mels, steps, seed, batch_size, progress):
        out[[position[f] for f in batch]] = generated
    return crops.with_images(out)


def paste_crops(frames: np.ndarray, crops: FaceCrops, faces: np.ndarray | None = None, upscale: Upscale | None = None,
                lower_half: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``faces`` (default: the crops' own images; any size, resized into the boxes) back into copies of the
    frames the crops came from; returns (frames, mask [N,H,W] = 1 where written)."""
    frames = np.asarray(frames)
    if (len(frames), *frames.shape[1:3]) != (crops.num_frames, *crops.frame_hw):
        raise ValueError(f"the crops come from {crops.num_frames} frames of {crops.frame_hw}, not these "
                         f"{len(frames)} of {frames.shape[1:3]}: connect the frames that went into Diff2Lip Crop "
                         "Faces")
    faces = crops.images if faces is None else faces
    if len(faces) != len(crops):
        raise ValueError(f"faces has {len(faces)} images for {len(crops)} crops")
    output, mask = frames.copy(), np.zeros(frames.shape[:3], np.float32)
    paste_generated(output, mask, crops.frame_index, faces, crops.boxes, upscale=upscale, lower_half=lower_half)
    return output, mask
