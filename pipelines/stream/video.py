"""Video files as streams: a lazily decoded source (PyAV) and a chunk-by-chunk encoding sink, both framework-free."""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..frames import to_uint8
from ..media import add_audio_stream, decode_audio_av, encode_and_mux, even_size, fit_audio_to_frames, write_atomically
from .core import FrameStream, Source, StreamInfo

# Frame-to-frame timestamp spread (in frame durations) beyond which a clip counts as variable frame rate.
_VFR_TOLERANCE = 0.5


class VideoError(ValueError):
    """A video file the stream cannot use; the message says which file, what is wrong and the fix."""


@dataclass(frozen=True)
class _Probe:
    fps: Fraction
    width: int
    height: int
    num_frames: int
    frame_pts: tuple = ()  # presentation time stamp of each frame, in frame order (for seeking to a range)


def _open(path: Path):
    import av

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise VideoError(f"{path.name}: not a readable video ({e}); re-encode it, e.g. "
                         f"ffmpeg -i {path.name} -c:v libx264 -c:a aac fixed.mp4") from e


def probe_video(path: str | os.PathLike) -> _Probe:
    """Exact frame rate, size and frame count, by demuxing (no decoding); rejects what a stream cannot use."""
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video file not found: {path.name} in {path.parent}")
    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path.name}: no video stream (an audio-only file?); choose a video file")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise VideoError(f"{path.name}: the video stream has no frame rate; re-encode it with a constant rate")
        times = []
        try:
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    times.append(packet.pts)
        except av.error.FFmpegError as e:
            raise VideoError(f"{path.name}: corrupt video data after {len(times)} frames ({e}); re-encode or "
                             "re-download it") from e
        width, height = stream.codec_context.width, stream.codec_context.height
        time_base = stream.time_base
    if not times:
        raise VideoError(f"{path.name}: the video stream has no frames")
    fps = Fraction(rate)
    if len(times) > 2 and time_base:
        steps = np.diff(np.sort(np.asarray(times, np.int64))) * float(time_base) * float(fps)
        if steps.max() - steps.min() > _VFR_TOLERANCE:
            raise VideoError(f"{path.name}: variable frame rate (frame durations from {steps.min():.2f} to "
                             f"{steps.max():.2f} frames); convert it to a constant rate first, e.g. ffmpeg -i "
                             f"{path.name} -fps_mode cfr -r {float(fps):.3f} constant.mp4")
    return _Probe(fps, width, height, len(times), tuple(sorted(times)))


def _decoded_float(frame) -> np.ndarray:
    # The same conversion as ComfyUI's core video loading (uint8 tensor / 255.0 in float32), so a stream and the
    # IMAGE path see identical pixel values.
    return (torch.from_numpy(frame.to_ndarray(format="rgb24")) / 255.0).numpy()


@dataclass(frozen=True)
class VideoSource(Source):
    """Frames ``[start, start + count)`` of a video file (count 0 = to the end), decoded lazily.

    The file's audio is cut to the same time range.  A range lets several workers each take a part of one clip.
    """
    path: str
    start_frame: int = 0
    frame_count: int = 0

    def __post_init__(self):
        if self.start_frame < 0 or self.frame_count < 0:
            raise VideoError(f"start_frame and frame_count must be >= 0, got {self.start_frame}, {self.frame_count}")

    @cached_property
    def _probe(self) -> _Probe:
        probe = probe_video(self.path)
        if self.start_frame >= probe.num_frames:
            raise VideoError(f"{Path(self.path).name}: start_frame {self.start_frame} is past the last frame "
                             f"(the clip has {probe.num_frames}); use a smaller start_frame")
        return probe

    @property
    def num_frames(self) -> int:
        available = self._probe.num_frames - self.start_frame
        return available if self.frame_count == 0 else min(self.frame_count, available)

    @cached_property
    def audio(self) -> dict | None:
        """The file's own audio for this range, at its own sample rate and channels (None without audio); decoded
        once (a few MB a minute), as consumers need it whole to place it by time."""
        audio = decode_audio_av(Path(self.path))
        if audio is None:
            return None
        rate, fps = audio["sample_rate"], self._probe.fps
        first = int(round(Fraction(self.start_frame) * rate / fps))
        last = int(round(Fraction(self.start_frame + self.num_frames) * rate / fps))
        return dict(audio, waveform=audio["waveform"][..., first:last].contiguous())

    def info(self) -> StreamInfo:
        probe = self._probe
        return StreamInfo(probe.fps, probe.width, probe.height, self.num_frames, self.audio)

    def frames(self, start: int = 0):
        import av

        first, end = self.start_frame + start, self.start_frame + self.num_frames
        index = 0
        pts = self._probe.frame_pts
        position = {value: k for k, value in enumerate(pts)} if first > 0 else {}
        with _open(Path(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                decoded = container.decode(stream)
                if first > 0:
                    # Jump to the key frame before the range (a part late in a long clip is not decoded from its
                    # start); frames are then placed by their time stamps, the same ones the probe counted.
                    container.seek(pts[first], stream=stream, backward=True)
                    decoded = container.decode(stream)
                    frame = next(decoded, None)
                    if frame is None or frame.pts not in position or position[frame.pts] > first:
                        container.seek(pts[0], stream=stream, backward=True)  # no usable key frame: from the start
                        decoded = container.decode(stream)
                    else:
                        index = position[frame.pts]
                        decoded = itertools.chain([frame], decoded)
                for frame in decoded:
                    if index >= end:
                        break
                    if index >= first:
                        yield _decoded_float(frame)
                    index += 1
            except av.error.FFmpegError as e:
                raise VideoError(f"{Path(self.path).name}: corrupt video data at frame {index} ({e}); re-encode "
                                 "or re-download it") from e
        if index < end:
            raise VideoError(f"{Path(self.path).name}: the video ended after {index} of {end} frames (truncated or "
                             "damaged file); re-encode or re-download it")

    def signature(self) -> dict:
        stat = os.stat(self.path)
        return {"video": os.path.basename(self.path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "start_frame": self.start_frame, "frame_count": self.frame_count}


# ----------------------------------------------------------------------------------------------------------------
# sink

# codec choice -> (encoder, pixel format, options); all go in .mp4 so that core SaveVideo can copy the streams.
CODECS = {
    "h264": ("libx264", "yuv420p", lambda crf: {"crf": str(crf)}),
    "h265": ("libx265", "yuv420p", lambda crf: {"crf": str(crf), "x265-params": "log-level=error"}),
    "h264 lossless (RGB)": ("libx264rgb", "rgb24", lambda crf: {"qp": "0"}),
}


def release_freed_memory() -> None:
    """Give freed heap memory back to the system (glibc only; elsewhere a no-op).

    A 1080p float frame (25 MB) is below glibc's largest automatic mmap threshold, so after the first frees such
    frames come from the heap, and freed heap memory stays in the process: without this, a stream's resident size
    grows to the high-water mark of every stage's temporaries together instead of one chunk's worth.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def encode_stream(stream: FrameStream, path: str | os.PathLike, crf: int = 18, codec: str = "h264",
                  chunk_size: int = 16, audio: dict | None = None, overwrite: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> tuple[Path, dict]:
    """Encode a stream chunk by chunk into an .mp4 (atomically: a temp file, renamed when complete); returns
    ``(path, report)``.

    The audio muxed is ``audio`` if given, else the stream's own (the source's, or what a stage set, e.g. lip sync's
    driving speech), at its own sample rate and channels, cut or padded with silence to the video's length (the
    report says by how much).  ``progress(done, total)`` is called after each chunk; raising from it (cancel) leaves
    no file behind.
    """
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {list(CODECS)}, got {codec!r}")
    info = stream.info()
    audio = audio if audio is not None else info.audio
    report = {"frames": info.num_frames, "fps": str(info.fps), "codec": codec}
    if audio is not None:
        have = audio["waveform"].shape[-1]
        audio = dict(audio, waveform=fit_audio_to_frames(audio["waveform"], audio["sample_rate"], info.num_frames,
                                                         info.fps))
        difference = (audio["waveform"].shape[-1] - have) / audio["sample_rate"]
        report["audio"] = {"sample_rate": audio["sample_rate"], "channels": int(audio["waveform"].shape[-2]),
                           "padded_seconds" if difference > 0 else "trimmed_seconds": round(abs(difference), 4)}
    else:
        report["audio"] = None
    stage_reports: list = []

    def write(temp: str) -> None:
        import av

        encoder, pix_fmt, options = CODECS[codec]
        with av.open(temp, mode="w") as container:
            video = container.add_stream(encoder, rate=info.fps)
            video.width, video.height = info.width + info.width % 2, info.height + info.height % 2
            video.pix_fmt = pix_fmt
            video.time_base = 1 / info.fps
            video.options = options(crf)
            if codec == "h265":
                video.codec_tag = "hvc1"  # plays in QuickTime/browsers
            sound = add_audio_stream(container, audio) if audio is not None else None
            if sound is not None:
                encode_and_mux(container, sound[0], sound[1])
            done = 0
            for chunk in stream.chunks(chunk_size, reports=stage_reports):
                for item in chunk:
                    pixels = even_size(to_uint8(item.image)[None])[0]
                    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                    frame.pts = done
                    encode_and_mux(container, video, frame)
                    done += 1
                release_freed_memory()
                if progress is not None:
                    progress(done, info.num_frames)
            encode_and_mux(container, video, None)
            if sound is not None:
                encode_and_mux(container, sound[0], None)
        if done != info.num_frames:
            raise VideoError(f"the stream gave {done} frames, {info.num_frames} were announced")

    target = write_atomically(path, overwrite, write)
    report["stages"] = [r for r in stage_reports if r]
    return target, report
