"""98-point (WFLW) landmark network of the GAGAvatar tracker (``lmks_2d.pt``): HRNet-W18 + binary heatmap head.

Released layout (a plain state dict): ``backbone.*`` is an HRNet with a two-conv stride-4 stem,
``layer1`` (Bottleneck blocks), stages 2-4 with 2/3/4 branches (18/36/72/144 channels, 4 BasicBlocks per branch,
1/4/3 modules) whose four outputs are upsampled to the finest branch and concatenated (270 channels);
``heatmap_head.head.layers`` is conv1x1 -> BN -> ReLU -> conv1x1 to 2x98 maps viewed as [N,2,98,H,W].  Channel 1 of
the pair is the heatmap; each landmark is the softmax-weighted mean of the positions of its 9 highest cells, times
the stride 4.  Every size is read from the state dict, so smaller files in the same layout load too.

Input: a 256² crop, RGB normalised with the ImageNet mean/std.  Output: [N,98,2] in crop pixels.
"""
from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn import functional as F

from .state_dict_file import check_fits, read_state_dict

TOP_K = 9
STRIDE = 4.0


def _bn_conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(out_ch)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, downsample: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = _bn_conv(in_ch, out_ch, 1, relu=False) if downsample else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    def __init__(self, in_ch: int, planes: int, downsample: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = _bn_conv(in_ch, planes * 4, 1, relu=False) if downsample else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def _fuse_path(channels: list[int], source: int, target: int) -> nn.Module | None:
    """How branch ``source`` reaches branch ``target``: 1x1 conv + nearest upsampling (coarser source), a chain of
    stride-2 3x3 convs (finer source; ReLU between them, not after the last), or nothing (same branch)."""
    if source == target:
        return None
    if source > target:
        return nn.Sequential(nn.Conv2d(channels[source], channels[target], 1, bias=False),
                             nn.BatchNorm2d(channels[target]),
                             nn.Upsample(scale_factor=2 ** (source - target), mode="nearest"))
    steps = target - source
    chain = [_bn_conv(channels[source], channels[source], 3, 2, relu=True) for _ in range(steps - 1)]
    chain.append(_bn_conv(channels[source], channels[target], 3, 2, relu=False))
    return nn.Sequential(*chain)


class HRModule(nn.Module):
    """Parallel branches of BasicBlocks followed by all-to-all fusion (sum, then ReLU)."""

    def __init__(self, channels: list[int], blocks: list[int]):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c, False) for _ in range(n)]) for c, n in zip(channels, blocks))
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_path(channels, j, i) for j in range(len(channels))) for i in range(len(channels)))

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        inputs = [branch(x) for branch, x in zip(self.branches, inputs)]
        outputs = []
        for paths in self.fuse_layers:
            total = 0
            for path, x in zip(paths, inputs):
                total = total + (x if path is None else path(x))
            outputs.append(F.relu(total))
        return outputs


def _transition(previous: list[int], current: list[int]) -> nn.ModuleList:
    """Adapters from the previous stage's branches to the next: 3x3 conv where the width changes, and new coarser
    branches made from the last previous branch by stride-2 3x3 convs."""
    layers = []
    for i, width in enumerate(current):
        if i < len(previous):
            layers.append(_bn_conv(previous[i], width, 3) if previous[i] != width else None)
        else:
            extra = i + 1 - len(previous)
            layers.append(nn.Sequential(*[_bn_conv(previous[-1], width if k == extra - 1 else previous[-1], 3, 2)
                                          for k in range(extra)]))
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """HRNet backbone returning the concatenation of all branches at the finest resolution."""

    def __init__(self, stem: int, layer1_planes: int, layer1_blocks: int, stages: list[dict]):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = nn.Conv2d(stem, stem, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem)
        self.layer1 = nn.Sequential(*[Bottleneck(stem if i == 0 else layer1_planes * 4, layer1_planes,
                                                 i == 0 and stem != layer1_planes * 4) for i in range(layer1_blocks)])
        previous = [layer1_planes * 4]
        for index, stage in enumerate(stages, start=2):
            setattr(self, f"transition{index - 1}", _transition(previous, stage["channels"]))
            setattr(self, f"stage{index}", nn.Sequential(*[HRModule(stage["channels"], stage["blocks"])
                                                           for _ in range(stage["modules"])]))
            previous = stage["channels"]
        self.num_stages = len(stages)
        self.out_channels = sum(previous)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        features = [self.layer1(x)]
        for index in range(2, self.num_stages + 2):
            transition = getattr(self, f"transition{index - 1}")
            # As the reference: a transition always reads the LAST branch; untouched branches pass through.
            inputs = [features[i] if layer is None else layer(features[-1]) for i, layer in enumerate(transition)]
            features = getattr(self, f"stage{index}")(inputs)
        size = features[0].shape[-2:]
        return torch.cat([F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features], 1)


class HeatmapHead(nn.Module):
    def __init__(self, in_channels: int, proj_channels: int, num_points: int):
        super().__init__()
        self.head = nn.Module()
        self.head.layers = nn.Sequential(nn.Conv2d(in_channels, proj_channels, 1, bias=False),
                                         nn.BatchNorm2d(proj_channels), nn.ReLU(inplace=True),
                                         nn.Conv2d(proj_channels, num_points * 2, 1, bias=False))

    def forward(self, features):
        n, _, h, w = features.shape
        maps = self.head.layers(features).view(n, 2, -1, h, w)[:, 1]
        return heatmap_to_points(maps)


def heatmap_to_points(heatmaps: torch.Tensor, top_k: int = TOP_K, stride: float = STRIDE) -> torch.Tensor:
    """[N,C,H,W] -> [N,C,2] (x, y): softmax over the top-k cell values weights their (col, row) positions."""
    n, c, _, w = heatmaps.shape
    scores, index = heatmaps.reshape(n, c, -1).topk(top_k, dim=-1)
    positions = torch.stack([index % w, torch.div(index, w, rounding_mode="floor")], dim=-1).to(scores.dtype)
    return stride * (positions * F.softmax(scores, dim=-1)[..., None]).sum(-2)


class LandmarkNet98(nn.Module):
    """``LandmarkDetector`` of the tracker: [N,3,256,256] normalised crop -> [N,98,2] crop pixels."""

    def __init__(self, backbone: HRNet, head_proj: int, num_points: int = 98):
        super().__init__()
        self.backbone = backbone
        self.heatmap_head = HeatmapHead(backbone.out_channels, head_proj, num_points)

    def forward(self, x):
        return self.heatmap_head(self.backbone(x))


def _count(state: dict, pattern: str) -> int:
    found = {int(m.group(1)) for key in state if (m := re.match(pattern, key))}
    return max(found) + 1 if found else 0


def hrnet_config_from_state_dict(state: dict) -> dict:
    """Sizes of the landmark network read from its tensors (stem, layer1, per-stage channels/blocks/modules)."""
    prefix = "backbone."
    stages = []
    index = 2
    while _count(state, rf"{prefix}stage{index}\.(\d+)\."):
        branches = _count(state, rf"{prefix}stage{index}\.0\.branches\.(\d+)\.")
        channels = [state[f"{prefix}stage{index}.0.branches.{b}.0.conv1.weight"].shape[0] for b in range(branches)]
        blocks = [_count(state, rf"{prefix}stage{index}\.0\.branches\.{b}\.(\d+)\.") for b in range(branches)]
        stages.append({"channels": channels, "blocks": blocks,
                       "modules": _count(state, rf"{prefix}stage{index}\.(\d+)\.")})
        index += 1
    return {"stem": state[f"{prefix}conv1.weight"].shape[0],
            "layer1_planes": state[f"{prefix}layer1.0.conv1.weight"].shape[0],
            "layer1_blocks": _count(state, rf"{prefix}layer1\.(\d+)\."),
            "stages": stages,
            "head_proj": state["heatmap_head.head.layers.0.weight"].shape[0],
            "num_points": state["heatmap_head.head.layers.3.weight"].shape[0] // 2}


def build_landmark_net(state: dict) -> LandmarkNet98:
    """Build the network sized from ``state`` and load it strictly (ValueError naming the mismatch)."""
    try:
        config = hrnet_config_from_state_dict(state)
    except KeyError as error:
        raise ValueError(f"not the tracker's lmks_2d.pt layout: missing {error}") from error
    backbone = HRNet(config["stem"], config["layer1_planes"], config["layer1_blocks"], config["stages"])
    net = LandmarkNet98(backbone, config["head_proj"], config["num_points"])
    check_fits(net, state, "lmks_2d.pt (HRNet landmarks)")
    net.load_state_dict(state, strict=True)
    return net.eval()


def load_landmark_net(path, device: str | torch.device = "cpu") -> LandmarkNet98:
    """Load ``lmks_2d.pt`` (a plain state dict, read with ``weights_only=True``)."""
    state = read_state_dict(path, "landmark")
    return build_landmark_net(state).to(device)
