"""Helpers shared by the node adapters: ComfyUI progress/cancel, devices and precision, the model cache."""
from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import OrderedDict
from typing import Callable

import numpy as np
import torch

import comfy.model_management as mm
import comfy.utils

from ..models.speed import PRECISIONS as _PRECISIONS, resolve_precision
from ..pipelines.frames import to_float

log = logging.getLogger("talkinghead")
PRECISIONS = list(_PRECISIONS)


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
    """The compute precision of a loader's ``precision`` choice: ``auto`` = fp32 on CPU (exact), bf16 (fp16 where
    bf16 is missing) on CUDA; bf16/fp16 where the device runs them natively, else fp32 with a warning."""
    return resolve_precision(precision, device) or torch.float32


PRECISION_TOOLTIP = ("auto = fp32 on CPU (exact output); bf16, or fp16 without bf16, on CUDA (output changes "
                     "slightly). bf16/fp16 run the network in half precision where the device supports it natively (much faster "
                     "on CPUs with AVX-512 BF16/AMX; changes output pixels by about 1/255, see the README).")


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


def _module_patcher_class():
    import comfy.model_patcher

    class PackModelPatcher(comfy.model_patcher.ModelPatcher):
        """ModelPatcher for the pack's own networks (plain torch modules without ComfyUI's cast layers).

        ComfyUI can only move such a network as a whole, so partial (low-VRAM) loads and unloads are refused and
        every load or unload moves all its parameters and buffers.  ``on_unload`` runs when ComfyUI unloads it
        ("unload models", ``POST /free``, or room needed for another model).
        """

        on_unload: Callable[[], None] | None = None

        def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
            result = super().load(device_to, 0, force_patch_weights, True)
            if device_to is not None:
                self.model.to(device_to)
            return result

        def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
            return super().partially_load(device_to, 1e32, force_patch_weights)  # always whole

        def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False):
            return 0  # nothing freed partially: ComfyUI then unloads the whole model

        def detach(self, unpatch_all=True):
            model = super().detach(unpatch_all)
            # unpatch_all=False is ComfyUI re-registering a model it is about to load again, not an unload.
            if unpatch_all:
                self.model.to(self.offload_device)
                if self.on_unload is not None:
                    self.on_unload()
            return model

    return PackModelPatcher


_PATCHER_CLASS = None


def register_module(module: torch.nn.Module, device: torch.device, on_unload: Callable[[], None] | None = None):
    """Wrap a loaded network in a ModelPatcher and load it through ``comfy.model_management``, which then counts its
    memory, can evict it for other models, offloads it to the offload device and unloads it on ``POST /free``."""
    global _PATCHER_CLASS
    if _PATCHER_CLASS is None:
        _PATCHER_CLASS = _module_patcher_class()
    patcher = _PATCHER_CLASS(module, load_device=device, offload_device=mm.unet_offload_device())
    patcher.on_unload = on_unload
    mm.load_models_gpu([patcher])
    return patcher


_UNLOADED: list = []  # networks ComfyUI just unloaded, held until it is safe to free them (see ModelCache._release)


def _bury_unloaded() -> None:
    """Drop the networks ComfyUI unloaded since the last pack load (called outside ComfyUI's unload loop)."""
    if _UNLOADED:
        _UNLOADED.clear()
        mm.soft_empty_cache()


class ModelCache:
    """Loaded models keyed by (file, size, mtime, device, dtype, extra); a few entries, least recently used dropped.

    V3 nodes keep no instance state, so reuse across prompts (and across graphs that name the same file) lives here.
    Networks (torch modules) are registered with ComfyUI's memory manager (see :func:`register_module`).  When
    ComfyUI unloads one, the cache lets go of it: it stays reusable only while a node output still holds it (as
    ComfyUI's own models do), so ``POST /free`` with ``free_memory`` releases it.
    """

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._released: dict = {}  # key -> weakref of an object ComfyUI unloaded
        self._patchers: dict[int, object] = {}  # id(module) -> its ModelPatcher, while cached
        self._lock = threading.Lock()

    def get(self, path: str, device: torch.device, dtype: torch.dtype, load: Callable[[], object], extra=()):
        _bury_unloaded()
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, str(device), str(dtype), tuple(extra))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                log.info("TalkingHead: reusing loaded %s", os.path.basename(path))
                return self._items[key]
            model, patcher = (ref() for ref in self._released.pop(key, (lambda: None, lambda: None)))
        if model is not None:
            log.info("TalkingHead: reusing %s (unloaded by ComfyUI, still held by a node output)",
                     os.path.basename(path))
        else:
            log.info("TalkingHead: loading %s", os.path.basename(path))
            model, patcher = load(), None
        if isinstance(model, torch.nn.Module):
            if patcher is None:
                patcher = register_module(model, device, lambda: self._release(key))
            else:
                mm.load_models_gpu([patcher])
        with self._lock:
            self._items[key] = model
            if patcher is not None:
                self._patchers[id(model)] = patcher
            while len(self._items) > self.capacity:
                _, dropped = self._items.popitem(last=False)
                self._patchers.pop(id(dropped), None)
                mm.soft_empty_cache()
        return model

    def patcher(self, model) -> object | None:
        """The ModelPatcher a cached network is registered with (None for non-network entries)."""
        return self._patchers.get(id(model))

    def _release(self, key) -> None:
        with self._lock:
            model = self._items.pop(key, None)
            if model is None:
                return
            patcher = self._patchers.pop(id(model), None)
            try:
                self._released[key] = (weakref.ref(model), weakref.ref(patcher) if patcher else lambda: None)
            except TypeError:  # not weak-referenceable: simply forgotten
                pass
            # ComfyUI calls this from inside its unload loop; if the network died here, ComfyUI's finalizer would
            # shrink its list of loaded models mid-loop and kill the prompt worker (IndexError).  Keep it alive
            # until the next pack load, outside that loop.
            _UNLOADED.append((model, patcher))
        log.info("TalkingHead: ComfyUI unloaded %s", os.path.basename(key[0]))


class LoadedModel:
    """What a loader node outputs: the network plus where and how it runs (shown in tooltips and errors).

    With a ``patcher`` (see :func:`register_module`), reading ``module`` asks ComfyUI to (re)load the network onto
    its device first, making room by unloading other models when needed.
    """

    def __init__(self, module: torch.nn.Module, device: torch.device, dtype: torch.dtype, name: str,
                 patcher=None):
        self._module, self.device, self.dtype, self.name, self.patcher = module, device, dtype, name, patcher

    @property
    def module(self) -> torch.nn.Module:
        if self.patcher is not None:
            mm.load_models_gpu([self.patcher])
        return self._module

    def memory_status(self) -> str:
        """One line for info outputs: whether ComfyUI's memory manager holds the network and where it is."""
        if self.patcher is None:
            return "memory: not registered with ComfyUI's model manager"
        loaded = any(entry.model is self.patcher for entry in mm.current_loaded_models)
        where = f"loaded on {self.patcher.current_loaded_device()}" if loaded else "unloaded"
        return f"memory: managed by ComfyUI's model manager ({where})"

    def __repr__(self) -> str:
        return f"{type(self._module).__name__}({self.name}, {self.device}, {self.dtype})"
