"""The pack inside a real ComfyUI 0.3.75 server, driven through its HTTP API and websocket."""
from __future__ import annotations

import re

import pytest

PACK_DIR_NAME = "ComfyUI-TalkingHead.test"  # dashes and a dot: users rename the folder

pytestmark = pytest.mark.server

EXPECTED_NODES = {
    "TalkingHeadLoadAudio": ({"audio"}, ["AUDIO"]),
    "Diff2LipModelLoader": ({"ckpt_name", "precision", "num_head_channels"}, ["DIFF2LIP_MODEL"]),
    "Diff2LipModelInfo": ({"model"}, ["STRING"]),
    "Diff2LipUpscalerLoader": ({"model_name", "backend"}, ["UPSCALE_MODEL"]),
    "Diff2LipFaceDetectorLoader": ({"detector", "min_confidence", "max_side"}, ["DIFF2LIP_FACE_DETECTOR"]),
    "Diff2LipLipSync": ({"frames", "audio", "fps", "model", "detector", "quality", "custom_steps", "seed",
                         "batch_size", "face", "face_index", "paste", "close_mouth_in_silence", "upscale_model",
                         "sampling_mask"},
                        ["IMAGE", "AUDIO", "MASK", "STRING"]),
    "Diff2LipCropFaces": ({"frames", "detector", "crop_size", "face", "pad_bottom"}, ["DIFF2LIP_CROPS", "IMAGE"]),
    "Diff2LipSampleFaces": ({"crops", "audio", "fps", "model", "quality", "seed"}, ["DIFF2LIP_CROPS", "IMAGE"]),
    "Diff2LipPasteFaces": ({"frames", "crops", "faces", "paste", "upscale_model"}, ["IMAGE", "MASK"]),
    "Diff2LipAudioCleanup": ({"audio", "denoise", "compress", "target_lufs", "offset_ms"}, ["AUDIO"]),
    "Diff2LipLipMaskComposite": ({"original", "generated", "generated_mask", "mode", "expansion", "feather",
                                  "adaptive_gain", "landmarks"}, ["IMAGE", "MASK"]),
    "Diff2LipColorMatch": ({"original", "generated", "mask", "method", "white_balance"}, ["IMAGE"]),
    "Diff2LipTemporalSmooth": ({"frames", "mask", "strength", "method"}, ["IMAGE"]),
    "Diff2LipDenoiseRegion": ({"frames", "mask", "method", "strength"}, ["IMAGE"]),
    "Diff2LipSharpen": ({"frames", "mask", "strength", "sigma"}, ["IMAGE"]),
    "Diff2LipQualityMetrics": ({"original", "output", "generated_mask", "composite_mask"}, ["STRING"]),
    "GAGAvatarModelLoader": ({"ckpt_name", "precision"}, ["GAGAVATAR_MODEL"]),
    "GAGAvatarFLAMELoader": ({"flame_name"}, ["FLAME_MODEL"]),
    "GAGAvatarLoadTrackedDriver": ({"driver_path", "fps", "max_frames", "output_frames"}, ["GAGAVATAR_DRIVER", "IMAGE", "FLOAT"]),
    "GAGAvatarLoadTrackedSource": ({"source_path", "frame_index"}, ["GAGAVATAR_SOURCE", "IMAGE"]),
    "GAGAvatarEncodeSource": ({"model", "source"}, ["GAGAVATAR_AVATAR"]),
    "GAGAvatarAnimate": ({"model", "flame", "avatar", "driver", "batch_size", "rasterizer"}, ["LATENT", "MASK"]),
    "GAGAvatarRefine": ({"model", "splats", "reference_noise"}, ["IMAGE"]),
    "GAGAvatarAnimateImages": ({"model", "flame", "source", "driver"}, ["IMAGE", "FLOAT"]),
    "GAGAvatarSmoothDriver": ({"driver", "method", "ema_alpha", "noise_ratio"}, ["GAGAVATAR_DRIVER"]),
    "GAGAvatarRegionExpression": ({"driver", "flame", "mouth_weight", "blend"}, ["GAGAVATAR_DRIVER"]),
    "GAGAvatarGazeCorrect": ({"driver", "flame", "strength", "source"}, ["GAGAVATAR_DRIVER"]),
    "GAGAvatarDetailEnhance": ({"frames", "strength", "face_mask"}, ["IMAGE"]),
    "GAGAvatarEyeEnhance": ({"frames", "driver", "flame", "strength"}, ["IMAGE"]),
    "GAGAvatarEnhancedAnimate": ({"model", "flame", "source", "driver", "preset"}, ["IMAGE", "FLOAT"]),
    "GAGAvatarTrackerLoader": ({"matting", "face_box", "flame"}, ["GAGAVATAR_TRACKER"]),
    "GAGAvatarTrackPortrait": ({"tracker", "image", "steps"}, ["GAGAVATAR_SOURCE", "IMAGE"]),
    "GAGAvatarTrackVideo": ({"tracker", "frames", "fps", "drop_high_fps", "steps"},
                            ["GAGAVATAR_DRIVER", "IMAGE", "FLOAT", "STRING"]),
    "GAGAvatarSaveTracked": ({"driver", "folder_name"}, ["STRING"]),
    "Diff2LipSyncMetrics": ({"original", "output", "audio", "generated_mask", "fps", "syncnet", "composite_mask"},
                            ["STRING", "IMAGE", "FLOAT"]),
    "Diff2LipArtifactCheck": ({"frames", "mask", "replace", "blockiness_limit", "spike_mads"}, ["IMAGE", "STRING"]),
    "GAGAvatarSelfReenactMetrics": ({"driver_frames", "rendered"}, ["STRING", "IMAGE"]),
    "TalkingHeadSaveFramesLossless": ({"images", "fps", "filename_prefix", "keep_start", "keep_count"}, []),
    # frame streams (long clips in bounded memory)
    "TalkingHeadLoadVideoStream": ({"video", "start_frame", "frame_count"},
                                   ["TALKINGHEAD_FRAME_STREAM", "AUDIO", "FLOAT", "INT"]),
    "TalkingHeadImagesToStream": ({"images", "audio", "fps"}, ["TALKINGHEAD_FRAME_STREAM"]),
    "TalkingHeadStreamToImages": ({"stream", "chunk_size"}, ["IMAGE", "MASK", "AUDIO", "FLOAT"]),
    "TalkingHeadEncodeStream": ({"stream", "audio", "codec", "crf", "chunk_size"}, ["VIDEO", "STRING"]),
    "Diff2LipLipSyncStream": ({"stream", "audio", "model", "detector", "quality", "custom_steps", "seed", "batch_size",
                               "face", "face_index", "paste", "close_mouth_in_silence", "max_gap", "upscale_model"},
                              ["TALKINGHEAD_FRAME_STREAM", "AUDIO"]),
    "Diff2LipLipMaskCompositeStream": ({"stream", "mode", "expansion", "feather", "adaptive_gain", "landmarks",
                                        "smooth_window"}, ["TALKINGHEAD_FRAME_STREAM"]),
    "Diff2LipColorMatchStream": ({"stream", "method", "white_balance", "band_px"}, ["TALKINGHEAD_FRAME_STREAM"]),
    "Diff2LipTemporalSmoothStream": ({"stream", "strength", "method"}, ["TALKINGHEAD_FRAME_STREAM"]),
    "Diff2LipDenoiseRegionStream": ({"stream", "method", "strength"}, ["TALKINGHEAD_FRAME_STREAM"]),
    "Diff2LipSharpenStream": ({"stream", "strength", "sigma"}, ["TALKINGHEAD_FRAME_STREAM"]),
    "GAGAvatarAnimateStream": ({"model", "flame", "avatar", "driver", "batch_size", "reference_noise", "rasterizer"},
                               ["TALKINGHEAD_FRAME_STREAM", "FLOAT"]),
    "GAGAvatarDetailEnhanceStream": ({"stream", "strength", "inside_alpha"}, ["TALKINGHEAD_FRAME_STREAM"]),
    "GAGAvatarEyeEnhanceStream": ({"stream", "driver", "flame", "source", "strength"}, ["TALKINGHEAD_FRAME_STREAM"]),
}


def test_pack_imports_without_errors(comfy_server):
    log = comfy_server.log()
    pack_lines = [line for line in log.splitlines() if PACK_DIR_NAME in line]
    assert pack_lines, f"the pack was not loaded at all:\n{log[-3000:]}"
    assert not any("IMPORT FAILED" in line for line in pack_lines), "\n".join(pack_lines)


def test_every_node_is_registered_with_its_sockets(comfy_server):
    info = comfy_server.get("/object_info")
    ours = {name for name, node in info.items() if PACK_DIR_NAME in node.get("python_module", "")}
    assert ours == set(EXPECTED_NODES), f"unexpected: {ours - set(EXPECTED_NODES)}, missing: {set(EXPECTED_NODES) - ours}"
    for node_id, (inputs, outputs) in EXPECTED_NODES.items():
        assert node_id in info, f"{node_id} missing from /object_info"
        declared = info[node_id]["input"]
        names = set(declared.get("required", {})) | set(declared.get("optional", {}))
        assert inputs <= names, f"{node_id}: inputs {sorted(names)} lack {sorted(inputs - names)}"
        assert info[node_id]["output"] == outputs
        assert info[node_id]["description"], f"{node_id} has no description"
        for name, spec in {**declared.get("required", {}), **declared.get("optional", {})}.items():
            if spec[0] in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO") and len(spec) > 1:
                assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_loader_lists_model_folder_and_runs_through_prompt(comfy_server):
    info = comfy_server.get("/object_info/Diff2LipModelLoader")["Diff2LipModelLoader"]
    spec = info["input"]["required"]["ckpt_name"]
    options = spec[1]["options"] if spec[0] == "COMBO" else spec[0]  # V3 schemas send ["COMBO", {"options": [...]}]
    assert "tiny_unet.pt" in options
    prompt = {
        "1": {"class_type": "Diff2LipModelLoader",
              "inputs": {"ckpt_name": "tiny_unet.pt", "precision": "auto", "num_head_channels": 32}},
        "2": {"class_type": "Diff2LipModelInfo", "inputs": {"model": ["1", 0]}},
    }
    result = comfy_server.run(prompt, timeout=300)
    kinds = [m["type"] for m in result["messages"]]
    assert kinds[-1] == "execution_success", result["messages"][-1]
    assert result["history"]["status"]["status_str"] == "success"
    text = result["history"]["outputs"]["2"]["text"][0]
    params = int(re.search(r"([\d,]+) parameters", text).group(1).replace(",", ""))
    assert params == 2_432_742  # element count of the tiny official-format checkpoint (fixtures README)
    assert "model_channels = 32" in text and "level_channels = (32, 64)" in text  # channel_mult (1,2), read from the tensors
    again = comfy_server.run(prompt, timeout=60)
    cached = [m for m in again["messages"] if m["type"] == "execution_cached"]
    assert cached and set(cached[0]["data"]["nodes"]) == {"1", "2"}


def test_missing_combo_value_and_wrong_link_type_are_rejected(comfy_server):
    status, body = comfy_server.queue({
        "1": {"class_type": "Diff2LipModelLoader",
              "inputs": {"ckpt_name": "missing.pt", "precision": "auto", "num_head_channels": 64}},
        "2": {"class_type": "Diff2LipModelInfo", "inputs": {"model": ["1", 0]}},
    })
    # 0.3.75 does not check V3 combo values itself; the loader's validate_inputs does, naming the file and the fix.
    assert status == 400, body
    message = str(body["node_errors"]["1"])
    assert "missing.pt" in message and "talkinghead.py weights list" in message
    status, body = comfy_server.queue({
        "1": {"class_type": "Diff2LipModelLoader",
              "inputs": {"ckpt_name": "checkpoint.pt", "precision": "auto", "num_head_channels": 64}},
        "2": {"class_type": "Diff2LipModelInfo", "inputs": {"model": ["1", 0]}},
    })
    assert status == 400 and "weights fetch diff2lip --accept-licence cc-by-nc-4.0" in str(body["node_errors"]["1"])
    status, body = comfy_server.queue({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "Diff2LipModelInfo", "inputs": {"model": ["1", 0]}},
    })
    assert status == 400
    errors = body["node_errors"]["2"]
    assert errors["class_type"] == "Diff2LipModelInfo"
    assert any(e["type"] == "return_type_mismatch" for e in errors["errors"]), errors
