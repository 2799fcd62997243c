"""Lossless RGB video files for intermediate results: FFV1 (``bgr0``) in Matroska, with exact frame rates.

Used where frames must survive a round trip bit for bit (chunks of a batch run, sub-clips cut for them): decoding
with ``to_ndarray(format="rgb24")`` (as ComfyUI's LoadVideo does) gives back exactly the frames that were written.
"""
from __future__ import annotations

import os
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .media import exact_rate

LOSSLESS_SUFFIX = ".mkv"


class LosslessWriter:
    """Write RGB uint8 frames one by one to ``path`` (created atomically on :meth:`close`; never overwrites)."""

    def __init__(self, path: str | os.PathLike, fps):
        import av

        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; lossless chunks are never overwritten")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temp = self.path.parent / f".{self.path.stem}.{uuid.uuid4().hex}.part{self.path.suffix}"
        self.container = av.open(str(self.temp), mode="w")
        self.rate = exact_rate(fps)
        self.stream = None
        self.frames = 0

    def _open_video(self, height: int, width: int) -> None:
        self.stream = self.container.add_stream("ffv1", rate=self.rate)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "bgr0"

    def write(self, frame: np.ndarray) -> None:
        import av

        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if self.stream is None:
            self._open_video(*frame.shape[:2])
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        try:
            if self.stream is None:
                raise ValueError(f"{self.path.name}: no frames were written")
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            self.container.close()
            if self.path.exists():
                raise FileExistsError(f"{self.path} appeared while it was written; not overwriting it")
            os.replace(self.temp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - already failing; the temp file goes either way
            pass
        self.temp.unlink(missing_ok=True)


def write_lossless(path: str | os.PathLike, frames: Iterable[np.ndarray], fps) -> Path:
    writer = LosslessWriter(path, fps)
    try:
        for frame in frames:
            writer.write(frame)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def iter_video_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Decode any video file frame by frame as RGB uint8 [H, W, 3] (the conversion ComfyUI's LoadVideo uses)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def video_rate(path: str | os.PathLike) -> Fraction:
    """The frame rate a video file declares, exactly as ComfyUI's GetVideoComponents reports it."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return Fraction(stream.average_rate) if stream.average_rate else Fraction(1)
