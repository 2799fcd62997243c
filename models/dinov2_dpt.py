"""GAGAvatar's source encoder: a DINOv2 ViT (built with timm) plus the DPT-like convolutional head.

State-dict layout is the official one under ``base_model.``: ``dino_model.*`` (the torch.hub DINOv2 names, which are
timm's ``vit_base_patch14_dinov2`` names once the prefix is stripped; ``mask_token`` is training-only),
``projects``, ``resize_layers``, ``layer_rn``, ``refinenet``, ``output_conv``.
Sizes are inferred from the tensors, so a smaller model of the same family loads through the same code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINOV2_HEAD_DIM = 64  # every DINOv2 release (S/B/L/g) uses 64-dim attention heads
NUM_TAKEN_LAYERS = 4


@dataclass(frozen=True)
class DinoDPTConfig:
    """Sizes of the backbone and the head; released: (14, 37, 768, 12, 4.0, (256, 512, 1024, 1024), (4, 2), 256)."""

    patch_size: int
    grid: int
    embed_dim: int
    depth: int
    mlp_ratio: float
    project_channels: tuple[int, ...]
    upsample_factors: tuple[int, int]
    features: int

    @property
    def image_size(self) -> int:
        """Input side the positional embedding was trained for (518 released); never interpolated."""
        return self.grid * self.patch_size

    @property
    def local_size(self) -> int:
        """Side of the local feature map: the first resize level, doubled by the last fusion block (296 released)."""
        return self.grid * self.upsample_factors[0] * 2

    @property
    def num_heads(self) -> int:
        return self.embed_dim // DINOV2_HEAD_DIM if self.embed_dim % DINOV2_HEAD_DIM == 0 else 1

    @property
    def taken_blocks(self) -> tuple[int, ...]:
        """Blocks fed to the head: the last four (8..11 released); shallower test models repeat block 0."""
        return tuple(max(0, self.depth - NUM_TAKEN_LAYERS + i) for i in range(NUM_TAKEN_LAYERS))


def _count_indexed(state_dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def infer_dino_dpt_config(state_dict, prefix: str = "base_model.") -> DinoDPTConfig:
    """Read the encoder sizes from checkpoint tensors (raises KeyError when a needed tensor is absent)."""
    dino = prefix + "dino_model."
    patch_weight = state_dict[dino + "patch_embed.proj.weight"]
    embed_dim, patch_size = patch_weight.shape[0], patch_weight.shape[-1]
    num_patches = state_dict[dino + "pos_embed"].shape[1] - 1  # one class token, no registers
    grid = round(num_patches ** 0.5)
    if grid * grid != num_patches:
        raise ValueError(f"{dino}pos_embed holds {num_patches} patch positions, not a square grid")
    depth = _count_indexed(state_dict, dino + "blocks.")
    mlp_ratio = state_dict[dino + "blocks.0.mlp.fc1.weight"].shape[0] / embed_dim
    projects = tuple(state_dict[f"{prefix}projects.{i}.weight"].shape[0] for i in range(NUM_TAKEN_LAYERS))
    upsample = tuple(state_dict[f"{prefix}resize_layers.{i}.weight"].shape[-1] for i in (0, 1))
    features = state_dict[prefix + "output_conv.weight"].shape[0]
    return DinoDPTConfig(patch_size, grid, embed_dim, depth, mlp_ratio, projects, upsample, features)


def build_dinov2(config: DinoDPTConfig) -> nn.Module:
    """timm DINOv2 ViT with the hub model's settings (LayerScale, LayerNorm eps 1e-6, no registers); no weights."""
    import timm  # heavy import kept out of module import time

    return timm.create_model(
        "vit_base_patch14_dinov2", pretrained=False, num_classes=0, img_size=config.image_size,
        patch_size=config.patch_size, embed_dim=config.embed_dim, depth=config.depth,
        num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
    )


class ResidualConvUnit(nn.Module):
    """conv2(relu(conv1(relu(x)))) + x with non-inplace ReLUs (an in-place ReLU would also change the residual)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FeatureFusionBlock(nn.Module):
    """DPT fusion: add RCU1(skip), RCU2, bilinear (align_corners=True) resize to `size` or x2, 1x1 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(channels)
        self.resConfUnit2 = ResidualConvUnit(channels)
        self.out_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        resize = {"size": tuple(size)} if size is not None else {"scale_factor": 2}
        x = F.interpolate(x, **resize, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DinoDPTEncoder(nn.Module):
    """DINOv2 + DPT head: 0..1 image -> (global feature [B,C], local feature map [B,F,8g,8g])."""

    def __init__(self, config: DinoDPTConfig):
        super().__init__()
        self.config = config
        dim, projects, features = config.embed_dim, config.project_channels, config.features
        up0, up1 = config.upsample_factors
        self.dino_model = build_dinov2(config)
        self.projects = nn.ModuleList(nn.Conv2d(dim, c, 1) for c in projects)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(projects[0], projects[0], up0, stride=up0),
            nn.ConvTranspose2d(projects[1], projects[1], up1, stride=up1),
            nn.Identity(),
            nn.Conv2d(projects[3], projects[3], 3, stride=2, padding=1),
        ])
        # each level sees the normalised RGB image concatenated in front of its features (+3 channels)
        self.layer_rn = nn.ModuleList(nn.Conv2d(c + 3, features, 3, padding=1, bias=False) for c in projects)
        self.refinenet = nn.ModuleList(FeatureFusionBlock(features) for _ in projects)
        self.output_conv = nn.Conv2d(features, features, 3, padding=1)

    def backbone_tokens(self, normalized: torch.Tensor) -> list[torch.Tensor]:
        """Patch tokens [B,N,C] of the taken blocks, each through the final LayerNorm, CLS dropped."""
        taken = self.config.taken_blocks
        unique = sorted(set(taken))
        outputs = self.dino_model.forward_intermediates(
            normalized, indices=unique, norm=True, output_fmt="NLC", intermediates_only=True)
        by_block = dict(zip(unique, outputs))
        return [by_block[i] for i in taken]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B,3,S,S] in 0..1 with S = config.image_size -> (global [B,C], local [B,F,L,L])."""
        # normalise and resize in float32: antialiased resizing has no bfloat16 CPU kernel
        image = image.float()
        mean, std = (image.new_tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
        normalized = (image - mean) / std
        tokens = self.backbone_tokens(normalized.to(self.output_conv.weight.dtype))
        # the "global" feature is the first PATCH token of the normed last block, not CLS
        global_feature = tokens[-1][:, 0]
        batch, grid = image.shape[0], self.config.grid
        levels = []
        for i, token in enumerate(tokens):
            fmap = token.transpose(1, 2).reshape(batch, -1, grid, grid)
            fmap = self.resize_layers[i](self.projects[i](fmap))
            rgb = F.interpolate(normalized, size=fmap.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
            levels.append(self.layer_rn[i](torch.cat([rgb.to(fmap.dtype), fmap], dim=1)))
        path = self.refinenet[0](levels[3], size=levels[2].shape[-2:])
        path = self.refinenet[1](path, levels[2], size=levels[1].shape[-2:])
        path = self.refinenet[2](path, levels[1], size=levels[0].shape[-2:])
        path = self.refinenet[3](path, levels[0])
        return global_feature, self.output_conv(path)
