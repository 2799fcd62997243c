"""Video and audio I/O and audio shaping, framework-free (numpy/torch, PyAV, soundfile, scipy).

Audio travels in ComfyUI's AUDIO layout: ``{"waveform": torch.float32 [B, C, T], "sample_rate": int}``.
Video frames are RGB uint8 ``[N, H, W, 3]``.  No system ffmpeg is needed: PyAV bundles libx264 and the AAC encoder.
Every writer is atomic (a temporary file in the target folder, then ``os.replace``) and never overwrites an existing
file unless ``overwrite=True``; otherwise it picks the next free numbered name (``clip_0001.mp4``).
"""
from __future__ import annotations

import math
import os
import uuid
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .frames import to_uint8

TARGET_SAMPLE_RATE = 16000  # Diff2Lip's mel expects 16 kHz mono
_KAISER_BETA = 8.6  # stop-band attenuation of about 90 dB for the polyphase resampler


def _as_numpy(waveform) -> np.ndarray:
    """Audio samples as float32; signed integer PCM (e.g. int16) is scaled to -1..1."""
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu().numpy()
    array = np.asarray(waveform)
    if np.issubdtype(array.dtype, np.signedinteger):
        return (array / float(np.iinfo(array.dtype).max + 1)).astype(np.float32)
    return array.astype(np.float32, copy=False)


def audio_to_mono(waveform, sample_rate: int, target_rate: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Mix audio to mono and resample it; returns float32 ``[T']``.

    ``waveform`` is ``[B, C, T]`` (B must be 1), ``[C, T]`` or ``[T]``, torch or numpy.  Channels are averaged (as
    ``librosa.load(mono=True)`` does), then resampled with ``scipy.signal.resample_poly``: an exact rational-ratio
    polyphase FIR with a Kaiser window (beta 8.6, about 90 dB stop-band), linear phase and delay-compensated, so
    speech onsets do not move.  The reference's own resampler changed between librosa versions (resampy in 0.9.2, soxr
    in 0.10+), so no single "reference" resampler exists; this one needs no extra dependency.
    """
    audio = _as_numpy(waveform)
    if audio.ndim == 3:
        if audio.shape[0] != 1:
            raise ValueError(f"waveform: expected one clip (batch 1), got batch {audio.shape[0]}; "
                             "split the batch first")
        audio = audio[0]
    if audio.ndim == 2:
        audio = audio.mean(axis=0)
    if audio.ndim != 1:
        raise ValueError(f"waveform: expected [B,C,T], [C,T] or [T], got shape {tuple(audio.shape)}")
    if sample_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample_rate/target_rate must be positive, got {sample_rate}/{target_rate}")
    return _resample(audio, int(sample_rate), int(target_rate)).astype(np.float32)


def _resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out or audio.size == 0:
        return audio
    from scipy.signal import resample_poly

    common = math.gcd(rate_in, rate_out)
    return resample_poly(audio, rate_out // common, rate_in // common, axis=-1, window=("kaiser", _KAISER_BETA))


def exact_rate(fps) -> Fraction:
    """A frame rate as a Fraction for an encoder: Fractions pass through, floats like 29.97 become 30000/1001."""
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)


def frames_to_samples(num_frames: int, fps: float, sample_rate: int) -> int:
    """Number of audio samples that spans ``num_frames`` video frames (rounded to the nearest sample)."""
    return int(round(Fraction(num_frames) * Fraction(sample_rate) / Fraction(fps).limit_denominator(100000)))


def fit_audio_to_frames(waveform, sample_rate: int, num_frames: int, fps: float):
    """Trim or zero-pad audio along its last axis to exactly ``num_frames / fps`` seconds.

    Keeps the input's layout and type (``[B, C, T]`` torch in, ``[B, C, T]`` torch out; numpy stays numpy).
    """
    if num_frames < 0 or fps <= 0:
        raise ValueError(f"num_frames must be >= 0 and fps > 0, got {num_frames} and {fps}")
    length = frames_to_samples(num_frames, fps, sample_rate)
    current = waveform.shape[-1]
    if current >= length:
        return waveform[..., :length]
    pad = length - current
    if isinstance(waveform, torch.Tensor):
        return torch.nn.functional.pad(waveform, (0, pad))
    widths = [(0, 0)] * (np.ndim(waveform) - 1) + [(0, pad)]
    return np.pad(np.asarray(waveform), widths)


def make_audio(waveform, sample_rate: int) -> dict:
    """Build a ComfyUI AUDIO dict from ``[T]``, ``[C, T]`` or ``[B, C, T]`` samples."""
    tensor = torch.as_tensor(_as_numpy(waveform))
    while tensor.ndim < 3:
        tensor = tensor.unsqueeze(0)
    return {"waveform": tensor.contiguous(), "sample_rate": int(sample_rate)}


# ----------------------------------------------------------------------------------------------------------------
# atomic, non-overwriting file placement


def free_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``path`` itself if it is free (or ``overwrite``), else the first free ``stem_NNNN.suffix`` beside it."""
    target = Path(path)
    if overwrite or not target.exists():
        return target
    number = 1
    while True:
        candidate = target.with_name(f"{target.stem}_{number:04d}{target.suffix}")
        if not candidate.exists():
            return candidate
        number += 1


def write_atomically(path, overwrite: bool, write) -> Path:
    """Call ``write(temp_path)`` on a temp file beside ``path`` (same suffix), then move it into place."""
    target = free_path(path, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A fresh unique name (not mkstemp) so the writer creates the file with the user's normal permissions.
    temp = str(target.parent / f".{target.stem}.{uuid.uuid4().hex}.part{target.suffix}")
    try:
        write(temp)
        # Re-check: another writer may have taken the name while we encoded (no overwrite was asked for).
        if not overwrite and target.exists():
            target = free_path(target)
        os.replace(temp, target)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
    return target


# ----------------------------------------------------------------------------------------------------------------
# audio files


def read_audio(path: str | os.PathLike) -> dict:
    """Read an audio file into a ComfyUI AUDIO dict (float32 ``[1, C, T]``).

    WAV/FLAC/OGG/MP3 go through soundfile; anything soundfile cannot open (m4a, mp4, ...) is decoded with PyAV.
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path.name} in {path.parent}")
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except soundfile.LibsndfileError:
        audio = decode_audio_av(path)
        if audio is None:
            raise ValueError(f"{path}: no audio stream found") from None
        return audio
    return make_audio(samples.T, rate)


def write_wav(path: str | os.PathLike, waveform, sample_rate: int, overwrite: bool = False,
              subtype: str = "PCM_16") -> Path:
    """Write ``[T]``, ``[C, T]`` or ``[1, C, T]`` float audio (range -1..1) as WAV; returns the path written."""
    import soundfile

    samples = _as_numpy(waveform)
    if samples.ndim == 3:
        samples = samples[0]
    samples = np.atleast_2d(samples).T  # soundfile wants [T, C]
    write = lambda temp: soundfile.write(temp, samples, int(sample_rate), subtype=subtype, format="WAV")  # noqa: E731
    return write_atomically(path, overwrite, write)


# ----------------------------------------------------------------------------------------------------------------
# video files


def read_video(path: str | os.PathLike):
    """Decode a video file: returns ``(frames uint8 [N, H, W, 3] RGB, fps float, audio dict or None)``.

    The audio is placed by its timestamps and trimmed to the stream's duration, which drops the AAC encoder padding
    that PyAV decodes after the last real sample.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path.name} in {path.parent}")
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream found")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        raise ValueError(f"{path}: the video stream has no frames")
    return np.stack(frames), fps, decode_audio_av(path)


def decode_audio_av(path: Path) -> dict | None:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        pieces, positions = [], []
        for frame in container.decode(stream):
            data = frame.to_ndarray().astype(np.float32)
            if frame.format.is_planar is False:  # packed layouts come as [1, T*C]
                data = data.reshape(-1, len(frame.layout.channels)).T
            data = _to_unit_range(data, frame.format.name)
            start = 0 if frame.pts is None else int(round(frame.pts * frame.time_base * rate))
            pieces.append(data)
            positions.append(start)
        if not pieces:
            return None
        channels = pieces[0].shape[0]
        end = max(p + d.shape[1] for p, d in zip(positions, pieces))
        if stream.duration is not None:
            end = min(end, int(round(stream.duration * stream.time_base * rate)))
        samples = np.zeros((channels, max(end, 0)), np.float32)
        for start, data in zip(positions, pieces):
            lo, hi = max(start, 0), min(start + data.shape[1], end)
            if hi > lo:
                samples[:, lo:hi] = data[:, lo - start:hi - start]
    return make_audio(samples, rate)


def _to_unit_range(data: np.ndarray, sample_format: str) -> np.ndarray:
    scale = {"s16": 32768.0, "s16p": 32768.0, "s32": 2147483648.0, "s32p": 2147483648.0, "u8": 128.0, "u8p": 128.0}
    if sample_format.startswith("u8"):
        return (data - 128.0) / 128.0
    return data / scale.get(sample_format, 1.0)


def _frames_to_uint8(frames) -> np.ndarray:
    array = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"frames: expected [N, H, W, 3] RGB, got shape {tuple(array.shape)}")
    return array if array.dtype == np.uint8 else to_uint8(array.astype(np.float32))


def even_size(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even width and height: repeat the last row/column where one is odd."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def write_video(path: str | os.PathLike, frames, fps: float, audio: dict | None = None, overwrite: bool = False,
                crf: int = 18, progress=None) -> Path:
    """Encode frames (uint8 ``[N,H,W,3]`` RGB, or float 0..1) as H.264 (libx264, yuv420p) + AAC; returns the path.

    Odd sizes get their last row/column repeated.  ``audio`` is a ComfyUI AUDIO dict; it is muxed as is (use
    :func:`fit_audio_to_frames` first to make it match the video).  ``progress(done, total)`` is called per frame.
    """
    frames = even_size(_frames_to_uint8(frames))
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if len(frames) == 0:
        raise ValueError("frames: nothing to write (0 frames)")
    return write_atomically(path, overwrite, lambda temp: _encode(temp, frames, fps, audio, crf, progress))


def _encode(temp: str, frames: np.ndarray, fps: float, audio: dict | None, crf: int, progress) -> None:
    import av

    with av.open(temp, mode="w") as container:
        video = container.add_stream("libx264", rate=exact_rate(fps))
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": str(crf)}
        sound = add_audio_stream(container, audio) if audio is not None else None
        if sound is not None:
            encode_and_mux(container, sound[0], sound[1])
        for index, frame in enumerate(frames):
            encode_and_mux(container, video, av.VideoFrame.from_ndarray(frame, format="rgb24"))
            if progress is not None:
                progress(index + 1, len(frames))
        encode_and_mux(container, video, None)
        if sound is not None:
            encode_and_mux(container, sound[0], None)


def add_audio_stream(container, audio: dict):
    import av

    samples = _as_numpy(audio["waveform"])
    samples = samples[0] if samples.ndim == 3 else np.atleast_2d(samples)
    if samples.shape[0] > 2:
        samples = samples.mean(axis=0, keepdims=True)
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    rate = int(audio["sample_rate"])
    stream = container.add_stream("aac", rate=rate)
    stream.layout = layout
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32), format="fltp", layout=layout)
    frame.sample_rate, frame.pts = rate, 0
    return stream, frame


def encode_and_mux(container, stream, frame) -> None:
    """Encode one frame (``None`` flushes the encoder) and write its packets into the container."""
    for packet in stream.encode(frame):
        container.mux(packet)
