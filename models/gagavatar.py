"""GAGAvatar network (xg-chu/GAGAvatar, NeurIPS 2024): source encoder, Gaussian generators and the StyleUNet refiner.

:func:`load_gagavatar` reads the official ``GAGAvatar.pt`` (``{'model': state_dict, 'meta_cfg': ...}``, 597 keys)
strictly, ignoring only the training-only tensors, and infers every size from the tensors.
Per source image :meth:`GAGAvatar.encode_source` runs DINOv2 + DPT head and the three generators once; per driven
frame :meth:`GAGAvatar.gaussians` only swaps in the FLAME vertices, and :meth:`GAGAvatar.refine` turns the
32-channel splat into RGB.  Rasterisation, FLAME and cameras live in ``models/flame.py``,
``models/gaussian_rasterizer.py`` and ``models/camera_geometry.py``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import camera_geometry
from .dinov2_dpt import DinoDPTEncoder, infer_dino_dpt_config
from .gs_generators import ConvGSGenerator, LinearGSGenerator
from .state_dict_file import check_fits, read_checkpoint, require_keys
from .style_unet import StyleUNet, infer_style_unet_config

DIR_ENCODING_DIM = 27  # harmonic embedding of the view direction: 4 frequencies, sin+cos, plus the input
ATTRIBUTES = ("xyz", "colors", "opacities", "scales", "rotations")
# training-only tensors of the official checkpoint: perceptual-loss nets, DINOv2's mask token, toRGB heads
IGNORED_PREFIXES = ("percep_loss.", "upsampler.toRGB.")
IGNORED_KEYS = ("base_model.dino_model.mask_token",)


@dataclass
class SourceAvatar:
    """Everything cached for one batch of source images (reused for every driven frame).

    `gaussians` holds the source Gaussian attributes in the order [global | lifted forward | lifted backward],
    except the global xyz, which each frame supplies from FLAME.
    """

    global_feature: torch.Tensor  # [B, 768]
    local_feature: torch.Tensor   # [B, 256, 296, 296]
    plane_points: torch.Tensor    # [B, 296*296, 3]
    plane_dirs: torch.Tensor      # [B, 3]
    gaussians: dict[str, torch.Tensor]


class GAGAvatar(nn.Module):
    """The inference part of the reference class; state-dict keys equal the checkpoint's minus the ignored ones."""

    def __init__(self, state_dict: Mapping[str, torch.Tensor]):
        """Build an empty network sized like `state_dict` (use :func:`load_gagavatar` to get a loaded one)."""
        super().__init__()
        self.head_base = nn.Parameter(torch.empty(state_dict["head_base"].shape))
        self.base_model = DinoDPTEncoder(infer_dino_dpt_config(state_dict, "base_model."))
        self.gs_generator_g = LinearGSGenerator.from_state_dict(state_dict, "gs_generator_g.", DIR_ENCODING_DIM)
        self.gs_generator_l0 = ConvGSGenerator.from_state_dict(state_dict, "gs_generator_l0.", DIR_ENCODING_DIM)
        self.gs_generator_l1 = ConvGSGenerator.from_state_dict(state_dict, "gs_generator_l1.", DIR_ENCODING_DIM)
        self.upsampler = StyleUNet(infer_style_unet_config(state_dict, "upsampler."))

    @property
    def image_size(self) -> int:
        """Side of the encoder input (518 released)."""
        return self.base_model.config.image_size

    @property
    def plane_size(self) -> int:
        """Side of the local feature map and of the plane-point grid (296 released)."""
        return self.base_model.config.local_size

    @property
    def num_vertices(self) -> int:
        """FLAME vertices bound to the global Gaussians (5023)."""
        return self.head_base.shape[0]

    @property
    def refine_size(self) -> int:
        """Side of the refiner input and output (512 released)."""
        return self.upsampler.config.size

    @torch.no_grad()
    def encode_source(self, image: torch.Tensor, source_transform: torch.Tensor) -> SourceAvatar:
        """Encode source crops once.

        image: [B,3,S,S] RGB in 0..1 (the matted 512 crop resized to 518; other sizes are resized here with the
        reference's antialiased bilinear). source_transform: [B,3,4] PyTorch3D [R|T] of the source camera.
        """
        image, source_transform = self._check_source(image, source_transform)
        global_feature, local_feature = self.base_model(image)
        plane_points, plane_dirs = self._plane_points(source_transform)
        dir_encoding = self._direction_encoding(plane_dirs).to(local_feature.dtype)
        gaussians = self._source_gaussians(global_feature, local_feature, plane_points, plane_dirs, dir_encoding)
        return SourceAvatar(global_feature, local_feature, plane_points, plane_dirs, gaussians)

    def gaussians(self, avatar: SourceAvatar, t_points: torch.Tensor) -> dict[str, torch.Tensor]:
        """All Gaussians of one frame: dict of xyz/colors/opacities/scales/rotations, each [B, V+2*P*P, *] float32.

        t_points: [B,V,3] FLAME vertices (source shape, driver expression/jaw/eyes, x5) replacing the global xyz.
        Only xyz is new per call; the other tensors are the avatar's cache (do not modify them in place).
        """
        batch, vertices = avatar.global_feature.shape[0], self.num_vertices
        if t_points.ndim != 3 or tuple(t_points.shape) != (batch, vertices, 3):
            raise ValueError(f"t_points must be [{batch},{vertices},3] FLAME vertices x5, got {tuple(t_points.shape)}")
        out = dict(avatar.gaussians)
        out["xyz"] = torch.cat([t_points.to(out["xyz"]), out["xyz"]], dim=1)
        return {name: out[name] for name in ATTRIBUTES}

    @torch.no_grad()
    def refine(self, features: torch.Tensor, randomize_noise: bool = False) -> torch.Tensor:
        """StyleUNet refiner: 32-channel splat [B,32,S,S] -> RGB [B,3,S,S] in (0,1), S = refine_size (512).

        randomize_noise=False uses the checkpoint's noise buffers (deterministic); True draws fresh N(0,1) noise per
        call from torch's global RNG like the reference.
        """
        size, channels = self.refine_size, self.upsampler.config.in_dim
        if features.ndim != 4 or tuple(features.shape[1:]) != (channels, size, size):
            raise ValueError(f"features must be [B,{channels},{size},{size}] (the rendered splat), "
                             f"got {tuple(features.shape)}")
        weight = self.upsampler.final_linear.weight
        return self.upsampler(features.to(weight.device, weight.dtype), randomize_noise=randomize_noise)

    def _check_source(self, image: torch.Tensor, transform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.ndim != 4 or image.shape[1] != 3 or image.shape[2] != image.shape[3]:
            raise ValueError(f"image must be [B,3,S,S] RGB in 0..1, got {tuple(image.shape)}")
        if tuple(transform.shape) != (image.shape[0], 3, 4):
            raise ValueError(f"source_transform must be [{image.shape[0]},3,4] PyTorch3D [R|T], "
                             f"got {tuple(transform.shape)}")
        image = image.to(self.head_base.device, torch.float32)  # the encoder normalises in float32
        if image.shape[-1] != self.image_size:
            image = F.interpolate(image, size=(self.image_size,) * 2, mode="bilinear", align_corners=False,
                                  antialias=True)
        return image, transform

    def _plane_points(self, transform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # float32 whatever the network dtype: positions need the precision (the pipeline accepts batched cameras)
        return camera_geometry.plane_points(self.plane_size, transform.to(self.head_base.device, torch.float32),
                                            focal=camera_geometry.FOCAL_LENGTH)

    def _direction_encoding(self, plane_dirs: torch.Tensor) -> torch.Tensor:
        return camera_geometry.harmonic_embedding(plane_dirs)

    def _source_gaussians(self, global_feature, local_feature, plane_points, plane_dirs, dir_encoding):
        batch = global_feature.shape[0]
        head = self.head_base[None].expand(batch, -1, -1)
        per_vertex = torch.cat([head, global_feature[:, None].expand(-1, head.shape[1], -1)], dim=-1)
        parts = [self.gs_generator_g(per_vertex, dir_encoding)]
        for generator, sign in ((self.gs_generator_l0, 1.0), (self.gs_generator_l1, -1.0)):
            lifted = generator(local_feature, dir_encoding)
            # l0 is pushed along the source view axis, l1 against it; positions kept in float32
            lifted["xyz"] = plane_points + sign * lifted.pop("offset").float() * plane_dirs[:, None]
            parts.append(lifted)
        # float32 outputs whatever the network dtype (the rasteriser needs them); global xyz comes per frame
        return {name: torch.cat([p[name].float() for p in parts if name in p], dim=1) for name in ATTRIBUTES}


def _unwrap_state_dict(source) -> dict[str, torch.Tensor]:
    """The official ``{'model': state_dict, 'meta_cfg': ...}`` file, the loaded dict, or a bare state dict.
    mmap keeps one copy of the ~750 MB of weights in memory, not two (zip-format files only)."""
    state = read_checkpoint(source, "GAGAvatar", unwrap=("model", "state_dict"), mmap=True)
    origin = "the state dict" if isinstance(source, Mapping) else f"GAGAvatar file {source}"
    require_keys(state, "GAGAvatar", origin, ("base_model.", "gs_generator_", "upsampler."),
                 "Choose the official GAGAvatar.pt (models/gagavatar).")
    return state


def is_ignored_key(key: str) -> bool:
    """True for checkpoint tensors that exist only for training (perceptual losses, mask token, toRGB heads)."""
    return key.startswith(IGNORED_PREFIXES) or key in IGNORED_KEYS


def checkpoint_to_model_state(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official checkpoint keys -> this module's keys: the same names minus the training-only tensors.

    The DINOv2 part needs no renaming: ``base_model.dino_model.X`` is timm ``vit_base_patch14_dinov2``'s ``X``
    (the hub names are timm's once the prefix is stripped; only ``mask_token`` has no counterpart).
    """
    return {key: value for key, value in state_dict.items() if not is_ignored_key(key)}


def _build_empty(state_dict: Mapping[str, torch.Tensor]) -> GAGAvatar:
    try:
        with torch.device("meta"):
            return GAGAvatar(state_dict)
    except KeyError as error:
        raise ValueError(f"not a GAGAvatar checkpoint: missing key {error.args[0]!r}") from error


def load_gagavatar(source, device="cpu", dtype: torch.dtype = torch.float32) -> GAGAvatar:
    """Load GAGAvatar for inference (eval mode, no gradients).

    source: path to the official ``GAGAvatar.pt``, the loaded ``{'model': state_dict, 'meta_cfg': ...}`` dict, or a
    bare state dict.  Strict: any missing, unexpected or mis-shaped tensor raises ValueError naming it; only
    ``percep_loss.*``, ``base_model.dino_model.mask_token`` and ``upsampler.toRGB.*`` are ignored.  Sizes come
    from the tensors, so smaller models of the same family load too.  Nothing is downloaded.
    """
    state_dict = checkpoint_to_model_state(_unwrap_state_dict(source))
    model = _build_empty(state_dict)
    check_fits(model, state_dict, "GAGAvatar")
    model.load_state_dict(state_dict, strict=True, assign=True)
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    return model
