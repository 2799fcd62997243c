"""Diff2Lip lip sync of a whole clip: detect -> smooth boxes -> crop -> DDIM per batch -> composite -> paste back."""
from __future__ import annotations

import time
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from ..face_detection import pick_face
from ...models.speed import default_batch_size, split_on_oom
from ..frames import to_uint8_half_up
from .audio import mel_windows, melspectrogram
from .crops import Upscale, crop_faces, crops_to_model, model_to_crops, paste_face
from .diffusion import composite_lower_half, composite_with_mask, ddim_sample, seeded_noise
from .flow_start import flow_guided_start
from .tracks import track_boxes

SamplingMask = Callable[[np.ndarray], np.ndarray]  # crops [B,S,S,3] -> masks [B,S,S], 1 = re-generate

Detection = Sequence[float]  # (x1, y1, x2, y2, score)
Detector = Callable[[np.ndarray], Sequence[Detection]]


def _inside_frame(face: Detection | None, height: int, width: int) -> bool:
    return face is not None and min(face[2], width) > max(face[0], 0) and min(face[3], height) > max(face[1], 0)


def detect_face(frame: np.ndarray, detect: Detector, pick) -> Detection | None:
    """The picked face of one frame, or None when there is none (or it lies outside the frame)."""
    face = pick_face(detect(to_uint8_half_up(frame)), pick)
    return face if _inside_frame(face, *frame.shape[:2]) else None


def _detect_all(frames: np.ndarray, detect: Detector, pick, progress, total: int) -> list[Detection | None]:
    faces = []
    for i, frame in enumerate(frames):
        faces.append(detect_face(frame, detect, pick))
        if progress is not None:
            progress(i + 1, total)
    return faces


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be [N,H,W,3] RGB with N >= 1, got shape {frames.shape}")
    if frames.dtype != np.uint8 and not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"frames must be uint8 (0..255) or float (0..1), got {frames.dtype}")


def locate_faces(frames: np.ndarray, detect: Detector, pick: str | int = "largest",
                 pads: Sequence[int] = (0, 0, 0, 0), smooth_window: int = 5,
                 progress: Callable[[int, int], None] | None = None, max_gap: int = 0,
                 bridged: list | None = None) -> dict[int, np.ndarray]:
    """Detect, pick and smooth the face box of every frame: {frame index: (y1, y2, x1, x2)} for frames with a face.

    Smoothing runs over each stretch of consecutive frames with a face (the reference's 5-frame window).  Gaps of at
    most ``max_gap`` frames between detected frames get interpolated boxes (see :class:`~.tracks.BoxTrack`); their
    indices are appended to ``bridged`` when given.
    """
    frames = np.asarray(frames)
    _check_frames(frames)
    faces = _detect_all(frames, detect, pick, progress, len(frames))
    boxes, bridged_frames = track_boxes(faces, frames.shape[1:3], pads, smooth_window, max_gap)
    if bridged is not None:
        bridged.extend(bridged_frames)
    return boxes


def generate_faces(model, crops: np.ndarray, mels: np.ndarray, steps: int, seed: int = 7,
                   progress: Callable[[int, int], None] | None = None, x_init: torch.Tensor | None = None,
                   skip_steps: int = 0, sample_mask: np.ndarray | None = None) -> np.ndarray:
    """Re-generate the lower half of face crops [B,S,S,3] (uint8 or float 0..1; S = the model's image size) for their
    mel windows [B,80,16]; returns crops of the same dtype.  Each crop is its own reference, and one seeded noise draw
    is x_T and the masked-half noise of every crop, as the reference does.  ``x_init``/``skip_steps``: start later in
    the schedule from a given state (see :func:`ddim_sample`).  ``sample_mask`` [B,1,S,S]: what to re-generate
    instead of the release's lower half."""
    if crops.shape[1:3] != (model.image_size, model.image_size):
        raise ValueError(f"crops are {crops.shape[1]}x{crops.shape[2]} but the model works at {model.image_size}: "
                         f"crop the faces at {model.image_size}")
    target = crops_to_model(crops)
    mels = torch.from_numpy(np.ascontiguousarray(mels))
    mask = None if sample_mask is None else torch.from_numpy(sample_mask)

    def run(start: int, stop: int) -> torch.Tensor:
        part = target[start:stop]
        start_x = x_init if x_init is None or len(x_init) == 1 else x_init[start:stop]
        part_mask = None if mask is None else mask[start:stop]
        sample = ddim_sample(model, part, part, mels[start:stop], seeded_noise(seed, model.image_size), steps,
                             progress=progress, x_init=start_x, skip_steps=skip_steps, sample_mask=part_mask)
        part = part.to(sample.device)
        if part_mask is None:
            return composite_lower_half(sample, part).cpu()
        return composite_with_mask(sample, part, part_mask.to(sample.device)).cpu()

    return model_to_crops(split_on_oom(run, 0, len(target), torch.cat, "Diff2Lip sampling"), crops.dtype)


def paste_generated(output: np.ndarray, mask: np.ndarray, indices: Sequence[int], faces: np.ndarray, boxes,
                    upscale: Upscale | None = None, lower_half: bool = True) -> None:
    """Paste generated crops into ``output`` frames (in place) and mark the written pixels in ``mask`` [N,H,W]."""
    for i, face, box in zip(indices, faces, boxes):
        y1, y2, x1, x2 = paste_face(output[i], face, box, upscale=upscale, lower_half=lower_half)
        mask[i, y1:y2, x1:x2] = 1.0


def crops_8bit(frames: Sequence[np.ndarray], boxes: np.ndarray, size: int) -> np.ndarray:
    """The release's crops, resized in uint8; only each box is rounded to 8 bits (no 8-bit copy of whole frames)."""
    return np.stack([crop_faces([to_uint8_half_up(frame[y1:y2, x1:x2])], np.array([[0, y2 - y1, 0, x2 - x1]]),
                                size)[0] for frame, (y1, y2, x1, x2) in zip(frames, boxes)])


def paste_whole_boxes_8bit(output: np.ndarray, mask: np.ndarray, indices: Sequence[int], faces: np.ndarray, boxes,
                           upscale: Upscale | None = None) -> None:
    """The release's paste: uint8 ``faces`` resized into the whole box of the frame rounded to 8 bits; the box is then
    written back into ``output`` (in place, in its dtype) and marked in ``mask``.  Outside the boxes nothing changes."""
    for i, face, (y1, y2, x1, x2) in zip(indices, faces, boxes):
        # only the box is written, so only the box is rounded
        box_8bit = to_uint8_half_up(output[i, y1:y2, x1:x2]).copy()
        paste_face(box_8bit, face, (0, y2 - y1, 0, x2 - x1), upscale=upscale)
        output[i, y1:y2, x1:x2] = box_8bit if output.dtype == np.uint8 else box_8bit.astype(output.dtype) / 255.0
        mask[i, y1:y2, x1:x2] = 1.0


def progress_estimate(num_frames: int, batch_size: int, steps: int) -> int:
    """Progress ticks of a lip sync before its faces are known: one per frame for detection, then ``steps`` per batch
    as if every frame had a face (:func:`sample_in_batches` corrects the total once they are known)."""
    return num_frames + -(-num_frames // batch_size) * steps


def flow_skip_steps(flow_start: float, steps: int) -> int:
    """DDIM steps that :func:`flow_guided_start` replaces for a ``flow_start`` fraction (0 = off); at least one step
    is always sampled."""
    if not 0.0 <= flow_start < 1.0:
        raise ValueError(f"flow_start must be in [0, 1), got {flow_start}")
    return min(int(round(flow_start * steps)), steps - 1)


def generate_batch(model, batch: Sequence[int], crops: np.ndarray, mels: np.ndarray, steps: int, seed: int = 7,
                   progress: Callable[[int, int], None] | None = None, previous: tuple | None = None,
                   flow_skip: int = 0, sampling_mask: SamplingMask | None = None) -> np.ndarray:
    """Generate the faces of one batch of frame indices from their input ``crops``; ``mels`` are indexed by frame.

    ``previous`` = (frame index, input crop, generated crop) of the last frame generated before this batch: with
    ``flow_skip`` > 0 a batch that starts right after it starts from :func:`flow_guided_start`.  The one batch step
    of :func:`sample_in_batches` and of the streaming lip sync, which forms its batches as frames arrive.
    """
    mask_arg = {}  # the default call stays the release's
    if sampling_mask is not None:
        mask_arg["sample_mask"] = np.asarray(sampling_mask(crops), np.float32)[:, None]
    if flow_skip and previous is not None and previous[0] == batch[0] - 1:
        x_init = flow_guided_start(model, previous[2], previous[1], crops[0], steps, flow_skip, seed)
        return generate_faces(model, crops, mels[batch], steps, seed, progress, x_init, flow_skip, **mask_arg)
    return generate_faces(model, crops, mels[batch], steps, seed, progress, **mask_arg)


def sample_in_batches(model, frame_indices: Sequence[int], crops_for: Callable[[list[int]], np.ndarray],
                      mels: np.ndarray, steps: int, seed: int = 7, batch_size: int = 8,
                      progress: Callable[[int, int], None] | None = None, ticks_before: int = 0,
                      flow_skip: int = 0, sampling_mask: SamplingMask | None = None,
                      ) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """Generate the faces of ``frame_indices`` batch by batch: yields ``(batch, input crops, generated crops)``.

    The one sampling loop of the lip sync and of the split *Sample Faces* step.  ``crops_for(batch)`` makes the input
    crops of a batch of frame indices when it is needed, so only one batch is held; ``mels`` [N,80,16] are indexed
    by frame.  ``progress`` ticks ``steps`` per batch after ``ticks_before`` (e.g. detection), out of
    ``ticks_before + batches × steps``, and is closed at the end.  ``flow_skip`` > 0 (use batch_size 1): a frame
    right after the previous generated one starts from :func:`flow_guided_start` after that many steps.
    ``sampling_mask(crops) -> [B,S,S]``: what each crop re-generates (None: the release's lower half).
    """
    batches = [list(frame_indices[i:i + batch_size]) for i in range(0, len(frame_indices), batch_size)]
    total = ticks_before + len(batches) * steps
    previous = None  # (frame index, input crop, generated crop) of the last frame, for flow_skip
    for b, batch in enumerate(batches):
        crops = crops_for(batch)
        step_progress = None if progress is None else \
            (lambda done, _t, base=ticks_before + b * steps: progress(base + done, total))
        generated = generate_batch(model, batch, crops, mels, steps, seed, step_progress, previous, flow_skip,
                                   sampling_mask)
        previous = (batch[-1], crops[-1], generated[-1])
        yield batch, crops, generated
    if progress is not None:
        progress(total, total)  # close the bar (detection-time estimate; flow-started frames take fewer steps)


def lipsync(frames: np.ndarray, wav_16k: np.ndarray, fps: float, model, detect: Detector, steps: int = 25,
            seed: int = 7, batch_size: int | None = None, pads: Sequence[int] = (0, 0, 0, 0),
            pick: str | int = "largest",
            progress: Callable[[int, int], None] | None = None, upscale: Upscale | None = None,
            smooth_window: int = 5, paste_whole_box: bool = False, active_frames: np.ndarray | None = None,
            flow_start: float = 0.0, sampling_mask: SamplingMask | None = None, max_gap: int = 0):
    """Re-generate the mouth region of every frame with a face so the lips follow ``wav_16k``.

    frames: [N,H,W,3] RGB, uint8 or float 0..1; wav_16k: mono 16 kHz; fps: frame rate of ``frames`` (mel windows are
    placed by time, one per frame, see :func:`mel_windows`); model: a loaded Diff2Lip UNet (crops use its
    ``image_size``); detect(frame_rgb_uint8) -> [(x1, y1, x2, y2, score), ...]; pick: which face (see
    :func:`pipelines.face_detection.pick_face`); pads: (top, bottom, left, right) added to each box; batch_size:
    crops per UNet call, None = the fastest per frame for the model's device (1 on CPU, 8 on GPUs); the output does
    not depend on it beyond float rounding.

    The stages are :func:`locate_faces`, :func:`generate_faces` and :func:`paste_generated`, run here batch by batch
    so that only one batch of crops is held.  As the reference (cross mode): each face is its own reference, one seeded
    noise draw serves as x_T and as the masked-half noise of every frame, and DDIM uses ``steps`` steps (25 in the
    release).  Frames without a face pass through unchanged.  Only the generated lower half of each box is pasted;
    ``paste_whole_box=True`` works like the release instead: frames are quantised to 8 bits (exact for frames decoded
    from 8-bit video), the 8-bit crops are resized, the result is truncated to uint8 and the whole resized crop is
    written into the box (only the boxes are written back into float frames).  ``upscale`` enlarges each
    generated crop before it is resized into a larger box.  ``active_frames`` (bool [N], e.g. from a voice-activity
    detector) keeps the original mouth where it is False; those frames are still detected so that box smoothing of
    their neighbours is unchanged.  ``flow_start`` > 0 (not in the reference) replaces that fraction
    of the DDIM steps by :func:`flow_guided_start` from the previous frame's result, for temporal coherence; frames
    are then sampled one by one, in order.  ``sampling_mask`` (not in the reference): a function of each batch of
    crops returning what to re-generate instead of the lower half, e.g.
    :func:`pipelines.diff2lip_enhance.sampling_mask.lip_region_masks`.
    ``max_gap``: detection gaps of at most this many frames between detected frames get interpolated boxes and
    are generated like the others (longer gaps pass through).

    Returns (frames, mask, report): frames as the input's dtype/shape, mask float32 [N,H,W] = 1 where pixels were
    written, report = {frames, faces_found, generated, passed_through, passed_through_frames, bridged,
    bridged_frames, seconds} (passed_through = frames without a face; faces_found includes bridged frames).
    """
    started = time.perf_counter()
    frames = np.asarray(frames)
    _check_frames(frames)
    if batch_size is None:
        batch_size = default_batch_size(next(model.parameters()).device)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    skip = flow_skip_steps(flow_start, steps)
    batch_size = 1 if skip else batch_size  # each frame starts from the previous frame's result
    n, height, width = frames.shape[:3]
    active = np.ones(n, bool) if active_frames is None else np.asarray(active_frames, bool)
    if active.shape != (n,):
        raise ValueError(f"active_frames must be one flag per frame ({n}), got shape {active.shape}")
    mels = mel_windows(melspectrogram(wav_16k), fps=fps, num_frames=n)

    # Detection ticks first, against an estimate that assumes a face in every frame; corrected once faces are known.
    estimate = progress_estimate(n, batch_size, steps)
    detect_progress = None if progress is None else (lambda done, _total: progress(done, estimate))
    bridged: list[int] = []
    boxes = locate_faces(frames, detect, pick, pads, smooth_window, detect_progress, max_gap, bridged)
    to_generate = [i for i in sorted(boxes) if active[i]]

    output = frames.copy()
    mask = np.zeros((n, height, width), dtype=np.float32)
    crop = crops_8bit if paste_whole_box else crop_faces  # the release crops, generates and pastes in uint8

    def crops_for(batch):
        return crop([frames[i] for i in batch], np.stack([boxes[i] for i in batch]), model.image_size)

    for batch, _, faces_out in sample_in_batches(model, to_generate, crops_for, mels, steps, seed, batch_size,
                                                 progress, ticks_before=n, flow_skip=skip,
                                                 sampling_mask=sampling_mask):
        batch_boxes = np.stack([boxes[i] for i in batch])
        if paste_whole_box:
            paste_whole_boxes_8bit(output, mask, batch, faces_out, batch_boxes, upscale)
        else:
            paste_generated(output, mask, batch, faces_out, batch_boxes, upscale)
    passed = [i for i in range(n) if i not in boxes]
    report = {"frames": n, "faces_found": len(boxes), "generated": len(to_generate), "passed_through": len(passed),
              "passed_through_frames": passed, "bridged": len(bridged), "bridged_frames": bridged,
              "seconds": time.perf_counter() - started}
    return output, mask, report
