"""The one reader of checkpoint files for every loader of the pack, with errors that say what is wrong and what to do.

Files are read with ``torch.load(weights_only=True)`` (``.safetensors`` with safetensors): no code from a file ever
runs.  Torch's own messages are never passed on: for a file it refuses they advise ``weights_only=False``, which would
let the file run code.  What comes back is a flat ``{name: tensor}`` dict, unwrapped from the usual containers
(``state_dict`` / ``model`` / ``ema`` / ``params_ema`` / ``params``) and without DDP's ``module.`` prefix.
"""
from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

UNWRAP_KEYS = ("state_dict", "model", "ema", "params_ema", "params")
HALF_DTYPES = (torch.float16, torch.bfloat16)
# torch.save's pre-1.6 format starts with its pickled magic number 0x1950a86a20f9469cfc6c
_LEGACY_TORCH_HEAD = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


class CheckpointNotFound(FileNotFoundError, ValueError):
    """No file at the path (both kinds, as loaders used to raise either)."""


def _kind(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle" if head.startswith(_LEGACY_TORCH_HEAD) else "plain pickle"
    if path.suffix == ".safetensors":
        return "safetensors"
    return "unknown"


def _plain_pickle(what: str, path: Path) -> str:
    # torch.save writes its magic number first whatever the pickle protocol; without it this is no checkpoint
    return (f"{what} file {path} is a plain Python pickle, not a PyTorch checkpoint; this pack never unpickles such "
            "files (they can run code): use the official file.")


def load_content(path, what: str, mmap: bool = False) -> object:
    """What ``torch.load(weights_only=True)`` returns for ``path``, or a :class:`CheckpointError` saying why not."""
    path = Path(path)
    kind = _kind(path)
    refetch = "download or copy it again (the weights command checks the size and sha256)"
    if kind == "empty":
        raise CheckpointError(f"{what} file {path} is empty (0 bytes): the download or copy did not finish; {refetch}.")
    if kind == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"{what} file {path} is not a readable safetensors file ({type(error).__name__}): "
                                  f"it is truncated or damaged; {refetch}.") from None
    if kind == "unknown":
        raise CheckpointError(f"{what} file {path} is not a PyTorch checkpoint (neither a torch zip archive nor a "
                              f"pickle); it may be an HTML error page or another format: {refetch}.")
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError):
            raise CheckpointError(f"{what} file {path} is truncated or damaged (its zip directory is missing); "
                                  f"{refetch}.") from None
    try:
        # weights_only=True whatever the kind: a file that merely looks like a checkpoint gets no more trust
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap and kind == "zip")
    except pickle.UnpicklingError as error:
        if kind == "plain pickle":
            raise CheckpointError(_plain_pickle(what, path)) from None
        if "weights only" in str(error).lower():
            raise CheckpointError(f"{what} file {path} holds Python objects besides tensors, which this pack never "
                                  "loads because they could run code; use the official file, or a copy saved as a "
                                  "plain state dict of tensors.") from None
        raise CheckpointError(f"{what} file {path} is damaged ({type(error).__name__}); {refetch}.") from None
    except (EOFError, RuntimeError, OSError, ValueError, TypeError, KeyError, AttributeError, IndexError) as error:
        if kind == "plain pickle":
            raise CheckpointError(_plain_pickle(what, path)) from None
        raise CheckpointError(f"{what} file {path} is truncated or damaged ({type(error).__name__}); "
                              f"{refetch}.") from None


def unwrap_state_dict(obj, what: str, origin: str = "", unwrap: Sequence[str] = UNWRAP_KEYS) -> dict:
    """``{name: tensor}`` from a checkpoint's content: nested under one of ``unwrap`` keys or bare; ``module.``
    prefixes dropped.  ``CheckpointError`` when it is anything else."""
    origin = origin or f"the {what} checkpoint"
    for _ in range(4):  # containers nest at most a few levels (e.g. {'model': {'state_dict': ...}})
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in unwrap if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{origin} holds a {type(obj).__name__}, not a {what} state dict of tensors.")
    if not obj:
        raise CheckpointError(f"{origin} holds no tensors (an empty state dict): it is not a {what} checkpoint.")
    others = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others:
        listed = ", ".join(others[:5]) + (f" (+{len(others) - 5} more)" if len(others) > 5 else "")
        raise CheckpointError(f"{origin} is not a {what} state dict: entries {listed} are not tensors.")
    if all(str(k).startswith("module.") for k in obj):
        return {str(k)[len("module."):]: v for k, v in obj.items()}
    return {str(k): v for k, v in obj.items()}


def to_float32(state: Mapping[str, torch.Tensor]) -> dict:
    """fp16/bf16 tensors of a half-precision copy as float32 (the loaders keep fp32 weights and cast at run time)."""
    return {k: v.float() if v.dtype in HALF_DTYPES else v for k, v in state.items()}


def read_checkpoint(source, what: str, unwrap: Sequence[str] = UNWRAP_KEYS, mmap: bool = False,
                    float32: bool = True) -> dict:
    """The state dict stored in ``source`` (a path or already loaded content), checked and unwrapped.

    ``what`` names the model in messages ("Diff2Lip", "GAGAvatar", ...).  Half-precision copies are upcast to fp32
    unless ``float32`` is False.  Raises :class:`CheckpointNotFound` or :class:`CheckpointError` (a ``ValueError``).
    """
    origin = ""
    if isinstance(source, (str, Path)) or hasattr(source, "__fspath__"):
        path = Path(source)
        if not path.is_file():
            raise CheckpointNotFound(f"{what} file {path} not found")
        origin = f"{what} file {path}"
        source = load_content(path, what, mmap)
    state = unwrap_state_dict(source, what, origin, unwrap)
    return to_float32(state) if float32 else state


def read_state_dict(path, what: str) -> dict:
    """The state dict stored in ``path`` (see :func:`read_checkpoint`), tensors as saved."""
    return read_checkpoint(path, what, float32=False)


def require_keys(state: Mapping[str, torch.Tensor], what: str, origin: str, prefixes: Sequence[str],
                 hint: str = "") -> None:
    """``CheckpointError`` when no key starts with any of ``prefixes`` (a file of another model family)."""
    if any(str(k).startswith(tuple(prefixes)) for k in state):
        return
    sample = ", ".join(list(map(str, state))[:4])
    raise CheckpointError(f"{origin} is not a {what} checkpoint: none of its {len(state)} tensors is named "
                          f"{' / '.join(p + '*' for p in prefixes)} (it has e.g. {sample}). "
                          f"{hint or 'Choose the right file for this loader.'}")


def _listed(keys: list) -> str:
    return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")


def check_fits(model: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``CheckpointError`` naming the missing, unexpected and mis-shaped tensors when ``state`` does not load
    strictly into ``model`` (checked before loading, so the message is the pack's, not torch's)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = sorted(k for k in state if k not in expected)
    wrong_shape = [f"{k} {list(state[k].shape)} != {list(v.shape)}" for k, v in expected.items()
                   if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = [f"{label} ({len(keys)}): {_listed(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong_shape)) if keys]
    if problems:
        raise CheckpointError(f"{what} checkpoint does not fit the network: " + "; ".join(problems))
