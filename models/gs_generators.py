"""GAGAvatar's Gaussian generators, reproducing the reference activations exactly.

- :class:`LinearGSGenerator` (``gs_generator_g``): one Gaussian per FLAME vertex from [head_base | global feature].
- :class:`ConvGSGenerator` (``gs_generator_l0``/``l1``): one Gaussian per local-feature pixel (dual lifting).
Both append the 27-value harmonic encoding of the source view direction to their features.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

SCALE_LIMIT = 0.05  # scales are sigmoid(x) * 0.05 world units
RGB_CHANNELS = 3


def _mlp_head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def _layer_indices(state_dict, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    return sorted(int(m.group(1)) for key in state_dict if (m := pattern.match(key)))


class LinearGSGenerator(nn.Module):
    """Per-vertex MLP: features [B,V,in] + direction encoding [B,D] -> colour/opacity/scale/rotation.

    Keys: ``feature_layers.{0,2,4,6}`` (Linear/ReLU chain, no final activation) and four two-layer heads.
    """

    def __init__(self, layer_dims: list[tuple[int, int]], dir_dim: int, head_hidden: int, color_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        for in_dim, out_dim in layer_dims:
            layers += [nn.Linear(in_dim, out_dim), nn.ReLU()]
        self.feature_layers = nn.Sequential(*layers[:-1])
        head_in = layer_dims[-1][1] + dir_dim
        self.color_layers = _mlp_head(head_in, head_hidden, color_dim)
        self.opacity_layers = _mlp_head(head_in, head_hidden, 1)
        self.scale_layers = _mlp_head(head_in, head_hidden, 3)
        self.rotation_layers = _mlp_head(head_in, head_hidden, 4)

    @classmethod
    def from_state_dict(cls, state_dict, prefix: str, dir_dim: int) -> "LinearGSGenerator":
        """Build an empty generator sized like the tensors under `prefix` (KeyError when one is absent)."""
        indices = _layer_indices(state_dict, prefix + "feature_layers.")
        shapes = [state_dict[f"{prefix}feature_layers.{i}.weight"].shape for i in indices]
        hidden, head_in = state_dict[prefix + "color_layers.0.weight"].shape
        if not shapes or head_in != shapes[-1][0] + dir_dim:
            raise ValueError(f"{prefix}color_layers.0 expects {head_in} inputs; "
                             f"feature layers + {dir_dim} direction values differ")
        color_dim = state_dict[prefix + "color_layers.2.weight"].shape[0]
        return cls([(s[1], s[0]) for s in shapes], dir_dim, hidden, color_dim)

    def forward(self, features: torch.Tensor, dir_encoding: torch.Tensor) -> dict[str, torch.Tensor]:
        """features [B,V,in], dir_encoding [B,D] -> attributes [B,V,*]."""
        hidden = self.feature_layers(features)
        direction = dir_encoding[:, None, :].expand(-1, hidden.shape[1], -1)
        hidden = torch.cat([hidden, direction], dim=-1)
        colors = self.color_layers(hidden)
        colors = torch.cat([torch.sigmoid(colors[..., :RGB_CHANNELS]), colors[..., RGB_CHANNELS:]], dim=-1)
        return {
            "colors": colors,
            "opacities": torch.sigmoid(self.opacity_layers(hidden)),
            "scales": torch.sigmoid(self.scale_layers(hidden)) * SCALE_LIMIT,
            # F.normalize defaults to dim=1, which for [B,V,4] runs across the VERTICES, not the quaternion
            "rotations": F.normalize(self.rotation_layers(hidden), dim=1),
        }


class ConvGSGenerator(nn.Module):
    """Per-pixel conv net: feature map [B,F,H,W] + direction encoding -> one Gaussian per pixel.

    Output channels: colour (C), opacity, scale (3), quaternion (4), position along the view axis (1).
    """

    def __init__(self, in_dim: int, dir_dim: int, hidden: int, num_hidden_convs: int, out_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_dim + dir_dim
        for _ in range(num_hidden_convs):
            layers += [nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU()]
            channels = hidden
        layers.append(nn.Conv2d(channels, out_dim, 1))
        self.gaussian_conv = nn.Sequential(*layers)
        self.color_dim = out_dim - 1 - 3 - 4 - 1

    @classmethod
    def from_state_dict(cls, state_dict, prefix: str, dir_dim: int) -> "ConvGSGenerator":
        """Build an empty generator sized like the tensors under `prefix` (KeyError when one is absent)."""
        indices = _layer_indices(state_dict, prefix + "gaussian_conv.")
        if not indices:
            raise KeyError(prefix + "gaussian_conv.0.weight")
        hidden, first_in = state_dict[f"{prefix}gaussian_conv.{indices[0]}.weight"].shape[:2]
        out_dim = state_dict[f"{prefix}gaussian_conv.{indices[-1]}.weight"].shape[0]
        return cls(first_in - dir_dim, dir_dim, hidden, len(indices) - 1, out_dim)

    def forward(self, feature_map: torch.Tensor, dir_encoding: torch.Tensor) -> dict[str, torch.Tensor]:
        """feature_map [B,F,H,W], dir_encoding [B,D] -> attributes [B,H*W,*] (row-major) plus `offset` in (0,1)."""
        batch, _, height, width = feature_map.shape
        direction = dir_encoding[:, :, None, None].expand(-1, -1, height, width)
        out = self.gaussian_conv(torch.cat([feature_map, direction], dim=1))
        c = self.color_dim
        colors = out[:, :c]
        # the reference sigmoids indices 0..2 of the LAST axis, i.e. image columns 0-2 on all channels
        colors = torch.cat([torch.sigmoid(colors[..., :RGB_CHANNELS]), colors[..., RGB_CHANNELS:]], dim=-1)
        attributes = {
            "colors": colors,
            "opacities": torch.sigmoid(out[:, c:c + 1]),
            "scales": torch.sigmoid(out[:, c + 1:c + 4]) * SCALE_LIMIT,
            "rotations": F.normalize(out[:, c + 4:c + 8], dim=1),  # channel axis: a true per-Gaussian normalisation
            "offset": torch.sigmoid(out[:, c + 8:c + 9]),
        }
        return {name: value.permute(0, 2, 3, 1).reshape(batch, height * width, -1)
                for name, value in attributes.items()}
