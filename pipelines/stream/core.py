"""The re-playable frame stream: a source plus an ordered tuple of stages, iterated chunk by chunk.

A :class:`FrameStream` is a *description*, not a generator: iterating it opens the source again and gives every stage a
fresh :class:`StageRun`, so ComfyUI may cache it, re-run only changed nodes and feed one stream to several consumers.
Each stage's run carries what it needs across chunk borders (look-ahead, the previous frame, ...) and may hold frames
back until it can finish them; it must give the same frames whatever the chunk size, so the output never depends on
how a clip was cut.  Memory is bounded by the chunk size plus what each stage holds (documented per stage).

Adding a stage: subclass :class:`Stage` (a frozen dataclass of its settings) and implement ``start(info)`` returning a
:class:`StageRun` with ``feed(items) -> finished items`` and ``finish() -> the rest``; see ``PerFrameStage`` for the
common case of a stage that handles each frame on its own.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterator

import numpy as np


@dataclass
class FrameItem:
    """One frame travelling through the stages.

    image: float32 [H,W,3] in 0..1 (ComfyUI's IMAGE values); original: the source frame, untouched by stages;
    masks: named float32 [H,W] masks that stages add (``generated``: pixels lip sync wrote; ``composite``: the lip-mask
    composite's weights); ``mask`` is the latest one, which region stages work on.
    """
    index: int
    image: np.ndarray
    original: np.ndarray
    masks: dict = field(default_factory=dict)
    last_mask: str | None = None

    @property
    def mask(self) -> np.ndarray:
        if self.last_mask is None:
            return np.zeros(self.image.shape[:2], np.float32)
        return self.masks[self.last_mask]

    def set_mask(self, name: str, mask: np.ndarray) -> None:
        self.masks[name] = mask
        self.last_mask = name


@dataclass(frozen=True)
class StreamInfo:
    """What consumers and stages know before the first frame: exact frame rate, size, frame count and the audio
    (a ComfyUI AUDIO dict or None) that belongs to the frames."""
    fps: Fraction
    width: int
    height: int
    num_frames: int
    audio: dict | None = None


class StageRun:
    """One pass of a stage over a stream; carries the stage's cross-chunk state."""

    def feed(self, items: list[FrameItem]) -> list[FrameItem]:
        raise NotImplementedError

    def finish(self) -> list[FrameItem]:
        return []

    def report(self) -> dict:
        return {}


@dataclass(frozen=True)
class Stage:
    """Settings of one stage (a frozen dataclass: its fields are its cache signature)."""

    def start(self, info: StreamInfo) -> StageRun:
        raise NotImplementedError

    def stream_info(self, info: StreamInfo) -> StreamInfo:
        """The info after this stage (e.g. lip sync replaces the audio); unchanged by default."""
        return info

    def signature(self) -> dict:
        values = {}
        for f in dataclasses.fields(self):
            if f.metadata.get("signature") is False:
                continue
            values[f.name] = _signable(getattr(self, f.name))
        return {"stage": type(self).__name__, **values}


def _signable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_signable(v) for v in value]
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
    return repr(value)


def not_signed(**kwargs):
    """A stage field left out of the signature (live objects: models, detectors); name what identifies them in a
    signed field instead."""
    return field(metadata={"signature": False}, **kwargs)


class PerFrameRun(StageRun):
    """A stage that handles each frame on its own: ``apply([item])`` is called frame by frame, so what it allocates
    (stacked copies, masks) is one frame's worth whatever the chunk size."""

    def __init__(self, apply: Callable[[list[FrameItem]], None]):
        self._apply = apply

    def feed(self, items):
        for item in items:
            self._apply([item])
        return items


class Source:
    """Where frames come from: ``info()`` before decoding, ``frames(start)`` yields float32 [H,W,3] from ``start``."""

    def info(self) -> StreamInfo:
        raise NotImplementedError

    def frames(self, start: int = 0) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def items(self, start: int = 0) -> Iterator[FrameItem]:
        """Frames as stream items; a source that has masks to go with its frames (a render's alpha) overrides it."""
        for index, frame in enumerate(self.frames(start), start=start):
            yield FrameItem(index, frame, frame)

    def signature(self) -> dict:
        raise NotImplementedError


@dataclass(frozen=True)
class FrameStream:
    source: Source
    stages: tuple = ()

    def then(self, stage: Stage) -> "FrameStream":
        return FrameStream(self.source, (*self.stages, stage))

    def info(self) -> StreamInfo:
        info = self.source.info()
        for stage in self.stages:
            info = stage.stream_info(info)
        return info

    def signature(self) -> str:
        """Stable across processes: the source's identity (file, size, time, range) and every stage's settings."""
        text = json.dumps({"source": self.source.signature(), "stages": [s.signature() for s in self.stages]},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def chunks(self, chunk_size: int, start: int = 0, reports: list | None = None) -> Iterator[list[FrameItem]]:
        """Finished frames in order, ``chunk_size`` at a time (the last chunk may be shorter).

        ``start``: the first frame index yielded.  Stages keep state from earlier frames (previous frame, box
        smoothing), so earlier frames are still run through the stages when there are any; a stream without stages
        decodes from ``start`` directly.  ``reports``: a list that receives each stage's report after the last chunk.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        info = self.source.info()
        runs = []
        for stage in self.stages:
            runs.append(stage.start(info))
            info = stage.stream_info(info)
        first = 0 if runs else start
        pending: list[FrameItem] = []

        def through(items: list[FrameItem], final: bool) -> list[FrameItem]:
            for run in runs:
                items = run.feed(items)
                if final:
                    items = items + run.finish()
            return items

        def emit(items):
            pending.extend(i for i in items if i.index >= start)

        batch = []
        for item in self.source.items(first):
            batch.append(item)
            if len(batch) == chunk_size:
                emit(through(batch, final=False))
                batch = []
                while len(pending) >= chunk_size:
                    yield pending[:chunk_size]
                    del pending[:chunk_size]
        emit(through(batch, final=True))
        while pending:
            yield pending[:chunk_size]
            del pending[:chunk_size]
        if reports is not None:
            reports.extend(run.report() for run in runs)

    def to_arrays(self, chunk_size: int = 16, reports: list | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The whole stream in memory (short clips): frames float32 [N,H,W,3] and each named mask [N,H,W]."""
        info = self.info()
        frames = np.empty((info.num_frames, info.height, info.width, 3), np.float32)
        masks: dict[str, np.ndarray] = {}
        count = 0
        for chunk in self.chunks(chunk_size, reports=reports):
            for item in chunk:
                frames[count] = item.image
                for name, mask in item.masks.items():
                    masks.setdefault(name, np.zeros(frames.shape[:3], np.float32))[count] = mask
                count += 1
        if count != len(frames):
            raise ValueError(f"the stream gave {count} frames, {len(frames)} were announced")
        return frames, masks


@dataclass(frozen=True, eq=False)
class ArraySource(Source):
    """Frames already in memory (an IMAGE batch), for short clips and other packs' nodes."""
    array: np.ndarray
    fps: Fraction
    audio: dict | None = None

    def info(self):
        n, h, w = self.array.shape[:3]
        return StreamInfo(self.fps, w, h, n, self.audio)

    def frames(self, start: int = 0):
        for i in range(start, len(self.array)):
            yield self.array[i]

    def signature(self):
        return {"array": _signable(self.array), "shape": list(self.array.shape), "fps": str(self.fps)}
