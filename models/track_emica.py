"""EMICA encoders of the GAGAvatar tracker (``EMICA-CVT_flame2020_notexture.pt``).

One state dict with three networks, loaded strictly:

- ``mica_encoder.E_mica.arcface.*``: ArcFace IResNet-100 (IBasicBlocks [3,13,30,3], widths 64..512, BN -> 3x3 conv ->
  BN -> PReLU -> 3x3 conv (stride here) -> BN, + shortcut), then BN2d -> flatten -> fc (512·7·7 -> 512) -> BN1d.
  Input: the 112² ArcFace-aligned crop, RGB, (x - 127.5) / 127.5.
- ``mica_encoder.E_mica.flameModel.regressor.*``: MICA's mapping MLP on the L2-normalised ArcFace feature:
  ``network`` = Linear(512,300) + 3 × Linear(300,300), each followed by LeakyReLU(0.2), then ``output``
  Linear(300,300) -> FLAME shape code.
- ``deca_encoder.encoder.*`` and ``expression_encoder.encoder.*``: ResNet-50 (``encoder.encoder``; 7x7 stem,
  max-pool, Bottlenecks [3,4,6,3], 7x7 average pool) + ``layers`` = Linear(2048,1024) -> ReLU -> Linear(1024, out).
  DECA's 86 outputs are texture 50, jaw 3, global pose 3, camera 3, light 27; EMOCA's 100 are the expression.
  Input: the 224² face crop, RGB in 0..1 (no normalisation).

Widths, block counts and layer sizes are read from the tensors, so smaller files in the same layout load too.
"""
from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn import functional as F

from .state_dict_file import check_fits, read_state_dict

DECA_LAYOUT = (("texcode", 50), ("jawpose", 3), ("globalpose", 3), ("cam", 3), ("lightcode", 27))


def _count(state: dict, pattern: str) -> int:
    found = {int(m.group(1)) for key in state if (m := re.match(pattern, key))}
    return max(found) + 1 if found else 0


def _conv_bn(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


# ----------------------------------------------------------------------------------------------------------------
# ArcFace IResNet + MICA mapping
# ----------------------------------------------------------------------------------------------------------------

class IBasicBlock(nn.Module):
    def __init__(self, in_ch: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.downsample = _conv_bn(in_ch, planes, stride) if stride != 1 or in_ch != planes else None

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """ArcFace backbone: 112² crop -> ``features`` [N, num_features]."""

    def __init__(self, stem: int, widths: list[int], blocks: list[int], num_features: int, final_size: int = 7):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.prelu = nn.PReLU(stem)
        in_ch = stem
        for index, (width, count) in enumerate(zip(widths, blocks), start=1):
            setattr(self, f"layer{index}", nn.Sequential(*[IBasicBlock(in_ch if i == 0 else width, width,
                                                                       2 if i == 0 else 1) for i in range(count)]))
            in_ch = width
        self.bn2 = nn.BatchNorm2d(in_ch)
        self.fc = nn.Linear(in_ch * final_size * final_size, num_features)
        self.features = nn.BatchNorm1d(num_features)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(torch.flatten(self.bn2(x), 1)))


class MappingNetwork(nn.Module):
    """MICA's identity -> FLAME shape MLP (LeakyReLU 0.2 after every ``network`` layer; with more than 5 hidden
    layers the input is concatenated after the middle one, as MICA does)."""

    def __init__(self, sizes: list[tuple[int, int]], output: tuple[int, int]):
        super().__init__()
        hidden = len(sizes) - 1
        self.skips = [hidden // 2] if hidden > 5 else []
        self.network = nn.ModuleList(nn.Linear(i, o) for i, o in sizes)
        self.output = nn.Linear(*output)

    def forward(self, z):
        h = z
        for index, layer in enumerate(self.network):
            h = F.leaky_relu(layer(h), negative_slope=0.2)
            if index in self.skips:
                h = torch.cat([z, h], 1)
        return self.output(h)


# ----------------------------------------------------------------------------------------------------------------
# DECA / EMOCA ResNet-50 regressors
# ----------------------------------------------------------------------------------------------------------------

class Bottleneck(nn.Module):
    def __init__(self, in_ch: int, planes: int, stride: int, expansion: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * expansion)
        out_ch = planes * expansion
        self.downsample = _conv_bn(in_ch, out_ch, stride) if stride != 1 or in_ch != out_ch else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """ResNet-50-style feature extractor: 224² image -> [N, C] after a 7x7 (stride 1) average pool."""

    def __init__(self, stem: int, planes: list[int], blocks: list[int], expansion: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        in_ch = stem
        for index, (width, count) in enumerate(zip(planes, blocks), start=1):
            stride = 1 if index == 1 else 2
            setattr(self, f"layer{index}", nn.Sequential(*[
                Bottleneck(in_ch if i == 0 else width * expansion, width, stride if i == 0 else 1, expansion)
                for i in range(count)]))
            in_ch = width * expansion

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.avg_pool2d(x, 7, stride=1), 1)


class ResNetRegressor(nn.Module):
    """``encoder`` (ResNet) + ``layers`` (Linear -> ReLU -> Linear)."""

    def __init__(self, backbone: ResNet, features: int, hidden: int, outputs: int):
        super().__init__()
        self.encoder = backbone
        self.layers = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, outputs))

    def forward(self, x):
        return self.layers(self.encoder(x))


class _Holder(nn.Module):
    """Named container reproducing the reference attribute path (``mica_encoder.E_mica...``)."""

    def __init__(self, **children: nn.Module):
        super().__init__()
        for name, child in children.items():
            setattr(self, name, child)


class EMICA(nn.Module):
    """The three EMICA networks; :meth:`forward` returns shape, expression, jaw and global pose codes."""

    def __init__(self, arcface: IResNet, mapping: MappingNetwork, deca: ResNetRegressor, expression: ResNetRegressor):
        super().__init__()
        self.mica_encoder = _Holder(E_mica=_Holder(arcface=arcface, flameModel=_Holder(regressor=mapping)))
        self.deca_encoder = _Holder(encoder=deca)
        self.expression_encoder = _Holder(encoder=expression)

    @torch.no_grad()
    def forward(self, face_224: torch.Tensor, arcface_112: torch.Tensor) -> dict:
        """``face_224`` [N,3,224,224] RGB 0..1; ``arcface_112`` [N,3,112,112] RGB (x-127.5)/127.5.

        Returns dict(shapecode [N,300], expcode [N,100], jawpose [N,3], globalpose [N,3], cam [N,3], ...)."""
        mica = self.mica_encoder.E_mica
        identity = F.normalize(mica.arcface(arcface_112))
        deca = self.deca_encoder.encoder(face_224)
        codes, start = {}, 0
        for name, size in DECA_LAYOUT:
            codes[name] = deca[:, start:start + size]
            start += size
        codes["shapecode"] = mica.flameModel.regressor(identity)
        codes["expcode"] = self.expression_encoder.encoder(face_224)
        return codes


# ----------------------------------------------------------------------------------------------------------------
# Building from the checkpoint
# ----------------------------------------------------------------------------------------------------------------

def _layer_sizes(state: dict, prefix: str) -> tuple[list[int], list[int]]:
    widths, blocks, index = [], [], 1
    while f"{prefix}layer{index}.0.conv1.weight" in state:
        widths.append(state[f"{prefix}layer{index}.0.conv1.weight"].shape[0])
        blocks.append(_count(state, rf"{re.escape(prefix)}layer{index}\.(\d+)\."))
        index += 1
    if len(widths) != 4:
        raise ValueError(f"expected 4 residual stages under '{prefix}', found {len(widths)}")
    return widths, blocks


def _arcface_from(state: dict) -> IResNet:
    prefix = "mica_encoder.E_mica.arcface."
    widths, blocks = _layer_sizes(state, prefix)
    fc = state[f"{prefix}fc.weight"]
    final = round((fc.shape[1] / widths[-1]) ** 0.5)
    return IResNet(state[f"{prefix}conv1.weight"].shape[0], widths, blocks, fc.shape[0], final)


def _mapping_from(state: dict) -> MappingNetwork:
    prefix = "mica_encoder.E_mica.flameModel.regressor."
    count = _count(state, rf"{re.escape(prefix)}network\.(\d+)\.")
    sizes = [tuple(state[f"{prefix}network.{i}.weight"].shape[::-1]) for i in range(count)]
    return MappingNetwork(sizes, tuple(state[f"{prefix}output.weight"].shape[::-1]))


def _regressor_from(state: dict, prefix: str) -> ResNetRegressor:
    planes, blocks = _layer_sizes(state, f"{prefix}encoder.")
    expansion = state[f"{prefix}encoder.layer1.0.conv3.weight"].shape[0] // planes[0]
    backbone = ResNet(state[f"{prefix}encoder.conv1.weight"].shape[0], planes, blocks, expansion)
    first, last = state[f"{prefix}layers.0.weight"], state[f"{prefix}layers.2.weight"]
    return ResNetRegressor(backbone, first.shape[1], first.shape[0], last.shape[0])


def build_emica(state: dict) -> EMICA:
    """Build EMICA sized from ``state`` and load it strictly (ValueError naming what does not match)."""
    try:
        model = EMICA(_arcface_from(state), _mapping_from(state), _regressor_from(state, "deca_encoder.encoder."),
                      _regressor_from(state, "expression_encoder.encoder."))
    except KeyError as error:
        raise ValueError(f"not the EMICA-CVT_flame2020_notexture.pt layout: missing {error}") from error
    outputs = (model.deca_encoder.encoder.layers[2].out_features, model.expression_encoder.encoder.layers[2].out_features)
    if outputs != (sum(size for _, size in DECA_LAYOUT), 100):
        raise ValueError(f"EMICA regressors output {outputs}, expected (86, 100)")
    check_fits(model, state, "EMICA")
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_emica(path, device: str | torch.device = "cpu") -> EMICA:
    """Load ``EMICA-CVT_flame2020_notexture.pt`` (a plain state dict, ``weights_only=True``)."""
    state = read_state_dict(path, "EMICA")
    return build_emica(state).to(device)
