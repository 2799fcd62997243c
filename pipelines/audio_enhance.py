"""Audio clean-up before Diff2Lip's mel, an audio/video offset, and silence detection for mouth closing.

The released Diff2Lip checkpoint was trained on 80-mel, 16 kHz windows: any other mel
configuration is refused by :func:`check_mel_config` instead of being fed to it.  What can help instead works on the
waveform, before the unchanged mel:

- :func:`spectral_subtract`: stationary-noise removal (power spectral subtraction with over-subtraction and a gain
  floor), so background noise does not drive the mouth;
- :func:`compress_dynamic_range` then :func:`normalize_loudness` (ITU-R BS.1770-4 integrated loudness): the mel is
  in absolute dB, so a quiet or uneven recording otherwise reaches the model far from the levels it was trained on;
- :func:`shift_audio`: a +-ms offset for recordings whose sound and picture are out of sync;
- :func:`speech_activity`: silero-vad (model inside its wheel) marks the video frames with speech, so frames without
  speech can keep the original (closed) mouth instead of a mouth re-synthesised from noise.

All functions take and return float32 mono numpy waveforms in -1..1.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .diff2lip.audio import MEL_CONFIG as RELEASE_MEL_CONFIG  # the mel the released checkpoint was trained on
from .media import TARGET_SAMPLE_RATE, audio_to_mono, fit_audio_to_frames

LOUDNESS_BLOCK_S = 0.4  # BS.1770 gating block: audio shorter than one has no integrated loudness


def check_mono(wav, name: str = "wav") -> np.ndarray:
    """``wav`` as float32 mono [T]; ValueError naming the input for anything else."""
    array = np.asarray(wav, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a mono waveform [T], got shape {array.shape}; mix it with "
                         "pipelines.media.audio_to_mono first")
    return array


def check_mel_config(n_mels: int, sample_rate: int, n_fft: int = 800, hop_length: int = 200, win_length: int = 800,
                     fmin: float = 55.0, fmax: float = 7600.0) -> None:
    """Raise ``ValueError`` unless this is the mel the released Diff2Lip checkpoint was trained on (80 mels, 16 kHz,
    n_fft/win 800, hop 200, 55-7600 Hz).  The model's first layer takes exactly 80 mel channels x 16 steps of 12.5 ms;
    other settings would give it features it has never seen."""
    given = {"n_mels": n_mels, "sample_rate": sample_rate, "n_fft": n_fft, "hop_length": hop_length,
             "win_length": win_length, "fmin": fmin, "fmax": fmax}
    wrong = {key: value for key, value in given.items() if float(value) != float(RELEASE_MEL_CONFIG[key])}
    if wrong:
        differences = ", ".join(f"{key}={value} (needs {RELEASE_MEL_CONFIG[key]})" for key, value in wrong.items())
        raise ValueError(f"mel configuration refused for the released Diff2Lip checkpoint, which was trained on "
                         f"80-mel 16 kHz windows: {differences}. Keep the release mel; resample the audio to 16 kHz "
                         f"(pipelines.media.audio_to_mono) and improve the waveform instead.")


# ----------------------------------------------------------------------------------------------------------------
# spectral subtraction


def spectral_subtract(wav, sample_rate: int = 16000, noise=None, over_subtraction: float = 4.0, floor: float = 0.1,
                      noise_fraction: float = 0.1, frame_ms: float = 32.0, hop_ms: float = 8.0) -> np.ndarray:
    """Remove stationary background noise by power spectral subtraction.

    The noise power spectrum comes from ``noise`` (a noise-only waveform, or a ``(start_s, end_s)`` segment of
    ``wav``) or, by default, from the quietest ``noise_fraction`` of the STFT frames.  Each bin gets the gain
    ``sqrt(max(1 - over_subtraction * N / |Y|^2, floor^2))``: over-subtraction removes the noise's random peaks, the
    floor (0.1 = -20 dB) keeps a little noise to avoid "musical" tones.  The defaults were the best overall on real
    speech with white and pink noise at 0-10 dB SNR (benchmarks/audio_enhance.py).  Output length equals input length.
    """
    from scipy.signal import istft, stft

    wav = check_mono(wav)
    if over_subtraction <= 0 or not 0 <= floor <= 1 or not 0 < noise_fraction <= 1:
        raise ValueError(f"need over_subtraction > 0, 0 <= floor <= 1 and 0 < noise_fraction <= 1, got "
                         f"{over_subtraction}, {floor}, {noise_fraction}")
    size = int(round(sample_rate * frame_ms / 1000))
    overlap = size - int(round(sample_rate * hop_ms / 1000))
    if len(wav) < size:
        return wav.copy()
    settings = {"fs": sample_rate, "window": "hann", "nperseg": size, "noverlap": overlap}
    spectrum = stft(wav, **settings)[2]
    power = np.abs(spectrum) ** 2
    noise_power = _noise_power(wav, sample_rate, noise, power, noise_fraction, settings)
    gain = np.sqrt(np.maximum(1.0 - over_subtraction * noise_power / np.maximum(power, 1e-20), floor ** 2))
    cleaned = istft(gain * spectrum, **settings)[1]
    return _fit_length(cleaned, len(wav)).astype(np.float32)


def _noise_power(wav, sample_rate, noise, power, noise_fraction, settings) -> np.ndarray:
    from scipy.signal import stft

    if noise is None:
        frame_energy = power.sum(axis=0)
        count = max(1, int(round(noise_fraction * power.shape[1])))
        return power[:, np.argsort(frame_energy)[:count]].mean(axis=1, keepdims=True)
    if isinstance(noise, tuple):
        start, end = (int(round(t * sample_rate)) for t in noise)
        noise = wav[max(start, 0):end]
    noise = check_mono(noise, "noise")
    if len(noise) < settings["nperseg"]:
        raise ValueError(f"noise: the noise sample needs at least {settings['nperseg']} samples, got {len(noise)}")
    return (np.abs(stft(noise, **settings)[2]) ** 2).mean(axis=1, keepdims=True)


def _fit_length(signal: np.ndarray, length: int) -> np.ndarray:
    return signal[:length] if len(signal) >= length else np.pad(signal, (0, length - len(signal)))


# ----------------------------------------------------------------------------------------------------------------
# loudness (ITU-R BS.1770-4)


def k_weighting_filters(sample_rate: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting biquads ``((b1, a1), (b2, a2))`` for any sample rate.

    BS.1770 tabulates them for 48 kHz only; they are rebuilt here from their analogue prototypes (a +4 dB high shelf
    at about 1682 Hz and a 38 Hz second-order high-pass) with the bilinear transform, which reproduces the 48 kHz table.
    """
    # Stage 1: high shelf (head effects).
    centre, gain_db, quality = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * centre / sample_rate)
    high = 10 ** (gain_db / 20)
    band = high ** 0.4996667741545416
    norm = 1 + k / quality + k * k
    b1 = np.array([high + band * k / quality + k * k, 2 * (k * k - high), high - band * k / quality + k * k]) / norm
    a1 = np.array([1.0, 2 * (k * k - 1) / norm, (1 - k / quality + k * k) / norm])
    # Stage 2: RLB high-pass.
    centre, quality = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * centre / sample_rate)
    norm = 1 + k / quality + k * k
    b2 = np.array([1.0, -2.0, 1.0])
    a2 = np.array([1.0, 2 * (k * k - 1) / norm, (1 - k / quality + k * k) / norm])
    return (b1, a1), (b2, a2)


def integrated_loudness(wav, sample_rate: int) -> float:
    """Integrated loudness in LUFS (BS.1770-4): K-weighting, 400 ms blocks with 75 % overlap, an absolute gate at
    -70 LUFS and a relative gate 10 LU below the absolutely gated loudness.  ``wav`` is mono ``[T]`` or ``[C, T]``
    (front channels, weight 1 each).  Returns ``-inf`` when every block is gated out (silence)."""
    from scipy.signal import lfilter

    channels = np.atleast_2d(np.asarray(wav, dtype=np.float64))
    block, step = int(round(LOUDNESS_BLOCK_S * sample_rate)), int(round(0.1 * sample_rate))
    if channels.shape[-1] < block:
        raise ValueError(f"wav: loudness needs at least 400 ms of audio, got {channels.shape[-1] / sample_rate:.3f} s")
    (b1, a1), (b2, a2) = k_weighting_filters(sample_rate)
    weighted = lfilter(b2, a2, lfilter(b1, a1, channels, axis=-1), axis=-1)
    # Mean square per block from a cumulative sum: O(T) instead of O(T * blocks).
    cumulative = np.concatenate([np.zeros((len(weighted), 1)), np.cumsum(weighted ** 2, axis=-1)], axis=-1)
    starts = np.arange(0, weighted.shape[-1] - block + 1, step)
    block_power = ((cumulative[:, starts + block] - cumulative[:, starts]) / block).sum(axis=0)
    loudness = -0.691 + 10 * np.log10(np.maximum(block_power, 1e-30))
    kept = block_power[loudness > -70.0]
    if kept.size == 0:
        return float("-inf")
    relative_gate = -0.691 + 10 * np.log10(kept.mean()) - 10.0
    kept = block_power[loudness > max(relative_gate, -70.0)]
    return float(-0.691 + 10 * np.log10(kept.mean()))


def normalize_loudness(wav, sample_rate: int, target_lufs: float = -23.0) -> np.ndarray:
    """Scale ``wav`` so its integrated loudness is ``target_lufs`` (EBU R128's -23 by default).

    Silence (nothing above the -70 LUFS gate) is returned unchanged.  No limiter: peaks may exceed 1.0, which is
    harmless for the mel (float) but should not be written to a 16-bit file without care.
    """
    wav = check_mono(wav)
    loudness = integrated_loudness(wav, sample_rate)
    if not np.isfinite(loudness):
        return wav.copy()
    return (wav * 10 ** ((target_lufs - loudness) / 20)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# dynamic range compression


def compress_dynamic_range(wav, sample_rate: int = 16000, threshold_db: float = -30.0, ratio: float = 4.0,
                           attack_ms: float = 5.0, release_ms: float = 50.0, makeup_db: float = 0.0,
                           detector_ms: float = 10.0) -> np.ndarray:
    """Feed-forward compressor: levels above ``threshold_db`` are reduced by ``ratio``.

    The level is the RMS over ``detector_ms`` in dBFS (a full-scale sine reads -3 dB), computed every 1 ms; the
    gain reduction follows it with one-pole ``attack_ms``/``release_ms`` smoothing and is interpolated to the sample
    rate.  A steady tone at level L > threshold comes out at ``threshold + (L - threshold) / ratio + makeup_db``.
    The default threshold suits speech at -23 LUFS (median 50 ms level about -25 dBFS): on the LibriVox test speech
    it narrows the 10th-95th percentile level spread from 24 to 16 dB.
    """
    wav = check_mono(wav)
    if ratio < 1 or attack_ms <= 0 or release_ms <= 0 or detector_ms <= 0:
        raise ValueError(f"need ratio >= 1 and positive attack/release/detector times, got ratio {ratio}, "
                         f"attack {attack_ms} ms, release {release_ms} ms, detector {detector_ms} ms")
    hop = max(1, sample_rate // 1000)
    window = max(hop, int(round(sample_rate * detector_ms / 1000)))
    padded = np.pad(wav.astype(np.float64) ** 2, (window // 2, window - window // 2))
    cumulative = np.concatenate([[0.0], np.cumsum(padded)])
    centres = np.arange(0, len(wav), hop)
    mean_square = (cumulative[centres + window] - cumulative[centres]) / window
    level_db = 10 * np.log10(np.maximum(mean_square, 1e-12))
    target_reduction = np.maximum(level_db - threshold_db, 0.0) * (1.0 - 1.0 / ratio)
    reduction = _attack_release(target_reduction, math.exp(-hop / (sample_rate * attack_ms / 1000)),
                                math.exp(-hop / (sample_rate * release_ms / 1000)))
    gain_db = np.interp(np.arange(len(wav)), centres, makeup_db - reduction)
    return (wav * 10 ** (gain_db / 20)).astype(np.float32)


def _attack_release(target: np.ndarray, attack: float, release: float) -> np.ndarray:
    """One-pole smoothing that rises with the attack coefficient and falls with the release coefficient."""
    smoothed = np.empty_like(target)
    state = 0.0
    for index, value in enumerate(target.tolist()):
        coefficient = attack if value > state else release
        state = coefficient * state + (1.0 - coefficient) * value
        smoothed[index] = state
    return smoothed


# ----------------------------------------------------------------------------------------------------------------
# offset


def shift_audio(wav, sample_rate: int, offset_ms: float) -> np.ndarray:
    """Delay (``offset_ms > 0``: the sound comes later) or advance (``< 0``) audio against the picture, keeping the
    length: the gap is filled with silence."""
    wav = check_mono(wav)
    shift = int(round(sample_rate * offset_ms / 1000))
    if shift == 0:
        return wav.copy()
    shifted = np.zeros_like(wav)
    if abs(shift) >= len(wav):
        return shifted
    if shift > 0:
        shifted[shift:] = wav[:-shift]
    else:
        shifted[:shift] = wav[-shift:]
    return shifted


# ----------------------------------------------------------------------------------------------------------------
# voice activity


def _silero_vad():
    import torch

    threads = torch.get_num_threads()
    try:
        import silero_vad
        import silero_vad.utils_vad
    finally:
        torch.set_num_threads(threads)  # importing silero_vad sets torch to 1 thread for the whole process
    return silero_vad


@functools.lru_cache(maxsize=2)
def _silero_model(use_onnx: bool):
    """silero-vad's ONNX or TorchScript model, read from the files inside its wheel (never downloaded)."""
    from importlib.resources import files

    utils = _silero_vad().utils_vad
    if use_onnx:
        return utils.OnnxWrapper(str(files("silero_vad.data") / "silero_vad.onnx"), force_onnx_cpu=True)
    return utils.init_jit_model(str(files("silero_vad.data") / "silero_vad.jit"))


def _onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def speech_segments(wav_16k, threshold: float = 0.5, min_silence_ms: int = 100, speech_pad_ms: int = 30,
                    min_speech_ms: int = 250, use_onnx: bool | None = None) -> list[tuple[float, float]]:
    """Speech segments ``[(start_s, end_s), ...]`` found by silero-vad in 16 kHz mono audio.

    ``use_onnx=None`` picks the ONNX model when ``onnxruntime`` imports (faster, no deprecated ``torch.jit.load``),
    else the TorchScript one; both give the same segments.
    """
    import torch

    wav = check_mono(wav_16k, "wav_16k")
    model = _silero_model(_onnxruntime_available() if use_onnx is None else use_onnx)
    stamps = _silero_vad().get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(wav)), model, threshold=threshold, sampling_rate=16000,
        min_speech_duration_ms=min_speech_ms, min_silence_duration_ms=min_silence_ms, speech_pad_ms=speech_pad_ms)
    return [(stamp["start"] / 16000, stamp["end"] / 16000) for stamp in stamps]


def speech_activity(wav_16k, fps: float, num_frames: int, sample_rate: int = 16000, threshold: float = 0.5,
                    min_silence_ms: int = 100, speech_pad_ms: int = 30) -> np.ndarray:
    """Per video frame, whether anyone speaks: bool ``[num_frames]``.

    Frame k covers ``[k/fps, (k+1)/fps)`` seconds and counts as speech when it overlaps a silero-vad segment.
    Frames past the end of the audio are silent.
    """
    if sample_rate != 16000:
        raise ValueError(f"sample_rate: silero-vad here takes 16 kHz audio, got {sample_rate}; resample with "
                         "pipelines.media.audio_to_mono")
    if fps <= 0 or num_frames < 0:
        raise ValueError(f"fps must be > 0 and num_frames >= 0, got {fps} and {num_frames}")
    active = np.zeros(num_frames, dtype=bool)
    starts = np.arange(num_frames) / fps
    for begin, end in speech_segments(wav_16k, threshold, min_silence_ms, speech_pad_ms):
        active |= (starts < end) & (starts + 1.0 / fps > begin)
    return active


# ----------------------------------------------------------------------------------------------------------------
# chain


def enhance_speech(wav_16k, sample_rate: int = 16000, denoise: bool = False, compress: bool = False,
                   target_lufs: float | None = None, offset_ms: float = 0.0, noise=None) -> np.ndarray:
    """The clean-up chain in its useful order: denoise, compress, normalise loudness (last, so the level is the
    target), then shift.  Every step is off by default, which returns the audio unchanged.

    The compressor runs on the audio brought to -23 LUFS first, so its threshold means the same for any recording;
    afterwards the level goes to ``target_lufs``, or back to the input's loudness when that is None.
    """
    wav = check_mono(wav_16k, "wav_16k")
    if denoise:
        wav = spectral_subtract(wav, sample_rate, noise=noise)
    if compress:
        loudness = integrated_loudness(wav, sample_rate)
        if np.isfinite(loudness):
            wav = compress_dynamic_range(normalize_loudness(wav, sample_rate, -23.0), sample_rate)
            wav = normalize_loudness(wav, sample_rate, loudness if target_lufs is None else target_lufs)
    if target_lufs is not None:
        wav = normalize_loudness(wav, sample_rate, target_lufs)
    if offset_ms:
        wav = shift_audio(wav, sample_rate, offset_ms)
    return wav


def clean_up_speech(waveform, sample_rate: int, denoise: bool = False, compress: bool = False,
                    target_lufs: float | None = None, offset_ms: float = 0.0) -> tuple[np.ndarray, str | None]:
    """*Audio Clean-up*: any waveform ([T], [C,T] or [B,C,T]) at any rate -> mono 16 kHz -> :func:`enhance_speech`.

    Audio shorter than one 400 ms loudness block cannot be measured, so compression and loudness normalisation are
    skipped for it; the second value then says so (None otherwise).
    """
    wav = audio_to_mono(waveform, sample_rate)
    measurable = len(wav) >= LOUDNESS_BLOCK_S * TARGET_SAMPLE_RATE
    note = None
    if not measurable and (compress or target_lufs is not None):
        note = (f"{len(wav) / TARGET_SAMPLE_RATE:.2f} s of audio is shorter than the {LOUDNESS_BLOCK_S} s loudness "
                "measurement window; loudness normalisation and compression are skipped")
    cleaned = enhance_speech(wav, TARGET_SAMPLE_RATE, denoise=denoise, compress=compress and measurable,
                             target_lufs=target_lufs if measurable else None, offset_ms=offset_ms)
    return cleaned, note


def speech_for_frames(waveform, sample_rate: int, num_frames: int, fps: float, keep_silent_mouths: bool = False):
    """The audio a lip sync follows: fitted to the video (trimmed, or padded with silence so the mouth closes).

    Returns ``(fitted waveform at the input rate, mono 16 kHz wav, active)``; ``active`` (bool per frame, from
    :func:`speech_activity`) is None unless ``keep_silent_mouths``.
    """
    fitted = fit_audio_to_frames(waveform, sample_rate, num_frames, fps)
    wav = audio_to_mono(fitted, sample_rate)
    return fitted, wav, speech_activity(wav, fps, num_frames) if keep_silent_mouths else None
