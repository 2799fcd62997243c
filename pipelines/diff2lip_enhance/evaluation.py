"""Evaluation only (the tests and the benchmarks; no node and no product code imports it): measurements of the
Diff2Lip audio clean-up against a known clean signal."""
from __future__ import annotations

import numpy as np

from ..audio_enhance import check_mono


def snr_db(clean, processed) -> float:
    """Signal-to-noise ratio of ``processed`` against ``clean`` over the whole clip, in dB."""
    clean = check_mono(clean, "clean").astype(np.float64)
    processed = check_mono(processed, "processed").astype(np.float64)
    return float(10 * np.log10(np.sum(clean ** 2) / max(np.sum((clean - processed) ** 2), 1e-20)))


def segmental_snr_db(clean, processed, sample_rate: int = 16000, frame_ms: float = 20.0) -> float:
    """Mean per-frame SNR in dB, each frame clipped to [-10, 35] dB (the usual speech-enhancement convention)."""
    clean = check_mono(clean, "clean").astype(np.float64)
    processed = check_mono(processed, "processed").astype(np.float64)
    length = int(sample_rate * frame_ms / 1000)
    count = min(len(clean), len(processed)) // length
    clean = clean[:count * length].reshape(count, length)
    error = clean - processed[:count * length].reshape(count, length)
    ratios = np.sum(clean ** 2, axis=1) / np.maximum(np.sum(error ** 2, axis=1), 1e-20)
    return float(np.mean(np.clip(10 * np.log10(np.maximum(ratios, 1e-20)), -10.0, 35.0)))
