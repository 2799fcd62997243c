"""Per-frame metric series and a small line plot of them (drawn with OpenCV, so no plotting library is needed)."""
from __future__ import annotations

import cv2
import numpy as np


def psnr_per_frame(output: np.ndarray, original: np.ndarray, select: np.ndarray | None = None) -> np.ndarray:
    """PSNR in dB (peak 1) of each frame over the pixels where ``select`` [N,H,W] is True (all when None); inf for
    identical pixels, NaN where nothing is selected."""
    squared = ((output.astype(np.float64) - original) ** 2).mean(axis=-1)
    values = np.full(len(output), np.nan)
    for index in range(len(output)):
        chosen = squared[index] if select is None else squared[index][select[index]]
        if chosen.size:
            mse = chosen.mean()
            values[index] = np.inf if mse == 0 else 10 * np.log10(1 / mse)
    return values


def change_per_frame(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean |frame_t - frame_{t-1}| inside ``mask > 0.5`` per frame (NaN for frame 0 and empty masks): the raw
    temporal change a flicker spike shows up in."""
    values = np.full(len(frames), np.nan)
    for index in range(1, len(frames)):
        inside = mask[index] > 0.5
        if inside.any():
            values[index] = float(np.abs(frames[index] - frames[index - 1]).mean(axis=-1)[inside].mean())
    return values


_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def plot_series(series: dict[str, np.ndarray], width: int = 640, panel_height: int = 110) -> np.ndarray:
    """One panel per named series (value against frame index, each scaled to its own finite min..max and labelled
    with them); NaN / inf points are left out. Returns RGB uint8 [H, width, 3]."""
    if not series:
        series = {"no per-frame metric": np.zeros(0)}
    margin, label_h = 8, 18
    canvas = np.full((panel_height * len(series), width, 3), 255, np.uint8)
    for panel, (name, values) in enumerate(series.items()):
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        top = panel * panel_height
        x0, x1 = margin, width - margin
        y0, y1 = top + label_h + 4, top + panel_height - margin
        cv2.rectangle(canvas, (x0, y0), (x1, y1), (200, 200, 200), 1)
        finite = np.isfinite(values)
        if finite.any():
            low, high = float(values[finite].min()), float(values[finite].max())
            label = f"{name}: min {low:.4g}  max {high:.4g}  mean {values[finite].mean():.4g}"
            span = high - low if high > low else 1.0
            xs = x0 + (np.arange(len(values)) / max(1, len(values) - 1)) * (x1 - x0)
            ys = y1 - (values - low) / span * (y1 - y0)
            colour = _COLOURS[panel % len(_COLOURS)]  # the line breaks at missing points
            run: list = []
            for index, ok in enumerate(finite):
                if ok:
                    run.append((int(round(xs[index])), int(round(ys[index]))))
                if run and (not ok or index == len(values) - 1):
                    if len(run) > 1:
                        cv2.polylines(canvas, [np.array(run, np.int32)], False, colour, 1, cv2.LINE_AA)
                    else:
                        cv2.circle(canvas, run[0], 2, colour, -1)
                    run = []
        else:
            label = f"{name}: no finite value"
        cv2.putText(canvas, label, (x0, top + label_h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return canvas
