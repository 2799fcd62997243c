"""Wav2Lip-style mel spectrogram and per-video-frame mel windows, as Diff2Lip computes them."""
from __future__ import annotations

import librosa
import numpy as np
from scipy.signal import lfilter

SAMPLE_RATE = 16000
# The mel the released checkpoint was trained on (Wav2Lip's hparams); anything else is refused for it.
MEL_CONFIG = {"n_mels": 80, "sample_rate": SAMPLE_RATE, "n_fft": 800, "hop_length": 200, "win_length": 800,
              "fmin": 55.0, "fmax": 7600.0}
MEL_FRAMES_PER_SECOND = 80  # hop 200 at 16 kHz
WINDOW_MEL_FRAMES = 16  # 200 ms of audio per video frame
REFERENCE_FPS = 25.0
SILENCE_MEL = -4.0  # melspectrogram() of zeros: the -100 dB floor normalised and clipped


def melspectrogram(wav_16k: np.ndarray) -> np.ndarray:
    """[80, 1 + len//200] float64 mel in [-4, 4] of a 16 kHz mono waveform (float in [-1,1]; int16 is scaled).

    Pre-emphasis 0.97, |STFT| (n_fft 800, hop 200, Hann, centred with ZERO padding), Slaney mel 55..7600 Hz,
    20·log10 with a 1e-5 floor, minus 20 dB, then symmetric normalisation to [-4, 4] with clipping.
    """
    wav = np.asarray(wav_16k)
    if wav.ndim != 1 or wav.size == 0:
        raise ValueError(f"wav_16k must be a non-empty 1-D mono waveform at 16 kHz, got shape {wav.shape}; "
                         f"mix to mono and resample first")
    if wav.dtype == np.int16:
        wav = wav.astype(np.float32) / 32768.0
    elif not np.issubdtype(wav.dtype, np.floating):
        raise ValueError(f"wav_16k must be float in [-1, 1] or int16, got {wav.dtype}")
    emphasised = lfilter([1, -0.97], [1], wav)
    cfg = MEL_CONFIG
    spectrum = np.abs(librosa.stft(y=emphasised, n_fft=cfg["n_fft"], hop_length=cfg["hop_length"],
                                   win_length=cfg["win_length"], window="hann", center=True, pad_mode="constant"))
    mel_basis = librosa.filters.mel(sr=cfg["sample_rate"], n_fft=cfg["n_fft"], n_mels=cfg["n_mels"], fmin=cfg["fmin"],
                                    fmax=cfg["fmax"])
    min_level = np.exp(-100 / 20 * np.log(10))
    db = 20 * np.log10(np.maximum(min_level, np.dot(mel_basis, spectrum))) - 20
    return np.clip(8.0 * ((db + 100) / 100) - 4.0, -4.0, 4.0)


def window_start(frame: int, fps: float = REFERENCE_FPS) -> int:
    """First mel frame of video frame ``frame``'s window: the window starts one 25-fps frame (40 ms) before it.

    At 25 fps this is the reference's ``int(80 * max(k - 1, 0) / 25)`` (frames 0 and 1 share row 0;
    Wav2Lip's ``int(80 * k / 25)`` would shift the audio by 40 ms).
    """
    start_frame = max(frame - fps / REFERENCE_FPS, 0)
    return int(MEL_FRAMES_PER_SECOND * (start_frame / fps))


def mel_windows(mel: np.ndarray, fps: float = REFERENCE_FPS, num_frames: int | None = None) -> np.ndarray:
    """Per-video-frame mel windows [N, 80, 16] float32 (mel bins x time, the model's layout).

    Placement by time: frame k (at ``fps``) takes the 16 mel frames (200 ms) starting at time ``max(k/fps - 0.04, 0)``
    s, i.e. 40 ms before the frame, which is exactly the reference's windows at 25 fps.  (The reference itself
    re-times every video to 25 fps first; here the frames are kept and the audio is placed by their timestamps.)

    Without ``num_frames`` the windows stop, as in the reference, at the first one that would run past the audio.
    With ``num_frames`` exactly that many are returned: frames past the end of the audio repeat the last complete
    window (so video longer than its audio keeps its length), and a clip shorter than one window (a single frame, a
    still image) gets its mel padded with silence to one window instead of an "audio too short" error.
    """
    mel = np.asarray(mel)
    if mel.ndim != 2 or mel.shape[0] != 80:
        raise ValueError(f"mel must be [80, T] from melspectrogram(), got shape {mel.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if num_frames is not None and mel.shape[1] < WINDOW_MEL_FRAMES:
        # The clip itself is shorter than 200 ms: the audio is fine, pad it with the mel of silence.
        mel = np.pad(mel, ((0, 0), (0, WINDOW_MEL_FRAMES - mel.shape[1])), constant_values=SILENCE_MEL)
    total = mel.shape[1]
    starts = []
    while window_start(len(starts), fps) + WINDOW_MEL_FRAMES <= total:
        if num_frames is not None and len(starts) == num_frames:
            break
        starts.append(window_start(len(starts), fps))
    if not starts:
        raise ValueError(f"audio too short: {total} mel frames, a window needs {WINDOW_MEL_FRAMES} "
                         f"(about 0.2 s of audio)")
    if num_frames is not None:
        starts += [starts[-1]] * (num_frames - len(starts))
    return np.stack([mel[:, s:s + WINDOW_MEL_FRAMES] for s in starts]).astype(np.float32)
