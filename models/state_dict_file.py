"""Reading a released checkpoint that is a plain state dict (``torch.load(weights_only=True)``: no code runs)."""
from __future__ import annotations

from pathlib import Path

import torch


def read_state_dict(path, what: str) -> dict:
    """The state dict stored in ``path``; FileNotFoundError / ValueError naming ``what`` and the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} not found")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a corrupt or foreign file
        raise ValueError(f"cannot read {path}: {error}") from error
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state
