"""SyncNet (Chung & Zisserman 2016) as released in joonson/syncnet_python (``SyncNetModel.S``), for the LSE-C / LSE-D
lip-sync scores.

The layer order and indices equal the release's, so its ``syncnet_v2.model`` (a torch-saved state dict of float
tensors, 1024-wide embeddings) loads by key. Inputs are what the reference evaluation feeds:
- audio: MFCC of raw int16 samples, (N, 1, 13, 20) = 13 coefficients x 20 MFCC frames (0.2 s);
- lips: BGR frames as float 0..255 (no scaling, no mean), (N, 3, 5, 224, 224) = 5 video frames at 25 fps.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .state_dict_file import read_state_dict

EMBEDDING_SIZE = 1024


def _conv_bn_relu_2d(cin: int, cout: int, kernel, padding) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=kernel, stride=1, padding=padding), nn.BatchNorm2d(cout), nn.ReLU()]


def _conv_bn_relu_3d(cin: int, cout: int, kernel, stride=1, padding=0) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, kernel_size=kernel, stride=stride, padding=padding), nn.BatchNorm3d(cout), nn.ReLU()]


def _fc_head(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, width))


class SyncNet(nn.Module):
    """Audio and lip towers; module indices match the release's Sequential layout (``netcnnaud.18`` etc.)."""

    def __init__(self, embedding_size: int = EMBEDDING_SIZE):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv_bn_relu_2d(1, 64, 3, 1), nn.MaxPool2d(kernel_size=1, stride=1),
            *_conv_bn_relu_2d(64, 192, 3, 1), nn.MaxPool2d(kernel_size=3, stride=(1, 2)),
            *_conv_bn_relu_2d(192, 384, 3, 1),
            *_conv_bn_relu_2d(384, 256, 3, 1),
            *_conv_bn_relu_2d(256, 256, 3, 1), nn.MaxPool2d(kernel_size=3, stride=2),
            *_conv_bn_relu_2d(256, 512, (5, 4), 0),
        )
        self.netfcaud = _fc_head(embedding_size)
        self.netfclip = _fc_head(embedding_size)
        self.netcnnlip = nn.Sequential(
            *_conv_bn_relu_3d(3, 96, (5, 7, 7), stride=(1, 2, 2)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu_3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_conv_bn_relu_3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv_bn_relu_3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv_bn_relu_3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu_3d(256, 512, (1, 6, 6)),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 13, 20) MFCC windows -> (N, embedding) audio embeddings."""
        mid = self.netcnnaud(x)
        return self.netfcaud(mid.reshape(mid.shape[0], -1))

    def forward_lipfeat(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR 0..255 clips -> (N, 512) lip CNN features (before the FC head)."""
        mid = self.netcnnlip(x)
        return mid.reshape(mid.shape[0], -1)

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR 0..255 clips -> (N, embedding) lip embeddings."""
        return self.netfclip(self.forward_lipfeat(x))


def _copy_state(model: SyncNet, state: Mapping) -> None:
    """Copy every entry of ``state`` into the model, as the release's loader does: an unknown key is an error, a key
    the file lacks keeps its initial value. Only ``num_batches_tracked`` (unused in eval mode, absent from the 2016
    file) may be missing here: a file missing real weights would score with random layers, so that is refused."""
    own = model.state_dict()
    unknown = [key for key in state if key not in own]
    if unknown:
        raise KeyError(f"SyncNet: the weights have {len(unknown)} key(s) the model does not know, e.g. {unknown[:3]}; "
                       "expected joonson/syncnet_python's syncnet_v2.model state dict")
    missing = [key for key in own if key not in state and not key.endswith("num_batches_tracked")]
    if missing:
        raise KeyError(f"SyncNet: the weights lack {len(missing)} tensor(s), e.g. {missing[:3]}")
    with torch.no_grad():
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"SyncNet: entry {key} is a {type(value).__name__}, not a tensor")
            if tuple(value.shape) != tuple(own[key].shape):
                raise ValueError(f"SyncNet: {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
            own[key].copy_(value)


def load_syncnet(source, device="cpu") -> SyncNet:
    """SyncNet in eval mode from ``source``: the path of a state-dict file (``syncnet_v2.model``, read with
    ``weights_only=True``) or a mapping with the release's key names. The embedding width follows the weights."""
    state = source if isinstance(source, Mapping) else read_state_dict(source, "SyncNet weights")
    width = state["netfcaud.3.weight"].shape[0] if "netfcaud.3.weight" in state else EMBEDDING_SIZE
    model = SyncNet(int(width))
    _copy_state(model, state)
    return model.to(device).eval()
