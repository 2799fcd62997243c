"""One report of what a lip-sync user cares about, plus per-frame series for a plot:

- ``lip_sync``: SyncNet LSE-D / LSE-C / offset on the output's own face track when a SyncNet model is given, else
  ``{"absent": reason}``;
- ``av_offset_proxy``: the weights-free offset estimate (:mod:`pipelines.metrics.av_offset`);
- the image metrics of :func:`.metrics.quality_report` (PSNR/SSIM outside the mouth region,
  flicker, seam energy, colour ΔE across the region edge);
- ``artifacts``: frames whose generated region looks broken (:mod:`pipelines.metrics.artifacts`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..frames import to_uint8
from ..metrics.artifacts import detect_artifacts
from ..metrics.av_offset import estimate_offset, mouth_opening, speech_envelope
from ..metrics.lip_sync import SYNC_FPS, SYNC_SAMPLE_RATE, syncnet_scores, to_int16
from ..metrics.per_frame import change_per_frame, psnr_per_frame
from .metrics import quality_report


def frames_at_25fps(frames: np.ndarray, fps: float) -> np.ndarray:
    """The frames resampled to SyncNet's 25 fps by nearest frame in time (duplicating or dropping frames, as the
    reference's ``ffmpeg -r 25`` does)."""
    if abs(fps - SYNC_FPS) < 1e-6:
        return frames
    count = int(np.floor(len(frames) * SYNC_FPS / fps))
    index = np.minimum(np.round(np.arange(count) * fps / SYNC_FPS).astype(np.int64), len(frames) - 1)
    return frames[index]


def detect_face_track(frames_rgb_uint8: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """[N, 4] face boxes of the largest face per frame (MediaPipe BlazeFace, inside its wheel), gaps interpolated."""
    from ..face_detection import detect_frames, make_detector, pick_face
    from ..metrics.face_track import fill_missing_boxes

    detector = make_detector("blazeface_short")
    try:
        found = detect_frames(detector, frames_rgb_uint8, progress=progress)
    finally:
        getattr(detector, "close", lambda: None)()
    return fill_missing_boxes([pick_face(boxes, "largest") for boxes in found])


def syncnet_report(model, frames: np.ndarray, wav16k: np.ndarray, fps: float,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """LSE-D / LSE-C / offset of float RGB ``frames`` (0..1) and 16 kHz float audio, on the face track cropped from
    the frames themselves; ``{"absent": reason}`` when there is no face track or too little material."""
    from ..metrics.face_track import syncnet_face_crops

    frames_u8 = to_uint8(frames_at_25fps(frames, fps))
    try:
        crops = syncnet_face_crops(frames_u8, detect_face_track(frames_u8, progress))
        scores = syncnet_scores(model, crops, to_int16(wav16k), SYNC_SAMPLE_RATE)
    except ValueError as error:
        return {"absent": str(error)}
    return {"lse_d": scores["lse_d"], "lse_c": scores["lse_c"], "offset_frames": scores["offset"],
            "offset_ms": scores["offset"] * 1000.0 / SYNC_FPS, "windows": scores["num_windows"],
            "frame_conf": scores["frame_conf_medfilt"],
            "note": "scored on decoded frames (the reference re-reads JPEG frames), face track from BlazeFace boxes "
                    "with the reference's crop rule"}


def lipsync_report(original, output, region, wav16k, fps: float, composite=None, syncnet=None,
                   syncnet_absent_reason: str = "no SyncNet model given", landmarks: bool = False,
                   progress: Callable[[int, int], None] | None = None) -> tuple[dict, dict]:
    """``(report, per_frame)`` for a lip-synced clip. ``original`` / ``output`` float [N,H,W,3] 0..1, ``region`` the
    generated-region MASK [N,H,W], ``wav16k`` float mono 16 kHz audio of the output. ``per_frame`` maps a series
    name to [N] values (NaN where undefined) for :func:`per_frame.plot_series`."""
    report = quality_report(original, output, region, composite_mask=composite, landmarks=landmarks)
    report.pop("sync_score", None)  # superseded by lip_sync below
    report.pop("lpips", None)
    opening = mouth_opening(output, progress=progress)
    envelope = speech_envelope(wav16k, SYNC_SAMPLE_RATE, fps, len(output))
    report["av_offset_proxy"] = estimate_offset(opening, envelope, fps).as_dict()
    artifacts = detect_artifacts(output, region)
    report["artifacts"] = artifacts.as_dict()
    per_frame = {
        "PSNR outside region (dB)": psnr_per_frame(output, original, region == 0),
        "frame-to-frame change in region": change_per_frame(output, region),
        "mouth opening (FaceMesh)": opening.astype(np.float64),
        "speech envelope (RMS)": envelope,
    }
    if syncnet is None:
        report["lip_sync"] = {"absent": syncnet_absent_reason}
    else:
        lip_sync = syncnet_report(syncnet, output, wav16k, fps, progress)
        frame_conf = lip_sync.pop("frame_conf", None)
        if frame_conf is not None:
            per_frame["SyncNet confidence (25 fps windows)"] = np.asarray(frame_conf, np.float64)
        report["lip_sync"] = lip_sync
    return report, per_frame
