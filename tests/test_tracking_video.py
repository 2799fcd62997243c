"""Tracker video/image logic: frame selection, EMA, gap filling, crops, and track_video / track_image end to end with
small formula/random networks in the released formats (mechanics only: random networks give no real codes)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tracking_synth as synth
from gagavatar_synth import synthetic_flame
from talkinghead.models.flame import load_flame
from talkinghead.models.track_scrfd import load_scrfd
from talkinghead.models.track_vgghead import load_vgghead
from talkinghead.pipelines.gagavatar import read_tracked, write_tracked
from talkinghead.pipelines.tracking import TrackerModels, track_image, track_video
from talkinghead.pipelines.tracking.crops import head_crop, landmark_box, square_head_box
from talkinghead.pipelines.tracking.temporal import (ema, fill_camera_gaps, fill_gaps, select_frames,
                                                     smooth_cameras)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors

STEPS = 10


def _bright_box(image: np.ndarray):
    rows, cols = np.nonzero(image.mean(-1) > 100)
    if len(rows) == 0:
        return None
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float64)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("track")
    return TrackerModels(
        vgghead=load_vgghead(synth.write_vgghead(folder / "vgg_heads_l.trcd")),
        landmarks=synth.small_landmark_net(), emica=synth.small_emica(),
        scrfd=load_scrfd(synth.write_scrfd(folder / "ins_scrfd_10g_bnkps.onnx")),
        face_box=_bright_box, flame=load_flame(synthetic_flame(num_vertices=64, num_faces=120), scale=5.0))


def _clip(count: int, blank=(), size=(120, 160)) -> np.ndarray:
    frames = [synth.head_frame(*size, centre=(60 + 3 * i, 60), radii=(18, 24)) for i in range(count)]
    for index in blank:
        frames[index] = np.zeros_like(frames[index])
    return np.stack(frames)


# ----------------------------------------------------------------------------------------------------------------
# Temporal helpers and crops
# ----------------------------------------------------------------------------------------------------------------

def test_select_frames_drops_only_when_asked():
    kept, fps = select_frames(7, 60.0)
    assert kept.tolist() == list(range(7)) and fps == 60.0
    kept, fps = select_frames(7, 60.0, drop_high_fps=True)
    assert kept.tolist() == [1, 3, 5] and fps == 30.0  # the reference keeps the odd frames
    kept, fps = select_frames(7, 50.0, drop_high_fps=True)
    assert len(kept) == 7 and fps == 50.0
    with pytest.raises(ValueError, match="fps"):
        select_frames(3, 0.0)


def test_ema_is_the_reference_recurrence():
    track = np.array([[0.0], [10.0], [10.0], [10.0]])
    smoothed = ema(track, 0.03)
    assert smoothed[:, 0] == pytest.approx([0.0, 0.3, 0.3 + 0.03 * 9.7, 0.591 + 0.03 * (10 - 0.591)])


def test_fill_gaps_interpolates_and_holds_edges():
    track = np.array([[9.0], [1.0], [9.0], [9.0], [4.0], [9.0]])
    valid = np.array([False, True, False, False, True, False])
    assert fill_gaps(track, valid)[:, 0].tolist() == [1.0, 1.0, 2.0, 3.0, 4.0, 4.0]
    with pytest.raises(ValueError):
        fill_gaps(track, np.zeros(6, bool))


def test_camera_gap_filling_and_smoothing_keep_rotations():
    from scipy.spatial.transform import Rotation

    rotations = Rotation.from_rotvec([[0, 0.2 * i, 0] for i in range(5)]).as_matrix()
    cameras = np.concatenate([rotations, np.array([[0, 0, 9.0 + i] for i in range(5)])[..., None]], axis=2)
    filled = fill_camera_gaps(cameras, np.array([True, True, False, True, True]))
    assert np.allclose(filled[2, :, 3], [0, 0, 11.0])
    assert np.allclose(filled[2, :, :3], rotations[2], atol=0.02)  # lerp of nearby rotations + Gram-Schmidt
    smoothed = smooth_cameras(cameras, 0.6)
    assert np.allclose(smoothed[:, :, :3] @ smoothed[:, :, :3].transpose(0, 2, 1), np.eye(3), atol=1e-9)
    assert smoothed[1, 2, 3] == pytest.approx(0.6 * 10 + 0.4 * 9)
    assert np.allclose(smooth_cameras(np.repeat(cameras[:1], 3, 0), 0.6), np.repeat(cameras[:1], 3, 0))


def test_head_crop_is_square_and_zero_padded():
    box = square_head_box([100.0, 50.0, 140.0, 110.0], scale=1.65)
    side = np.sqrt(40 * 60) * 1.65
    assert box == pytest.approx([120 - side / 2, 80 - side / 2, 120 + side / 2, 80 + side / 2])
    image = torch.full((3, 100, 300), 200.0)
    crop = head_crop(image, [10.0, 10.0, 70.0, 70.0], size=64)  # the square sticks out above and left
    assert crop.shape == (3, 64, 64)
    assert crop[:, :5, :5].abs().max() == 0 and crop[:, -8:, -8:].min() == pytest.approx(200.0)
    assert landmark_box([10.0, 20.0, 50.0, 80.0]).tolist() == [-4.0, 16.0, 64.0, 84.0]  # centre (30, 50), side 2·floor(sqrt(41·61)·1.38/2)


# ----------------------------------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------------------------------

def test_track_video_interpolates_frames_without_a_head(models, tmp_path):
    frames = _clip(8, blank=(3, 4))
    driver, report = track_video(frames, 25.0, models, name="clip", steps=STEPS)
    assert len(driver) == 8 and driver.keys[0] == "clip_0" and driver.fps == 25.0
    assert report["no_head_frames"] == [3, 4]
    assert sorted(report["interpolated_frames"]) == [3, 4]
    assert report["dropped_input_frames"] == [] and report["frames_out"] == 8
    # expression is not smoothed: the gap is a straight line between frames 2 and 5
    expected = driver.expcode[2] + (driver.expcode[5] - driver.expcode[2]) / 3
    np.testing.assert_allclose(driver.expcode[3], expected, atol=1e-5)
    assert np.ptp(driver.shapecode, axis=0).max() == 0  # one shared identity
    rotations = driver.transform_matrix[:, :, :3]
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (8, 3, 3)),
                               atol=1e-5)
    assert driver.images.shape == (8, 512, 512, 3) and driver.images.dtype == np.uint8
    assert (driver.posecode[:, :3] == 0).all()  # head pose lives in the camera
    reloaded = read_tracked(write_tracked(tmp_path / "drv", driver, image_format="png"), load_images=True)
    assert reloaded.keys == driver.keys and reloaded.fps == 25.0 and not reloaded.image_set
    np.testing.assert_array_equal(reloaded.transform_matrix, driver.transform_matrix)
    np.testing.assert_array_equal(reloaded.images, driver.images)


def test_track_video_reports_dropped_frames(models):
    driver, report = track_video(_clip(6), 60.0, models, steps=STEPS, drop_high_fps=True)
    assert len(driver) == 3 and driver.fps == 30.0
    assert report["dropped_input_frames"] == [0, 2, 4] and report["fps_out"] == 30.0
    driver, report = track_video(_clip(3), 60.0, models, steps=STEPS)
    assert len(driver) == 3 and report["dropped_input_frames"] == []


def test_track_video_progress_and_no_head(models):
    calls = []
    track_video(_clip(2), 25.0, models, steps=STEPS, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (6, 6) and all(b[0] >= a[0] for a, b in zip(calls, calls[1:]))
    with pytest.raises(ValueError, match="no head in any frame"):
        track_video(_clip(3, blank=(0, 1, 2)), 25.0, models, steps=STEPS)


def test_track_image_gives_a_one_frame_source(models, tmp_path):
    record = track_image(synth.head_frame(200, 150, centre=(75, 90), radii=(30, 40)), models, key="portrait",
                         steps=STEPS)
    assert len(record) == 1 and record.image_set and record.keys == ["portrait"]
    assert record.images.shape == (1, 512, 512, 3)
    assert record.bbox.shape == (1, 4) and (0 <= record.bbox).all() and (record.bbox <= 1).all()
    reloaded = read_tracked(write_tracked(tmp_path / "src", record), load_images=True)
    assert reloaded.image_set and reloaded.keys == ["portrait"]
    np.testing.assert_allclose(reloaded.shapecode, record.shapecode)
    with pytest.raises(ValueError, match="no head"):
        track_image(np.zeros((64, 64, 3), np.uint8), models, steps=STEPS)
    with torch.inference_mode():  # ComfyUI runs nodes in inference mode; the fit still gets its gradients
        image = torch.from_numpy(synth.head_frame(200, 150, centre=(75, 90), radii=(30, 40))).float() / 255
        again = track_image(image, models, key="portrait", steps=STEPS)
    np.testing.assert_allclose(again.transform_matrix, record.transform_matrix, atol=1e-4)


def test_matting_composites_the_crop_onto_black(models):
    import dataclasses

    def left_half_background(crop: torch.Tensor) -> torch.Tensor:
        alpha = torch.ones(crop.shape[1:])
        alpha[:, : crop.shape[2] // 2] = 0.0
        return alpha

    matted = dataclasses.replace(models, matting=left_half_background, matting_method="test")
    record = track_image(synth.head_frame(200, 150, centre=(75, 90), radii=(30, 40)), matted, steps=STEPS)
    assert record.images[0, :, :256].max() == 0 and record.images[0, :, 300:].max() > 150


def _causal_ema(track: np.ndarray, alpha: float) -> np.ndarray:
    out = [track[0]]
    for value in track[1:]:
        out.append(alpha * value + (1 - alpha) * out[-1])
    return np.stack(out)


def test_track_video_smooths_each_field_as_the_reference(models, monkeypatch):
    """Head boxes get EMA 0.03 before cropping; after the fit the camera translation / 6D rotation get EMA 0.6 and the
    eyes 0.7, while expression, jaw, shape and bbox are passed through unsmoothed."""
    from scipy.spatial.transform import Rotation

    from talkinghead.pipelines.tracking import tracker

    frames = np.stack([synth.head_frame(120, 160, centre=(50 + 12 * i, 60 - 4 * i), radii=(18 + 2 * i, 24))
                       for i in range(5)])
    detected = np.stack([models.vgghead(torch.from_numpy(f).permute(2, 0, 1).float()).bbox for f in frames])
    cropped_boxes = []
    real_head_crop = tracker.head_crop
    monkeypatch.setattr(tracker, "head_crop",
                        lambda image, box: cropped_boxes.append(np.array(box)) or real_head_crop(image, box))

    rng = np.random.default_rng(0)
    rotations = Rotation.from_rotvec([[0.1 * i, 0.25 * i * (-1) ** i, 0.05] for i in range(5)]).as_matrix()
    translations = np.array([[0.02 * i, -0.03 * i * (-1) ** i, 9.0 + 0.5 * (-1) ** i] for i in range(5)])
    raw = {"shapecode": np.repeat(rng.normal(size=(1, 300)), 5, 0), "expcode": rng.normal(size=(5, 100)),
           "posecode": np.concatenate([np.zeros((5, 3)), rng.normal(size=(5, 3))], 1),
           "eyecode": rng.normal(size=(5, 6)) * 0.1, "bbox": rng.uniform(0, 1, size=(5, 4)),
           "transform_matrix": np.concatenate([rotations, translations[..., None]], 2),
           "landmarks_used": np.ones(5, bool)}
    monkeypatch.setattr(tracker, "fit_observations",
                        lambda observations, *args, **kwargs: {k: v[:len(observations)] for k, v in raw.items()})

    driver, _ = track_video(frames, 25.0, models, steps=STEPS)
    np.testing.assert_allclose(np.stack(cropped_boxes), _causal_ema(detected, 0.03), atol=1e-9)
    assert np.abs(np.stack(cropped_boxes) - detected).max() > 20  # the clip moves: the EMA is visible
    np.testing.assert_allclose(driver.eyecode, _causal_ema(raw["eyecode"], 0.7), atol=1e-6)
    np.testing.assert_allclose(driver.transform_matrix[:, :, 3], _causal_ema(translations, 0.6), atol=1e-5)
    first_rows = _causal_ema(rotations[:, 0], 0.6)  # PyTorch3D 6D = rows; Gram-Schmidt keeps row 0's direction
    np.testing.assert_allclose(driver.transform_matrix[:, 0, :3],
                               first_rows / np.linalg.norm(first_rows, axis=1, keepdims=True), atol=1e-5)
    for name in ("expcode", "posecode", "shapecode", "bbox"):
        np.testing.assert_allclose(getattr(driver, name), raw[name], atol=1e-6, err_msg=name)


def test_track_image_crop_geometry_bbox_and_dtypes(models):
    """The 512 crop is the sqrt(w·h)·1.65 square around VGGHead's box (corners truncated), and ``bbox`` is VGGHead's
    box in that crop / 512; every record field is float32 with the driver-format shape."""
    frame = synth.head_frame(200, 150, centre=(75, 90), radii=(30, 40))
    head = models.vgghead(torch.from_numpy(frame).permute(2, 0, 1).float()).bbox
    square = np.trunc(square_head_box(head, 1.65))
    expected = (head - square[[0, 1, 0, 1]]) * 512 / (square[2] - square[0])
    record = track_image(frame, models, steps=STEPS)
    np.testing.assert_allclose(record.bbox[0] * 512, expected, atol=4.0)
    shapes = {"bbox": (4,), "shapecode": (300,), "expcode": (100,), "posecode": (6,), "eyecode": (6,),
              "transform_matrix": (3, 4)}
    for name, shape in shapes.items():
        value = getattr(record, name)
        assert value.dtype == np.float32 and value.shape == (1, *shape), name


def test_emica_crops_geometry_and_wiring(models):
    """EMICA's crops around the face box: side int((w+h)/2·1.1·scale), corner int(centre - side/2), zero padding;
    DECA/EMOCA see the 224² crop at ×1.25 in 0..1, SCRFD the 320² crop at ×2.0 (0..255), MICA a 112² ArcFace crop."""
    import dataclasses

    from talkinghead.pipelines.tracking import analyse_crop
    from talkinghead.pipelines.tracking.crops import face_crop

    image = torch.arange(3 * 300 * 320, dtype=torch.float32).reshape(3, 300, 320) % 251
    box = [100.0, 120.0, 200.0, 240.0]  # side int(110·1.1·1.25) = 151, corner (int(150 - 75.5), int(180 - 75.5))
    torch.testing.assert_close(face_crop(image, box, 151, 1.25), image[:, 104:255, 74:225])
    wide = face_crop(image, box, 302, 2.0)  # side int(110·1.1·2) = 242 at (29, 59), resized to 302
    assert wide.shape == (3, 302, 302)
    torch.testing.assert_close(wide, face_crop(image[:, 59:301, 29:271], [71, 61, 171, 181], 302, 2.0))

    seen = {}

    class RecordingSCRFD:
        def largest_face(self, crop):
            seen["scrfd"] = crop
            return models.scrfd.largest_face(crop)

    def recording_emica(deca, arcface):
        seen["deca"], seen["arcface"] = deca, arcface
        return models.emica(deca, arcface)

    recording = dataclasses.replace(models, scrfd=RecordingSCRFD(), emica=recording_emica)
    frame = torch.from_numpy(synth.head_frame(200, 150, centre=(75, 90), radii=(30, 40))).permute(2, 0, 1).float()
    crop = head_crop(frame, models.vgghead(frame).bbox)
    observation, reason = analyse_crop(crop, recording)
    assert observation is not None, reason
    face = _bright_box(crop.round().byte().permute(1, 2, 0).numpy())
    torch.testing.assert_close(seen["deca"][0], face_crop(crop, face, 224, 1.25) / 255.0)
    torch.testing.assert_close(seen["scrfd"], face_crop(crop, face, 320, 2.0))
    assert seen["arcface"].shape == (1, 3, 112, 112) and seen["arcface"].abs().max() <= 1.0
