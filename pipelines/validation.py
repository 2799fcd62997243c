"""Checks on what a node receives: finite samples, a sane frame rate, paths that stay inside allowed folders.

Framework-free (numpy/torch only).  Every error is a ``ValueError`` (``FileNotFoundError`` for paths) whose text names
the node, the input and the fix, so the nodes call these helpers instead of writing their own messages.

Path rules (a ComfyUI server may be shared on a LAN): a path from a prompt is joined to an allowed folder, resolved
with symlinks followed, and must still lie inside one of the allowed folders.  "Outside" and "missing" give the same
message, so a prompt cannot probe which files exist on the server.
"""
from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

MIN_FPS, MAX_FPS = 1.0, 240.0


# ----------------------------------------------------------------------------------------------------------------
# values


def check_finite(value, node: str, input_name: str, fix: str = "") -> None:
    """Raise ``ValueError`` when a tensor/array (IMAGE, MASK, AUDIO waveform, LATENT samples) holds NaN or inf."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point() and not value.is_complex():
            return
        bad = int((~torch.isfinite(value)).sum())
        total = value.numel()
    else:
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.inexact):
            return
        bad = int((~np.isfinite(array)).sum())
        total = array.size
    if bad:
        hint = fix or "check the node that produced it (a NaN usually comes from a division by zero or an overflow)"
        raise ValueError(f"{node}: input '{input_name}' holds {bad} NaN/inf value(s) of {total}; {hint}.")


def check_audio(audio, node: str, input_name: str = "audio") -> None:
    """A ComfyUI AUDIO dict: ``waveform`` [B,C,T] finite, ``sample_rate`` a positive integer."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValueError(f"{node}: input '{input_name}' is not an AUDIO value ({{'waveform', 'sample_rate'}}); "
                         "connect an audio loader's output.")
    rate = audio["sample_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer, float)) or not math.isfinite(rate) \
            or rate <= 0 or int(rate) != rate:
        raise ValueError(f"{node}: input '{input_name}' has sample rate {rate!r}; it must be a positive whole number "
                         "of samples per second.")
    check_finite(audio["waveform"], node, input_name, "the audio holds invalid samples: re-encode or clean the file")


def check_fps(fps, node: str, input_name: str = "fps") -> float:
    """The frame rate as float; ``ValueError`` unless it is a finite number in 1..240."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(fps, bool) or not math.isfinite(value) or not MIN_FPS <= value <= MAX_FPS:
        raise ValueError(f"{node}: input '{input_name}' is {fps!r}; a frame rate must be a finite number from "
                         f"{MIN_FPS:g} to {MAX_FPS:g} (e.g. 25 or 29.97): set it, or fix what feeds it.")
    return value


# ----------------------------------------------------------------------------------------------------------------
# paths


def is_inside(root: str | os.PathLike, path: str | os.PathLike, strictly: bool = False) -> bool:
    """True when the resolved ``path`` lies in the resolved ``root`` (``strictly``: and is not ``root`` itself)."""
    root_real, path_real = os.path.realpath(root), os.path.realpath(path)
    try:
        inside = os.path.commonpath([root_real, path_real]) == root_real
    except ValueError:  # different drives on Windows
        return False
    return inside and not (strictly and path_real == root_real)


def resolve_inside(roots: Sequence[str | os.PathLike], name: str, node: str, input_name: str,
                   kind: str = "file") -> Path:
    """The real path of ``name`` (relative to one of ``roots``, or absolute) when it is a regular file (``kind``
    "file"), a folder ("dir") or either ("any") inside one of ``roots`` after following symlinks;
    ``FileNotFoundError`` otherwise.

    The message is the same whether the path is missing, outside, or of the wrong kind (no existence oracle).
    """
    roots = [os.path.realpath(r) for r in roots if r]
    for root in roots:
        if not name or "\x00" in str(name):
            break
        candidate = os.path.realpath(os.path.join(root, str(name)))
        if not any(is_inside(r, candidate) for r in roots):
            continue
        try:
            mode = os.stat(candidate).st_mode
        except OSError:
            continue
        if (kind in ("file", "any") and stat.S_ISREG(mode)) or (kind in ("dir", "any") and stat.S_ISDIR(mode)):
            return Path(candidate)
    what = {"file": "file", "dir": "folder"}.get(kind, "file or folder")
    places = " or ".join(roots) or "(no folder configured)"
    raise FileNotFoundError(f"{node}: input '{input_name}' = '{name}' is not a {what} inside {places}; give a path "
                            f"relative to that folder (put the {what} there first).")


def output_folder_inside(root: str | os.PathLike, name: str, node: str, input_name: str) -> Path:
    """The folder ``root/name`` to write into, strictly inside ``root`` after resolving symlinks and ``..``.

    Empty names, ``.``, ``x/..``, absolute paths and anything leaving ``root`` are refused, so the output folder
    itself is never replaced or given a numbered sibling.
    """
    text = str(name or "").strip()
    target = os.path.realpath(os.path.join(os.path.realpath(root), text)) if text else ""
    if not text or os.path.isabs(text) or "\x00" in text or not is_inside(root, target, strictly=True):
        raise ValueError(f"{node}: input '{input_name}' = '{name}' must name a folder inside {root} (e.g. "
                         "'tracked/driver'); empty, '.', '..', absolute paths and paths leaving that folder are "
                         "refused.")
    return Path(target)


def file_signature(path: str | os.PathLike) -> str:
    """A cheap change marker for caching: real path, size and modification time (the file is not read)."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return f"{real}:{st.st_size}:{st.st_mtime_ns}"


def existing_roots(paths: Iterable[str | os.PathLike]) -> list[str]:
    """The given folders that exist, resolved, without duplicates (order kept)."""
    seen: list[str] = []
    for p in paths:
        real = os.path.realpath(p)
        if os.path.isdir(real) and real not in seen:
            seen.append(real)
    return seen
