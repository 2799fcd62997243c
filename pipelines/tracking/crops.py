"""Crops of the GAGAvatar tracker, reproducing the reference's box arithmetic.

Images here are torch tensors [3,H,W] float in 0..255 (RGB), as the reference passes them around.  Every crop is
torchvision's ``crop`` (zero padding outside the image) followed by an antialiased bilinear ``resize``.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF

CROP_SIZE = 512
HEAD_CROP_SCALE = 1.65
LANDMARK_CROP_SCALE = 1.38
LANDMARK_INPUT = 256
DECA_SIZE, DECA_SCALE = 224, 1.25
SCRFD_SIZE, SCRFD_SCALE = 320, 2.0
ARCFACE_SIZE = 112
# insightface's ArcFace template for the 5 keypoints at 112² (eyes, nose tip, mouth corners)
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def square_head_box(box, scale: float = HEAD_CROP_SCALE) -> np.ndarray:
    """Square of side sqrt(w·h)·scale around the box centre (float xyxy)."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = np.sqrt((x1 - x0) * (y1 - y0)) * scale / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def crop_box(image: torch.Tensor, box, size: int) -> torch.Tensor:
    """Crop the integer box ``(x0, y0, x1, y1)`` (zero padding outside) and resize it to size² (antialias)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    cropped = TF.crop(image, y0, x0, y1 - y0, x1 - x0)
    return TF.resize(cropped, [size, size], antialias=True)


def head_crop(image: torch.Tensor, head_box, scale: float = HEAD_CROP_SCALE, size: int = CROP_SIZE) -> torch.Tensor:
    """The tracker's 512² crop of a head box (coordinates truncated toward zero, like ``.long()``)."""
    return crop_box(image, np.trunc(square_head_box(head_box, scale)), size)


def landmark_box(head_box, ratio: float = LANDMARK_CROP_SCALE) -> np.ndarray:
    """Integer square box for the 98-point network: centre truncated, side sqrt((w+1)(h+1))·ratio, half-sides
    floored (the reference's ``expand_bbox`` of the landmark detector)."""
    x0, y0, x1, y1 = (float(v) for v in head_box[:4])
    cx, cy = np.trunc((x0 + x1) / 2), np.trunc((y0 + y1) / 2)
    half = np.floor(np.sqrt((y1 - y0 + 1) * (x1 - x0 + 1)) * ratio / 2)
    return np.trunc(np.array([cx - half, cy - half, cx + half, cy + half]))


def landmark_input(image: torch.Tensor, box) -> tuple[torch.Tensor, float]:
    """ImageNet-normalised [1,3,256,256] crop of ``box`` and the crop's scale (256 / side)."""
    crop = crop_box(image, box, LANDMARK_INPUT) / 255.0
    crop = TF.normalize(crop, IMAGENET_MEAN, IMAGENET_STD)
    return crop[None], LANDMARK_INPUT / float(box[3] - box[1])


def face_crop(image: torch.Tensor, face_box, size: int, scale: float) -> torch.Tensor:
    """EMICA's square crop around a landmark box: side int((w+h)/2·1.1·scale), corner int(centre - side/2)."""
    x0, y0, x1, y1 = (float(v) for v in face_box[:4])
    side = int((x1 - x0 + y1 - y0) / 2 * 1.1 * scale)
    left, top = int((x0 + x1) / 2.0 - side / 2), int((y0 + y1) / 2.0 - side / 2)
    return TF.resize(TF.crop(image, top, left, side, side), [size, size], antialias=True)


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """Least-squares similarity (Umeyama, scikit-image) mapping source onto target points; None if degenerate."""
    from skimage.transform import SimilarityTransform

    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        transform = SimilarityTransform.from_estimate(source, target)
        return transform.params if transform else None
    transform = SimilarityTransform()
    return transform.params if transform.estimate(source, target) else None


def arcface_crop(image: torch.Tensor, keypoints: np.ndarray) -> torch.Tensor | None:
    """ArcFace-aligned 112² crop (similarity transform of the 5 keypoints onto the template, bilinear, black
    border), scaled to (x - 127.5) / 127.5: [3,112,112].  None when the keypoints are degenerate."""
    matrix = _similarity(np.asarray(keypoints, np.float64), ARCFACE_TEMPLATE.astype(np.float64))
    if matrix is None or not np.isfinite(matrix).all():
        return None
    pixels = np.ascontiguousarray(image.detach().float().cpu().permute(1, 2, 0).numpy())
    warped = cv2.warpAffine(pixels, matrix[:2], (ARCFACE_SIZE, ARCFACE_SIZE), borderValue=0.0)
    return (torch.from_numpy(warped).permute(2, 0, 1) - 127.5) / 127.5
