"""Diff2Lip's reference mode: the release's pads, box smoothing, 8-bit crops and whole-box paste, checked against the
official code's ``facecrop.npz``, and the plain workflow set to exactly those settings."""
from __future__ import annotations

import importlib
import json
from types import SimpleNamespace

import numpy as np
import pytest

from talkinghead.pipelines.diff2lip import lipsync
from talkinghead.pipelines.diff2lip.presets import PASTE_MODES, QUALITY_PRESETS, RELEASE_PADS, RELEASE_PASTE
import soundfile
from talkinghead.scripts.build_workflows import WORKFLOWS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
lipsync_module = importlib.import_module("talkinghead.pipelines.diff2lip.lipsync")  # the package re-exports the function


@pytest.fixture(scope="module")
def facecrop(diff2lip_fixtures):
    data = np.load(diff2lip_fixtures / "facecrop.npz")
    return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def wav(diff2lip_fixtures):
    samples, rate = soundfile.read(diff2lip_fixtures / "synth_1s_16k.wav", dtype="float32")
    assert rate == 16000
    return samples


def _fixture_detector(facecrop):
    """Returns the fixture's raw detector box of whichever fixture frame it is shown (the official run's detections)."""
    frames, rects = facecrop["frames_rgb"], facecrop["rects_xyxy"]

    def detect(frame):
        index = next(i for i, f in enumerate(frames) if np.array_equal(f, frame))
        return [(*rects[index].tolist(), 0.99)]
    return detect


def _fixture_generator(facecrop, seen):
    """Stands in for the UNet with the fixture's "generated" faces: g = uint8(crop * 0.5 + 17.7) (the sampler itself
    is checked against tiny_ddim.npz elsewhere); records the crops the pipeline hands to the model."""
    def generate_faces(model, crops, mels, steps, seed=7, progress=None, x_init=None, skip_steps=0):
        seen.append(crops.copy())
        assert crops.dtype == np.uint8 and mels.shape == (len(crops), 80, 16)
        return (crops.astype(np.float32) * 0.5 + 17.7).astype(np.uint8)
    return generate_faces


def _run(facecrop, wav, frames, monkeypatch, paste, seen):
    monkeypatch.setattr(lipsync_module, "generate_faces", _fixture_generator(facecrop, seen))
    return lipsync(frames, wav, 25.0, SimpleNamespace(image_size=128), _fixture_detector(facecrop),
                   steps=QUALITY_PRESETS["balanced"], seed=7, batch_size=4, pads=RELEASE_PADS, pick="best",
                   paste_whole_box=PASTE_MODES[paste])


def test_release_settings_are_the_official_scripts():
    assert RELEASE_PADS == (0, 0, 0, 0)  # Wav2Lip's (0, 10, 0, 0) would move every box's bottom edge
    assert PASTE_MODES[RELEASE_PASTE] is True and QUALITY_PRESETS["balanced"] == 25


def test_reference_mode_reproduces_the_official_paste_exactly(facecrop, wav, monkeypatch):
    seen = []
    out, mask, report = _run(facecrop, wav, facecrop["frames_rgb"], monkeypatch, RELEASE_PASTE, seen)
    # the model saw the official crops (pads 0, 5-frame in-place int smoothing, cv2 bilinear at 128 in uint8)
    assert np.array_equal(np.concatenate(seen), facecrop["crops128_pads0000"])
    assert out.dtype == np.uint8 and np.array_equal(out, facecrop["pasted_frames"])
    assert report["generated"] == 10 and report["passed_through"] == 0
    boxes = facecrop["boxes_y1y2x1x2_pads0000"]
    for m, (y1, y2, x1, x2) in zip(mask, boxes):  # the whole box was written, nothing else
        assert m[y1:y2, x1:x2].all() and m.sum() == (y2 - y1) * (x2 - x1)


def test_reference_mode_on_comfyui_float_frames_works_in_8_bits(facecrop, wav, monkeypatch):
    """ComfyUI hands over float frames (uint8 / 255): the result must still be the official uint8 frames."""
    seen = []
    floats = facecrop["frames_rgb"].astype(np.float32) / 255.0
    out, _, _ = _run(facecrop, wav, floats, monkeypatch, RELEASE_PASTE, seen)
    assert np.array_equal(np.concatenate(seen), facecrop["crops128_pads0000"])
    assert out.dtype == np.float32
    assert np.array_equal(out, facecrop["pasted_frames"].astype(np.float32) / 255.0)


def test_reference_mode_leaves_float_frames_outside_the_boxes_bit_identical(facecrop, wav, monkeypatch):
    floats = facecrop["frames_rgb"].astype(np.float32) / 255.0 + np.float32(0.3 / 255.0)  # not 8-bit levels
    out, mask, _ = _run(facecrop, wav, floats, monkeypatch, RELEASE_PASTE, [])
    outside = mask == 0
    assert np.array_equal(out[outside], floats[outside])
    inside = np.round(out[~outside] * 255.0)  # the written boxes hold the release's 8-bit values
    assert np.abs(out[~outside] * 255.0 - inside).max() < 1e-4


def test_lower_half_paste_writes_only_the_generated_rows(facecrop, wav, monkeypatch):
    frames = facecrop["frames_rgb"]
    out, mask, _ = _run(facecrop, wav, frames, monkeypatch, "lower half", [])
    for i, (y1, y2, x1, x2) in enumerate(facecrop["boxes_y1y2x1x2_pads0000"]):
        middle = y1 + (y2 - y1) // 2
        # the same resized crop as the release's, of which only the lower rows are written
        assert np.array_equal(out[i, middle:y2, x1:x2], facecrop["pasted_frames"][i, middle:y2, x1:x2])
        written = np.zeros(frames.shape[1:3], bool)
        written[middle:y2, x1:x2] = True
        assert np.array_equal(out[i][~written], frames[i][~written]) and np.array_equal(mask[i] > 0, written)


def test_reference_mode_with_the_tiny_network_is_deterministic_and_8_bit(tiny, facecrop, wav):
    frames = facecrop["frames_rgb"][:3].astype(np.float32) / 255.0
    detect = _fixture_detector(facecrop)  # the fixture's boxes; the tiny model crops them at 32 px
    first, mask, _ = lipsync(frames, wav, 25.0, tiny, detect, steps=2, pads=RELEASE_PADS, pick="best",
                             paste_whole_box=True)
    again, _, _ = lipsync(frames, wav, 25.0, tiny, detect, steps=2, pads=RELEASE_PADS, pick="best",
                          paste_whole_box=True)
    assert np.array_equal(first, again)
    written = mask > 0
    assert written.any() and not np.array_equal(first[written], frames[written])
    levels = first[written] * 255.0
    assert np.abs(levels - np.round(levels)).max() < 1e-4


def test_plain_workflow_uses_exactly_the_release_settings():
    lip_sync = [n for n in json.loads((WORKFLOWS / "diff2lip_api.json").read_text()).values()
                if n["class_type"] == "Diff2LipLipSyncStream"]  # the plain workflow streams file to file
    assert len(lip_sync) == 1
    inputs = lip_sync[0]["inputs"]
    assert QUALITY_PRESETS[inputs["quality"]] == 25 and inputs["seed"] == 7
    assert (inputs["pad_top"], inputs["pad_bottom"], inputs["pad_left"], inputs["pad_right"]) == RELEASE_PADS
    assert inputs["paste"] == RELEASE_PASTE and inputs["face"] == "most confident"
    assert inputs["close_mouth_in_silence"] is False and inputs["flow_guided_start"] == 0.0
    assert "upscale_model" not in inputs


def test_reference_mode_holds_no_8_bit_copy_of_the_clip(tiny):
    """The 8-bit work is done frame by frame: the working set beyond the outputs does not grow with the clip."""
    import tracemalloc

    def face(frame):
        return [(200.0, 80.0, 300.0, 200.0, 0.9)]

    extras = []
    for frames in (8, 24):
        video = np.random.default_rng(0).random((frames, 360, 640, 3), dtype=np.float32)
        wav = np.zeros(int(16000 * frames / 25), np.float32)
        lipsync(video[:2], wav, 25.0, tiny, face, steps=1, paste_whole_box=True)  # one-time costs first
        tracemalloc.start()
        try:
            out, mask, _ = lipsync(video, wav, 25.0, tiny, face, steps=1, batch_size=4, paste_whole_box=True)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        extras.append(peak - out.nbytes - mask.nbytes)
    # measured 0.4 and 0.5 MiB; an 8-bit copy of the 24-frame clip would be 16 MiB, one float frame is 2.6 MiB
    assert max(extras) < 2 * 2**20 and extras[1] - extras[0] < 2**20, [e / 2**20 for e in extras]
