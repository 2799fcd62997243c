"""Artifact detection, the SyncNet face-track crop, per-frame series, the plot and the combined lip-sync report."""
from __future__ import annotations

import numpy as np
import pytest
from diff2lip_enhance_media import enhance_clip
from media import talking_clip

from talkinghead.pipelines.metrics.artifacts import blockiness, detect_artifacts, replace_flagged
from talkinghead.pipelines.metrics.face_track import fill_missing_boxes, syncnet_face_crops
from talkinghead.pipelines.metrics.per_frame import change_per_frame, plot_series, psnr_per_frame
from talkinghead.pipelines.diff2lip_enhance.sync_report import frames_at_25fps, lipsync_report


@pytest.fixture(scope="module")
def clip():
    return enhance_clip(frames=16, size=(192, 192), motion=0.5)


def _blocky(frame: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Each 8x8 block replaced by its mean colour (a heavy JPEG / VAE blocking failure)."""
    out = frame.copy()
    for y in range(0, frame.shape[0], 8):
        for x in range(0, frame.shape[1], 8):
            out[y:y + 8, x:x + 8] = frame[y:y + 8, x:x + 8].mean(axis=(0, 1))
    return np.where(inside[..., None], out, frame)


def test_clean_clip_has_no_artifacts(clip):
    report = detect_artifacts(clip.generated, clip.region)
    assert report.flagged == {}
    assert np.nanmax(report.blockiness) < 1.4


def test_each_artifact_kind_is_flagged_on_its_frame_only(clip):
    frames = clip.generated.copy()
    inside = clip.region > 0.5
    frames[2][inside[2]] = np.nan
    frames[4] = _blocky(frames[4], inside[4])
    frames[6] = np.where(inside[6][..., None], 1.0, frames[6])  # blown out
    frames[11] = np.where(inside[11][..., None], np.clip(frames[11] * 0.5 + 0.3, 0, 1), frames[11])  # a jump
    report = detect_artifacts(frames, clip.region)
    assert sorted(report.flagged) == [2, 4, 6, 11]
    assert "NaN" in report.flagged[2][0]
    assert any("blocking" in reason for reason in report.flagged[4])
    assert any("extreme colour" in reason for reason in report.flagged[6])
    assert report.flagged[11] == [report.flagged[11][0]] and "flicker spike" in report.flagged[11][0]
    assert report.as_dict()["flagged_frames"] == [2, 4, 6, 11]
    assert blockiness(frames[4].astype(np.float64), inside[4]) > 2 * blockiness(clip.generated[4], inside[4])


def test_replace_flagged_uses_the_nearest_good_neighbour_inside_the_region(clip):
    frames = clip.generated.copy()
    inside = clip.region > 0.5
    frames[3][inside[3]] = np.nan
    out = replace_flagged(frames, clip.region, [3, 4])
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[3][inside[3]], frames[2][inside[3]])  # earlier neighbour on ties
    np.testing.assert_array_equal(out[4][inside[4]], frames[5][inside[4]])  # nearest good is 5
    np.testing.assert_array_equal(out[3][~inside[3]], frames[3][~inside[3]])
    np.testing.assert_array_equal(out[0], frames[0])


def test_face_track_crop_follows_the_reference_rule():
    frames = np.zeros((3, 100, 120, 3), np.uint8)
    frames[..., 0] = 200  # red in RGB -> last channel in BGR
    boxes = fill_missing_boxes([(40, 30, 80, 70), None, (40, 30, 80, 70)])
    np.testing.assert_array_equal(boxes[1], [40, 30, 80, 70])
    crops = syncnet_face_crops(frames, boxes)
    assert crops.shape == (3, 224, 224, 3) and crops.dtype == np.uint8
    # half-size 20: rows 30..78 and columns 32..88 of the frame, all inside it -> pure red, BGR order
    np.testing.assert_array_equal(crops[0, 112, 112], [0, 0, 200])
    # a face at the frame's left edge reaches into the 110 grey padding
    edge = syncnet_face_crops(frames, fill_missing_boxes([(0, 30, 40, 70)] * 3))
    np.testing.assert_array_equal(edge[1, 112, 5], [110, 110, 110])
    with pytest.raises(ValueError, match="no face"):
        fill_missing_boxes([None, None])


def test_per_frame_series_and_plot(clip):
    outside = clip.region == 0
    psnr = psnr_per_frame(clip.generated, clip.original, outside)
    assert np.isinf(psnr).all()  # the generated frames equal the originals outside the region
    inside = psnr_per_frame(clip.generated, clip.original, clip.region > 0.5)
    assert np.isfinite(inside).all() and (inside < 40).all()
    change = change_per_frame(clip.generated, clip.region)
    assert np.isnan(change[0]) and (change[1:] > 0).all()
    image = plot_series({"a": inside, "b": change, "c": np.full(10, np.nan)}, width=320, panel_height=80)
    assert image.shape == (240, 320, 3) and image.dtype == np.uint8
    assert (image[:80] != 255).any(axis=-1).sum() > 300  # a drawn line and its label
    assert plot_series({}).shape[0] > 0


def test_frames_are_resampled_to_25_fps_by_nearest_frame():
    frames = np.arange(30)[:, None]
    np.testing.assert_array_equal(frames_at_25fps(frames, 50.0)[:, 0], np.arange(0, 30, 2))
    assert len(frames_at_25fps(frames, 30.0)) == 25
    assert frames_at_25fps(frames, 25.0) is frames


def test_lipsync_report_without_syncnet_says_why(clip):
    wav = np.random.default_rng(0).normal(0, 0.05, 16 * 640).astype(np.float32)
    report, per_frame = lipsync_report(clip.original, clip.generated, clip.region, wav, 25.0,
                                       syncnet_absent_reason="no syncnet_v2.model in models/syncnet")
    assert report["lip_sync"] == {"absent": "no syncnet_v2.model in models/syncnet"}
    assert report["psnr_outside"] == float("inf")
    assert report["boundary_delta_e"] > 0
    assert "offset_ms" in report["av_offset_proxy"] and report["av_offset_proxy"]["method"].startswith("proxy")
    assert report["artifacts"]["flagged_frames"] == []
    assert set(per_frame) >= {"PSNR outside region (dB)", "mouth opening (FaceMesh)"}
    assert all(len(v) == 16 for v in per_frame.values())


def test_lipsync_report_scores_the_face_track_with_syncnet():
    """With any SyncNet (here the seeded test weights) the report carries LSE-D/LSE-C from the clip's own face."""
    from syncnet_synth import seeded_state

    from talkinghead.models.syncnet import load_syncnet

    model = load_syncnet(seeded_state())
    talking = talking_clip(frames=14, size=(160, 160))
    frames = talking.frames.astype(np.float32) / 255.0
    region = np.zeros(frames.shape[:3], np.float32)
    region[:, 80:120, 50:110] = 1
    wav = np.random.default_rng(1).normal(0, 0.1, 14 * 640).astype(np.float32)
    report, per_frame = lipsync_report(frames, frames, region, wav, 25.0, syncnet=model)
    lip_sync = report["lip_sync"]
    assert lip_sync["windows"] == 9
    assert np.isfinite(lip_sync["lse_d"]) and lip_sync["lse_c"] >= 0
    assert -15 <= lip_sync["offset_frames"] <= 15
    assert len(per_frame["SyncNet confidence (25 fps windows)"]) == 9
