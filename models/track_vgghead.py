"""VGGHead head detector of the GAGAvatar tracker: the released TorchScript file ``vgg_heads_l.trcd`` as it is.

The network takes one 640² letterboxed RGB image in 0..1 (aspect-preserving resize with antialias, padding value
127/255 split evenly, the odd pixel right/bottom) and returns ``(boxes [1,N,4] xyxy, scores [1,N,1], params
[1,N,413])`` in letterbox pixels.  The 413 values per box are FLAME shape 300, expression 100, VGGHead's own 6D
rotation 6, jaw 3, translation 3 and scale 1.

Decoding as the reference: scores >= 0.5, top 1000, NMS at IoU 0.5, keep 100, then the LARGEST box; a box that fills
the whole letterbox (within 5 px of every edge) counts as no detection.  The box is mapped back to input pixels.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torchvision.ops import nms

INPUT_SIZE = 640
PAD_VALUE = 127
CONFIDENCE = 0.5
IOU = 0.5
TOP_K, KEEP_TOP_K = 1000, 100
FULL_FRAME_MARGIN = 5
PARAM_LAYOUT = {"shapecode": (0, 300), "expcode": (300, 400), "jaw": (400, 403), "rotation_6d": (403, 409),
                "translation": (409, 412), "scale": (412, 413)}
NUM_PARAMS = 413


@dataclass
class VGGHeadResult:
    """One detected head: ``bbox`` [4] xyxy in input pixels, its score, the 413 values split by name (torch
    tensors), and the letterbox ``padding`` (x, y) and ``letterbox_scale`` needed to map its FLAME fit back."""

    bbox: np.ndarray
    score: float
    shapecode: torch.Tensor
    expcode: torch.Tensor
    jaw: torch.Tensor
    rotation_6d: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor
    padding: np.ndarray
    letterbox_scale: float


def letterbox(image: torch.Tensor, size: int = INPUT_SIZE) -> tuple[torch.Tensor, np.ndarray, float]:
    """[3,H,W] float 0..255 -> ([1,3,size,size] in 0..1, padding (left, top), scale)."""
    _, height, width = image.shape
    if height > width:
        new_h, new_w = size, int(width * size / height)
    else:
        new_h, new_w = int(height * size / width), size
    resized = TF.resize(image, [new_h, new_w], antialias=True)
    pad_w, pad_h = size - new_w, size - new_h
    padded = TF.pad(resized, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=PAD_VALUE)
    return padded[None].float() / 255.0, np.array([pad_w // 2, pad_h // 2]), size / max(height, width)


def _largest_after_nms(boxes: torch.Tensor, scores: torch.Tensor, params: torch.Tensor):
    scores = scores.reshape(scores.shape[0], -1)[:, 0] if scores.ndim > 1 else scores
    keep = scores >= CONFIDENCE
    boxes, scores, params = boxes[keep], scores[keep], params[keep]
    if len(scores) > TOP_K:
        order = torch.topk(scores, TOP_K).indices
        boxes, scores, params = boxes[order], scores[order], params[order]
    kept = nms(boxes, scores, IOU)[:KEEP_TOP_K]
    if len(kept) == 0:
        return None
    boxes, scores, params = boxes[kept], scores[kept], params[kept]
    best = ((boxes[:, 3] - boxes[:, 1]) * (boxes[:, 2] - boxes[:, 0])).argmax()
    return boxes[best], scores[best], params[best]


class VGGHeadDetector:
    """Callable: ``detector(image [3,H,W] float 0..255) -> VGGHeadResult | None`` (None: no head)."""

    def __init__(self, module: torch.jit.ScriptModule, device: str | torch.device = "cpu"):
        self.module = module.to(device).eval()
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> VGGHeadResult | None:
        pixels, padding, scale = letterbox(image.to(self.device).float())
        boxes, scores, params = self.module(pixels)
        if params.shape[-1] != NUM_PARAMS:
            raise ValueError(f"VGGHead returned {params.shape[-1]} values per box, expected {NUM_PARAMS}: not the "
                             "released vgg_heads_l.trcd")
        found = _largest_after_nms(boxes[0].float(), scores[0].float(), params[0].float())
        if found is None:
            return None
        box, score, values = found
        limit = INPUT_SIZE - FULL_FRAME_MARGIN
        if box[0] < FULL_FRAME_MARGIN and box[1] < FULL_FRAME_MARGIN and box[2] > limit and box[3] > limit:
            return None
        box = box.clamp(0, INPUT_SIZE).cpu().numpy().astype(np.float64)
        box[[0, 2]] -= padding[0]
        box[[1, 3]] -= padding[1]
        box = np.clip(box / scale, 0, INPUT_SIZE / scale)
        split = {name: values[start:stop] for name, (start, stop) in PARAM_LAYOUT.items()}
        return VGGHeadResult(bbox=box, score=float(score), padding=padding, letterbox_scale=scale, **split)


def load_vgghead(path, device: str | torch.device = "cpu") -> VGGHeadDetector:
    """Load the released TorchScript ``vgg_heads_l.trcd`` (``torch.jit.load``, nothing else is read)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGGHead file {path} not found")
    try:
        with warnings.catch_warnings():  # torch >= 2.9 flags TorchScript as deprecated; the released file is one
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"{path} is not a TorchScript file (expected the tracker's vgg_heads_l.trcd): {error}") \
            from error
    return VGGHeadDetector(module, device)
