"""Diff2Lip UNet (guided-diffusion UNet + mel audio encoder, "audio as style"), loadable from the official checkpoint.

Re-implemented from the official code's behaviour; parameter names match the released ``checkpoint.pt``
exactly, so it loads strictly.  The architecture is read from the tensors, so the release and any smaller variant
built with the same code load without a config file.  Only the attention head width cannot be read from the weights
(``num_head_channels``; 64 in the release).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .state_dict_file import check_fits, read_checkpoint, require_keys

__all__ = ["RELEASE_CONFIG", "Diff2LipConfig", "Diff2LipUNet", "infer_config", "load_diff2lip", "timestep_embedding"]

# Diff2Lip's factory only builds these layouts (tfg_create_model); the image size cannot be read from the weights.
_FACTORY_IMAGE_SIZES = {(1, 2, 3, 4): 64, (1, 1, 2, 3, 4): 128, (1, 1, 2, 3, 4, 4): 256, (0.5, 1, 1, 2, 2, 4, 4): 512}
_AUDIO_WINDOW = (80, 16)  # mel bins x mel frames per video frame


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [N, dim] with the cosine half first."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32) that always normalises in fp32 and returns the input dtype."""

    def __init__(self, channels: int):
        super().__init__(32, channels, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class ResBlock(nn.Module):
    """Residual block; the embedding is added as a bias (no scale-shift norm).

    ``resample`` is None, ``"up"`` (nearest x2) or an avg-pool kernel such as (2, 2); it is applied to both branches
    between the first SiLU and the first conv, as in guided-diffusion's ``resblock_updown``.
    """

    def __init__(self, channels: int, emb_dim: int, out_channels: int, resample: str | tuple[int, int] | None = None):
        super().__init__()
        self.resample = resample
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        # Index 2 held Dropout(p=0) in the reference; the Identity keeps the checkpoint's key names (out_layers.3).
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Identity(),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample is None:
            return x
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.avg_pool2d(x, kernel_size=self.resample, stride=self.resample)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers[1](self.in_layers[0](x))
        h = self.in_layers[2](self._resample(h))
        x = self._resample(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Self-attention over the spatial positions with guided-diffusion's legacy head-major qkv layout.

    ``use_sdpa`` selects ``F.scaled_dot_product_attention``; it computes the same softmax(q·k/sqrt(ch))·v as the
    legacy path (which scales q and k by ch^-1/4 each and takes the softmax in fp32), equal up to float rounding.
    """

    def __init__(self, channels: int, num_head_channels: int):
        super().__init__()
        if channels % num_head_channels:
            raise ValueError(f"num_head_channels={num_head_channels} does not divide the attention width {channels}: "
                             f"pass the head width the checkpoint was trained with (64 for the release)")
        self.num_heads = channels // num_head_channels
        self.use_sdpa = True
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        attend = self._sdpa if self.use_sdpa else self._legacy
        h = self.proj_out(attend(qkv))
        return (x + h).reshape(b, c, *spatial)

    def _split_heads(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bs, width, length = qkv.shape
        ch = width // (3 * self.num_heads)
        return qkv.reshape(bs * self.num_heads, ch * 3, length).split(ch, dim=1)

    def _legacy(self, qkv: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split_heads(qkv)
        scale = 1 / math.sqrt(math.sqrt(q.shape[1]))
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight.float(), dim=-1).to(weight.dtype)
        return torch.einsum("bts,bcs->bct", weight, v).reshape(qkv.shape[0], -1, qkv.shape[-1])

    def _sdpa(self, qkv: torch.Tensor) -> torch.Tensor:
        bs, _, length = qkv.shape
        q, k, v = (t.reshape(bs, self.num_heads, -1, length).transpose(-1, -2) for t in self._split_heads(qkv))
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(-1, -2).reshape(bs, -1, length)


class EmbedSequential(nn.Sequential):
    """A block list whose ResBlocks also receive the conditioning embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class AudioEncoder(nn.Module):
    """Mel-window encoder ([N,80,16] -> [N,128,8,8]) with the reference defaults; its own time MLP at t = 0."""

    def __init__(self, audio_dim: int = 80, frames: int = 16, init_spatial_dim: int = 64, model_channels: int = 32,
                 channel_mult: tuple[int, ...] = (1, 2, 3, 4), num_res_blocks: int = 2):
        super().__init__()
        self.model_channels = model_channels
        emb_dim = model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.input_block = nn.Sequential(nn.Conv1d(audio_dim, init_spatial_dim, 3, padding=1),
                                         GroupNorm32(init_spatial_dim), nn.SiLU())
        blocks = [EmbedSequential(nn.Conv2d(1, model_channels, 3, padding=1))]
        ch, height, width = model_channels, init_spatial_dim, frames
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                blocks.append(EmbedSequential(ResBlock(ch, emb_dim, mult * model_channels)))
                ch = mult * model_channels
            if level != len(channel_mult) - 1:
                # Anisotropic pooling: the mel-channel axis is pooled alone until it is as small as the time axis.
                pool = (2, 1) if height > width else (2, 2)
                blocks.append(EmbedSequential(ResBlock(ch, emb_dim, ch, resample=pool)))
                height, width = height // pool[0], width // pool[1]
        self.encoder_blocks = nn.ModuleList(blocks)
        self.middle_block = EmbedSequential(ResBlock(ch, emb_dim, ch))
        self.out_channels = ch

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        t0 = torch.zeros(1, device=mels.device)
        emb = self.time_embed(timestep_embedding(t0, self.model_channels))
        h = self.input_block(mels.to(self.input_block[0].weight.dtype)).unsqueeze(1)
        for block in self.encoder_blocks:
            h = block(h, emb)
        return self.middle_block(h, emb)


@dataclass(frozen=True)
class Diff2LipConfig:
    """Architecture of a Diff2Lip UNet, as read from its state dict (see :func:`infer_config`)."""

    model_channels: int
    level_channels: tuple[int, ...]
    num_res_blocks: int
    attention_levels: tuple[int, ...]
    num_head_channels: int
    time_embed_dim: int
    in_channels: int = 3
    out_channels: int = 6
    image_size: int = 128

    @property
    def channel_mult(self) -> tuple[float, ...]:
        return _channel_mult(self.level_channels, self.model_channels)

    @property
    def attention_resolutions(self) -> tuple[int, ...]:
        """Feature-map sizes with attention (the reference's ``attention_resolutions`` flag)."""
        return tuple(self.image_size // 2 ** level for level in self.attention_levels)


RELEASE_CONFIG = Diff2LipConfig(model_channels=128, level_channels=(128, 128, 256, 384, 512), num_res_blocks=2,
                                attention_levels=(2, 3, 4), num_head_channels=64, time_embed_dim=512)
"""The released checkpoint's layout (num_channels 128, channel_mult (1,1,2,3,4), attention at 32,16,8)."""


class Diff2LipUNet(nn.Module):
    """TFGModel of Diff2Lip: 9-channel UNet (noisy target | masked target | reference) conditioned on t and audio.

    ``forward(x_t, timesteps, cond_img=, mask=, ref_img=, mels=)`` returns [N,6,H,W] (epsilon, variance values).
    Audio enters only through the embedding: ``emb = time_mlp(t) + audio_style(mels)``.  The audio part does
    not depend on t, so samplers compute it once with :meth:`encode_audio` and pass ``audio_style=`` at every step.
    """

    def __init__(self, config: Diff2LipConfig):
        super().__init__()
        self.config = config
        mc, ted, heads = config.model_channels, config.time_embed_dim, config.num_head_channels
        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))

        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(config.in_channels * 3, mc, 3, padding=1))])
        skip_channels, ch = [mc], mc
        last_level = len(config.level_channels) - 1
        for level, width in enumerate(config.level_channels):
            for _ in range(config.num_res_blocks):
                layers = [ResBlock(ch, ted, width)]
                ch = width
                if level in config.attention_levels:
                    layers.append(AttentionBlock(ch, heads))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_channels.append(ch)
            if level != last_level:
                self.input_blocks.append(EmbedSequential(ResBlock(ch, ted, ch, resample=(2, 2))))
                skip_channels.append(ch)

        self.middle_block = EmbedSequential(ResBlock(ch, ted, ch), AttentionBlock(ch, heads), ResBlock(ch, ted, ch))

        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(config.level_channels))):
            width = config.level_channels[level]
            for i in range(config.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), ted, width)]
                ch = width
                if level in config.attention_levels:
                    layers.append(AttentionBlock(ch, heads))
                if level and i == config.num_res_blocks:
                    layers.append(ResBlock(ch, ted, ch, resample="up"))
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(mc), nn.SiLU(), nn.Conv2d(mc, config.out_channels, 3, padding=1))
        self.audio_encoder = AudioEncoder()
        self.audio_encoder_to_style = nn.Sequential(
            GroupNorm32(self.audio_encoder.out_channels), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(self.audio_encoder.out_channels, ted, 1), nn.Flatten())

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def compute_dtype(self) -> torch.dtype:
        """dtype of the convolutions (fp32, or fp16/bf16 after :meth:`convert_convs`)."""
        return self.input_blocks[0][0].weight.dtype

    def convert_convs(self, dtype: torch.dtype) -> "Diff2LipUNet":
        """Mixed precision as the reference's ``convert_to_fp16``: body and audio convs in ``dtype``; the linear
        layers, GroupNorm parameters and the output head stay fp32."""
        for part in (self.input_blocks, self.middle_block, self.output_blocks, self.audio_encoder,
                     self.audio_encoder_to_style):
            for module in part.modules():
                if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                    module.to(dtype)
        return self

    def set_attention(self, backend: str) -> None:
        """``"sdpa"`` (default, fused kernel) or ``"legacy"`` (the reference's einsum attention)."""
        if backend not in ("sdpa", "legacy"):
            raise ValueError(f"attention backend must be 'sdpa' or 'legacy', got {backend!r}")
        for module in self.modules():
            if isinstance(module, AttentionBlock):
                module.use_sdpa = backend == "sdpa"

    def time_embedding(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Timestep MLP output [N, time_embed_dim] for original-scale timesteps (0..999)."""
        return self.time_embed(timestep_embedding(timesteps, self.config.model_channels))

    def audio_features(self, mels: torch.Tensor) -> torch.Tensor:
        """Audio encoder output [N,128,8,8] for mel windows [N,80,16] (bins x time)."""
        if mels.ndim != 3 or tuple(mels.shape[1:]) != _AUDIO_WINDOW:
            raise ValueError(f"mels must be [N, 80, 16] (mel bins x mel frames), got {list(mels.shape)}; "
                             f"build them with pipelines.diff2lip.mel_windows")
        return self.audio_encoder(mels)

    def encode_audio(self, mels: torch.Tensor) -> torch.Tensor:
        """Audio conditioning [N, time_embed_dim]; independent of t, so compute once per frame, reuse every step."""
        return self.audio_encoder_to_style(self.audio_features(mels))

    @staticmethod
    def network_input(x: torch.Tensor, cond_img: torch.Tensor, mask: torch.Tensor,
                      ref_img: torch.Tensor) -> torch.Tensor:
        """The 9-channel input: x with the known (mask = 0) part re-imposed from cond_img, cond_img, reference."""
        x = x * mask + (1 - mask) * cond_img
        return torch.cat([x, cond_img, ref_img], dim=1)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, cond_img: torch.Tensor, mask: torch.Tensor,
                ref_img: torch.Tensor, mels: torch.Tensor | None = None, *, indiv_mels: torch.Tensor | None = None,
                audio_style: torch.Tensor | None = None) -> torch.Tensor:
        """Predict [epsilon | variance values] ([N,6,H,W]); give ``mels`` (alias ``indiv_mels``) or ``audio_style``."""
        if audio_style is None:
            mels = mels if mels is not None else indiv_mels
            if mels is None:
                raise ValueError("Diff2LipUNet needs the audio: pass mels=[N,80,16] or audio_style from encode_audio()")
            audio_style = self.encode_audio(mels)
        emb = self.time_embedding(timesteps) + audio_style
        h = self.network_input(x, cond_img, mask, ref_img).to(self.compute_dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)  # current features first, skip second
        return self.out(h.to(x.dtype))


def _block_indices(state_dict: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    return sorted({int(k[len(prefix):].split(".")[0]) for k in state_dict if k.startswith(prefix)})


def _resblocks_in(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state_dict
                if k.startswith(prefix) and ".in_layers." in k})


def _channel_mult(level_channels: tuple[int, ...], model_channels: int) -> tuple[float, ...]:
    return tuple(c // model_channels if c % model_channels == 0 else c / model_channels for c in level_channels)


def _image_size_for(channel_mult: tuple[float, ...]) -> int:
    # Layouts outside the factory table (test models) are assumed to end at 16x16 maps.
    return _FACTORY_IMAGE_SIZES.get(channel_mult, 16 * 2 ** (len(channel_mult) - 1))


def infer_config(state_dict: Mapping[str, torch.Tensor], num_head_channels: int = 64,
                 image_size: int | None = None) -> Diff2LipConfig:
    """Read the UNet layout from the tensors.

    Levels are counted from the output blocks: every level but the first ends with an up-ResBlock (a second ResBlock
    in the same output block), and each level has ``num_res_blocks + 1`` output blocks.  This works when two levels
    share a width (the release's (1,1,2,3,4)).  The image size cannot be read from the weights: it comes from
    Diff2Lip's factory table (128 for the release's layout) unless given.
    """
    try:
        first_conv = state_dict["input_blocks.0.0.weight"]
        out_conv = state_dict["out.2.weight"]
        time_in = state_dict["time_embed.0.weight"]
    except KeyError as missing:
        raise ValueError(f"not a Diff2Lip UNet state dict: missing key {missing}; expected the official "
                         f"checkpoint.pt (keys time_embed.*, input_blocks.*, ..., audio_encoder.*)") from None
    output_ids = _block_indices(state_dict, "output_blocks.")
    level_ends = [i for i in output_ids if _resblocks_in(state_dict, f"output_blocks.{i}.") >= 2]
    num_levels = len(level_ends) + 1
    if not output_ids or len(output_ids) % num_levels:
        raise ValueError(f"cannot read the UNet levels: {len(output_ids)} output blocks for {num_levels} levels")
    num_res_blocks = len(output_ids) // num_levels - 1
    mc = first_conv.shape[0]
    level_channels, attention_levels = [], []
    for level in range(num_levels):
        first_block = 1 + level * (num_res_blocks + 1)
        key = f"input_blocks.{first_block}.0.in_layers.2.weight"
        if key not in state_dict:
            raise ValueError(f"state dict does not fit a {num_levels}-level UNet with {num_res_blocks} res blocks "
                             f"per level: missing {key}")
        level_channels.append(int(state_dict[key].shape[0]))
        if f"input_blocks.{first_block}.1.qkv.weight" in state_dict:
            attention_levels.append(level)
    return Diff2LipConfig(model_channels=int(mc), level_channels=tuple(level_channels),
                          num_res_blocks=num_res_blocks, attention_levels=tuple(attention_levels),
                          num_head_channels=num_head_channels, time_embed_dim=int(time_in.shape[0]),
                          in_channels=int(first_conv.shape[1]) // 3, out_channels=int(out_conv.shape[0]),
                          image_size=image_size or _image_size_for(_channel_mult(tuple(level_channels), int(mc))))


def _read_checkpoint(source) -> dict[str, torch.Tensor]:
    """The release is a plain state dict; re-saved copies may nest it, carry DDP's ``module.`` prefix or be
    half precision (upcast: the model keeps fp32 weights)."""
    state = read_checkpoint(source, "Diff2Lip")
    require_keys(state, "Diff2Lip UNet", f"Diff2Lip file {source}" if not isinstance(source, Mapping) else "the state dict",
                 ("input_blocks.", "out."), "Choose the official Diff2Lip checkpoint.pt (models/diff2lip).")
    return state


def load_diff2lip(source, device="cpu", dtype: torch.dtype = torch.float32, num_head_channels: int = 64,
                  image_size: int | None = None) -> Diff2LipUNet:
    """Build a Diff2Lip UNet from a checkpoint path (``.pt``/``.safetensors``) or a state dict, loading strictly.

    The architecture is inferred from the tensors (see :func:`infer_config`).  ``dtype`` fp16/bf16 gives the
    reference's mixed precision (convs in half, norms/linears/head fp32) and is used on CUDA only: on other devices
    the model stays fp32 with a warning.  Raises ValueError when the weights do not fit (naming the keys).
    """
    state_dict = _read_checkpoint(source)
    config = infer_config(state_dict, num_head_channels=num_head_channels, image_size=image_size)
    with torch.device("meta"):
        model = Diff2LipUNet(config)
    check_fits(model, state_dict, "Diff2Lip UNet (architecture inferred from its tensors)")
    model.load_state_dict(state_dict, strict=True, assign=True)
    device = torch.device(device)
    model = model.to(device=device, dtype=torch.float32).eval().requires_grad_(False)
    if dtype != torch.float32:
        if device.type == "cuda":
            model.convert_convs(dtype)
        else:
            warnings.warn(f"Diff2Lip: {dtype} is used on CUDA only; running fp32 on {device}", stacklevel=2)
    return model
