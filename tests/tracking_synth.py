"""Small random-weight tracker networks in the RELEASED file formats, plus synthetic head images, for the tracking
tests.  Nothing here is a face model: the networks are random or formula-driven so that loading and decoding code
paths can be checked with numbers.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from talkinghead.models.track_emica import EMICA, IResNet, MappingNetwork, ResNet, ResNetRegressor
from talkinghead.models.track_landmarks import HRNet, LandmarkNet98

HEAD_THRESHOLD = 0.6  # letterbox pixels brighter than this (0..1) are "head" for the formula VGGHead


class FormulaVGGHead(nn.Module):
    """Emits VGGHead's output layout (boxes [1,N,4], scores [1,N,1], params [1,N,413]) from a rule: box 0 is the
    bounding box of the bright pixels (score 0.9, or 0 without any), box 1 a box inside it (score 0.8, removed by
    NMS), box 2 a far-away box below the 0.5 threshold.  Params: zero FLAME codes, identity rotation, translation at
    the box centre, scale = box width / 0.2 (the synthetic FLAME's head is about 0.2 wide at unit scale)."""

    def __init__(self):
        super().__init__()
        self.threshold = HEAD_THRESHOLD

    def forward(self, image: torch.Tensor):
        mask = image[0].mean(0) > self.threshold
        rows = torch.nonzero(mask.any(1)).flatten().float()
        cols = torch.nonzero(mask.any(0)).flatten().float()
        found = rows.numel() > 0
        if found:
            box = torch.stack([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
        else:
            box = torch.tensor([0.0, 0.0, 10.0, 10.0])
        inner = box * 0.9 + 0.1 * box[[2, 3, 0, 1]]
        far = torch.tensor([600.0, 600.0, 630.0, 630.0])
        boxes = torch.stack([box, inner, far])[None]
        scores = torch.tensor([[[0.9], [0.8], [0.3]]])
        if not found:
            scores[0, :2] = 0.0
        params = torch.zeros(1, 3, 413)
        params[0, :, 403] = 1.0
        params[0, :, 407] = 1.0
        params[0, :, 409] = (box[0] + box[2]) / 2
        params[0, :, 410] = (box[1] + box[3]) / 2
        params[0, :, 412] = (box[2] - box[0]) / 0.2
        return boxes, scores, params


def write_vgghead(path: Path) -> Path:
    """Save :class:`FormulaVGGHead` as TorchScript, as the released ``vgg_heads_l.trcd`` is stored."""
    with warnings.catch_warnings():  # torch >= 2.9 flags TorchScript as deprecated
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(FormulaVGGHead()), str(path))
    return path


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                if name.endswith("running_var"):
                    tensor.uniform_(0.5, 1.5, generator=generator)
                else:
                    tensor.normal_(0.0, 0.2, generator=generator)
    return module.eval()


def small_landmark_net(seed: int = 0) -> LandmarkNet98:
    """HRNet of the released topology (4 stages, 1/2/3/4 branches) with narrow widths and one block per branch."""
    stages = [{"channels": [4, 8], "blocks": [1, 1], "modules": 1},
              {"channels": [4, 8, 12], "blocks": [1, 1, 1], "modules": 2},
              {"channels": [4, 8, 12, 16], "blocks": [1, 1, 1, 1], "modules": 1}]
    return _randomise(LandmarkNet98(HRNet(8, 4, 2, stages), head_proj=12), seed)


def small_emica(seed: int = 0) -> EMICA:
    arcface = IResNet(8, [8, 8, 16, 16], [1, 2, 1, 1], num_features=32)
    mapping = MappingNetwork([(32, 300), (300, 300), (300, 300), (300, 300)], (300, 300))
    deca = ResNetRegressor(ResNet(8, [4, 4, 8, 8], [1, 1, 2, 1], 4), 32, 16, 86)
    expression = ResNetRegressor(ResNet(8, [4, 4, 8, 8], [1, 1, 1, 1], 4), 32, 16, 100)
    model = _randomise(EMICA(arcface, mapping, deca, expression), seed)
    with torch.no_grad():  # keep the random codes in a plausible range
        for regressor in (model.deca_encoder.encoder, model.expression_encoder.encoder):
            regressor.layers[2].weight.mul_(0.05)
            regressor.layers[2].bias.zero_()
        model.mica_encoder.E_mica.flameModel.regressor.output.weight.mul_(0.01)
    return model


class FormulaSCRFD(nn.Module):
    """SCRFD's released output layout for a 320² input: per stride (8, 16, 32) scores [K,1], box distances [K,4],
    keypoint distances [K,10] (K = cells·2, outputs without a batch dimension).  One anchor of stride 16 — cell
    (row 9, col 11), anchor 1 — scores 0.95 with a fixed box and keypoints; everything else scores 0.1."""

    CELL = (9, 11)

    def forward(self, image: torch.Tensor):
        zero = image.mean() * 0.0  # keeps the graph connected to the input
        outputs = [], [], []
        for stride in (8, 16, 32):
            cells = (320 // stride) ** 2
            scores = torch.full((cells * 2, 1), 0.1) + zero
            boxes = torch.ones(cells * 2, 4) + zero
            kps = torch.zeros(cells * 2, 10) + zero
            if stride == 16:
                anchor = (self.CELL[0] * 20 + self.CELL[1]) * 2 + 1
                scores[anchor, 0] = 0.95
                boxes[anchor] = torch.tensor([2.0, 3.0, 2.5, 3.5])
                kps[anchor] = torch.tensor([-1.0, -1.0, 1.0, -1.0, 0.0, 0.0, -0.8, 1.2, 0.8, 1.2])
            for group, value in zip(outputs, (scores, boxes, kps)):
                group.append(value)
        return tuple(outputs[0] + outputs[1] + outputs[2])


def write_scrfd(path: Path) -> Path:
    """Export :class:`FormulaSCRFD` to ONNX with a dynamic input size, as the released file is stored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(FormulaSCRFD(), (torch.zeros(1, 3, 320, 320),), str(path), input_names=["input.1"],
                          output_names=[f"out{i}" for i in range(9)], dynamo=False,
                          dynamic_axes={"input.1": {2: "height", 3: "width"}})
    return path


def head_frame(height: int, width: int, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    """Black RGB uint8 frame with a bright ellipse (the formula VGGHead's "head")."""
    y, x = np.mgrid[0:height, 0:width]
    inside = ((x + 0.5 - centre[0]) / radii[0]) ** 2 + ((y + 0.5 - centre[1]) / radii[1]) ** 2 <= 1
    frame = np.zeros((height, width, 3), np.uint8)
    frame[inside] = (230, 200, 180)
    return frame


def small_stylematte(seed: int = 0):
    """StyleMatte of the released topology (Swin 4 stages with patch merging, 3-level deformable pixel decoder with
    one FPN step, fused head) with narrow widths; GroupNorm(32) needs widths that are multiples of 32."""
    from talkinghead.models.track_matting import PixelDecoder, StyleMatte, SwinBackbone

    backbone = SwinBackbone(8, 4, [2, 2, 2, 2], [1, 2, 2, 4], 7, 2.0)
    decoder = PixelDecoder([8, 16, 32, 64], 32, 32, 2, 64, 8, 4, 3, 1)
    return _randomise(StyleMatte(backbone, decoder, 32), seed)


def write_tracker_files(folder: Path, fd_folder: Path | None = None, flame_path: Path | None = None) -> None:
    """Small random/formula tracker files in the released formats (no matting file): ``folder`` gets VGGHead,
    landmarks, EMICA and SCRFD; ``fd_folder`` (optional) S3FD and 2DFAN4; ``flame_path`` (optional) a synthetic
    FLAME with the 70-point embedding."""
    write_vgghead(folder / "vgg_heads_l.trcd")
    torch.save(small_landmark_net().state_dict(), folder / "lmks_2d.pt")
    torch.save(small_emica().state_dict(), folder / "EMICA-CVT_flame2020_notexture.pt")
    write_scrfd(folder / "ins_scrfd_10g_bnkps.onnx")
    if fd_folder is not None:
        from face_alignment.detection.sfd.net_s3fd import s3fd
        from face_alignment.models import FAN

        torch.save(s3fd().state_dict(), fd_folder / "s3fd-619a316812.pth")
        torch.save(FAN(4).state_dict(), fd_folder / "2DFAN4-11f355bf06.pth.tar")
    if flame_path is not None:
        from gagavatar_synth import synthetic_flame

        torch.save(synthetic_flame(num_vertices=64, num_faces=120), flame_path)


def portrait_on_black(shift: int = 0, size: int = 320) -> np.ndarray:
    """The astronaut's head and shoulders on black (as a matted crop looks), shifted right by ``shift`` px: the formula
    VGGHead boxes the bright patch and BlazeFace finds the real face inside it."""
    from media import photo

    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[40:280, 45 + shift:275 + shift] = photo("astronaut")[20:260, 110:340]
    return canvas
