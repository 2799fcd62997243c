"""Memory of a long clip: lip sync holds the input, the output, the mask and one batch of crops — nothing that grows
with the clip beyond that (a 1-minute 1080p clip must fit in its two IMAGE batches plus a bounded working set).
numpy allocations are traced by tracemalloc; torch's are per batch of 32x32 crops here."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from talkinghead.pipelines.diff2lip import lipsync

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _face(frame):
    return [(200.0, 80.0, 300.0, 200.0, 0.9)]


@pytest.mark.parametrize("frames", [12, 36])
def test_working_set_does_not_grow_with_the_clip(tiny, frames):
    model = tiny
    video = np.random.default_rng(0).random((frames, 360, 640, 3), dtype=np.float32)  # float like ComfyUI IMAGE
    wav = np.zeros(int(16000 * frames / 25), np.float32)
    lipsync(video[:2], wav, 25.0, model, _face, steps=1)  # one-time costs (imports, mel filter bank) out of the way
    tracemalloc.start()
    try:
        out, mask, _ = lipsync(video, wav, 25.0, model, _face, steps=1, batch_size=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    extra = peak - out.nbytes - mask.nbytes  # what lipsync held beyond its two outputs
    # measured: 0.3 MiB for 12 frames, 0.4 MiB for 36 (the input is 32 / 95 MiB): one frame copy would be 2.6 MiB
    assert extra < 2 * 2**20, f"working set {extra / 2**20:.1f} MiB for {frames} frames"
