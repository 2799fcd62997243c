"""Diff2Lip enhancement stage 4 option: face-alignment 68-point FAN from a local file (one CPU forward, ~1-10 s)."""
from __future__ import annotations

import numpy as np
import pytest
from diff2lip_enhance_media import enhance_clip

from talkinghead.pipelines.diff2lip_enhance import FanLandmarker


def test_fan_adapter_loads_a_random_weight_file_in_the_official_format(tmp_path):
    clip = enhance_clip(frames=1)
    torch = pytest.importorskip("torch")
    face_alignment = pytest.importorskip("face_alignment")
    torch.manual_seed(0)
    path = tmp_path / "2DFAN4-11f355bf06.pth.tar"
    torch.save(face_alignment.models.FAN(4).state_dict(), path)  # 1.5.0 loads this file as a plain state dict
    points, found = FanLandmarker(path)(clip.original[:1], clip.region[:1])
    assert points.shape == (1, 68, 2) and found.tolist() == [True] and np.isfinite(points).all()
    box = np.flatnonzero(clip.region[0].any(0))
    assert np.all((points[0, :, 0] > box[0] - 100) & (points[0, :, 0] < box[-1] + 100))
    broken = tmp_path / "broken.pth.tar"
    torch.save({"conv1.weight": torch.zeros(1)}, broken)
    with pytest.raises(ValueError, match="state dict"):
        FanLandmarker(broken)
    with pytest.raises(ValueError, match="checkpoint_path"):
        FanLandmarker(tmp_path / "missing.pth.tar")
