"""Diff2Lip stages on a frame stream: lip sync, and the post-processing stages on generated frames + mask.

Each gives, frame for frame, what the whole-clip functions give (tested for several chunk sizes): lip sync forms the
same UNet batches (``batch_size`` frames to generate, in order, whatever the chunks), smooths boxes with the same
look-ahead and bridges the same gaps; temporal smoothing carries the previous frame; the lip-mask composite looks
``smooth_window // 2`` frames ahead for its smoothed mouth opening.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..diff2lip.audio import mel_windows, melspectrogram
from ..diff2lip.crops import crop_faces
from ..diff2lip.lipsync import (crops_8bit, detect_face, flow_skip_steps, generate_batch, paste_generated,
                                paste_whole_boxes_8bit)
from ..diff2lip.tracks import BoxTrack
from ..media import fit_audio_to_frames, make_audio
from .core import FrameItem, PerFrameRun, Stage, StageRun, StreamInfo, not_signed


@dataclass(frozen=True, eq=False)
class LipSyncStage(Stage):
    """Re-generates the mouth of every frame with a face for ``audio`` (see :func:`pipelines.diff2lip.lipsync`).

    Holds at most ``batch_size`` frames to generate, the face-less frames between them, and the box smoothing's
    look-ahead (``smooth_window - 1`` frames, or ``max_gap + 1`` during a detection gap).  The output stream's audio
    is ``audio`` fitted to the video (silence past its end, as the whole-clip node).
    """
    audio: dict = not_signed()
    model: object = not_signed()
    detect: Callable = not_signed()
    upscale: Callable | None = not_signed(default=None)
    check_cancel: Callable[[], None] | None = not_signed(default=None)  # called every DDIM step; raises to stop
    identity: str = ""  # what the live objects above are (model file, detector settings), for the signature
    audio_signature: str = ""
    steps: int = 25
    seed: int = 7
    batch_size: int = 8
    pads: tuple = (0, 0, 0, 0)
    pick: object = "largest"
    smooth_window: int = 5
    paste_whole_box: bool = False
    paste_name: str = "lower half"  # as the node shows it, for the report
    close_mouth_in_silence: bool = False
    flow_start: float = 0.0
    max_gap: int = 0

    def fitted_audio(self, info: StreamInfo) -> dict:
        # float fps as the IMAGE path gets it from core's Video Components, so both fit the audio identically
        wave = fit_audio_to_frames(self.audio["waveform"], self.audio["sample_rate"], info.num_frames, float(info.fps))
        return make_audio(wave, self.audio["sample_rate"])

    def stream_info(self, info: StreamInfo) -> StreamInfo:
        return StreamInfo(info.fps, info.width, info.height, info.num_frames, self.fitted_audio(info))

    def start(self, info: StreamInfo) -> StageRun:
        return _LipSyncRun(self, info)


class _LipSyncRun(StageRun):
    def __init__(self, stage: LipSyncStage, info: StreamInfo):
        from ..audio_enhance import speech_for_frames

        if stage.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {stage.batch_size}")
        self.skip = flow_skip_steps(stage.flow_start, stage.steps)  # validates flow_start before the audio work
        self.stage = stage
        n, fps = info.num_frames, float(info.fps)
        _, wav, active = speech_for_frames(stage.audio["waveform"], stage.audio["sample_rate"], n, fps,
                                           stage.close_mouth_in_silence)
        self.mels = mel_windows(melspectrogram(wav), fps=fps, num_frames=n)
        self.active = np.ones(n, bool) if active is None else active
        self.batch_size = 1 if self.skip else stage.batch_size
        self.track = BoxTrack((info.height, info.width), stage.pads, stage.smooth_window, stage.max_gap)
        self.held: dict[int, FrameItem] = {}  # frames whose box is not final yet
        self.queue: deque = deque()  # [item, box, ready] in frame order, waiting to be generated or given out
        self.to_generate: list = []
        self.previous = None  # (frame index, input crop, generated crop) for flow_start
        self.counts = {"frames": 0, "faces_found": 0, "generated": 0, "passed_through": 0, "bridged": 0}
        self.passed, self.bridged = [], []

    def _resolved(self, results) -> None:
        for index, box, bridged in results:
            item = self.held.pop(index)
            item.set_mask("generated", np.zeros(item.image.shape[:2], np.float32))
            entry = [item, box, True]
            if box is None:
                self.passed.append(index)
            else:
                self.counts["faces_found"] += 1
                if bridged:
                    self.bridged.append(index)
                if self.active[index]:
                    entry[2] = False
                    self.to_generate.append(entry)
            self.queue.append(entry)
            if len(self.to_generate) == self.batch_size:
                self._generate()

    def _generate(self) -> None:
        stage, batch = self.stage, self.to_generate
        self.to_generate = []
        if not batch:
            return
        indices = [entry[0].index for entry in batch]
        boxes = np.stack([entry[1] for entry in batch])
        frames = np.stack([entry[0].image for entry in batch])
        # As the whole-clip lipsync: the release's whole-box paste crops, generates and pastes in 8 bits
        crop = crops_8bit if stage.paste_whole_box else crop_faces
        crops = crop(list(frames), boxes, stage.model.image_size)
        faces = generate_batch(stage.model, indices, crops, self.mels, stage.steps, stage.seed, self._tick,
                               self.previous, self.skip)
        self.previous = (indices[-1], crops[-1], faces[-1])
        output = frames  # a stacked copy: the originals stay untouched
        masks = np.zeros(output.shape[:3], np.float32)
        if stage.paste_whole_box:
            paste_whole_boxes_8bit(output, masks, range(len(batch)), faces, boxes, stage.upscale)
        else:
            paste_generated(output, masks, range(len(batch)), faces, boxes, stage.upscale)
        for k, entry in enumerate(batch):
            entry[0].image = output[k]
            entry[0].set_mask("generated", masks[k])
            entry[2] = True
        self.counts["generated"] += len(batch)

    def _tick(self, _done, _total) -> None:
        if self.stage.check_cancel is not None:
            self.stage.check_cancel()

    def _ready(self) -> list[FrameItem]:
        out = []
        while self.queue and self.queue[0][2]:
            out.append(self.queue.popleft()[0])
        return out

    def feed(self, items):
        for item in items:
            self.counts["frames"] += 1
            self.held[item.index] = item
            self._resolved(self.track.push(item.index, detect_face(item.image, self.stage.detect, self.stage.pick)))
        return self._ready()

    def finish(self):
        self._resolved(self.track.finish())
        self._generate()
        return self._ready()

    def report(self):
        report = dict(self.counts, passed_through=len(self.passed), steps=self.stage.steps,
                      paste=self.stage.paste_name, bridged=len(self.bridged),
                      bridged_frames=self.bridged[:50])
        if len(self.passed) <= 50:  # keep the report readable; the count stays
            report["passed_through_frames"] = self.passed
        if self.stage.close_mouth_in_silence:
            report["silent_frames_kept"] = int((~self.active).sum())
        if hasattr(self.stage.upscale, "ms_per_crop"):
            report["upscale_ms_per_frame"] = round(self.stage.upscale.ms_per_crop(), 1)
        return {"lip_sync": report}


# ----------------------------------------------------------------------------------------------------------------
# post-processing stages


def _stack(items: Sequence[FrameItem], what: str) -> np.ndarray:
    if what == "mask":
        return np.stack([item.mask for item in items])
    return np.stack([getattr(item, what) for item in items])


@dataclass(frozen=True)
class ColorMatchStage(Stage):
    method: str = "lab_meanstd"
    band_px: float = 8.0
    white_balance: str = "off"

    def start(self, info):
        from ..diff2lip_enhance import match_color

        def apply(items):
            out = match_color(_stack(items, "original"), _stack(items, "image"), _stack(items, "mask"),
                              method=self.method, band_px=self.band_px, white_balance=self.white_balance)
            for item, frame in zip(items, out):
                item.image = frame
        return PerFrameRun(apply)


def _masked_frames_run(region_stage, **settings) -> "PerFrameRun":
    """A per-frame run of a frames+mask -> frames enhancement (the stream form of the IMAGE nodes' pattern)."""
    def apply(items):
        out = region_stage(_stack(items, "image"), _stack(items, "mask"), **settings)
        for item, frame in zip(items, out):
            item.image = frame
    return PerFrameRun(apply)


@dataclass(frozen=True)
class DenoiseStage(Stage):
    method: str = "bilateral"
    strength: float = 0.5

    def start(self, info):
        from ..diff2lip_enhance import denoise_region

        return _masked_frames_run(denoise_region, method=self.method, strength=self.strength)


@dataclass(frozen=True)
class SharpenStage(Stage):
    strength: float = 0.3
    sigma: float = 1.0

    def start(self, info):
        from ..diff2lip_enhance import sharpen_region

        return _masked_frames_run(sharpen_region, strength=self.strength, sigma=self.sigma)


@dataclass(frozen=True)
class TemporalSmoothStage(Stage):
    """Flow-guided (or plain EMA) smoothing; carries the previous frame's input, mask and output."""
    strength: float = 0.5
    method: str = "dis"  # 'dis', 'farneback' or 'ema'

    def start(self, info):
        return _TemporalRun(self)


class _TemporalRun(StageRun):
    def __init__(self, stage: TemporalSmoothStage):
        self.stage = stage
        self.previous = None  # (input frame, mask, output frame)

    def feed(self, items):
        from ..diff2lip_enhance.temporal import ema_step, flow_step

        for item in items:
            current, mask = item.image, item.mask
            out = current
            if self.previous is not None:
                prev_in, prev_mask, prev_out = self.previous
                if self.stage.method == "ema":
                    out = ema_step(current, mask, prev_out, self.stage.strength)
                else:
                    out = flow_step(current, mask, prev_in, prev_mask, prev_out, self.stage.strength,
                                    self.stage.method)
            self.previous = (current, mask, out)
            item.image = out
        return items


@dataclass(frozen=True, eq=False)
class LipMaskCompositeStage(Stage):
    """Soft lip-shaped composite of the generated frame over the original (see
    :func:`pipelines.diff2lip_enhance.lip_composite_masks`); holds ``smooth_window // 2`` frames for the smoothed
    mouth opening when ``adaptive_gain`` > 0."""
    landmarker: Callable = not_signed()
    identity: str = "facemesh"
    scheme: str = "facemesh"
    hard_box: bool = False
    expansion: float = 1.2
    feather: float = 0.2
    adaptive_gain: float = 1.0
    smooth_window: int = 5

    def start(self, info):
        return _LipMaskRun(self)


class _LipMaskRun(StageRun):
    def __init__(self, stage: LipMaskCompositeStage):
        self.stage = stage
        self.ahead = stage.smooth_window // 2 if stage.adaptive_gain > 0 and not stage.hard_box else 0
        self.waiting: deque = deque()  # (item, its landmarks) until the opening ratios it is smoothed over are known
        self.openings: list[float] = []  # mouth opening of every frame so far, by frame index (4 bytes a frame)
        self.fallback = 0

    def feed(self, items, final: bool = False):
        from ..diff2lip_enhance.lip_mask import lip_landmarks, mouth_opening_ratio

        stage = self.stage
        for item in items:  # frame by frame: landmarks are per frame, and so is the memory they need
            if stage.hard_box:
                self.waiting.append((item, None))
                continue
            marks = lip_landmarks(item.original[None], item.image[None], item.mask[None], stage.landmarker)
            self.openings.extend(mouth_opening_ratio(marks["generated_points"], stage.scheme).tolist())
            self.waiting.append((item, marks))
        out = []
        while self.waiting and (final or stage.hard_box
                                or self.waiting[0][0].index + self.ahead < len(self.openings)):
            out.append(self._composite(*self.waiting.popleft()))
        return out

    def _expansion(self, index: int) -> np.ndarray:
        from ..diff2lip_enhance.lip_mask import adaptive_expansion

        stage = self.stage
        if self.ahead == 0:
            return np.full(1, stage.expansion, dtype=np.float32)
        # The centred window of frame ``index`` only: the same sum as over the whole clip (edges padded the same).
        lo, hi = max(0, index - self.ahead), min(len(self.openings), index + self.ahead + 1)
        series = adaptive_expansion(np.asarray(self.openings[lo:hi], np.float32), stage.expansion,
                                    stage.adaptive_gain, stage.smooth_window)
        return series[index - lo:index - lo + 1]

    def _composite(self, item: FrameItem, marks) -> FrameItem:
        from ..diff2lip_enhance.lip_mask import composite, masks_from_landmarks

        stage = self.stage
        region = np.clip(item.mask, 0.0, 1.0)[None]
        if stage.hard_box:
            mask = region
        else:
            mask, fallback = masks_from_landmarks(region, marks, self._expansion(item.index), stage.feather,
                                                  stage.scheme)
            self.fallback += len(fallback)
        item.image = composite(item.original[None], item.image[None], region, mask)[0]
        item.set_mask("composite", mask[0])
        return item

    def finish(self):
        return self.feed([], final=True)

    def report(self):
        return {"lip_mask_composite": {"fallback_frames": self.fallback}}
