"""Artifact detection in the generated region: frames with NaN/inf, blocking, extreme (clipped) colour or a flicker
spike are flagged; :func:`replace_flagged` can swap their region for the nearest good neighbour frame's.

Measures (inside ``mask > 0.5`` only):
- ``blockiness``: for the 8 possible positions of an 8 px block grid, the mean |luma step| across grid lines divided
  by the mean |luma step| everywhere, the largest over positions and both directions. Smooth or natural texture gives
  about 1; visible 8x8 blocks give clearly more.
- ``clipped``: fraction of pixels with a channel at 0 or 1 (a blown-out or black patch).
- ``change``: mean |frame_t - mean of its two neighbours|; a spike is a value above median + ``spike_mads`` x MAD of
  the clip (and above an absolute floor), i.e. one frame that jumps while its neighbours agree (not checked on
  the first and last frame).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BLOCK_PX = 8
BLOCKINESS_LIMIT = 1.6
CLIPPED_LIMIT = 0.3
SPIKE_MADS = 6.0
SPIKE_FLOOR = 0.02
MIN_FRAMES_FOR_SPIKES = 5


@dataclass(frozen=True)
class ArtifactReport:
    """``flagged`` maps frame index -> list of reasons; the arrays are the per-frame measures ([N], NaN if none)."""
    flagged: dict[int, list[str]]
    blockiness: np.ndarray = field(repr=False)
    clipped: np.ndarray = field(repr=False)
    change: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        return {"flagged_frames": sorted(self.flagged), "reasons": {str(k): v for k, v in sorted(self.flagged.items())},
                "max_blockiness": _nanmax(self.blockiness), "max_clipped_fraction": _nanmax(self.clipped),
                "max_change": _nanmax(self.change)}


def _nanmax(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else None


def _grid_ratio(luma: np.ndarray, inside: np.ndarray, axis: int) -> float:
    steps = np.abs(np.diff(luma, axis=axis))
    both = inside[:-1] & inside[1:] if axis == 0 else inside[:, :-1] & inside[:, 1:]
    overall = steps[both].mean() if both.any() else 0.0
    if overall <= 1e-6:
        return float("nan")
    positions = np.arange(steps.shape[axis])
    best = 0.0
    for phase in range(BLOCK_PX):
        on_grid = (positions % BLOCK_PX) == phase
        select = both & (on_grid[:, None] if axis == 0 else on_grid[None, :])
        if select.sum() >= 8:
            best = max(best, float(steps[select].mean() / overall))
    return best


def blockiness(frame: np.ndarray, inside: np.ndarray) -> float:
    """Block-grid step ratio of one frame inside a boolean mask (see module); NaN for flat or empty regions."""
    luma = frame @ np.array([0.299, 0.587, 0.114], dtype=np.float64)
    ratios = [_grid_ratio(luma, inside, axis) for axis in (0, 1)]
    finite = [r for r in ratios if np.isfinite(r)]
    return max(finite) if finite else float("nan")


def _neighbour_deviation(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean |frame_t - mean(frame_{t-1}, frame_{t+1})| inside the mask: large for a frame that jumps away while its
    neighbours agree, small for steady motion. NaN for the first and last frame (one neighbour says nothing)."""
    values = np.full(len(frames), np.nan)
    for index in range(1, len(frames) - 1):
        inside = mask[index] > 0.5
        if inside.any():
            middle = 0.5 * (frames[index - 1] + frames[index + 1])
            values[index] = float(np.abs(frames[index] - middle).mean(axis=-1)[inside].mean())
    return values


def detect_artifacts(frames, mask, blockiness_limit: float = BLOCKINESS_LIMIT, clipped_limit: float = CLIPPED_LIMIT,
                     spike_mads: float = SPIKE_MADS, spike_floor: float = SPIKE_FLOOR) -> ArtifactReport:
    """Flag frames of float [N,H,W,3] ``frames`` whose ``mask`` [N,H,W] region shows an artifact (see module)."""
    frames = np.asarray(frames, dtype=np.float32)
    mask = np.asarray(mask, dtype=np.float32)
    count = len(frames)
    flagged: dict[int, list[str]] = {}
    block, clipped = np.full(count, np.nan), np.full(count, np.nan)
    for index in range(count):
        inside = mask[index] > 0.5
        if not inside.any():
            continue
        region = frames[index][inside]
        if not np.isfinite(region).all():
            flagged.setdefault(index, []).append("NaN or inf pixels")
            continue
        clipped[index] = float(((region <= 0.0) | (region >= 1.0)).any(axis=-1).mean())
        block[index] = blockiness(frames[index].astype(np.float64), inside)
        if clipped[index] > clipped_limit:
            flagged.setdefault(index, []).append(f"extreme colour: {clipped[index]:.0%} of pixels clipped")
        if block[index] > blockiness_limit:
            flagged.setdefault(index, []).append(f"blocking: grid step ratio {block[index]:.2f}")
    change = _neighbour_deviation(np.nan_to_num(frames), mask)
    for index in list(flagged):  # frames flagged above, and their neighbours' midpoints, are no reference
        change[max(0, index - 1):index + 2] = np.nan
    finite = change[np.isfinite(change)]
    if finite.size >= MIN_FRAMES_FOR_SPIKES:
        median = float(np.median(finite))
        mad = float(np.median(np.abs(finite - median)))
        limit = max(median + spike_mads * max(mad, 1e-3), spike_floor)
        for index in np.flatnonzero(change > limit):
            # a jumping frame also moves its neighbours' midpoints by half as much: keep the local maximum only
            if any(0 <= i < count and change[i] > change[index] for i in (index - 1, index + 1)):
                continue
            flagged.setdefault(int(index), []).append(f"flicker spike: {change[index]:.3f} > {limit:.3f}")
    return ArtifactReport(flagged, block, clipped, change)


def replace_flagged(frames, mask, flagged) -> np.ndarray:
    """A copy of ``frames`` where each flagged frame's region (soft ``mask``) is replaced by the nearest frame not
    flagged (the earlier one on ties). Frames outside the region stay bit-for-bit; all flagged: unchanged."""
    frames = np.asarray(frames, dtype=np.float32)
    mask = np.asarray(mask, dtype=np.float32)
    bad = set(int(i) for i in flagged)
    good = np.array([i for i in range(len(frames)) if i not in bad])
    out = frames.copy()
    if good.size == 0:
        return out
    for index in sorted(bad):
        neighbour = int(good[np.argmin(np.abs(good - index) + (good > index) * 0.5)])
        weight = mask[index][..., None]
        replaced = weight * frames[neighbour] + (1 - weight) * np.nan_to_num(frames[index])
        out[index] = np.where(weight > 0, replaced, frames[index])
    return out
