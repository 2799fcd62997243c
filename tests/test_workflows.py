"""The bundled workflows, run through a real ComfyUI 0.3.75 server on tiny official-format models and real media."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch

from talkinghead.pipelines.media import read_video, write_video, write_wav
from talkinghead.pipelines.gagavatar import read_tracked
from talkinghead.scripts.build_workflows import (GRAPHS, SAMPLE_PORTRAIT, SAMPLE_SPEECH, SAMPLE_VIDEO, WORKFLOWS,
                                                 _input_specs)
from talkinghead.scripts.runner import apply_overrides, load_api_workflow

import gagavatar_synth as synth
import media
import tracking_synth

pytestmark = pytest.mark.server

# compile off: compiling even the tiny UNet takes minutes on a busy CPU (tests/test_speed.py covers that switch).
TINY_DIFF2LIP = {"Diff2Lip Model.ckpt_name": "tiny_unet.pt", "Diff2Lip Model.num_head_channels": 32,
                 "Diff2Lip Model.compile": False}


@pytest.fixture(scope="module")
def server(comfy_server, fixtures_dir):
    """The shared server plus the models and media these workflows need (tiny stand-ins in official formats)."""
    from spandrel.architectures.ESRGAN import ESRGAN

    models = comfy_server.models
    torch.manual_seed(0)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2)
    (models / "upscale_models").mkdir(exist_ok=True)
    torch.save({"params_ema": net.state_dict()}, models / "upscale_models" / "RealESRGAN_x2plus.pth")
    state = synth.tiny_gagavatar_state_dict(num_vertices=64)
    torch.save({"model": state, "meta_cfg": {}}, models / "gagavatar" / "GAGAvatar.pt")
    synth.write_synthetic_flame(models / "flame" / "FLAME_with_eye.pt", num_vertices=64)
    synth.write_synthetic_driver(comfy_server.input / "gagavatar_source", num_frames=1, image_set=True, seed=3)
    synth.write_synthetic_driver(comfy_server.input / "gagavatar_driver", num_frames=5)
    (comfy_server.input / "gagavatar_driver" / "meta.json").write_text(json.dumps({"fps": 30.0}))
    tracking_synth.write_tracker_files(models / "gagavatar" / "track")
    return comfy_server


def _events(result, kind):
    return [m for m in result["messages"] if m["type"] == kind]


def _saved_video(server, result, node="15"):
    files = result["history"]["outputs"][node]["images"]
    return read_video(server.output / files[0]["subfolder"] / files[0]["filename"])


def test_ui_workflows_match_the_api_graphs_and_the_registered_nodes(server):
    info = server.get("/object_info")
    for name, make in GRAPHS.items():
        api = load_api_workflow(WORKFLOWS / f"{name}_api.json")
        assert api == make(), f"workflows/{name}_api.json is stale: run scripts/talkinghead.py build-workflows"
        ui = json.loads((WORKFLOWS / f"{name}.json").read_text())
        assert {str(n["id"]) for n in ui["nodes"]} == set(api)
        for ui_node in ui["nodes"]:
            schema = info[ui_node["type"]]
            names = {n for n, _ in _input_specs(schema)}
            api_inputs = api[str(ui_node["id"])]["inputs"]
            assert set(api_inputs) <= names, (ui_node["type"], set(api_inputs) - names)
            linked = {i["name"] for i in ui_node["inputs"] if i["link"] is not None}
            assert linked == {k for k, v in api_inputs.items() if isinstance(v, list)}


def test_plain_diff2lip_workflow_30fps_missing_faces_long_audio(server):
    clip = media.clip_with_missing_faces(frames=9, missing=(2, 5), fps=30.0, size=(160, 160))
    speech = media.speech_16k(seconds=2.0)  # longer than the 0.3 s clip
    write_video(server.input / SAMPLE_VIDEO, clip.frames, 30.0, overwrite=True)
    write_wav(server.input / SAMPLE_SPEECH, speech, 16000, overwrite=True)
    prompt = apply_overrides(load_api_workflow(WORKFLOWS / "diff2lip_api.json"),
                             [f"{k}={json.dumps(v)}" for k, v in TINY_DIFF2LIP.items()] + ["Lip Sync.quality=\"fast\""])
    result = server.run(prompt, timeout=600)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    progress = [m["data"] for m in _events(result, "progress") if m["data"]["node"] == "14"]  # the streaming sink
    assert progress and progress[-1]["value"] == progress[-1]["max"] == 9
    frames, fps, audio = _saved_video(server, result)
    assert len(frames) == 9 and abs(fps - 30.0) < 1e-3
    duration = audio["waveform"].shape[-1] / audio["sample_rate"]
    assert abs(duration - 9 / 30.0) < 0.05  # audio trimmed to the video
    assert audio["sample_rate"] == 16000  # the driving speech at its own rate
    report = json.loads(result["history"]["outputs"]["14"]["text"][0])
    lipsync = report["stages"][0]["lip_sync"]
    assert lipsync["frames"] == 9 and lipsync["steps"] == 10
    assert lipsync["paste"] == "whole box (release)"  # the plain workflow pastes like the release
    # the single face-less frames 2 and 5 lie between detected frames: bridged (max_gap 5) and generated
    assert {2, 5} <= set(lipsync["bridged_frames"]) and lipsync["generated"] == lipsync["faces_found"]


def test_enhanced_diff2lip_workflow_with_short_audio(server):
    clip = media.talking_clip(frames=16, fps=25.0, size=(160, 160))
    speech = media.speech_16k(seconds=0.5)  # shorter than the 0.64 s clip: padded with silence
    write_video(server.input / SAMPLE_VIDEO, clip.frames, 25.0, overwrite=True)
    write_wav(server.input / SAMPLE_SPEECH, speech, 16000, overwrite=True)
    overrides = [f"{k}={json.dumps(v)}" for k, v in TINY_DIFF2LIP.items()]
    prompt = apply_overrides(load_api_workflow(WORKFLOWS / "diff2lip_enhanced_api.json"),
                             overrides + ["Lip Sync.quality=\"fast\""])
    result = server.run(prompt, timeout=900)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    frames, fps, audio = _saved_video(server, result)
    assert len(frames) == 16 and abs(fps - 25.0) < 1e-3
    assert abs(audio["waveform"].shape[-1] / audio["sample_rate"] - 16 / 25.0) < 0.05
    lipsync = json.loads(result["history"]["outputs"]["14"]["text"][0])["stages"][0]["lip_sync"]
    assert "silent_frames_kept" in lipsync and "upscale_ms_per_frame" in lipsync
    assert lipsync["generated"] > 0 and lipsync["frames"] == 16
    # every stage ran on the stream (the IMAGE-equality of each is checked in test_stream_nodes.py)
    assert "lip_mask_composite" in json.loads(result["history"]["outputs"]["14"]["text"][0])["stages"][1]


@pytest.mark.parametrize("name", ["gagavatar", "gagavatar_enhanced"])
def test_gagavatar_workflows_render_the_driver_at_its_frame_rate(server, name):
    prompt = load_api_workflow(WORKFLOWS / f"{name}_api.json")
    if name == "gagavatar":  # the driver's crops can stay on disk
        prompt = apply_overrides(prompt, ["Tracked Driver.output_frames=false"])
    result = server.run(prompt, timeout=900)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    frames, fps, _ = _saved_video(server, result, node="9")
    assert len(frames) == 5 and abs(fps - 30.0) < 1e-3
    assert frames.std() > 1.0  # something was rendered
    sink = [m["data"] for m in _events(result, "progress") if m["data"]["node"] == "8"]  # the streaming sink
    assert sink and sink[-1]["value"] == sink[-1]["max"] == 5


def test_interrupt_stops_a_long_lipsync_mid_run_and_leaves_no_file(server):
    clip = media.talking_clip(frames=6, fps=25.0, size=(160, 160))
    write_video(server.input / SAMPLE_VIDEO, clip.frames, 25.0, overwrite=True)
    write_wav(server.input / SAMPLE_SPEECH, media.speech_16k(seconds=1.0), 16000, overwrite=True)
    prompt = apply_overrides(load_api_workflow(WORKFLOWS / "diff2lip_api.json"),
                             [f"{k}={json.dumps(v)}" for k, v in TINY_DIFF2LIP.items()]
                             + ["Lip Sync.quality=\"custom\"", "Lip Sync.custom_steps=1000", "Lip Sync.batch_size=1"])
    sent = threading.Event()

    def interrupt_when_encoding(client, msg):
        if msg["type"] == "executing" and msg["data"].get("node") == "14" and not sent.is_set():
            sent.set()
            threading.Timer(3.0, client.post, ("/interrupt", {})).start()

    before = sorted(server.output.rglob("*"))
    started = time.monotonic()
    result = server.run(prompt, timeout=600, on_message=interrupt_when_encoding)
    assert sent.is_set()
    assert result["messages"][-1]["type"] == "execution_interrupted"
    # 6 frames x 1000 steps of the tiny UNet take minutes; the stream checks for cancel at every step
    assert time.monotonic() - started < 60
    assert sorted(server.output.rglob("*")) == before  # no new (partial) output file
    assert not list((server.base / "temp").rglob("*.part*"))  # the sink's temporary file is gone too


def test_gagavatar_from_plain_images_tracks_then_animates(server):
    import cv2

    cv2.imwrite(str(server.input / SAMPLE_PORTRAIT), cv2.cvtColor(tracking_synth.portrait_on_black(), cv2.COLOR_RGB2BGR))
    frames = np.stack([tracking_synth.portrait_on_black(shift=2 * k) for k in range(5)])
    write_video(server.input / SAMPLE_VIDEO, frames, 25.0, overwrite=True)
    prompt = apply_overrides(load_api_workflow(WORKFLOWS / "gagavatar_from_images_api.json"), [
        'Tracker.matting="none"', 'Tracker.face_box="BlazeFace (built-in fallback)"',
        "Track Portrait.steps=10", "Track Driving Video.steps=10"])
    result = server.run(prompt, timeout=900)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    video, fps, _ = _saved_video(server, result, node="14")
    assert len(video) == 5 and abs(fps - 25.0) < 1e-3
    report = json.loads(result["history"]["outputs"]["8"]["text"][0])
    assert report["frames_out"] == 5 and report["interpolated_frames"] == {}
    saved = read_tracked(result["history"]["outputs"]["9"]["text"][0])
    assert len(saved) == 5 and saved.fps == 25.0 and saved.transform_matrix.shape == (5, 3, 4)


def _image_lipsync_graph(face_inputs: dict | None = None) -> dict:
    """The whole-clip (IMAGE) lip sync graph: core Load Video, Video Components, Diff2Lip Lip Sync."""
    stream = load_api_workflow(WORKFLOWS / "diff2lip_api.json")
    lip = dict(stream["7"]["inputs"], fps=["2", 2], frames=["2", 0], **(face_inputs or {}))
    del lip["stream"]
    return {"1": {"class_type": "LoadVideo", "inputs": {"file": SAMPLE_VIDEO}},
            "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
            "3": stream["3"], "5": stream["5"], "6": stream["6"],
            "7": {"class_type": "Diff2LipLipSync", "inputs": lip}}


def test_split_crop_sample_paste_nodes_equal_the_one_node_lip_sync(server):
    clip = media.clip_with_missing_faces(frames=6, missing=(2,), fps=25.0, size=(160, 160))
    write_video(server.input / SAMPLE_VIDEO, clip.frames, 25.0, overwrite=True)
    write_wav(server.input / SAMPLE_SPEECH, media.speech_16k(seconds=0.5), 16000, overwrite=True)
    prompt = apply_overrides(_image_lipsync_graph(),
                             [f"{k}={json.dumps(v)}" for k, v in TINY_DIFF2LIP.items()] + ['7.quality="fast"',
                                                                                   '7.paste="lower half"'])
    sampling = {k: prompt["7"]["inputs"][k] for k in ("quality", "custom_steps", "seed", "batch_size")}
    face = {k: prompt["7"]["inputs"][k] for k in ("face", "face_index", "pad_top", "pad_bottom", "pad_left",
                                                  "pad_right", "max_gap")}
    prompt.update({
        "20": {"class_type": "Diff2LipCropFaces", "inputs": {"frames": ["2", 0], "detector": ["6", 0],
                                                             "crop_size": 32, **face}},
        "21": {"class_type": "Diff2LipSampleFaces", "inputs": {"crops": ["20", 0], "audio": ["3", 0], "fps": ["2", 2],
                                                               "model": ["5", 0], "close_mouth_in_silence": False,
                                                               **sampling}},
        "22": {"class_type": "Diff2LipPasteFaces", "inputs": {"frames": ["2", 0], "crops": ["21", 0],
                                                              "paste": "lower half"}},
        "23": {"class_type": "Diff2LipQualityMetrics", "inputs": {"original": ["7", 0], "output": ["22", 0],
                                                                  "generated_mask": ["22", 1], "landmarks": False}},
    })
    result = server.run(prompt, timeout=600)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    metrics = json.loads(result["history"]["outputs"]["23"]["text"][0])
    assert metrics["psnr_full"] == float("inf") and metrics["max_abs_outside"] == 0.0  # bit-identical frames


def test_one_node_enhanced_avatar_runs_in_the_server(server):
    """*Animate Avatar, Enhanced* in place of the multi-node chain of the gagavatar workflow."""
    prompt = load_api_workflow(WORKFLOWS / "gagavatar_api.json")
    prompt["20"] = {"class_type": "GAGAvatarEnhancedAnimate",
                    "inputs": {"model": ["1", 0], "flame": ["2", 0], "source": ["3", 0], "driver": ["4", 0],
                               "preset": "enhanced", "batch_size": 2}}
    # its IMAGE batch goes to the streaming sink of the workflow through Images to Stream
    prompt["21"] = {"class_type": "TalkingHeadImagesToStream", "inputs": {"images": ["20", 0], "fps": ["20", 1]}}
    prompt["8"]["inputs"]["stream"] = ["21", 0]
    for unused in ("5", "6"):
        prompt.pop(unused)
    result = server.run(prompt, timeout=900)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    frames, fps, _ = _saved_video(server, result, node="9")
    assert len(frames) == 5 and abs(fps - 30.0) < 1e-3 and frames.std() > 1.0
    progress = [m["data"] for m in _events(result, "progress") if m["data"]["node"] == "20"]
    assert progress and progress[-1]["value"] == progress[-1]["max"]


def test_gagavatar_stream_renders_the_image_nodes_pixels(server):
    """Animate Avatar (stream) + the stream enhancements equal Animate Splats + Refine + the IMAGE enhancements."""
    prompt = apply_overrides(load_api_workflow(WORKFLOWS / "gagavatar_enhanced_api.json"), [])
    prompt.update({
        "30": {"class_type": "GAGAvatarAnimate", "inputs": {"model": ["1", 0], "flame": ["2", 0], "avatar": ["5", 0],
                                                            "driver": ["12", 0], "batch_size": 1,
                                                            "rasterizer": "auto"}},
        "31": {"class_type": "GAGAvatarRefine", "inputs": {"model": ["1", 0], "splats": ["30", 0],
                                                           "reference_noise": False, "batch_size": 1}},
        "32": {"class_type": "GAGAvatarDetailEnhance", "inputs": {"frames": ["31", 0], "strength": 0.3,
                                                                  "face_mask": ["30", 1]}},
        "33": {"class_type": "GAGAvatarEyeEnhance", "inputs": {"frames": ["32", 0], "driver": ["12", 0],
                                                               "flame": ["2", 0], "strength": 0.5, "source": ["3", 0]}},
        "34": {"class_type": "TalkingHeadStreamToImages", "inputs": {"stream": ["14", 0], "chunk_size": 2}},
        "35": {"class_type": "Diff2LipQualityMetrics", "inputs": {"original": ["33", 0], "output": ["34", 0],
                                                                  "generated_mask": ["30", 1], "landmarks": False}},
    })
    result = server.run(prompt, timeout=900)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    metrics = json.loads(result["history"]["outputs"]["35"]["text"][0])
    assert metrics["psnr_full"] == float("inf") and metrics["max_abs_outside"] == 0.0  # bit-identical frames


def test_enhanced_image_workflows_keep_the_whole_clip_metrics(server):
    """The IMAGE-batch versions of the enhanced workflows (short clips) with the whole-clip metrics nodes."""
    clip = media.talking_clip(frames=16, fps=25.0, size=(160, 160))
    write_video(server.input / SAMPLE_VIDEO, clip.frames, 25.0, overwrite=True)
    write_wav(server.input / SAMPLE_SPEECH, media.speech_16k(seconds=0.5), 16000, overwrite=True)
    overrides = [f"{k}={json.dumps(v)}" for k, v in TINY_DIFF2LIP.items()] + ["Lip Sync.quality=\"fast\""]
    result = server.run(apply_overrides(load_api_workflow(WORKFLOWS / "diff2lip_enhanced_images_api.json"),
                                        overrides), timeout=900)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    frames, fps, _ = _saved_video(server, result)
    assert len(frames) == 16 and abs(fps - 25.0) < 1e-3
    sync = json.loads(result["history"]["outputs"]["17"]["text"][0])
    assert "syncnet_v2.model" in sync["lip_sync"]["absent"]  # no SyncNet weights in this server
    assert sync["av_offset_proxy"]["method"].startswith("proxy") and sync["psnr_outside"] > 40
    assert "flagged_frames" in sync["artifacts"] and "flagged_frames" in json.loads(
        result["history"]["outputs"]["18"]["text"][0])
    assert result["history"]["outputs"]["19"]["images"]  # the per-frame plot
    quality = json.loads(result["history"]["outputs"]["16"]["text"][0])
    assert quality["max_abs_outside"] < 1e-6  # outside the generated region the output equals the input
    result = server.run(load_api_workflow(WORKFLOWS / "gagavatar_enhanced_images_api.json"), timeout=900)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    metrics = json.loads(result["history"]["outputs"]["15"]["text"][0])
    assert metrics["frames"] == 5 and np.isfinite(metrics["psnr"]) and "absent" in metrics["lpips"]
    assert result["history"]["outputs"]["16"]["images"]
