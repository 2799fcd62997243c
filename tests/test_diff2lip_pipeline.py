"""Diff2Lip pipeline: schedules and DDIM against the reference runs, mel windows, face boxes/crops, lipsync()."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import soundfile
import torch

from talkinghead.pipelines.diff2lip import (composite_lower_half, crop_faces, crops_to_model, ddim_sample,
                                            ddim_schedule, ddim_timesteps, generate_faces, linear_betas, lipsync,
                                            locate_faces, mel_windows, melspectrogram, model_to_crops, paste_faces,
                                            paste_generated, seeded_noise, smooth_boxes, start_alpha_bar,
                                            window_start)

ATOL = 1e-4  # fixture README: forward outputs and DDIM samples


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ddim_case(diff2lip_fixtures):
    data = np.load(diff2lip_fixtures / "tiny_ddim.npz")
    return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def mel_case(diff2lip_fixtures):
    data = np.load(diff2lip_fixtures / "mel.npz")
    return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def facecrop(diff2lip_fixtures):
    data = np.load(diff2lip_fixtures / "facecrop.npz")
    return {key: data[key] for key in data.files}


# --- schedule and sampler -------------------------------------------------------------------------------------------

def test_schedules_match_reference(diff2lip_fixtures):
    reference = json.loads((diff2lip_fixtures / "diffusion_schedules.json").read_text())
    base = reference["base_1000"]
    np.testing.assert_allclose(linear_betas(), base["betas"], rtol=0, atol=1e-15)
    assert np.array_equal(np.cumprod(1.0 - linear_betas()), base["alphas_cumprod"])
    for steps in (5, 10, 25):
        schedule, expected = ddim_schedule(steps), reference[f"ddim{steps}"]
        assert schedule.timesteps.tolist() == expected["timestep_map"]
        assert np.array_equal(schedule.alphas_cumprod, expected["alphas_cumprod"])
        assert np.array_equal(schedule.alphas_cumprod_prev, expected["alphas_cumprod_prev"])
    assert ddim_timesteps(25)[-1] == 960  # ddim25 never visits t = 999


def test_impossible_step_count_is_rejected():
    with pytest.raises(ValueError, match="steps=45 .* nearest possible step counts: 44 and 46"):
        ddim_timesteps(45)
    assert ddim_timesteps(1) == [0]


def test_seeded_noise_is_the_reference_draw(ddim_case):
    state = torch.get_rng_state()
    noise = seeded_noise(7, 32)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    assert np.array_equal(noise.expand(2, -1, -1, -1).numpy(), ddim_case["init_noise"])


def _run_ddim(model, case, steps, clip=True):
    record = []
    sample = ddim_sample(model, torch.from_numpy(case["img_batch"]), torch.from_numpy(case["ref_img"]),
                         torch.from_numpy(case["indiv_mels"]), torch.from_numpy(case["init_noise"][:1]), steps,
                         clip_denoised=clip, step_hook=record.append)
    return sample, record


@pytest.mark.parametrize("steps", [5, 10])
def test_ddim_steps_match_reference(tiny, ddim_case, steps):
    sample, record = _run_ddim(tiny, ddim_case, steps)
    name = f"ddim{steps}"
    assert np.array_equal([[r["timestep"]] * 2 for r in record], ddim_case[f"{name}_model_timesteps"])
    schedule = ddim_schedule(steps)
    for k, r in enumerate(record):
        np.testing.assert_allclose(r["model_out"].numpy(), ddim_case[f"{name}_model_out"][k], rtol=0, atol=ATOL)
        np.testing.assert_allclose(r["x"].numpy(), ddim_case[f"{name}_x_after_step"][k], rtol=0, atol=ATOL)
        # x0 = sqrt(1/a)·x - sqrt(1/a - 1)·eps amplifies the model's float noise by up to sqrt(1/a - 1)
        amplification = schedule.sqrt_recipm1_alphas_cumprod[r["index"]]
        np.testing.assert_allclose(r["pred_xstart"].numpy(), ddim_case[f"{name}_pred_xstart"][k], rtol=0,
                                   atol=ATOL * max(1.0, amplification))
    np.testing.assert_allclose(sample.numpy(), ddim_case[f"{name}_sample"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("steps", [5, 10, 25])
def test_ddim_final_images_match_reference(tiny, ddim_case, steps):
    sample, _ = _run_ddim(tiny, ddim_case, steps)
    name = f"ddim{steps}"
    np.testing.assert_allclose(sample.numpy(), ddim_case[f"{name}_sample"], rtol=0, atol=ATOL)
    recon = composite_lower_half(sample, torch.from_numpy(ddim_case["img_batch"]))
    np.testing.assert_allclose(recon.numpy(), ddim_case[f"{name}_recon"], rtol=0, atol=ATOL)
    recon_uint8 = model_to_crops(recon, np.uint8)
    off_by = np.abs(recon_uint8.astype(int) - ddim_case[f"{name}_recon_uint8_hwc"])
    assert off_by.max() <= 1 and (off_by > 0).sum() <= 5


def test_unclipped_ddim_matches_reference(tiny, ddim_case):
    sample, _ = _run_ddim(tiny, ddim_case, 5, clip=False)
    expected = ddim_case["ddim5_noclip_sample"]
    assert np.abs(expected).max() > 50  # the run blows up with random weights, hence the relative tolerance
    np.testing.assert_allclose(sample.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_ddim_reports_progress_and_eta_adds_noise(tiny, ddim_case):
    ticks = []
    args = (tiny, torch.from_numpy(ddim_case["img_batch"]), torch.from_numpy(ddim_case["ref_img"]),
            torch.from_numpy(ddim_case["indiv_mels"]), torch.from_numpy(ddim_case["init_noise"][:1]), 5)
    deterministic = ddim_sample(*args, progress=lambda done, total: ticks.append((done, total)))
    assert ticks == [(k, 5) for k in range(1, 6)]
    noisy = ddim_sample(*args, eta=1.0, generator=torch.Generator().manual_seed(0))
    assert (noisy - deterministic).abs().max() > 1e-2


# --- audio ----------------------------------------------------------------------------------------------------------

def test_melspectrogram_matches_reference(diff2lip_fixtures, mel_case):
    wav, rate = soundfile.read(diff2lip_fixtures / "synth_1s_16k.wav", dtype="float32")
    assert rate == 16000 and np.array_equal(wav, mel_case["wav"])
    mel = melspectrogram(wav)
    assert mel.shape == (80, 81) and mel.dtype == np.float64
    # float64 ulps: numpy's vectorised log10 differs by CPU; the reference machine's run is matched to 2e-15
    np.testing.assert_allclose(mel, mel_case["mel"], rtol=0, atol=1e-12)
    assert np.array_equal(mel_windows(mel), mel_case["windows"])


def test_mel_windows_at_25_fps_are_the_reference_windows(mel_case):
    windows = mel_windows(mel_case["mel"], fps=25.0)
    assert windows.shape == (22, 80, 16) and windows.dtype == np.float32
    assert np.array_equal(windows, mel_case["windows"])
    assert [window_start(k) for k in range(22)] == mel_case["window_start_rows"].tolist()


def test_mel_windows_at_other_fps_are_placed_by_time(mel_case):
    at_25, at_50 = mel_windows(mel_case["mel"], fps=25.0), mel_windows(mel_case["mel"], fps=50.0)
    # frame 2k at 50 fps is the same instant as frame k at 25 fps
    assert np.array_equal(at_50[2:44:2], at_25[1:22])
    assert [window_start(k, 30.0) for k in range(4)] == [0, 0, 2, 4]  # int(80 * (k/30 - 0.04))


def test_mel_windows_for_an_exact_frame_count(mel_case):
    reference = mel_case["windows"]
    padded = mel_windows(mel_case["mel"], num_frames=25)
    assert padded.shape == (25, 80, 16)
    assert np.array_equal(padded[:22], reference) and np.array_equal(padded[22:], np.repeat(reference[-1:], 3, 0))
    assert np.array_equal(mel_windows(mel_case["mel"], num_frames=5), reference[:5])


def test_too_short_audio_is_rejected():
    with pytest.raises(ValueError, match="audio too short"):
        mel_windows(melspectrogram(np.zeros(2000, dtype=np.float32)))


# --- boxes, crops, paste-back ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("pads, key", [((0, 0, 0, 0), "boxes_y1y2x1x2_pads0000"),
                                       ((0, 10, 0, 0), "boxes_y1y2x1x2_pads0_10_0_0")])
def test_smooth_boxes_match_reference(facecrop, pads, key):
    boxes = smooth_boxes(facecrop["rects_xyxy"], facecrop["frames_rgb"].shape[1:3], pads=pads)
    assert boxes.dtype == np.int64 and np.array_equal(boxes, facecrop[key])


def test_smooth_boxes_on_a_clip_shorter_than_the_window():
    rects = np.array([[10, 20, 50, 60], [13, 21, 52, 62], [16, 25, 57, 66]])
    boxes = smooth_boxes(rects, (100, 100))
    # window = the whole clip; in place, so later boxes average already smoothed ones (y1, y2, x1, x2)
    assert boxes.tolist() == [[22, 62, 13, 53], [22, 63, 14, 54], [23, 63, 14, 54]]
    assert np.array_equal(smooth_boxes(rects[:1], (100, 100)), [[20, 60, 10, 50]])


def test_crops_and_paste_back_match_reference(facecrop):
    boxes = facecrop["boxes_y1y2x1x2_pads0000"]
    crops = crop_faces(facecrop["frames_rgb"], boxes, 128)
    assert np.array_equal(crops, facecrop["crops128_pads0000"])
    generated = (crops.astype(np.float32) * 0.5 + 17.7).astype(np.uint8)
    assert np.array_equal(paste_faces(facecrop["frames_rgb"], generated, boxes), facecrop["pasted_frames"])


def test_paste_upscale_hook_and_lower_half(facecrop):
    frames, boxes = facecrop["frames_rgb"][:2], facecrop["boxes_y1y2x1x2_pads0000"][:2]
    seen = []

    def upscale(crop):
        seen.append(crop.shape)
        return np.full((256, 256, 3), 200, np.uint8)

    paste_faces(frames, crop_faces(frames, boxes, 128), boxes, upscale=upscale, lower_half=True)
    assert seen == []  # boxes no larger than the crop: super-resolution would only be thrown away
    pasted = paste_faces(frames, crop_faces(frames, boxes, 32), boxes, upscale=upscale, lower_half=True)
    assert seen == [(32, 32, 3)] * 2
    y1, y2, x1, x2 = boxes[0]
    middle = y1 + (y2 - y1) // 2
    assert (pasted[0, middle:y2, x1:x2] == 200).all()
    untouched = np.ones(frames.shape[1:3], bool)
    untouched[middle:y2, x1:x2] = False
    assert np.array_equal(pasted[0][untouched], frames[0][untouched])


def test_crops_round_trip_through_model_range(facecrop):
    crops = facecrop["crops128_pads0000"][:2]
    images = crops_to_model(crops)
    assert images.shape == (2, 3, 128, 128) and images.min() >= -1 and images.max() <= 1
    back = model_to_crops(images, np.uint8)
    # the reference's truncating cast brings some levels back one lower
    assert (back <= crops).all() and (crops.astype(int) - back).max() == 1


# --- face choice and the orchestrator -------------------------------------------------------------------------------

FACE_BOX = (24, 12, 72, 60, 0.98)  # x1, y1, x2, y2, score
NO_FACE_FRAME = 2


def _clip(n=5, height=72, width=96):
    frames = np.random.default_rng(0).integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    frames[NO_FACE_FRAME, 0, 0] = 0  # the fake detector's "no face here" marker
    wav = 0.4 * np.sin(2 * np.pi * 220 * np.arange(int(16000 * n / 25) + 4000) / 16000).astype(np.float32)
    return frames, wav


def fake_detect(frame):
    if (frame[0, 0] == 0).all():
        return []
    return [(70, 50, 80, 60, 0.99), FACE_BOX]  # a small face and the large one we want


class _InputShapes:
    def __init__(self, model):
        self.shapes = []
        self.handle = model.register_forward_pre_hook(lambda module, args: self.shapes.append(tuple(args[0].shape)))


def test_lipsync_changes_only_the_mouth_half_and_passes_no_face_frames(tiny):
    frames, wav = _clip()
    ticks = []
    recorder = _InputShapes(tiny)
    try:
        out, mask, report = lipsync(frames, wav, 25.0, tiny, fake_detect, steps=3, seed=7, batch_size=3,
                                    progress=lambda done, total: ticks.append((done, total)))
    finally:
        recorder.handle.remove()
    assert out.dtype == np.uint8 and out.shape == frames.shape and mask.shape == frames.shape[:3]
    assert report["frames"] == 5 and report["faces_found"] == 4 and report["passed_through"] == 1
    assert report["passed_through_frames"] == [NO_FACE_FRAME] and report["seconds"] > 0
    assert np.array_equal(out[NO_FACE_FRAME], frames[NO_FACE_FRAME]) and mask[NO_FACE_FRAME].sum() == 0
    changed = (out != frames).any(axis=-1)
    assert not changed[mask == 0].any()
    assert changed[mask == 1].mean() > 0.9
    x1, y1, x2, y2, _ = FACE_BOX
    expected = np.zeros(frames.shape[1:3], np.float32)
    expected[y1 + (y2 - y1) // 2:y2, x1:x2] = 1
    assert np.array_equal(mask[0], expected)
    # crops follow the model's 32x32 input; 4 faces in batches of 3 -> 2 batches x 3 steps
    assert set(recorder.shapes) == {(3, 3, 32, 32), (1, 3, 32, 32)} and len(recorder.shapes) == 6
    assert ticks[-1] == (5 + 2 * 3, 11) and [d for d, _ in ticks] == sorted(d for d, _ in ticks)


def test_lipsync_equals_the_reference_steps_for_one_frame(tiny):
    """End to end against the public pieces: crop -> DDIM (own face as reference, seed-7 noise) -> composite ->
    truncating uint8 -> resize into the box (lower half written)."""
    frames, wav = _clip()
    out, _, _ = lipsync(frames, wav, 25.0, tiny, fake_detect, steps=2, seed=7, batch_size=8)
    x1, y1, x2, y2, _ = FACE_BOX
    box = np.array([[y1, y2, x1, x2]])
    target = crops_to_model(crop_faces(frames[3:4], box, 32))
    mels = torch.from_numpy(mel_windows(melspectrogram(wav), 25.0, num_frames=5)[3:4])
    sample = ddim_sample(tiny, target, target, mels, seeded_noise(7, 32), 2)
    face = model_to_crops(composite_lower_half(sample, target), np.uint8)[0]
    resized = cv2.resize(face, (x2 - x1, y2 - y1))
    middle = (y2 - y1) // 2
    assert np.array_equal(out[3, y1 + middle:y2, x1:x2], resized[middle:])


def test_separate_stages_over_all_crops_equal_the_batched_lipsync(tiny):
    """locate -> generate (all crops in one call) -> paste gives what lipsync gives batch by batch."""
    frames, wav = _clip()
    expected, expected_mask, _ = lipsync(frames, wav, 25.0, tiny, fake_detect, steps=2, seed=3, batch_size=2)
    boxes = locate_faces(frames, fake_detect)
    assert sorted(boxes) == [i for i in range(5) if i != NO_FACE_FRAME]
    indices = sorted(boxes)
    stacked = np.stack([boxes[i] for i in indices])
    crops = crop_faces([frames[i] for i in indices], stacked, 32)
    mels = mel_windows(melspectrogram(wav), 25.0, num_frames=5)[indices]
    generated = generate_faces(tiny, crops, mels, steps=2, seed=3)
    out, mask = frames.copy(), np.zeros(frames.shape[:3], np.float32)
    paste_generated(out, mask, indices, generated, stacked)
    assert np.array_equal(out, expected) and np.array_equal(mask, expected_mask)
    with pytest.raises(ValueError, match="model works at 32"):
        generate_faces(tiny, crop_faces(frames[:1], stacked[:1], 64), mels[:1], steps=2)


def test_ddim_resumes_exactly_from_a_state_after_skipped_steps(tiny):
    rng = np.random.default_rng(4)
    target = torch.from_numpy(rng.uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32))
    mels = torch.from_numpy(rng.uniform(-4, 4, (2, 80, 16)).astype(np.float32))
    states = []
    full = ddim_sample(tiny, target, target, mels, seeded_noise(7, 32), 10, step_hook=lambda d: states.append(d["x"]))
    resumed = ddim_sample(tiny, target, target, mels, seeded_noise(7, 32), 10, x_init=states[3], skip_steps=4)
    assert torch.allclose(resumed, full, atol=1e-6)
    with pytest.raises(ValueError, match="skip_steps"):
        ddim_sample(tiny, target, target, mels, seeded_noise(7, 32), 10, skip_steps=4)  # no x_init
    assert start_alpha_bar(10, 4) == pytest.approx(float(ddim_schedule(10).alphas_cumprod_prev[10 - 4]))


def test_flow_guided_start_samples_frame_by_frame_with_fewer_steps(tiny):
    frames, wav = _clip()
    recorder = _InputShapes(tiny)
    try:
        out, mask, report = lipsync(frames, wav, 25.0, tiny, fake_detect, steps=10, batch_size=4, flow_start=0.4)
    finally:
        recorder.handle.remove()
    # faces in frames 0,1 | 3,4 (frame 2 has none): each run's first frame takes 10 steps, the next one 10 - 4
    assert len(recorder.shapes) == 2 * (10 + 6) and set(recorder.shapes) == {(1, 3, 32, 32)}
    assert report["generated"] == 4 and not (out != frames).any(axis=-1)[mask == 0].any()
    with pytest.raises(ValueError, match="flow_start"):
        lipsync(frames, wav, 25.0, tiny, fake_detect, steps=10, flow_start=1.0)


def test_lipsync_float_frames_keep_their_dtype(tiny):
    frames, wav = _clip(n=3)
    floats = frames.astype(np.float32) / 255.0
    out, mask, report = lipsync(floats, wav, 30.0, tiny, fake_detect, steps=2, batch_size=4)
    assert out.dtype == np.float32 and out.shape == floats.shape
    assert out.min() >= 0 and out.max() <= 1
    assert np.array_equal(out[mask == 0], floats[mask == 0]) and report["faces_found"] == 2


def test_lipsync_rejects_bad_frames(tiny):
    _, wav = _clip()
    with pytest.raises(ValueError, match="frames must be"):
        lipsync(np.zeros((4, 32, 32), np.uint8), wav, 25.0, tiny, fake_detect)


def test_lipsync_keeps_inactive_frames(tiny):
    frames, wav = _clip(n=4)
    active = np.array([True, False, False, True])
    out, mask, report = lipsync(frames, wav, 25.0, tiny, fake_detect, steps=2, active_frames=active)
    assert report["faces_found"] == 3 and report["generated"] == 2 and report["passed_through_frames"] == [2]
    assert np.array_equal(out[1], frames[1]) and mask[1].sum() == 0
    assert mask[0].sum() > 0 and mask[3].sum() > 0
    ticks = []
    silent = np.zeros(4, bool)
    out, mask, report = lipsync(frames, wav, 25.0, tiny, fake_detect, steps=2, active_frames=silent,
                                progress=lambda done, total: ticks.append((done, total)))
    assert np.array_equal(out, frames) and mask.sum() == 0 and report["generated"] == 0 and ticks[-1] == (4, 4)
    with pytest.raises(ValueError, match="active_frames"):
        lipsync(frames, wav, 25.0, tiny, fake_detect, steps=2, active_frames=active[:2])
