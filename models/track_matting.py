"""StyleMatte human matting of the GAGAvatar tracker (``stylematte_synth.pt``), built without transformers.

The reference constructor downloads ``facebook/mask2former-swin-tiny-coco-instance`` only to obtain the STRUCTURE
of Mask2Former's pixel-level module, then overwrites every weight from ``stylematte_synth.pt`` (a download
this pack never makes).  Here that structure is written out and sized from the file's own tensors:

- ``pixel_decoder.encoder.*``: Swin backbone as transformers' ``SwinBackbone`` (4x4 patch embedding + LayerNorm;
  stages of (shifted-)window attention blocks with relative position bias, windows always partitioned (padding to
  the window size), -100 masks for shifted windows; patch merging between stages; every stage's output BEFORE
  merging is layer-normed by ``hidden_states_norms.stageN``).
- ``pixel_decoder.decoder.*``: Mask2Former's pixel decoder: 1x1 conv + GroupNorm(32) projections of the three
  coarsest maps, sine position embeddings (normalised, 2π) + level embeddings, 6 multi-scale deformable attention
  encoder layers (8 heads, 4 points, post-norm, ReLU FFN), then an FPN step at stride 4 (``adapter_1`` /
  ``layer_1``) and ``mask_projection``.
- ``fpn``, ``conv``: StyleMatte's head: FPN fusion of the four maps (the three decoder scales + mask features; one
  3x3 "smooth" conv shared by all steps), 3x3 conv to one channel, a fast guided filter (r 1, eps 1e-4) guided by
  the channel-mean image, sigmoid.

Input: RGB in 0..1, ImageNet-normalised, sides multiple of 8.  Output: alpha [N,1,H,W].
"""
from __future__ import annotations

import math
import re

import torch
from torch import nn
from torch.nn import functional as F
import torchvision.transforms.functional as TF

from .state_dict_file import read_state_dict

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
DEFORMABLE_HEADS = 8
GUIDED_FILTER_EPS = 1e-4
MAX_SIDE = 1024


def _count(state: dict, pattern: str) -> int:
    found = {int(m.group(1)) for key in state if (m := re.match(pattern, key))}
    return max(found) + 1 if found else 0


class _Holder(nn.Module):
    """Named container reproducing transformers' attribute paths (``attention.self.query`` ...)."""

    def __init__(self, /, **children: nn.Module):  # positional-only: a child may be called "self"
        super().__init__()
        for name, child in children.items():
            setattr(self, name, child)


# ----------------------------------------------------------------------------------------------------------------
# Swin backbone
# ----------------------------------------------------------------------------------------------------------------

def _windows(x: torch.Tensor, size: int) -> torch.Tensor:
    """[B,H,W,C] -> [B·nW, size², C] (row-major windows)."""
    b, h, w, c = x.shape
    x = x.view(b, h // size, size, w // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size * size, c)


def _unwindows(windows: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    c = windows.shape[-1]
    x = windows.view(-1, height // size, width // size, size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, height, width, c)


def _relative_position_index(size: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (size - 1)
    return relative[..., 0] * (2 * size - 1) + relative[..., 1]


class WindowSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", _relative_position_index(window))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (proj(x).view(b, n, self.heads, -1).transpose(1, 2) for proj in (self.query, self.key, self.value))
        scores = q @ k.transpose(-1, -2) / math.sqrt(c // self.heads)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        scores = scores + bias.view(n, n, -1).permute(2, 0, 1)[None]
        if mask is not None:
            windows = mask.shape[0]
            scores = (scores.view(b // windows, windows, self.heads, n, n) + mask[None, :, None]).view(b, self.heads, n, n)
        return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, hidden: int, shift: int, eps: float = 1e-5):
        super().__init__()
        self.window, self.shift = window, shift
        self.layernorm_before = nn.LayerNorm(dim, eps=eps)
        self.attention = _Holder(self=WindowSelfAttention(dim, heads, window), output=_Holder(dense=nn.Linear(dim, dim)))
        self.layernorm_after = nn.LayerNorm(dim, eps=eps)
        self.intermediate = _Holder(dense=nn.Linear(dim, hidden))
        self.output = _Holder(dense=nn.Linear(hidden, dim))

    def _shift_mask(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor | None:
        if self.shift == 0:
            return None
        labels = torch.zeros(1, height, width, 1, dtype=like.dtype, device=like.device)
        bands = (slice(0, -self.window), slice(-self.window, -self.shift), slice(-self.shift, None))
        for i, rows in enumerate(bands):
            for j, cols in enumerate(bands):
                labels[:, rows, cols] = i * 3 + j
        windows = _windows(labels, self.window)[..., 0]
        difference = windows[:, None, :] - windows[:, :, None]
        return torch.where(difference != 0, -100.0, 0.0).to(like.dtype)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        b, _, c = x.shape
        h = self.layernorm_before(x).view(b, height, width, c)
        pad_h, pad_w = (-height) % self.window, (-width) % self.window
        h = F.pad(h, (0, 0, 0, pad_w, 0, pad_h))
        ph, pw = height + pad_h, width + pad_w
        if self.shift:
            h = torch.roll(h, (-self.shift, -self.shift), dims=(1, 2))
        attended = self.attention.output.dense(self.attention.self(_windows(h, self.window), self._shift_mask(ph, pw, h)))
        h = _unwindows(attended, self.window, ph, pw)
        if self.shift:
            h = torch.roll(h, (self.shift, self.shift), dims=(1, 2))
        x = x + h[:, :height, :width].reshape(b, height * width, c)
        return x + self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(x))))


class PatchMerging(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        b, _, c = x.shape
        x = F.pad(x.view(b, height, width, c), (0, 0, 0, width % 2, 0, height % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, window: int, hidden: int, merge: bool):
        super().__init__()
        self.blocks = nn.ModuleList(SwinBlock(dim, heads, window, hidden, 0 if i % 2 == 0 else window // 2)
                                    for i in range(depth))
        self.downsample = PatchMerging(dim) if merge else None


class SwinBackbone(nn.Module):
    """Feature maps of all stages [N,C_i,H/4/2^i,W/4/2^i], each layer-normed before patch merging."""

    def __init__(self, embed_dim: int, patch: int, depths: list[int], heads: list[int], window: int, mlp_ratio: float):
        super().__init__()
        dims = [embed_dim * 2 ** i for i in range(len(depths))]
        self.patch = patch
        self.embeddings = _Holder(patch_embeddings=_Holder(projection=nn.Conv2d(3, embed_dim, patch, patch)),
                                  norm=nn.LayerNorm(embed_dim))
        self.encoder = _Holder(layers=nn.ModuleList(
            SwinStage(dim, depth, head, window, int(dim * mlp_ratio), i < len(depths) - 1)
            for i, (dim, depth, head) in enumerate(zip(dims, depths, heads))))
        self.hidden_states_norms = nn.ModuleDict({f"stage{i + 1}": nn.LayerNorm(dim) for i, dim in enumerate(dims)})

    def forward(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        pixels = F.pad(pixels, (0, (-pixels.shape[3]) % self.patch, 0, (-pixels.shape[2]) % self.patch))
        x = self.embeddings.patch_embeddings.projection(pixels)
        height, width = x.shape[2:]
        x = self.embeddings.norm(x.flatten(2).transpose(1, 2))
        maps = []
        for index, stage in enumerate(self.encoder.layers):
            for block in stage.blocks:
                x = block(x, height, width)
            normed = self.hidden_states_norms[f"stage{index + 1}"](x)
            maps.append(normed.transpose(1, 2).reshape(x.shape[0], -1, height, width))
            if stage.downsample is not None:
                x = stage.downsample(x, height, width)
                height, width = (height + 1) // 2, (width + 1) // 2
        return maps


# ----------------------------------------------------------------------------------------------------------------
# Mask2Former pixel decoder
# ----------------------------------------------------------------------------------------------------------------

def sine_position_embedding(height: int, width: int, channels: int, like: torch.Tensor) -> torch.Tensor:
    """Normalised (2π) sine/cosine embedding [1, channels, H, W]: y half first, then x."""
    features = channels // 2
    y = torch.arange(1, height + 1, dtype=like.dtype, device=like.device)[:, None].expand(height, width)
    x = torch.arange(1, width + 1, dtype=like.dtype, device=like.device)[None, :].expand(height, width)
    y = y / (height + 1e-6) * 2 * math.pi
    x = x / (width + 1e-6) * 2 * math.pi
    dim_t = torch.arange(features, dtype=like.dtype, device=like.device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / features)

    def encode(position):
        angles = position[..., None] / dim_t
        return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)

    return torch.cat((encode(y), encode(x)), dim=-1).permute(2, 0, 1)[None]


class DeformableAttention(nn.Module):
    """Multi-scale deformable self-attention (bilinear ``grid_sample`` sampling, zero padding)."""

    def __init__(self, dim: int, heads: int, levels: int, points: int):
        super().__init__()
        self.heads, self.levels, self.points = heads, levels, points
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)

    def forward(self, query, values, reference, shapes: list[tuple[int, int]]):
        b, n, c = query.shape
        head_dim = c // self.heads
        value = self.value_proj(values).view(b, -1, self.heads, head_dim)
        offsets = self.sampling_offsets(query).view(b, n, self.heads, self.levels, self.points, 2)
        weights = self.attention_weights(query).view(b, n, self.heads, -1).softmax(-1)
        normaliser = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
        locations = reference[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        grids = 2 * locations - 1
        sampled = []
        for level, (value_level, (h, w)) in enumerate(zip(value.split([h * w for h, w in shapes], 1), shapes)):
            image = value_level.flatten(2).transpose(1, 2).reshape(b * self.heads, head_dim, h, w)
            grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
            sampled.append(F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
        weights = weights.transpose(1, 2).reshape(b * self.heads, 1, n, -1)
        out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(b, c, n)
        return self.output_proj(out.transpose(1, 2))


class DeformableEncoderLayer(nn.Module):
    def __init__(self, dim: int, hidden: int, heads: int, levels: int, points: int):
        super().__init__()
        self.self_attn = DeformableAttention(dim, heads, levels, points)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x, position, reference, shapes):
        x = self.self_attn_layer_norm(x + self.self_attn(x + position, x, reference, shapes))
        return self.final_layer_norm(x + self.fc2(F.relu(self.fc1(x))))


def _reference_points(shapes: list[tuple[int, int]], like: torch.Tensor) -> torch.Tensor:
    """Cell centres of every level, normalised to 0..1, repeated for each level: [1, N, L, 2] (x, y)."""
    points = []
    for h, w in shapes:
        y, x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=like.dtype, device=like.device) / h,
                              torch.linspace(0.5, w - 0.5, w, dtype=like.dtype, device=like.device) / w, indexing="ij")
        points.append(torch.stack((x.reshape(-1), y.reshape(-1)), -1))
    return torch.cat(points)[None, :, None].expand(-1, -1, len(shapes), -1)


def _norm_conv(in_ch: int, out_ch: int, kernel: int, bias: bool, relu: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias), nn.GroupNorm(32, out_ch)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class PixelDecoder(nn.Module):
    """Returns [stride-32, stride-16, stride-8 encoder maps, stride-4 mask features] (what StyleMatte fuses)."""

    def __init__(self, channels: list[int], dim: int, mask_dim: int, layers: int, hidden: int, heads: int,
                 points: int, levels: int, fpn_levels: int):
        super().__init__()
        self.levels, self.fpn_levels = levels, fpn_levels
        self.level_embed = nn.Parameter(torch.zeros(levels, dim))
        self.input_projections = nn.ModuleList(_norm_conv(c, dim, 1, True) for c in channels[-levels:][::-1])
        self.encoder = _Holder(layers=nn.ModuleList(DeformableEncoderLayer(dim, hidden, heads, levels, points)
                                                    for _ in range(layers)))
        self.mask_projection = nn.Conv2d(dim, mask_dim, 1)
        for index in range(fpn_levels):
            setattr(self, f"adapter_{index + 1}", _norm_conv(channels[index], dim, 1, False))
            setattr(self, f"layer_{index + 1}", _norm_conv(dim, dim, 3, False, relu=True))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        coarse = features[::-1][: self.levels]
        projected = [projection(x) for projection, x in zip(self.input_projections, coarse)]
        shapes = [tuple(x.shape[-2:]) for x in projected]
        tokens = torch.cat([x.flatten(2).transpose(1, 2) for x in projected], 1)
        position = torch.cat([sine_position_embedding(h, w, tokens.shape[-1], tokens).flatten(2).transpose(1, 2)
                              + self.level_embed[i][None, None] for i, (h, w) in enumerate(shapes)], 1)
        reference = _reference_points(shapes, tokens)
        for layer in self.encoder.layers:
            tokens = layer(tokens, position, reference, shapes)
        outputs = [part.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
                   for part, (h, w) in zip(tokens.split([h * w for h, w in shapes], 1), shapes)]
        for index in reversed(range(self.fpn_levels)):
            lateral = getattr(self, f"adapter_{index + 1}")(features[index])
            merged = lateral + F.interpolate(outputs[-1], size=lateral.shape[-2:], mode="bilinear",
                                             align_corners=False)
            outputs.append(getattr(self, f"layer_{index + 1}")(merged))
        return outputs[: self.levels] + [self.mask_projection(outputs[-1])]


# ----------------------------------------------------------------------------------------------------------------
# StyleMatte head
# ----------------------------------------------------------------------------------------------------------------

def _up_and_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class FPNFuse(nn.Module):
    def __init__(self, channels: list[int], out: int):
        super().__init__()
        self.conv1x1 = nn.ModuleList(nn.Conv2d(c, out, 1) for c in channels[1:])
        smooth = nn.Conv2d(out, out, 3, padding=1)
        self.smooth_conv = nn.ModuleList([smooth] * (len(channels) - 1))  # ONE conv shared by every step
        self.conv_fusion = nn.Sequential(nn.Conv2d(2 * out, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                                         nn.ReLU(inplace=True))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        features = [conv(f) for conv, f in zip(self.conv1x1, features[:-1])] + [features[-1]]
        fused = features[0]
        for smooth, finer in zip(self.smooth_conv, features[1:]):
            fused = _up_and_add(smooth(fused), finer)
        size = features[-1].shape[-2:]
        both = [F.interpolate(x, size=size, mode="bilinear", align_corners=True) for x in (fused, features[-1])]
        return self.conv_fusion(torch.cat(both, dim=1))


def _box_sum(x: torch.Tensor, r: int) -> torch.Tensor:
    """Sum over a (2r+1)² window, truncated at the borders (cumulative-sum differences along H then W)."""
    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        t = t.cumsum(dim)
        size = t.shape[dim]
        left = t.narrow(dim, r, r + 1)
        middle = t.narrow(dim, 2 * r + 1, size - 2 * r - 1) - t.narrow(dim, 0, size - 2 * r - 1)
        right = t.narrow(dim, size - 1, 1) - t.narrow(dim, size - 2 * r - 1, r)
        return torch.cat([left, middle, right], dim)

    return along(along(x, 2), 3)


def fast_guided_filter(low_guide: torch.Tensor, low_target: torch.Tensor, high_guide: torch.Tensor,
                       r: int = 1, eps: float = GUIDED_FILTER_EPS) -> torch.Tensor:
    """He et al.'s fast guided filter: local linear model fitted at low resolution, applied at high resolution."""
    count = _box_sum(torch.ones_like(low_guide[:1, :1]), r)
    mean_x, mean_y = _box_sum(low_guide, r) / count, _box_sum(low_target, r) / count
    cov_xy = _box_sum(low_guide * low_target, r) / count - mean_x * mean_y
    var_x = _box_sum(low_guide * low_guide, r) / count - mean_x * mean_x
    a = cov_xy / (var_x + eps)
    b = mean_y - a * mean_x
    size = high_guide.shape[-2:]
    return (F.interpolate(a, size, mode="bilinear", align_corners=True) * high_guide
            + F.interpolate(b, size, mode="bilinear", align_corners=True))


class StyleMatte(nn.Module):
    def __init__(self, backbone: SwinBackbone, decoder: PixelDecoder, fpn_channels: int):
        super().__init__()
        self.pixel_decoder = _Holder(encoder=backbone, decoder=decoder)
        self.fpn = FPNFuse([fpn_channels] * 4, fpn_channels)
        self.conv = nn.Conv2d(fpn_channels, 1, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised [N,3,H,W] -> alpha [N,1,H,W]."""
        maps = self.pixel_decoder.decoder(self.pixel_decoder.encoder(image))
        guide = image.mean(1, keepdim=True)
        low_guide = F.interpolate(guide, scale_factor=0.25, mode="bicubic", align_corners=True)
        return torch.sigmoid(fast_guided_filter(low_guide, self.conv(self.fpn(maps)), guide))


class StyleMatteMatting:
    """``matting(crop [3,H,W] float 0..255) -> alpha [H,W]`` as the tracker's engine: shrink to 1024 max, reflect-pad
    to a multiple of 8 on the left/top, normalise, predict, undo both."""

    def __init__(self, model: StyleMatte, device: str | torch.device = "cpu"):
        self.model, self.device = model.to(device).eval(), torch.device(device)

    @torch.no_grad()
    def __call__(self, crop: torch.Tensor) -> torch.Tensor:
        image = crop.to(self.device).float() / 255.0
        _, height, width = image.shape
        if max(height, width) > MAX_SIDE:
            scale = MAX_SIDE / max(height, width)
            image = TF.resize(image, [int(height * scale), int(width * scale)], antialias=True)
        h, w = image.shape[1:]
        image = TF.pad(image, [(-w) % 8, (-h) % 8, 0, 0], padding_mode="reflect")
        alpha = self.model(TF.normalize(image, IMAGENET_MEAN, IMAGENET_STD)[None])[0][:, -h:, -w:]
        if (h, w) != (height, width):
            alpha = TF.resize(alpha, [height, width], antialias=True)
        return alpha[0]


# ----------------------------------------------------------------------------------------------------------------
# Building from the checkpoint
# ----------------------------------------------------------------------------------------------------------------

def _backbone_from(state: dict, prefix: str) -> SwinBackbone:
    projection = state[f"{prefix}embeddings.patch_embeddings.projection.weight"]
    stages = _count(state, rf"{re.escape(prefix)}encoder\.layers\.(\d+)\.")
    depths = [_count(state, rf"{re.escape(prefix)}encoder\.layers\.{i}\.blocks\.(\d+)\.") for i in range(stages)]
    tables = [state[f"{prefix}encoder.layers.{i}.blocks.0.attention.self.relative_position_bias_table"]
              for i in range(stages)]
    window = (round(math.sqrt(tables[0].shape[0])) + 1) // 2
    hidden = state[f"{prefix}encoder.layers.0.blocks.0.intermediate.dense.weight"].shape[0]
    return SwinBackbone(projection.shape[0], projection.shape[-1], depths, [t.shape[1] for t in tables], window,
                        hidden / projection.shape[0])


def _decoder_from(state: dict, prefix: str, channels: list[int]) -> PixelDecoder:
    levels, dim = state[f"{prefix}level_embed"].shape
    weights = state[f"{prefix}encoder.layers.0.self_attn.attention_weights.weight"].shape[0]
    return PixelDecoder(channels, dim, state[f"{prefix}mask_projection.weight"].shape[0],
                        _count(state, rf"{re.escape(prefix)}encoder\.layers\.(\d+)\."),
                        state[f"{prefix}encoder.layers.0.fc1.weight"].shape[0], DEFORMABLE_HEADS,
                        weights // (DEFORMABLE_HEADS * levels), levels,
                        max(_count(state, rf"{re.escape(prefix)}adapter_(\d+)\.") - 1, 0))  # adapters count from 1


def build_stylematte(state: dict) -> StyleMatte:
    """Build StyleMatte sized from ``state`` and load it strictly (a missing ``relative_position_index`` buffer is
    tolerated: some transformers versions do not save it).  ValueError naming what does not match."""
    try:
        backbone = _backbone_from(state, "pixel_decoder.encoder.")
        channels = [norm.normalized_shape[0] for norm in backbone.hidden_states_norms.values()]
        decoder = _decoder_from(state, "pixel_decoder.decoder.", channels)
        model = StyleMatte(backbone, decoder, state["fpn.conv1x1.0.weight"].shape[0])
    except KeyError as error:
        raise ValueError(f"not the stylematte_synth.pt layout: missing {error}") from error
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("relative_position_index")]
    if missing or result.unexpected_keys:
        raise ValueError(f"stylematte_synth.pt does not match the StyleMatte layout: missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return model.eval()


def load_stylematte(path, device: str | torch.device = "cpu") -> StyleMatteMatting:
    """Load ``stylematte_synth.pt`` (a plain state dict, ``weights_only=True``) as a matting callable."""
    state = read_state_dict(path, "StyleMatte")
    return StyleMatteMatting(build_stylematte(state), device)
