"""Sub-clips for chunks (lossless video + the matching audio samples) and the final video encoded once."""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ...pipelines.lossless import iter_video_frames, video_rate, write_lossless
from ...pipelines.media import (add_audio_stream, even_size, encode_and_mux, write_atomically, fit_audio_to_frames,
                                make_audio, read_audio, write_wav)
from .plan import Chunk

# Audio kept past a sub-clip's last frame: lip sync trims the audio to the frames itself, so a little more is harmless
# and makes sure no sample that the whole clip would use is missing.
_AUDIO_TAIL_SECONDS = 0.1


@dataclass
class ClipInfo:
    frames: int
    fps: Fraction
    width: int
    height: int


def probe(path: Path) -> ClipInfo:
    """Frame count (packets counted, nothing decoded), exact frame rate and size of a video file."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise SystemExit(f"{path}: no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        frames = sum(1 for packet in container.demux(stream) if packet.size)
    return ClipInfo(frames, video_rate(path), width, height)


def load_audio(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        return read_audio(path)
    except ValueError as e:
        raise SystemExit(f"{path}: {e}; give an audio file with the same name or one audio for all clips") from None


def audio_range(audio: dict, chunk: Chunk, fps: Fraction) -> np.ndarray:
    """The samples of frames ``[context_start, context_end)`` (plus a short tail), float32 [C, T]."""
    rate = audio["sample_rate"]
    waveform = audio["waveform"][0].numpy()
    first = Fraction(chunk.context_start) * rate / fps
    if first.denominator != 1:
        raise ValueError(f"chunk {chunk.index} starts between audio samples (frame {chunk.context_start})")
    last = math.ceil(Fraction(chunk.context_end) * rate / fps + Fraction(_AUDIO_TAIL_SECONDS) * rate)
    return waveform[:, int(first):last]


def subclips(video: Path, chunks: list[Chunk]) -> Iterator[tuple[Chunk, list[np.ndarray]]]:
    """Decode ``video`` once, in order, and yield each chunk with the frames of its context range."""
    frames = iter_video_frames(video)
    buffer: list[np.ndarray] = []
    buffer_start = 0  # frame index of buffer[0]
    for chunk in sorted(chunks, key=lambda c: c.context_start):
        drop = max(0, chunk.context_start - buffer_start)
        buffer, buffer_start = buffer[drop:], buffer_start + drop
        while buffer_start + len(buffer) < chunk.context_end:
            frame = next(frames, None)
            if frame is None:
                raise ValueError(f"{video}: ended at frame {buffer_start + len(buffer)}, chunk {chunk.index} needs "
                                 f"{chunk.context_end}")
            if buffer_start + len(buffer) >= chunk.context_start or buffer:
                buffer.append(frame)
            else:
                buffer_start += 1
        yield chunk, buffer[chunk.context_start - buffer_start:chunk.context_end - buffer_start]


def write_subclip(folder: Path, name: str, frames: list[np.ndarray], fps: Fraction, audio: np.ndarray | None,
                  sample_rate: int) -> tuple[Path, Path | None]:
    """The sub-clip as a lossless video and its audio as a float WAV (exact samples)."""
    video = write_lossless(folder / f"{name}.mkv", frames, fps)
    wav = None if audio is None else write_wav(folder / f"{name}.wav", audio, sample_rate, subtype="FLOAT")
    return video, wav


def encode_final(path: Path, chunk_files: list[Path], fps: Fraction, audio: dict | None, num_frames: int,
                 overwrite: bool = False, crf: int = 18) -> Path:
    """Encode the chunks' frames once (H.264 yuv420p, CRF ``crf``) with ``audio`` fitted to the video; atomic.

    Frames are streamed chunk by chunk, so memory does not grow with the clip's length."""
    import av

    first = probe(chunk_files[0])
    # yuv420p needs even sizes: odd ones repeat their last row/column, as pipelines.media.write_video does
    width, height = first.width + first.width % 2, first.height + first.height % 2

    def write(temp: str) -> None:
        with av.open(temp, mode="w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf)}
            if audio is not None:
                fitted = fit_audio_to_frames(audio["waveform"], audio["sample_rate"], num_frames, fps)
                sound, sound_frame = add_audio_stream(container, make_audio(fitted, audio["sample_rate"]))
                encode_and_mux(container, sound, sound_frame)
            written = 0
            for chunk_file in chunk_files:
                for frame in iter_video_frames(chunk_file):
                    # Converted to yuv420p here: left to the encoder, PyAV's implicit conversion gave different
                    # bits for the same frames from run to run (tens of grey levels after x264), this one does not.
                    picture = av.VideoFrame.from_ndarray(even_size(frame[None])[0], format="rgb24")
                    picture = picture.reformat(format="yuv420p")
                    # explicit timestamps at the clip's own rate (x264's rate control reads frame durations)
                    picture.pts, picture.time_base = written, Fraction(1) / fps
                    encode_and_mux(container, stream, picture)
                    written += 1
            if written != num_frames:
                raise ValueError(f"{path.name}: the chunks hold {written} frames, the clip has {num_frames}")
            encode_and_mux(container, stream, None)
            if audio is not None:
                encode_and_mux(container, sound, None)

    return write_atomically(path, overwrite, write)
