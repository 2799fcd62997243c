"""LSE-C / LSE-D lip-sync scores with SyncNet, computed as the reference evaluation does (joonson/syncnet_python
``SyncNetInstance.evaluate``; Wav2Lip's ``scores_LSE`` scripts give the same numbers).

Steps, each as the reference:
1. Lips: the face-track frames as BGR uint8 224x224, cast to float 0..255 (no scaling, no mean, no grayscale).
   Window i = frames i..i+4.
2. Audio: MFCC (python_speech_features 0.6 defaults, re-implemented in :func:`mfcc`) of the RAW int16 samples at
   16 kHz -- scaling to [-1, 1] would change c0, the log frame energy. Window i = MFCC columns 4i..4i+19.
3. ``min_length = min(frames, samples // 640)`` and ``min_length - 5`` windows (one fewer than would fit).
4. Distances ``dists[i, k] = ||lip_i - aud_{i+k-vshift} + 1e-6||`` (torch ``pairwise_distance``), where audio
   windows past either end are ZERO vectors that still count in the mean over windows.
5. ``offset = vshift - argmin(mean)``, LSE-D = min(mean), LSE-C = median(mean) - min(mean).

Differences from scoring a file with the reference tools: the reference dumps frames to JPEG with ffmpeg (lossy) and
resamples audio with ffmpeg; here decoded frames are scored directly and other sample rates are resampled with a
polyphase filter, so scores of real clips differ slightly from the reference's.
"""
from __future__ import annotations

import decimal
import math
import warnings
from typing import Callable

import numpy as np
import torch

SYNC_SAMPLE_RATE = 16000
SYNC_FPS = 25
SAMPLES_PER_FRAME = SYNC_SAMPLE_RATE // SYNC_FPS  # 640
MFCC_PER_FRAME = 4  # 100 MFCC frames/s over 25 video frames/s
WINDOW_FRAMES = 5
FACE_SIZE = 224
PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance's default, part of the reference's distances

# python_speech_features 0.6 mfcc() defaults
MFCC_WINLEN_S = 0.025
MFCC_WINSTEP_S = 0.01
MFCC_NUMCEP = 13
MFCC_NFILT = 26
MFCC_NFFT = 512
MFCC_PREEMPH = 0.97
MFCC_CEPLIFTER = 22


def _round_half_up(value: float) -> int:
    return int(decimal.Decimal(value).quantize(decimal.Decimal("1"), rounding=decimal.ROUND_HALF_UP))


def _hz_to_mel(hz):
    return 2595 * np.log10(1 + hz / 700.0)


def _mel_to_hz(mel):
    return 700 * (10 ** (mel / 2595.0) - 1)


def _mel_filterbank(nfilt: int, nfft: int, sample_rate: int, lowfreq: float, highfreq: float) -> np.ndarray:
    """Triangular filters on FFT bins floor((nfft + 1) * hz / sr), the bin rule python_speech_features uses."""
    mel_points = np.linspace(_hz_to_mel(lowfreq), _hz_to_mel(highfreq), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mel_points) / sample_rate)
    bank = np.zeros([nfilt, nfft // 2 + 1])
    for j in range(nfilt):
        for i in range(int(bins[j]), int(bins[j + 1])):
            bank[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            bank[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return bank


def mfcc(signal, sample_rate: int = SYNC_SAMPLE_RATE) -> np.ndarray:
    """(frames, 13) float64 MFCC equal to ``python_speech_features.mfcc(signal, sample_rate)`` (0.6, defaults):
    pre-emphasis 0.97, 25 ms rectangular frames every 10 ms (the last zero-padded), 512-point power spectrum,
    26 mel filters 0..sr/2, log, orthonormal DCT-II, lifter 22, c0 replaced by the log frame energy."""
    from scipy.fft import dct

    signal = np.asarray(signal)
    if signal.ndim != 1 or signal.size == 0:
        raise ValueError(f"mfcc: expected a non-empty 1-D signal, got shape {signal.shape}")
    frame_len = _round_half_up(MFCC_WINLEN_S * sample_rate)
    frame_step = _round_half_up(MFCC_WINSTEP_S * sample_rate)
    nfft = MFCC_NFFT  # fixed in 0.6 (later versions grow it with the frame); numpy's rfft truncates longer frames
    emphasised = np.append(signal[0], signal[1:] - MFCC_PREEMPH * signal[:-1]).astype(np.float64)
    count = 1 if emphasised.size <= frame_len else 1 + int(math.ceil((emphasised.size - frame_len) / frame_step))
    padded = np.concatenate([emphasised, np.zeros((count - 1) * frame_step + frame_len - emphasised.size)])
    index = np.arange(frame_len)[None, :] + frame_step * np.arange(count)[:, None]
    power = np.square(np.abs(np.fft.rfft(padded[index], nfft))) / nfft
    eps = np.finfo(float).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    feat = power @ _mel_filterbank(MFCC_NFILT, nfft, sample_rate, 0, sample_rate / 2).T
    feat = np.where(feat == 0, eps, feat)
    cepstra = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :MFCC_NUMCEP]
    cepstra = cepstra * (1 + (MFCC_CEPLIFTER / 2.0) * np.sin(np.pi * np.arange(MFCC_NUMCEP) / MFCC_CEPLIFTER))
    cepstra[:, 0] = np.log(energy)
    return cepstra


def _as_int16_mono(wav, sample_rate: int) -> np.ndarray:
    """The int16 samples at 16 kHz; floats are refused because the MFCC energy term depends on the raw scale."""
    wav = np.asarray(wav.detach().cpu() if isinstance(wav, torch.Tensor) else wav)
    if wav.ndim == 2 and 1 in wav.shape:
        wav = wav.reshape(-1)
    if wav.ndim != 1:
        raise ValueError(f"wav_int16: expected mono samples [T], got shape {wav.shape}; mix the channels first")
    if wav.dtype != np.int16:
        raise ValueError(f"wav_int16: expected int16 samples (the MFCC runs on raw int16 values), got {wav.dtype}; "
                         "convert float audio in [-1, 1] with to_int16()")
    if sample_rate != SYNC_SAMPLE_RATE:
        from scipy.signal import resample_poly

        divisor = math.gcd(int(sample_rate), SYNC_SAMPLE_RATE)
        wav = to_int16(resample_poly(wav.astype(np.float64) / 32768.0, SYNC_SAMPLE_RATE // divisor,
                                     int(sample_rate) // divisor))
    return wav


def to_int16(samples) -> np.ndarray:
    """Float samples in [-1, 1] -> int16 (clipped), the format a 16-bit PCM wav holds."""
    samples = np.asarray(samples, dtype=np.float64)
    return np.clip(np.rint(samples * 32767.0), -32768, 32767).astype(np.int16)


def _as_bgr_faces(frames) -> np.ndarray:
    frames = np.asarray(frames.detach().cpu() if isinstance(frames, torch.Tensor) else frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames_bgr: expected uint8 [N, 224, 224, 3] BGR face crops, got {frames.dtype} "
                         f"{frames.shape}")
    if frames.shape[1:3] != (FACE_SIZE, FACE_SIZE):
        import cv2  # Wav2Lip's variant resizes every frame to 224 (bilinear)

        frames = np.stack([cv2.resize(frame, (FACE_SIZE, FACE_SIZE)) for frame in frames])
    return frames


def window_count(num_frames: int, num_samples: int) -> int:
    """The reference's window count: ``min(frames, samples // 640) - 5``."""
    return min(num_frames, num_samples // SAMPLES_PER_FRAME) - WINDOW_FRAMES


@torch.no_grad()
def syncnet_embeddings(model, frames_bgr: np.ndarray, mfcc_frames: np.ndarray, windows: int, batch_size: int = 20,
                       progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lip and audio embeddings (float32 [windows, D] each) of windows 0..windows-1, in batches like the reference.
    ``mfcc_frames`` is the (T, 13) MFCC; the frames are converted to float one batch at a time."""
    device = next(model.parameters()).device
    cc = torch.from_numpy(np.ascontiguousarray(mfcc_frames.T)).float()  # (13, T), float32 as the reference casts
    lips, auds = [], []
    for start in range(0, windows, batch_size):
        stop = min(windows, start + batch_size)
        clips = np.stack([frames_bgr[i:i + WINDOW_FRAMES] for i in range(start, stop)])  # (B, 5, H, W, 3)
        lip_in = torch.from_numpy(clips).float().permute(0, 4, 1, 2, 3)
        aud_in = torch.stack([cc[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + 20] for i in range(start, stop)])[:, None]
        lips.append(model.forward_lip(lip_in.to(device)).float().cpu())
        auds.append(model.forward_aud(aud_in.to(device)).float().cpu())
        if progress is not None:
            progress(stop, windows)
    return torch.cat(lips), torch.cat(auds)


def sync_distances(lip: torch.Tensor, aud: torch.Tensor, vshift: int) -> torch.Tensor:
    """[windows, 2*vshift+1] distances: column k compares lip window i with audio window i + k - vshift, a zero
    vector where that index is outside the clip."""
    width = 2 * vshift + 1
    padded = torch.nn.functional.pad(aud, (0, 0, vshift, vshift))
    index = torch.arange(len(lip))[:, None] + torch.arange(width)[None, :]
    return torch.nn.functional.pairwise_distance(lip[:, None, :].expand(-1, width, -1), padded[index],
                                                 eps=PAIRWISE_EPS)


def scores_from_distances(dists: torch.Tensor, vshift: int) -> dict:
    """Offset, LSE-D, LSE-C and the per-frame confidence from the distance matrix (see module)."""
    from scipy.signal import medfilt

    mean_dist = dists.mean(dim=0)
    min_dist, min_index = torch.min(mean_dist, 0)
    median_dist = torch.median(mean_dist)  # 2*vshift+1 values: odd, so the median is one of them
    frame_conf = (median_dist - dists[:, int(min_index)]).numpy()
    with warnings.catch_warnings():  # clips under 9 windows: zero-padded like the reference, warned by scipy
        warnings.simplefilter("ignore", UserWarning)
        frame_conf_medfilt = medfilt(frame_conf.astype(np.float64), 9).astype(np.float32)
    return {
        "offset": int(vshift - int(min_index)),
        "lse_d": float(min_dist),
        "lse_c": float(median_dist - min_dist),
        "min_dist": float(min_dist),
        "median_dist": float(median_dist),
        "mean_dist": mean_dist.numpy(),
        "dists": dists.numpy(),
        "frame_conf": frame_conf,
        "frame_conf_medfilt": frame_conf_medfilt,
    }


def syncnet_scores(model, frames_bgr, wav_int16, sample_rate=16000, vshift=15, batch_size=20) -> dict:
    """The reference SyncNet evaluation of a 25 fps face track (``frames_bgr`` uint8 [N, 224, 224, 3], BGR) and its
    int16 mono audio. Returns ``offset`` (video frames; lip window i matches audio window i - offset best),
    ``lse_d``, ``lse_c``, ``dists`` [windows, 2*vshift+1], ``mean_dist``, ``min_dist``, ``median_dist``,
    ``frame_conf`` (+ its 9-tap median filter), ``lip_embeddings`` / ``audio_embeddings``, ``num_windows``."""
    frames = _as_bgr_faces(frames_bgr)
    wav = _as_int16_mono(wav_int16, int(sample_rate))
    if vshift < 0 or batch_size < 1:
        raise ValueError(f"syncnet_scores: vshift must be >= 0 and batch_size >= 1, got {vshift}, {batch_size}")
    windows = window_count(len(frames), len(wav))
    if windows < 1:
        raise ValueError(f"syncnet_scores: {len(frames)} frames and {len(wav) / SYNC_SAMPLE_RATE:.2f} s of audio give "
                         f"no 5-frame window; SyncNet needs at least {WINDOW_FRAMES + 1} frames and as many 40 ms "
                         "audio frames")
    lip, aud = syncnet_embeddings(model, frames, mfcc(wav, SYNC_SAMPLE_RATE), windows, int(batch_size))
    result = scores_from_distances(sync_distances(lip, aud, int(vshift)), int(vshift))
    result.update(lip_embeddings=lip.numpy(), audio_embeddings=aud.numpy(), num_windows=windows)
    return result
