"""A weights-free audio/video offset estimate: the mouth opening seen by MediaPipe FaceMesh against the speech
envelope, cross-correlated over +-15 frames.

This is a PROXY, not SyncNet: it only sees how wide the mouth is and how loud the sound is, so it cannot tell which
sound a mouth shape makes, and it is blind on clips whose loudness hardly changes. It needs no model file.

Sign convention (the same as SyncNet's offset): ``offset_frames > 0`` means the mouth at video frame i matches the
sound of frame i - offset, i.e. the sound comes EARLY. Delaying the audio by ``offset_ms`` (Audio Clean-up's
``offset_ms``, where > 0 makes the sound come later) brings the two in sync.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

DEFAULT_MAX_SHIFT = 15  # frames each way, the range SyncNet's evaluation searches
MIN_OVERLAP_FRAMES = 10
INNER_LIPS, MOUTH_CORNERS = (13, 14), (61, 291)  # FaceMesh indices


@dataclass(frozen=True)
class AVOffset:
    """Result of :func:`estimate_offset`. ``offset_frames`` is None (and ``reason`` says why) when it cannot be
    estimated. ``confidence`` is the peak correlation minus the median over all shifts (0..2; like LSE-C, a
    larger margin means a clearer peak); ``correlations[j]`` belongs to shift ``shifts[j]``."""
    offset_frames: float | None
    offset_ms: float | None
    confidence: float | None
    peak_correlation: float | None
    shifts: np.ndarray = field(repr=False)
    correlations: np.ndarray = field(repr=False)
    fps: float = 25.0
    reason: str | None = None

    def as_dict(self) -> dict:
        return {"offset_frames": self.offset_frames, "offset_ms": self.offset_ms, "confidence": self.confidence,
                "peak_correlation": self.peak_correlation, "reason": self.reason,
                "method": "proxy: FaceMesh mouth opening vs speech envelope (not SyncNet)"}


def speech_envelope(wav, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """RMS of the samples under each video frame ([i/fps, (i+1)/fps)), float64 [num_frames]; 0 past the end."""
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    starts = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(np.int64)
    envelope = np.zeros(num_frames)
    for index in range(num_frames):
        chunk = wav[starts[index]:starts[index + 1]]
        envelope[index] = np.sqrt(np.mean(chunk ** 2)) if chunk.size else 0.0
    return envelope


def mouth_opening(frames, landmarker: Callable | None = None,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Inner-lip gap (FaceMesh points 13-14) over mouth width (corners 61-291) per frame, float32 [N], NaN where no
    face was found. ``frames`` float [N,H,W,3] RGB in 0..1."""
    from ..face_landmarks import facemesh_landmarks

    points, _ = (landmarker or facemesh_landmarks)(frames, progress=progress)
    gap = np.linalg.norm(points[:, INNER_LIPS[0]] - points[:, INNER_LIPS[1]], axis=-1)
    width = np.linalg.norm(points[:, MOUTH_CORNERS[0]] - points[:, MOUTH_CORNERS[1]], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(width > 0, gap / width, np.nan).astype(np.float32)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else float("nan")


def _absent(reason: str, max_shift: int, fps: float) -> AVOffset:
    shifts = np.arange(-max_shift, max_shift + 1)
    return AVOffset(None, None, None, None, shifts, np.full(shifts.shape, np.nan), fps, reason)


def estimate_offset(opening, envelope, fps: float = 25.0, max_shift: int = DEFAULT_MAX_SHIFT) -> AVOffset:
    """Cross-correlate ``opening[i]`` with ``envelope[i - s]`` for s in -max_shift..max_shift (Pearson over the frames
    both have; NaN openings are skipped) and refine the best shift to a fraction of a frame with a parabola through
    its neighbours."""
    opening = np.asarray(opening, dtype=np.float64).reshape(-1)
    envelope = np.asarray(envelope, dtype=np.float64).reshape(-1)
    if opening.shape != envelope.shape:
        raise ValueError(f"opening ({opening.size} frames) and envelope ({envelope.size}) must be equally long")
    valid = np.isfinite(opening)
    if valid.sum() < MIN_OVERLAP_FRAMES:
        return _absent(f"a face was found in only {int(valid.sum())} frame(s); need {MIN_OVERLAP_FRAMES}", max_shift,
                       fps)
    if np.nanstd(opening) < 1e-6:
        return _absent("the mouth opening does not change", max_shift, fps)
    if envelope.std() < 1e-9:
        return _absent("the audio loudness does not change (silence or a steady sound)", max_shift, fps)
    shifts = np.arange(-max_shift, max_shift + 1)
    correlations = np.full(shifts.shape, np.nan)
    frames = np.arange(opening.size)
    for j, shift in enumerate(shifts):
        source = frames - shift
        use = valid & (source >= 0) & (source < envelope.size)
        if use.sum() >= MIN_OVERLAP_FRAMES:
            correlations[j] = _pearson(opening[use], envelope[source[use]])
    if not np.isfinite(correlations).any():
        return _absent("the clip is too short for any shift", max_shift, fps)
    best = int(np.nanargmax(correlations))
    refined = float(shifts[best])
    if 0 < best < len(shifts) - 1 and np.isfinite(correlations[best - 1:best + 2]).all():
        left, peak, right = correlations[best - 1:best + 2]
        curvature = left - 2 * peak + right
        if curvature < 0:
            refined += float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))
    peak = float(correlations[best])
    return AVOffset(refined, refined * 1000.0 / fps, peak - float(np.nanmedian(correlations)), peak, shifts,
                    correlations, fps)


def av_offset(frames, wav, sample_rate: int, fps: float, max_shift: int = DEFAULT_MAX_SHIFT,
              landmarker: Callable | None = None, progress: Callable[[int, int], None] | None = None) -> AVOffset:
    """:func:`estimate_offset` of a clip: FaceMesh mouth opening of ``frames`` against the envelope of ``wav``."""
    opening = mouth_opening(frames, landmarker, progress)
    return estimate_offset(opening, speech_envelope(wav, sample_rate, fps, len(opening)), fps, max_shift)
