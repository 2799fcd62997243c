"""Face boxes frame by frame: short detection gaps bridged, then the reference's box smoothing, usable on a stream.

:class:`BoxTrack` takes one detection per frame in order and gives each frame's final box as soon as it is known, so
the whole-clip path (:func:`pipelines.diff2lip.locate_faces`) and the streaming lip sync share one definition and give
identical boxes whatever the chunk size.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .crops import smooth_boxes

DEFAULT_MAX_GAP = 5  # frames; a detector missing a face for a few frames of a steady shot is the common case


class BoxTrack:
    """Feed ``push(index, face)`` for frames 0, 1, 2, ... (face = (x1, y1, x2, y2[, score]) or None) and ``finish()``;
    both return ``[(index, box or None, bridged), ...]`` for the frames whose box became final, in order
    (box = int64 (y1, y2, x1, x2)).

    Gaps of at most ``max_gap`` frames *between* two detected frames get boxes interpolated linearly from the two
    detections (``bridged`` = True) and join their run; longer gaps, and gaps at the clip's start or end, stay
    without a box.  Smoothing is :func:`smooth_boxes` over each run of frames with a box, which looks ``window - 1``
    frames ahead: frame j of a run is final once frame j + window - 1 has a box, or when the run ends.  Held: the
    raw boxes of the current run (16 bytes a frame) and at most ``max(window, max_gap + 1)`` frames' worth of indices.
    """

    def __init__(self, frame_hw: tuple[int, int], pads: Sequence[int] = (0, 0, 0, 0), window: int = 5,
                 max_gap: int = 0):
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {max_gap}")
        self.frame_hw, self.pads, self.window, self.max_gap = frame_hw, tuple(pads), int(window), int(max_gap)
        self._run: list[tuple[int, tuple, bool]] = []  # (index, raw box, bridged) of the current run
        self._done = 0  # entries of the run already given out
        self._gap: list[int] = []  # frames without a face since the run's last detection
        self._next = 0

    def push(self, index: int, face) -> list:
        if index != self._next:
            raise ValueError(f"frames must be pushed in order: expected {self._next}, got {index}")
        self._next += 1
        out = []
        if face is None:
            if not self._run:
                return [(index, None, False)]
            self._gap.append(index)
            if len(self._gap) > self.max_gap:
                out += self._close_run()
            return out
        face = tuple(float(v) for v in face[:4])
        if self._gap:  # a short gap between two detections: interpolate
            last_index, last_face, _ = self._run[-1]
            span = index - last_index
            for g in self._gap:
                t = (g - last_index) / span
                self._run.append((g, tuple(a + (b - a) * t for a, b in zip(last_face, face)), True))
            self._gap = []
        self._run.append((index, face, False))
        # Entries with a full window ahead are final: the reference's in-place mean only looks at raw boxes there.
        while self._done + self.window <= len(self._run):
            j = self._done
            box = smooth_boxes([entry[1] for entry in self._run[j:j + self.window]], self.frame_hw, self.pads,
                               self.window)[0]
            out.append((self._run[j][0], box, self._run[j][2]))
            self._done += 1
        return out

    def _close_run(self) -> list:
        out = []
        if self._run:
            boxes = smooth_boxes([entry[1] for entry in self._run], self.frame_hw, self.pads, self.window)
            out = [(index, boxes[j], bridged) for j, (index, _, bridged) in enumerate(self._run) if j >= self._done]
        out += [(g, None, False) for g in self._gap]
        self._run, self._done, self._gap = [], 0, []
        return out

    def finish(self) -> list:
        return self._close_run()


def track_boxes(faces: Sequence, frame_hw: tuple[int, int], pads: Sequence[int] = (0, 0, 0, 0), window: int = 5,
                max_gap: int = 0) -> tuple[dict[int, np.ndarray], list[int]]:
    """Whole-clip form of :class:`BoxTrack`: ``({frame: box}, bridged frame indices)``."""
    track = BoxTrack(frame_hw, pads, window, max_gap)
    results = [r for i, face in enumerate(faces) for r in track.push(i, face)] + track.finish()
    boxes = {index: box for index, box, _ in results if box is not None}
    return boxes, sorted(index for index, box, bridged in results if bridged)
