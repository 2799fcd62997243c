"""GAGAvatar's neural refiner ``upsampler``: a StyleUNet (U-Net encoder + StyleGAN2 decoder with SFT), 32ch -> RGB.

Layout and numerics follow the official StyleUNet: plain ``nn.Linear`` style MLP (no equalised lr), demodulated
modulated convs, StyleConv = modconv*sqrt(2) + weight*noise + bias then LeakyReLU(0.2), SFT ``out*scale + shift`` at
every level, final sigmoid.  The unused ``toRGB.*`` training heads are not part of this module.
Sizes (levels, channels, style width, MLP depth) are inferred from the state dict.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
BASE_RESOLUTION = 4


@dataclass(frozen=True)
class StyleUNetConfig:
    """Released: in_dim 32, 1x1 first conv, unet (16,32,64,128,256,256,256,256),
    stylegan (512,512,512,512,256,128,64,32), style width 512, 8 MLP layers, RGB out."""

    in_dim: int
    first_kernel: int
    unet_channels: tuple[int, ...]   # conv_body_first output, then each down block's output (finest first)
    style_channels: tuple[int, ...]  # StyleGAN channels at 4, 8, ..., out resolution
    num_style_feat: int
    num_mlp: int
    out_dim: int

    @property
    def levels(self) -> int:
        return len(self.unet_channels) - 1

    @property
    def size(self) -> int:
        """Input and output side (512 released): the encoder halves it down to 4x4."""
        return BASE_RESOLUTION * 2 ** self.levels


def _count_indexed(state_dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def infer_style_unet_config(state_dict, prefix: str = "upsampler.") -> StyleUNetConfig:
    """Read the refiner sizes from checkpoint tensors (KeyError when a needed tensor is absent)."""
    first = state_dict[prefix + "conv_body_first.weight"]
    levels = _count_indexed(state_dict, prefix + "conv_body_down.")
    unet = (first.shape[0],) + tuple(
        state_dict[f"{prefix}conv_body_down.{i}.conv2.weight"].shape[0] for i in range(levels))
    decoder = prefix + "stylegan_decoder."
    style = (state_dict[decoder + "style_conv1.modulated_conv.weight"].shape[1],) + tuple(
        state_dict[f"{decoder}style_convs.{2 * i + 1}.modulated_conv.weight"].shape[1] for i in range(levels))
    num_mlp = sum(1 for key in state_dict if re.fullmatch(re.escape(decoder) + r"style_mlp\.\d+\.weight", key))
    return StyleUNetConfig(
        in_dim=first.shape[1], first_kernel=first.shape[-1], unet_channels=unet, style_channels=style,
        num_style_feat=state_dict[prefix + "final_linear.weight"].shape[0], num_mlp=num_mlp,
        out_dim=state_dict[decoder + "to_rgb1.modulated_conv.weight"].shape[1])


class ResBlock(nn.Module):
    """lrelu(conv1) -> bilinear rescale -> lrelu(conv2), plus a bias-free 1x1 skip of the rescaled input.

    No 1/sqrt(2) on the sum (unlike StyleGAN2's discriminator blocks)."""

    def __init__(self, in_channels: int, out_channels: int, scale: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), LRELU_SLOPE)
        out = F.interpolate(out, scale_factor=self.scale, mode="bilinear", align_corners=False)
        out = F.leaky_relu(self.conv2(out), LRELU_SLOPE)
        skip = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return out + self.skip(skip)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated conv; the bilinear x2 upsample (when asked) happens before the conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, style_dim: int, demodulate: bool,
                 upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1, out_channels, in_channels, kernel, kernel))
        self.modulation = nn.Linear(style_dim, in_channels)
        self.demodulate = demodulate
        self.upsample = upsample

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_channels = x.shape[:2]
        _, out_channels, _, kernel, _ = self.weight.shape
        weight = self.weight * self.modulation(style).view(batch, 1, in_channels, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        height, width = x.shape[-2:]
        out = F.conv2d(x.reshape(1, batch * in_channels, height, width),
                       weight.reshape(batch * out_channels, in_channels, kernel, kernel),
                       padding=kernel // 2, groups=batch)
        return out.view(batch, out_channels, height, width)


class StyleConv(nn.Module):
    """modconv(x)*sqrt(2) + weight*noise + bias, LeakyReLU(0.2); `noise=None` draws fresh N(0,1) (reference default)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, True, upsample)
        self.weight = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        out = self.modulated_conv(x, style) * math.sqrt(2)
        if noise is None:
            noise = out.new_empty(out.shape[0], 1, *out.shape[-2:]).normal_()
        out = out + self.weight * noise
        out = out + self.bias
        return F.leaky_relu(out, LRELU_SLOPE)


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation + bias, added to the x2-upsampled previous skip."""

    def __init__(self, in_channels: int, out_dim: int, style_dim: int, upsample: bool):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_dim, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, out_dim, 1, 1))
        self.upsample = upsample

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            if self.upsample:
                skip = F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)
            out = out + skip
        return out


class NormStyleCode(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class ConstantInput(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1, channels, BASE_RESOLUTION, BASE_RESOLUTION))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.expand(batch, -1, -1, -1)


class StyleGAN2DecoderCSFT(nn.Module):
    """StyleGAN2 generator whose features are modulated by spatial (scale, shift) conditions after each conv1."""

    def __init__(self, config: StyleUNetConfig):
        super().__init__()
        style_dim, channels = config.num_style_feat, config.style_channels
        mlp: list[nn.Module] = [NormStyleCode()]
        for _ in range(config.num_mlp):
            mlp += [nn.Linear(style_dim, style_dim), nn.LeakyReLU(LRELU_SLOPE)]
        self.style_mlp = nn.Sequential(*mlp)
        self.constant_input = ConstantInput(channels[0])
        self.style_conv1 = StyleConv(channels[0], channels[0], style_dim)
        self.to_rgb1 = ToRGB(channels[0], config.out_dim, style_dim, upsample=False)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for previous, current in zip(channels[:-1], channels[1:]):
            self.style_convs.append(StyleConv(previous, current, style_dim, upsample=True))
            self.style_convs.append(StyleConv(current, current, style_dim))
            self.to_rgbs.append(ToRGB(current, config.out_dim, style_dim, upsample=True))
        self.noises = nn.Module()
        for i, side in enumerate(self.noise_sides(config)):
            self.noises.register_buffer(f"noise{i}", torch.empty(1, 1, side, side))

    @staticmethod
    def noise_sides(config: StyleUNetConfig) -> list[int]:
        return [BASE_RESOLUTION] + [BASE_RESOLUTION * 2 ** (i // 2 + 1) for i in range(2 * config.levels)]

    def forward(self, style_code: torch.Tensor, conditions: list[torch.Tensor], randomize_noise: bool) -> torch.Tensor:
        # the latent is one style repeated for every layer, so each layer gets the same vector
        latent = self.style_mlp(style_code)
        noises = [None if randomize_noise else buffer for buffer in self.noises.buffers()]
        out = self.style_conv1(self.constant_input(latent.shape[0]), latent, noises[0])
        skip = self.to_rgb1(out, latent)
        for level, to_rgb in enumerate(self.to_rgbs):
            conv1, conv2 = self.style_convs[2 * level], self.style_convs[2 * level + 1]
            out = conv1(out, latent, noises[2 * level + 1])
            out = out * conditions[2 * level] + conditions[2 * level + 1]  # SFT: plain product, not (1 + scale)
            out = conv2(out, latent, noises[2 * level + 2])
            skip = to_rgb(out, latent, skip)
        return skip


def _condition_branch(channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(LRELU_SLOPE),
                         nn.Conv2d(channels, out_channels, 3, padding=1))


class StyleUNet(nn.Module):
    """32-channel splat [B,C,S,S] -> RGB [B,3,S,S] in (0,1); S = config.size (512 released)."""

    def __init__(self, config: StyleUNetConfig):
        super().__init__()
        self.config = config
        unet, style = config.unet_channels, config.style_channels
        self.conv_body_first = nn.Conv2d(config.in_dim, unet[0], config.first_kernel, padding=config.first_kernel // 2)
        self.conv_body_down = nn.ModuleList(ResBlock(unet[i], unet[i + 1], 0.5) for i in range(config.levels))
        self.final_conv = nn.Conv2d(unet[-1], unet[-1], 3, padding=1)
        up_channels = unet[::-1]  # deepest first
        self.conv_body_up = nn.ModuleList(
            ResBlock(up_channels[i], up_channels[i + 1], 2) for i in range(config.levels))
        self.condition_scale = nn.ModuleList(
            _condition_branch(up_channels[i + 1], style[i + 1]) for i in range(config.levels))
        self.condition_shift = nn.ModuleList(
            _condition_branch(up_channels[i + 1], style[i + 1]) for i in range(config.levels))
        self.final_linear = nn.Linear(unet[-1] * BASE_RESOLUTION ** 2, config.num_style_feat)
        self.stylegan_decoder = StyleGAN2DecoderCSFT(config)

    def forward(self, x: torch.Tensor, randomize_noise: bool = False) -> torch.Tensor:
        feat = F.leaky_relu(self.conv_body_first(x), LRELU_SLOPE)
        skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.insert(0, feat)
        feat = F.leaky_relu(self.final_conv(feat), LRELU_SLOPE)
        style_code = self.final_linear(feat.flatten(1))
        conditions = []
        for i, block in enumerate(self.conv_body_up):
            feat = block(feat + skips[i])
            conditions += [self.condition_scale[i](feat), self.condition_shift[i](feat)]
        return torch.sigmoid(self.stylegan_decoder(style_code, conditions, randomize_noise))
