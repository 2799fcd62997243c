"""The split lip sync on typed FaceCrops (crop -> sample -> paste) against the one-call lipsync, and the audio
helpers the lip-sync nodes delegate to."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_diff2lip_pipeline import NO_FACE_FRAME, _clip, fake_detect

from talkinghead.pipelines.audio_enhance import LOUDNESS_BLOCK_S, clean_up_speech, enhance_speech, speech_for_frames
from talkinghead.pipelines.diff2lip import FaceCrops, crop_clip, lipsync, paste_crops, sample_crops
from talkinghead.pipelines.media import audio_to_mono

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_three_steps_give_the_one_call_lip_sync_exactly(tiny):
    frames, wav = _clip()
    floats = frames.astype(np.float32) / 255.0
    expected, expected_mask, _ = lipsync(floats, wav, 25.0, tiny, fake_detect, steps=3, seed=7, batch_size=3)
    ticks = []
    crops = crop_clip(floats, fake_detect, tiny.image_size)
    assert isinstance(crops, FaceCrops) and len(crops) == 4 and NO_FACE_FRAME not in crops.frame_index
    assert crops.images.shape == (4, 32, 32, 3) and crops.images.dtype == np.float32
    assert crops.num_frames == 5 and crops.frame_hw == frames.shape[1:3] and crops.boxes.shape == (4, 4)
    sampled = sample_crops(tiny, crops, wav, 25.0, steps=3, seed=7, batch_size=3,
                           progress=lambda done, total: ticks.append((done, total)))
    assert sampled.boxes is crops.boxes and (sampled.images != crops.images).any(axis=(1, 2, 3)).all()
    out, mask = paste_crops(floats, sampled)
    assert np.array_equal(out, expected) and np.array_equal(mask, expected_mask)
    assert ticks[-1] == (2 * 3, 2 * 3) and [d for d, _ in ticks] == sorted(d for d, _ in ticks)  # 2 batches x 3


def test_sampling_keeps_the_crops_of_silent_frames(tiny):
    frames, wav = _clip()
    crops = crop_clip(frames.astype(np.float32) / 255.0, fake_detect, tiny.image_size)
    active = np.array([True, False, True, True, False])
    sampled = sample_crops(tiny, crops, wav, 25.0, steps=2, active_frames=active)
    kept = ~active[crops.frame_index]
    assert kept.sum() == 2 and np.array_equal(sampled.images[kept], crops.images[kept])
    assert (sampled.images[~kept] != crops.images[~kept]).any(axis=(1, 2, 3)).all()


def test_paste_refuses_other_frames_or_face_counts(tiny):
    frames, _ = _clip()
    floats = frames.astype(np.float32) / 255.0
    crops = crop_clip(floats, fake_detect, tiny.image_size)
    with pytest.raises(ValueError, match="crops come from 5 frames"):
        paste_crops(floats[:4], crops)
    with pytest.raises(ValueError, match="faces has 3 images for 4 crops"):
        paste_crops(floats, crops, faces=crops.images[:3])
    with pytest.raises(dataclasses.FrozenInstanceError):
        crops.images = crops.images[:1]


def test_a_clip_without_faces_gives_empty_crops_that_paste_nothing(tiny):
    frames, _ = _clip(n=3)
    frames[:, 0, 0] = 0  # the fake detector's marker in every frame
    crops = crop_clip(frames.astype(np.float32) / 255.0, fake_detect, 32)
    assert len(crops) == 0 and crops.images.shape == (0, 32, 32, 3) and crops.boxes.shape == (0, 4)
    out, mask = paste_crops(frames, crops)
    assert np.array_equal(out, frames) and mask.sum() == 0


def test_clean_up_speech_skips_loudness_only_below_one_block():
    rng = np.random.default_rng(0)
    short = (0.05 * rng.standard_normal((1, 2, 4000))).astype(np.float32)  # 0.25 s stereo at 16 kHz
    cleaned, note = clean_up_speech(torch.from_numpy(short), 16000, compress=True, target_lufs=-20.0)
    assert note is not None and "0.25 s" in note and f"{LOUDNESS_BLOCK_S} s" in note
    assert np.array_equal(cleaned, enhance_speech(audio_to_mono(short, 16000)))  # nothing applied
    assert clean_up_speech(short, 16000)[1] is None  # nothing asked that needs a loudness
    long = (0.05 * rng.standard_normal(int(16000 * 0.5))).astype(np.float32)
    cleaned, note = clean_up_speech(long, 16000, target_lufs=-20.0)
    assert note is None and np.array_equal(cleaned, enhance_speech(long, 16000, target_lufs=-20.0))
    resampled, _ = clean_up_speech(long, 8000)
    assert len(resampled) == 2 * len(long)  # 8 kHz in, 16 kHz out


def test_speech_for_frames_fits_the_audio_to_the_video():
    wav = np.ones(16000, np.float32) * 0.1  # 1 s
    fitted, mono, active = speech_for_frames(wav[None, None], 16000, num_frames=10, fps=25.0)
    assert fitted.shape == (1, 1, 6400) and mono.shape == (6400,) and active is None
    fitted, mono, _ = speech_for_frames(wav[None, None], 16000, num_frames=50, fps=25.0)  # 2 s of video
    assert fitted.shape == (1, 1, 32000) and not mono[16000:].any()  # padded with silence
