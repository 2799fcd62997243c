"""The metrics nodes in a real ComfyUI server: SyncNet found in models/syncnet is used, a bad input names the node."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import media
from syncnet_synth import seeded_state
from talkinghead.pipelines.media import write_video, write_wav

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(comfy_server):
    folder = comfy_server.models / "syncnet"
    folder.mkdir(exist_ok=True)
    torch.save(seeded_state(), folder / "syncnet_v2.model")
    clip = media.talking_clip(frames=14, fps=25.0, size=(160, 160))
    write_video(comfy_server.input / "metrics_clip.mp4", clip.frames, 25.0, overwrite=True)
    write_wav(comfy_server.input / "metrics_speech.wav", media.tone(220.0, 14 / 25.0), 16000, overwrite=True)
    yield comfy_server
    (folder / "syncnet_v2.model").unlink()  # the server is shared: other tests expect no SyncNet weights


def _prompt(syncnet: str, fps: float = 25.0) -> dict:
    return {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "metrics_clip.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "TalkingHeadLoadAudio", "inputs": {"audio": "metrics_speech.wav"}},
        "4": {"class_type": "ImageToMask", "inputs": {"image": ["2", 0], "channel": "red"}},
        "5": {"class_type": "Diff2LipSyncMetrics",
              "inputs": {"original": ["2", 0], "output": ["2", 0], "audio": ["3", 0], "generated_mask": ["4", 0],
                         "fps": fps, "syncnet": syncnet}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 1]}},
    }


def test_lip_sync_metrics_use_syncnet_from_the_model_folder(server):
    result = server.run(_prompt("auto"), timeout=600)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    report = json.loads(result["history"]["outputs"]["5"]["text"][0])
    lip_sync = report["lip_sync"]
    assert "absent" not in lip_sync, lip_sync
    assert lip_sync["windows"] == 9 and np.isfinite(lip_sync["lse_d"]) and lip_sync["lse_c"] >= 0
    assert report["psnr_outside"] == float("inf")  # output = original
    assert result["history"]["outputs"]["6"]["images"]
    off = json.loads(server.run(_prompt("none"), timeout=600)["history"]["outputs"]["5"]["text"][0])
    assert off["lip_sync"] == {"absent": "switched off (syncnet = none)"}


def test_bad_fps_is_refused_naming_the_node(server):
    result = server.run(_prompt("none", fps=float("nan")), timeout=120)
    assert result["messages"][-1]["type"] == "execution_error"
    assert "Lip-Sync Metrics" in result["messages"][-1]["data"]["exception_message"]
