"""Tracker networks loaded from files in their RELEASED formats (TorchScript saved here, ONNX exported here, state
dicts with the released key layout), with small random or formula weights; decoding checked with numbers."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import tracking_synth as synth
from gagavatar_synth import synthetic_flame
from talkinghead.models.track_emica import EMICA, ResNet, build_emica, load_emica
from talkinghead.models.track_landmarks import (HRNet, LandmarkNet98, heatmap_to_points, hrnet_config_from_state_dict,
                                                load_landmark_net)
from talkinghead.models.track_scrfd import decode_scrfd, load_scrfd
from talkinghead.models.track_vgghead import letterbox, load_vgghead
from talkinghead.pipelines.tracking import load_tracker
from talkinghead.pipelines.tracking.crops import ARCFACE_TEMPLATE, arcface_crop
from talkinghead.pipelines.tracking.landmarks import wflw98_to_70

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors


def _image(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame).permute(2, 0, 1).float()


# ----------------------------------------------------------------------------------------------------------------
# VGGHead
# ----------------------------------------------------------------------------------------------------------------

class TwoHeads(torch.nn.Module):
    """A small head with the higher score and a large one; params 0..412 so the split can be checked."""

    def forward(self, image: torch.Tensor):
        boxes = torch.tensor([[[10.0, 10.0, 60.0, 60.0], [300.0, 200.0, 500.0, 450.0]]]) + image.mean() * 0
        scores = torch.tensor([[[0.95], [0.6]]])
        params = torch.arange(413.0).expand(1, 2, 413).clone()
        return boxes, scores, params


class FullFrame(torch.nn.Module):
    def forward(self, image: torch.Tensor):
        return torch.tensor([[[2.0, 1.0, 639.0, 638.0]]]), torch.tensor([[[0.99]]]), torch.zeros(1, 1, 413)


class WrongWidth(torch.nn.Module):
    def forward(self, image: torch.Tensor):
        return torch.tensor([[[2.0, 1.0, 39.0, 38.0]]]), torch.tensor([[[0.99]]]), torch.zeros(1, 1, 412)


def _script(module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def test_vgghead_letterbox_maps_box_back_to_input_pixels(tmp_path):
    detector = load_vgghead(synth.write_vgghead(tmp_path / "vgg_heads_l.trcd"))
    frame = synth.head_frame(300, 480, centre=(200, 150), radii=(50, 70))  # landscape: padded top/bottom
    pixels, padding, scale = letterbox(_image(frame))
    assert pixels.shape == (1, 3, 640, 640) and padding.tolist() == [0, 120] and scale == pytest.approx(640 / 480)
    assert pixels[0, :, :120].unique().tolist() == [pytest.approx(127 / 255)]
    result = detector(_image(frame))
    np.testing.assert_allclose(result.bbox, [150, 80, 250, 220], atol=1.0)
    assert result.score == pytest.approx(0.9)  # the 0.8 box inside it went to NMS, the 0.3 one to the threshold
    assert result.translation[:2].tolist() == pytest.approx([(150 + 250) / 2 * scale, (80 + 220) / 2 * scale + 120],
                                                            abs=1.5)
    assert detector(torch.zeros(3, 90, 120)) is None


def test_vgghead_keeps_largest_head_and_splits_413_values(tmp_path):
    result = load_vgghead(_script(TwoHeads(), tmp_path / "two.trcd"))(torch.zeros(3, 640, 640))
    np.testing.assert_allclose(result.bbox, [300, 200, 500, 450])
    assert result.shapecode[[0, -1]].tolist() == [0, 299] and result.expcode[[0, -1]].tolist() == [300, 399]
    assert result.jaw.tolist() == [400, 401, 402] and result.rotation_6d.tolist() == list(range(403, 409))
    assert result.translation.tolist() == [409, 410, 411] and result.scale.tolist() == [412]


def test_vgghead_rejects_full_frame_and_foreign_files(tmp_path):
    assert load_vgghead(_script(FullFrame(), tmp_path / "full.trcd"))(torch.zeros(3, 64, 64)) is None
    with pytest.raises(ValueError, match="413"):
        load_vgghead(_script(WrongWidth(), tmp_path / "wide.trcd"))(torch.zeros(3, 64, 64))
    (tmp_path / "junk.trcd").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="TorchScript"):
        load_vgghead(tmp_path / "junk.trcd")
    with pytest.raises(FileNotFoundError):
        load_vgghead(tmp_path / "absent.trcd")


# ----------------------------------------------------------------------------------------------------------------
# 98-point landmarks
# ----------------------------------------------------------------------------------------------------------------

def test_released_landmark_topology_has_the_reference_keys():
    stages = [{"channels": [18, 36], "blocks": [4, 4], "modules": 1},
              {"channels": [18, 36, 72], "blocks": [4] * 3, "modules": 4},
              {"channels": [18, 36, 72, 144], "blocks": [4] * 4, "modules": 3}]
    state = LandmarkNet98(HRNet(64, 64, 4, stages), 270).state_dict()
    expected = {  # key names and shapes of the reference LandmarkDetector (HRNet-W18 + BinaryHeadBlock)
        "backbone.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "backbone.layer1.3.conv3.weight": (256, 64, 1, 1),
        "backbone.transition1.0.0.weight": (18, 256, 3, 3),
        "backbone.transition1.1.0.0.weight": (36, 256, 3, 3),
        "backbone.transition2.2.0.0.weight": (72, 36, 3, 3),
        "backbone.transition3.3.0.0.weight": (144, 72, 3, 3),
        "backbone.stage2.0.branches.1.3.conv2.weight": (36, 36, 3, 3),
        "backbone.stage3.3.fuse_layers.0.2.0.weight": (18, 72, 1, 1),
        "backbone.stage4.2.fuse_layers.3.0.2.0.weight": (144, 18, 3, 3),
        "backbone.stage4.2.fuse_layers.3.0.1.1.running_var": (18,),
        "heatmap_head.head.layers.0.weight": (270, 270, 1, 1),
        "heatmap_head.head.layers.1.running_mean": (270,),
        "heatmap_head.head.layers.3.weight": (196, 270, 1, 1),
    }
    assert {key: tuple(state[key].shape) for key in expected} == expected
    assert not any(key.startswith("backbone.transition2.0") or ".fuse_layers.1.1." in key for key in state)
    assert hrnet_config_from_state_dict(state)["stages"] == stages


def test_landmark_file_round_trip(tmp_path):
    net = synth.small_landmark_net(seed=4)
    torch.save(net.state_dict(), tmp_path / "lmks_2d.pt")
    loaded = load_landmark_net(tmp_path / "lmks_2d.pt")
    crop = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(loaded(crop), net(crop))
    points = loaded(crop)
    assert points.shape == (2, 98, 2) and points.min() >= 0 and points.max() <= 256
    state = net.state_dict()
    state.pop("heatmap_head.head.layers.1.running_mean")
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="lmks_2d.pt"):
        load_landmark_net(tmp_path / "broken.pt")


def test_heatmap_decoding_is_top9_softmax_times_stride():
    heatmaps = torch.full((1, 2, 64, 64), -50.0)
    heatmaps[0, 0, 10, 20] = 10.0  # one clear peak: exactly its cell · 4
    heatmaps[0, 1, 5, 6] = heatmaps[0, 1, 5, 8] = 10.0  # two equal peaks: their midpoint
    points = heatmap_to_points(heatmaps)
    torch.testing.assert_close(points, torch.tensor([[[80.0, 40.0], [28.0, 20.0]]]))


def test_wflw98_to_70_map():
    points = torch.arange(98.0)[:, None].expand(98, 2)
    mapped = wflw98_to_70(points)[:, 0].long().tolist()
    assert len(mapped) == 70 and mapped[:17] == list(range(0, 33, 2)) and mapped[-2:] == [96, 97]
    assert mapped[36:42] == [60, 61, 63, 64, 65, 67]  # right-eye contour from WFLW's 8-point eye


# ----------------------------------------------------------------------------------------------------------------
# SCRFD
# ----------------------------------------------------------------------------------------------------------------

def test_scrfd_onnx_decoding(tmp_path):
    detector = load_scrfd(synth.write_scrfd(tmp_path / "ins_scrfd_10g_bnkps.onnx"))
    boxes, points = detector(torch.zeros(3, 320, 320))
    # anchor centre of stride-16 cell (row 9, col 11): (176, 144); distances (2, 3, 2.5, 3.5) · 16
    np.testing.assert_allclose(boxes, [[144, 96, 216, 200, 0.95]], rtol=1e-6)
    np.testing.assert_allclose(points[0], [[160, 128], [192, 128], [176, 144], [163.2, 163.2], [188.8, 163.2]],
                               rtol=1e-6)
    box, keypoints = detector.largest_face(torch.zeros(3, 640, 500))  # padded right to 640², then halved
    np.testing.assert_allclose(box[:4], [288, 192, 432, 400], rtol=1e-6)
    np.testing.assert_allclose(keypoints[2], [352, 288], rtol=1e-6)


def test_scrfd_decoding_accepts_batched_outputs_and_checks_layout():
    outputs = []
    for channels in (1, 4, 10):
        for stride in (8, 16, 32):
            outputs.append(np.zeros((1, (64 // stride) ** 2 * 2, channels), np.float32))
    outputs[1][0, 3, 0] = 0.7  # stride 16, cell 1 (x = 16), second anchor
    scores, boxes, points = decode_scrfd(outputs, 64, 64)
    assert scores.tolist() == [pytest.approx(0.7)] and boxes.tolist() == [[16.0, 0.0, 16.0, 0.0]]
    assert points.shape == (1, 5, 2)
    with pytest.raises(ValueError, match="9"):
        decode_scrfd(outputs[:6], 64, 64)


# ----------------------------------------------------------------------------------------------------------------
# EMICA
# ----------------------------------------------------------------------------------------------------------------

def test_emica_file_round_trip_and_key_layout(tmp_path):
    model = synth.small_emica(seed=2)
    state = model.state_dict()
    for key in ("mica_encoder.E_mica.arcface.layer1.0.prelu.weight", "mica_encoder.E_mica.arcface.features.running_var",
                "mica_encoder.E_mica.flameModel.regressor.network.3.weight",
                "mica_encoder.E_mica.flameModel.regressor.output.bias",
                "deca_encoder.encoder.encoder.layer4.0.downsample.1.running_var",
                "deca_encoder.encoder.layers.2.weight", "expression_encoder.encoder.encoder.conv1.weight"):
        assert key in state, key
    torch.save(state, tmp_path / "EMICA-CVT_flame2020_notexture.pt")
    loaded = load_emica(tmp_path / "EMICA-CVT_flame2020_notexture.pt")
    face, arcface = torch.rand(2, 3, 224, 224), torch.rand(2, 3, 112, 112) * 2 - 1
    ours, theirs = loaded(face, arcface), model(face, arcface)
    assert {name: tuple(value.shape) for name, value in ours.items()} == {
        "texcode": (2, 50), "jawpose": (2, 3), "globalpose": (2, 3), "cam": (2, 3), "lightcode": (2, 27),
        "shapecode": (2, 300), "expcode": (2, 100)}
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name])
    # the DECA head's 86 outputs are split in the order texture, jaw, global, camera, light
    deca = model.deca_encoder.encoder(face)
    torch.testing.assert_close(ours["jawpose"], deca[:, 50:53])
    torch.testing.assert_close(ours["globalpose"], deca[:, 53:56])


def test_emica_layout_errors():
    state = synth.small_emica().state_dict()
    state["deca_encoder.encoder.layers.2.weight"] = torch.zeros(80, 16)
    state["deca_encoder.encoder.layers.2.bias"] = torch.zeros(80)
    with pytest.raises(ValueError, match="86"):
        build_emica(state)
    state = synth.small_emica().state_dict()
    del state["mica_encoder.E_mica.arcface.fc.weight"]
    with pytest.raises(ValueError, match="missing"):
        build_emica(state)
    assert isinstance(build_emica(synth.small_emica().state_dict()), EMICA)


def test_deca_backbone_has_resnet50_size():
    backbone = ResNet(64, [64, 128, 256, 512], [3, 4, 6, 3], 4)
    assert sum(p.numel() for p in backbone.parameters()) == 23_508_032  # torchvision ResNet-50 without fc


# ----------------------------------------------------------------------------------------------------------------
# ArcFace crop and the loader
# ----------------------------------------------------------------------------------------------------------------

def test_arcface_crop_aligns_keypoints_to_the_template():
    image = torch.arange(3 * 200 * 200, dtype=torch.float32).reshape(3, 200, 200) % 255
    crop = arcface_crop(image, ARCFACE_TEMPLATE + np.array([30.0, 20.0]))  # template shifted by (30, 20)
    torch.testing.assert_close(crop, (image[:, 20:132, 30:142] - 127.5) / 127.5, atol=1e-4, rtol=0)
    assert arcface_crop(image, np.zeros((5, 2))) is None


def test_load_tracker_names_every_missing_file_then_loads(tmp_path):
    models = tmp_path / "models"
    folder, fd_folder = models / "gagavatar" / "track", models / "face_detection"
    for path in (folder, fd_folder, models / "flame"):
        path.mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as missing:
        load_tracker(folder)
    for name in ("vgg_heads_l.trcd", "lmks_2d.pt", "EMICA-CVT_flame2020_notexture.pt", "ins_scrfd_10g_bnkps.onnx",
                 "stylematte_synth.pt", "s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar", "FLAME_with_eye.pt"):
        assert name in str(missing.value)
    synth.write_tracker_files(folder, fd_folder, models / "flame" / "FLAME_with_eye.pt")
    with pytest.raises(FileNotFoundError, match="stylematte_synth.pt"):
        load_tracker(folder)
    assert load_tracker(folder, matting="none").matting is None  # no matting: that file is not needed
    torch.save(synth.small_stylematte().state_dict(), folder / "stylematte_synth.pt")
    tracker = load_tracker(folder)
    assert tracker.matting_method == "stylematte" and tracker.flame.has_landmarks
    assert tracker.matting(torch.rand(3, 64, 64) * 255).shape == (64, 64)
    assert tracker.vgghead(_image(synth.head_frame(120, 160, (80, 60), (20, 25)))) is not None
    torch.save(synthetic_flame(num_vertices=64, num_faces=120, with_landmarks=False), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="70-point"):
        load_tracker(folder, flame=tmp_path / "plain.pt", matting="none")
    with pytest.raises(ValueError, match="matting"):
        load_tracker(folder, matting="stylematte-typo")
    for name in ("s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar"):
        (fd_folder / name).unlink()
    with pytest.raises(FileNotFoundError, match="s3fd"):
        load_tracker(folder, matting="none")
    pytest.importorskip("mediapipe")
    blaze = load_tracker(folder, matting="none", face_box="blazeface")  # the S3FD/FAN files are not needed then
    from media import photo

    box = blaze.face_box(photo("astronaut"))
    assert box is not None and 170 < box[0] < 185 and 75 < box[1] < 95  # BlazeFace's astronaut face (x≈178, y≈83)
    with pytest.raises(ValueError, match="face_box"):
        load_tracker(folder, matting="none", face_box="dlib")
