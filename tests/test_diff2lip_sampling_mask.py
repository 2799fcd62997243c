"""The Lip Sync sampling-mask option: release lower half (default) or the expanded FaceMesh lip region."""
from __future__ import annotations

import numpy as np
import pytest
from media import talking_clip
from test_diff2lip_pipeline import _clip, fake_detect

from talkinghead.pipelines.diff2lip import crop_faces, generate_faces, lipsync, mel_windows, melspectrogram
from talkinghead.pipelines.diff2lip_enhance.sampling_mask import lip_region_masks, lower_half, sampling_mask_maker


@pytest.fixture(scope="module")
def face_crops():
    """128 px Diff2Lip-style crops (the face box) of a real-photo talking clip."""
    clip = talking_clip(frames=3, size=(256, 256), mouth_px=8.0)
    boxes = np.array([[y1, y2, x1, x2] for x1, y1, x2, y2 in clip.face_boxes.astype(int)])
    return crop_faces(list(clip.frames), boxes, 128)


def test_lip_region_is_a_part_of_the_lower_half_around_the_mouth(face_crops):
    masks = lip_region_masks(face_crops)
    half = lower_half(128)
    assert masks.shape == (3, 128, 128)
    assert (masks <= half).all()  # never above the pasted half
    area = (masks > 0.5).mean(axis=(1, 2))
    assert ((area > 0.02) & (area < 0.6 * half.mean())).all(), area
    rows = np.flatnonzero((masks[0] > 0.5).any(axis=1))
    assert rows.min() >= 64 and rows.max() < 124  # the mouth sits in the lower half, above the crop's bottom


def test_crops_without_a_face_fall_back_to_the_lower_half():
    noise = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(lip_region_masks(noise), np.broadcast_to(lower_half(64), (2, 64, 64)))
    assert sampling_mask_maker("lower_half") is None and sampling_mask_maker("lip_region") is lip_region_masks
    with pytest.raises(ValueError, match="sampling_mask"):
        sampling_mask_maker("whole_face")


def test_generation_changes_only_the_sampling_mask(tiny):
    frames, wav = _clip()
    boxes = np.array([[12, 60, 24, 72]] * 2)
    crops = crop_faces(list(frames[:2]), boxes, 32)
    mels = mel_windows(melspectrogram(wav), 25.0, num_frames=5)[:2]
    mask = np.zeros((2, 1, 32, 32), np.float32)
    mask[:, :, 20:28, 8:24] = 1
    out = generate_faces(tiny, crops, mels, steps=2, seed=3, sample_mask=mask)
    # outside the mask only the uint8 -> [-1, 1] -> truncating uint8 round trip of the release moves a pixel (by 1)
    difference = np.abs(out.astype(int) - crops).max(axis=-1)
    assert difference[mask[:, 0] == 0].max() <= 1
    assert (difference[mask[:, 0] == 1] > 1).mean() > 0.9
    default = generate_faces(tiny, crops, mels, steps=2, seed=3)
    assert not np.array_equal(out, default)


def test_lipsync_hook_falls_back_where_facemesh_sees_no_face_and_a_custom_mask_is_used(tiny):
    frames, wav = _clip()
    default, default_mask, _ = lipsync(frames, wav, 25.0, tiny, fake_detect, steps=2, seed=7)
    lips, lips_mask, _ = lipsync(frames, wav, 25.0, tiny, fake_detect, steps=2, seed=7,
                                 sampling_mask=lip_region_masks)
    # random-noise frames have no face for FaceMesh: every crop falls back to the release's lower half
    np.testing.assert_array_equal(lips, default)
    np.testing.assert_array_equal(lips_mask, default_mask)
    seen = []

    def bottom_quarter(crops):
        seen.append(crops.shape)
        masks = np.zeros(crops.shape[:3], np.float32)
        masks[:, 24:] = 1
        return masks

    quarter, _, _ = lipsync(frames, wav, 25.0, tiny, fake_detect, steps=2, seed=7, sampling_mask=bottom_quarter)
    assert seen and all(shape[1:] == (32, 32, 3) for shape in seen)
    assert not np.array_equal(quarter, default)
