"""Helpers shared by the node adapters: ComfyUI progress/cancel, devices and precision, the model cache."""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from typing import Callable

import numpy as np
import torch

import comfy.model_management as mm
import comfy.utils

from ..pipelines.frames import to_float

log = logging.getLogger("talkinghead")

PRECISIONS = ["auto", "fp32", "fp16", "bf16"]


def progress_callback(total: int, node_id: str | None = None) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback for pipelines: drives the node's progress bar and lets the user cancel.

    Every ``ProgressBar`` update goes through the server's hook, which raises ``InterruptProcessingException`` when the
    user pressed cancel; the explicit check also covers runs outside the server.
    """
    bar = comfy.utils.ProgressBar(max(1, int(total)), node_id=node_id)

    def update(done: int, total_now: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        bar.update_absolute(int(done), int(max(1, total_now)))

    return update


def torch_device() -> torch.device:
    return mm.get_torch_device()


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """fp32 on CPU always (half precision is slow and inexact there); ``auto`` = fp16 on CUDA, bf16 where preferred."""
    if device.type != "cuda" or precision == "fp32":
        return torch.float32
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def image_to_numpy(image: torch.Tensor) -> np.ndarray:
    """ComfyUI IMAGE [B,H,W,C] float 0..1 -> numpy float32 [B,H,W,3] (alpha dropped, grey expanded)."""
    arr = image.detach().cpu().float().numpy()
    if arr.ndim == 3:
        arr = arr[None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


def mask_to_numpy(mask: torch.Tensor) -> np.ndarray:
    """ComfyUI MASK [B,H,W] (or a single [H,W]) float 0..1 -> numpy float32 [B,H,W]."""
    arr = mask.detach().cpu().float().numpy()
    return arr[None] if arr.ndim == 2 else arr


def numpy_to_image(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(to_float(arr)))


class ModelCache:
    """Loaded models keyed by (file, size, mtime, device, dtype, extra); a few entries, least recently used dropped.

    V3 nodes keep no instance state, so reuse across prompts (and across graphs that name the same file) lives here.
    """

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, device: torch.device, dtype: torch.dtype, load: Callable[[], object], extra=()):
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, str(device), str(dtype), tuple(extra))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        model = load()
        with self._lock:
            self._items[key] = model
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
                mm.soft_empty_cache()
        return model


class LoadedModel:
    """What a loader node outputs: the network plus where and how it runs (shown in tooltips and errors)."""

    def __init__(self, module: torch.nn.Module, device: torch.device, dtype: torch.dtype, name: str):
        self.module, self.device, self.dtype, self.name = module, device, dtype, name

    def __repr__(self) -> str:
        return f"{type(self.module).__name__}({self.name}, {self.device}, {self.dtype})"
