"""Run-time settings shared by the networks: precision (autocast), batch size per device, torch.compile, and
splitting a batch that runs out of GPU memory.

``auto`` never changes results on CPU: it is fp32 there.  On CUDA ``auto`` is bf16 where the GPU supports it, else
fp16, as the loaders' tooltips say.  bf16 on a CPU runs the convolutions and matmuls in bfloat16 through autocast
(fast where the CPU has native bf16, e.g. AVX-512 BF16 / AMX) and moves outputs measurably; see the README.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Callable, TypeVar

import torch

__all__ = ["PRECISIONS", "autocast", "compile_module", "default_batch_size", "half_supported", "resolve_precision",
           "compiled_call", "split_on_oom"]
T = TypeVar("T")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
log = logging.getLogger("talkinghead")


def half_supported(dtype: torch.dtype, device: torch.device | str) -> bool:
    """Whether ``device`` runs ``dtype`` (bf16/fp16) natively enough to be worth it."""
    device = torch.device(device)
    if device.type == "cuda":
        return dtype == torch.float16 or torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        check = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}[dtype]
        return bool(getattr(torch.ops.mkldnn, check)())
    return False


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for a precision choice, or None for exact fp32.

    ``auto``: fp32 on CPU (exact), bf16 (or fp16 where bf16 is missing) on CUDA.  A half precision the device lacks
    falls back to fp32 with a warning rather than running an emulated, slower path.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if half_supported(torch.bfloat16, device) else torch.float16
    dtype = _HALF[precision]
    if not half_supported(dtype, device):
        warnings.warn(f"{precision} is not supported natively on {device}; running fp32", stacklevel=2)
        return None
    return dtype


def autocast(device: torch.device | str, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device``'s type; a no-op for None (fp32)."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def default_batch_size(device: torch.device | str, gpu: int = 8) -> int:
    """Frames per network call: 1 on CPU, where larger batches push activations out of cache and are slower per
    frame (measured on an idle 2-core CPU with benchmarks/diff2lip_speed.py: Diff2Lip 0.84 s/frame/step at batch 1
    with channels_last vs 1.13 at batch 8); ``gpu`` on accelerators."""
    return 1 if torch.device(device).type == "cpu" else gpu


_COMPILE_NOTICE_SHOWN = False


def compile_module(module: torch.nn.Module, cache_dir: str | None = None) -> torch.nn.Module:
    """``torch.compile`` a module (same weights; results equal up to float rounding).

    The first call per input shape compiles, which takes minutes on a CPU (about 100 s for the Diff2Lip UNet);
    inductor keeps its kernels in ``cache_dir`` (default: its own cache folder), so later runs reuse them.
    """
    global _COMPILE_NOTICE_SHOWN
    if cache_dir:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", cache_dir)
    if not _COMPILE_NOTICE_SHOWN:
        log.warning("TalkingHead: torch.compile is on; the first run per input size compiles the network, which can "
                    "take a few minutes (cached afterwards). Switch it off in the loader to skip this.")
        _COMPILE_NOTICE_SHOWN = True
    return torch.compile(module, dynamic=False)


def compiled_call(compiled: Callable, eager: Callable, args: tuple, disable: Callable[[], None]):
    """Call a torch.compile'd function; if compiling fails (no C++ compiler, an unsupported operation), warn once,
    ``disable()`` compilation and run ``eager`` instead, so a missing toolchain costs speed, never the run."""
    try:
        return compiled(*args)
    except (torch.OutOfMemoryError, KeyboardInterrupt):
        raise
    except Exception as error:  # inductor/dynamo raise many types (BackendCompilerFailed, CalledProcessError, ...)
        warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error)[:300]}); running without it",
                      stacklevel=3)
        disable()
        return eager(*args)


def split_on_oom(run: Callable[[int, int], T], start: int, stop: int, join: Callable[[list[T]], T], what: str) -> T:
    """``run(start, stop)`` over a batch of items; on a CUDA out-of-memory error the batch is split in halves and
    retried (recursively), and one item that still does not fit raises a RuntimeError saying what to do."""
    try:
        return run(start, stop)
    except torch.OutOfMemoryError as error:
        if stop - start <= 1:
            raise RuntimeError(f"{what}: out of GPU memory even for a single frame ({error}). Free memory (unload "
                               f"other models, close other GPU programs) or use a smaller precision.") from error
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        middle = (start + stop) // 2
        log.warning("TalkingHead: %s ran out of GPU memory at %d frames; retrying in halves", what, stop - start)
        return join([split_on_oom(run, start, middle, join, what), split_on_oom(run, middle, stop, join, what)])
