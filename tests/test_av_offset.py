"""The weights-free A/V offset proxy recovers known shifts between a clip's mouth opening and its sound."""
from __future__ import annotations

import numpy as np
import pytest
from media import SAMPLE_RATE, talking_clip

from talkinghead.pipelines.audio_enhance import shift_audio
from talkinghead.pipelines.metrics.av_offset import av_offset, estimate_offset, speech_envelope

FPS = 25.0
FRAMES = 75
LEAD = 20  # spare frames of the driving signal on each side, so shifted audio never runs out


def _driving_signal(seed: int = 3) -> np.ndarray:
    """A 0..1 syllable-like openness series, FRAMES + 2*LEAD long (3-frame moving average of uniform noise)."""
    raw = np.convolve(np.random.default_rng(seed).random(FRAMES + 2 * LEAD), np.ones(3) / 3, "same")
    return (raw - raw.min()) / (raw.max() - raw.min())


def _voice(envelope_per_frame: np.ndarray) -> np.ndarray:
    """A harmonic 140 Hz voice whose loudness follows the per-frame envelope (interpolated between frame centres)."""
    samples_per_frame = SAMPLE_RATE / FPS
    t = np.arange(int(len(envelope_per_frame) * samples_per_frame))
    centres = (np.arange(len(envelope_per_frame)) + 0.5) * samples_per_frame
    loudness = np.interp(t, centres, envelope_per_frame)
    carrier = sum(np.sin(2 * np.pi * 140 * h * t / SAMPLE_RATE) / h for h in range(1, 6))
    return (0.3 * loudness * carrier).astype(np.float32)


@pytest.fixture(scope="module")
def drive():
    return _driving_signal()


@pytest.fixture(scope="module")
def clip(drive):
    """A real-photo talking clip whose jaw opening follows frames LEAD..LEAD+FRAMES of the driving signal."""
    return talking_clip(frames=FRAMES, size=(192, 192), mouth_px=8.0, openness=drive[LEAD:LEAD + FRAMES])


@pytest.fixture(scope="module")
def opening(clip):
    from talkinghead.pipelines.metrics.av_offset import mouth_opening

    return mouth_opening(clip.frames.astype(np.float32) / 255.0)


@pytest.mark.parametrize("shift", [-11, -4, 0, 3, 9])
def test_recovers_known_shifts_from_facemesh_within_one_frame(drive, opening, shift):
    # shift > 0: the sound of the mouth at frame i plays at frame i - shift (the sound comes early)
    wav = _voice(drive[LEAD + shift:LEAD + shift + FRAMES])
    result = estimate_offset(opening, speech_envelope(wav, SAMPLE_RATE, FPS, FRAMES), FPS)
    assert abs(result.offset_frames - shift) <= 1.0
    assert result.offset_ms == pytest.approx(result.offset_frames * 40.0)
    assert result.confidence > 0.3


def test_the_estimate_undoes_audio_clean_up_offsets(clip, drive):
    """Delaying in-sync audio by 120 ms (Audio Clean-up) reads as -120 ms; delaying by the estimate fixes it."""
    wav = _voice(drive[LEAD:LEAD + FRAMES])
    late = shift_audio(wav, SAMPLE_RATE, 120.0)
    result = av_offset(clip.frames.astype(np.float32) / 255.0, late, SAMPLE_RATE, FPS)
    assert abs(result.offset_ms + 120.0) <= 40.0
    fixed = shift_audio(late, SAMPLE_RATE, result.offset_ms)
    again = av_offset(clip.frames.astype(np.float32) / 255.0, fixed, SAMPLE_RATE, FPS)
    assert abs(again.offset_ms) <= 40.0


def test_fractional_shifts_are_refined_between_frames():
    """A sub-frame delay of a smooth signal lands between the integer shifts, within a quarter frame."""
    t = np.arange(120)
    signal = lambda x: np.sin(x / 3.1) + 0.6 * np.sin(x / 1.7 + 1.0) + 0.3 * np.sin(x / 5.3)  # noqa: E731
    result = estimate_offset(signal(t), signal(t + 2.5), FPS)  # sound 2.5 frames early
    assert result.offset_frames == pytest.approx(2.5, abs=0.25)


def test_absent_with_reason_when_it_cannot_be_estimated(opening):
    missing = np.full(FRAMES, np.nan, np.float32)
    no_face = estimate_offset(missing, np.ones(FRAMES), FPS)
    assert no_face.offset_frames is None and "face" in no_face.reason
    silent = estimate_offset(opening, np.zeros(FRAMES), FPS)
    assert silent.offset_ms is None and "loudness" in silent.reason
    assert silent.as_dict()["method"].startswith("proxy")


def test_uncorrelated_audio_gives_low_confidence(opening):
    noise = np.random.default_rng(7).random(FRAMES)
    assert estimate_offset(opening, noise, FPS).confidence < 0.5
