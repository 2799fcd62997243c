"""Hostile and broken inputs: every case gets a clear error naming the node, the input and the fix, nothing is read or
written outside ComfyUI's folders, and no file can run code.

Cases that involve a prompt go through the real ComfyUI server (``comfy_server``); the hostile files are built here.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import random
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import gagavatar_synth as synth
from talkinghead.scripts.comfy_client import free_port

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN_ADVICE = "weights_only=False"


class _Marker:
    """A pickled object that would create ``path`` when unpickled by a plain unpickler."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


# ----------------------------------------------------------------------------------------------------------------
# helpers for prompts on the real server


def _with_defaults(server, prompt: dict) -> dict:
    """Required widget inputs the prompt leaves out get the server's defaults (nodes gain inputs over time)."""
    for node in prompt.values():
        spec = server.get(f"/object_info/{node['class_type']}")[node["class_type"]]["input"].get("required", {})
        for name, (kind, *options) in spec.items():
            extra = options[0] if options else {}
            if name in node["inputs"] or not isinstance(extra, dict):
                continue
            if "default" in extra:
                node["inputs"][name] = extra["default"]
            elif kind == "COMBO" and extra.get("options"):
                node["inputs"][name] = extra["options"][0]
    return prompt


def _outcome(server, prompt: dict, timeout: float = 300) -> tuple[str, str]:
    """('success', '') or ('error', 'node_type: exception message') of a prompt that passed validation."""
    result = server.run(_with_defaults(server, prompt), timeout=timeout)
    last = result["messages"][-1]
    if last["type"] == "execution_success":
        return "success", ""
    data = last.get("data", {})
    return "error", f"{data.get('node_type')}: {data.get('exception_message', '')}"


def _rejection(server, prompt: dict) -> str:
    """The validation message of a prompt the server refuses with HTTP 400."""
    status, body = server.queue(prompt)
    assert status == 400, body
    return json.dumps(body["node_errors"])


def _load_audio(name: str) -> dict:
    return {"1": {"class_type": "TalkingHeadLoadAudio", "inputs": {"audio": name}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _wav(path: Path, seconds: float = 0.5, value: float = 0.1) -> Path:
    soundfile.write(str(path), np.full(int(16000 * seconds), value, np.float32), 16000, subtype="FLOAT")
    return path


# ----------------------------------------------------------------------------------------------------------------
# reading: Load Audio


@pytest.mark.server
def test_load_audio_reads_only_regular_files_inside_the_input_folder(comfy_server):
    secret = _wav(comfy_server.base / "secret.wav")  # beside input/, not in it
    (comfy_server.input / "linked.wav").symlink_to(secret)
    (comfy_server.input / "zero.wav").symlink_to("/dev/zero")
    _wav(comfy_server.input / "speech.wav")

    messages = {}
    for name in ("missing.wav", "../secret.wav", str(secret), "linked.wav", "zero.wav", "/etc/passwd"):
        started = time.monotonic()
        messages[name] = _rejection(comfy_server, _load_audio(name))
        assert time.monotonic() - started < 10, f"{name}: validation must not read the file"
        assert "Load Audio (TalkingHead)" in messages[name] and "audio" in messages[name]
    # one message for missing and outside (no file-existence oracle): identical once the given name is removed
    shapes = {m.replace(json.dumps(n)[1:-1], "NAME") for n, m in messages.items()}
    assert len(shapes) == 1, shapes
    assert "is not a file inside" in messages["missing.wav"]
    assert _outcome(comfy_server, _load_audio("speech.wav")) == ("success", "")


@pytest.mark.server
def test_nan_audio_is_refused_naming_the_node_and_input(comfy_server):
    samples = np.full(8000, 0.1, np.float32)
    samples[100] = np.nan
    soundfile.write(str(comfy_server.input / "nan.wav"), samples, 16000, subtype="FLOAT")
    state, message = _outcome(comfy_server, _load_audio("nan.wav"))
    assert state == "error"
    assert "Load Audio (TalkingHead): input 'audio' holds 1 NaN/inf value(s) of 8000" in message


# ----------------------------------------------------------------------------------------------------------------
# reading: tracked drivers, their pickles and meta.json


def _driver_prompt(path: str, fps: float = 0.0) -> dict:
    return {"1": {"class_type": "GAGAvatarLoadTrackedDriver",
                  "inputs": {"driver_path": path, "fps": fps, "max_frames": 0, "output_frames": False}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 2]}}}


@pytest.mark.server
def test_tracked_driver_is_read_only_inside_the_input_folder(comfy_server, tmp_path):
    outside = comfy_server.base / "outside_driver"
    synth.write_synthetic_driver(outside, num_frames=3)
    (comfy_server.input / "linked_driver").symlink_to(outside)
    inside = comfy_server.input / "inside_driver"
    synth.write_synthetic_driver(inside, num_frames=3)
    sneaky = comfy_server.input / "sneaky_driver"  # a real folder whose pickle links outside
    sneaky.mkdir()
    (sneaky / "smoothed.pkl").symlink_to(outside / "smoothed.pkl")

    messages = {}
    for path in (str(outside), "../outside_driver", "linked_driver", "missing_driver", "/etc"):
        state, messages[path] = _outcome(comfy_server, _driver_prompt(path, fps=25.0))
        assert state == "error" and "Load Tracked Driver (GAGAvatar): input 'driver_path'" in messages[path]
    shapes = {m.replace(p, "NAME") for p, m in messages.items()}
    assert len(shapes) == 1, shapes
    state, message = _outcome(comfy_server, _driver_prompt("sneaky_driver", fps=25.0))
    assert state == "error" and "smoothed.pkl in that folder points outside" in message
    assert _outcome(comfy_server, _driver_prompt("inside_driver", fps=25.0)) == ("success", "")
    # a folder configured as 'gagavatar_tracked' in extra_model_paths.yaml (see conftest) is allowed too
    synth.write_synthetic_driver(comfy_server.base / "tracked_extra" / "configured_driver", num_frames=2)
    assert _outcome(comfy_server, _driver_prompt("configured_driver", fps=25.0)) == ("success", "")


@pytest.mark.server
@pytest.mark.parametrize("stored", [1000, "NaN", "fast", 0])
def test_bad_fps_in_meta_json_is_named(comfy_server, stored):
    folder = comfy_server.input / f"meta_{stored}"
    synth.write_synthetic_driver(folder, num_frames=2)
    (folder / "meta.json").write_text('{"fps": %s}' % (json.dumps(stored) if isinstance(stored, str) and stored != "NaN"
                                                        else stored))
    state, message = _outcome(comfy_server, _driver_prompt(folder.name))
    assert state == "error" and "Load Tracked Driver (GAGAvatar)" in message
    assert "meta.json" in message and "fps" in message and "1 to 240" in message
    assert _outcome(comfy_server, _driver_prompt(folder.name, fps=25.0)) == ("success", "")  # the input overrides it


@pytest.mark.server
def test_crafted_driver_pickles_never_run_code_or_expand(comfy_server, tmp_path):
    marker = tmp_path / "pwned"
    evil = comfy_server.input / "evil_driver"
    evil.mkdir()
    (evil / "smoothed.pkl").write_bytes(pickle.dumps({"x_0": {"expcode": _Marker(marker)}}, protocol=2))
    state, message = _outcome(comfy_server, _driver_prompt("evil_driver", fps=25.0))
    assert state == "error" and "refusing to load" in message and "system" in message
    assert not marker.exists()

    # 11 KB of shared nested lists that np.asarray would expand to gigabytes
    row = [0.0] * 1000
    block = [row] * 1000
    bomb = comfy_server.input / "bomb_driver"
    bomb.mkdir()
    payload = pickle.dumps({"x_0": {name: [block] * 1000 for name in ("expcode", "posecode", "eyecode",
                                                                       "transform_matrix")}}, protocol=2)
    assert len(payload) < 20_000
    (bomb / "smoothed.pkl").write_bytes(payload)
    started = time.monotonic()
    state, message = _outcome(comfy_server, _driver_prompt("bomb_driver", fps=25.0))
    assert state == "error" and "expands to more than" in message
    assert time.monotonic() - started < 30

    listed = comfy_server.input / "list_driver"  # a pickle of the wrong structure
    listed.mkdir()
    (listed / "smoothed.pkl").write_bytes(pickle.dumps([np.zeros(100, np.float32)], protocol=2))
    state, message = _outcome(comfy_server, _driver_prompt("list_driver", fps=25.0))
    assert state == "error" and "expected a non-empty dict of per-frame records" in message

    nan_driver = comfy_server.input / "nan_driver"
    truth = synth.write_synthetic_driver(nan_driver, num_frames=3)
    records = {key: {name: truth[name][i] for name in ("expcode", "posecode", "eyecode", "transform_matrix")}
               for i, key in enumerate(truth["keys"])}
    records[truth["keys"][1]]["expcode"] = np.full(100, np.nan, np.float32)
    (nan_driver / "smoothed.pkl").write_bytes(pickle.dumps(records, protocol=2))
    state, message = _outcome(comfy_server, _driver_prompt("nan_driver", fps=25.0))
    assert state == "error" and f"field 'expcode' holds NaN/inf in 1 frame(s), first '{truth['keys'][1]}'" in message

    deep = comfy_server.input / "deep_driver"
    deep.mkdir()
    (deep / "smoothed.pkl").write_bytes(b"\x80\x02" + b"]" * 200 + b"a" * 199 + b".")
    state, message = _outcome(comfy_server, _driver_prompt("deep_driver", fps=25.0))
    assert state == "error" and "nests deeper than 32 levels" in message


# ----------------------------------------------------------------------------------------------------------------
# writing: Save Tracked


@pytest.mark.server
def test_save_tracked_writes_strictly_inside_the_output_folder(comfy_server):
    synth.write_synthetic_driver(comfy_server.input / "save_source", num_frames=2)

    def save(name):
        return {"1": {"class_type": "GAGAvatarLoadTrackedDriver",
                      "inputs": {"driver_path": "save_source", "fps": 25.0, "max_frames": 0, "output_frames": False}},
                "2": {"class_type": "GAGAvatarSaveTracked", "inputs": {"driver": ["1", 0], "folder_name": name}}}

    before_base, before_output = set(os.listdir(comfy_server.base)), _tree(comfy_server.output)
    for name in ("", ".", "x/..", "..", "../escape", "/tmp/escape", "tracked/../../escape"):
        state, message = _outcome(comfy_server, save(name))
        assert state == "error" and "Save Tracked (GAGAvatar): input 'folder_name'" in message, (name, message)
        assert "must name a folder inside" in message
    assert set(os.listdir(comfy_server.base)) == before_base  # no output_0001 or escape beside output/
    assert _tree(comfy_server.output) == before_output
    assert not Path("/tmp/escape").exists()
    assert _outcome(comfy_server, save("tracked/ok")) == ("success", "")
    assert (comfy_server.output / "tracked" / "ok" / "smoothed.pkl").is_file()


# ----------------------------------------------------------------------------------------------------------------
# checkpoints


def _loader(name: str) -> dict:
    return {"1": {"class_type": "Diff2LipModelLoader",
                  "inputs": {"ckpt_name": name, "precision": "auto", "num_head_channels": 32}},
            "2": {"class_type": "Diff2LipModelInfo", "inputs": {"model": ["1", 0]}}}


@pytest.mark.server
def test_bad_checkpoints_get_a_clear_error_naming_node_and_file(comfy_server, diff2lip_fixtures, tmp_path):
    folder = comfy_server.models / "diff2lip"
    good = (diff2lip_fixtures / "tiny_unet.pt").read_bytes()
    marker = tmp_path / "pwned_by_checkpoint"
    (folder / "bad_empty.pt").write_bytes(b"")
    (folder / "bad_random.pt").write_bytes(random.Random(1).randbytes(4096))
    (folder / "bad_truncated.pt").write_bytes(good[: len(good) // 2])
    torch.save({"weight": torch.zeros(2), "hook": _Marker(marker)}, folder / "bad_code.pt")
    torch.save(synth.tiny_gagavatar_state_dict(num_vertices=16), folder / "bad_family.pt")
    expected = {"bad_empty.pt": "is empty (0 bytes)", "bad_random.pt": "is not a PyTorch checkpoint",
                "bad_truncated.pt": "is truncated or damaged", "bad_code.pt": "holds Python objects besides tensors",
                "bad_family.pt": "is not a Diff2Lip UNet checkpoint"}
    for name, phrase in expected.items():
        state, message = _outcome(comfy_server, _loader(name))
        assert state == "error", name
        assert message.startswith("Diff2LipModelLoader: Diff2Lip Model Loader: "), message
        assert name in message and phrase in message, message
        assert FORBIDDEN_ADVICE not in message and "weights_only" not in message
    assert not marker.exists()


@pytest.mark.server
def test_half_precision_checkpoint_loads_as_float32(comfy_server, diff2lip_fixtures):
    state = torch.load(diff2lip_fixtures / "tiny_unet.pt", weights_only=True)
    torch.save({"state_dict": {f"module.{k}": v.half() for k, v in state.items()}},
               comfy_server.models / "diff2lip" / "half_unet.pt")
    result = comfy_server.run(_with_defaults(comfy_server, _loader("half_unet.pt")), timeout=300)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    text = result["history"]["outputs"]["2"]["text"][0]
    assert "2,432,742 parameters" in text and "torch.float32" in text


def test_checkpoint_reader_messages_without_a_server(tmp_path, diff2lip_fixtures):
    from talkinghead.models.diff2lip import load_diff2lip
    from talkinghead.models.gagavatar import load_gagavatar
    from talkinghead.models.state_dict_file import CheckpointError, read_checkpoint

    good = (diff2lip_fixtures / "tiny_unet.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[:-300])  # the zip directory at the end is gone
    with pytest.raises(CheckpointError, match=r"GAGAvatar file .*cut\.pt is truncated or damaged"):
        load_gagavatar(tmp_path / "cut.pt")
    torch.save({"model": {"weight": torch.zeros(1)}, "epoch": 3}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt is not a Diff2Lip UNet checkpoint: none of its 1 tensors"):
        load_diff2lip(tmp_path / "other.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a S3FD state dict"):
        read_checkpoint(tmp_path / "list.pt", "S3FD")
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"weight": np.zeros(2)}, protocol=4))
    with pytest.raises(CheckpointError, match=r"plain\.pt is a plain Python pickle, not a PyTorch checkpoint"):
        read_checkpoint(tmp_path / "plain.pt", "Diff2Lip")
    torch.save({"weight": torch.ones(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert read_checkpoint(tmp_path / "legacy.pt", "x")["weight"].tolist() == [1.0, 1.0]  # pre-1.6 format still reads
    half = read_checkpoint({"a": torch.ones(2, dtype=torch.bfloat16)}, "x")
    assert half["a"].dtype == torch.float32


# ----------------------------------------------------------------------------------------------------------------
# NaN / inf in IMAGE and LATENT, and frame rates


def _nan_frames(count: int = 2, side: int = 64) -> dict:
    return {"10": {"class_type": "EmptyImage", "inputs": {"width": side, "height": side, "batch_size": count,
                                                          "color": 0}},
            "11": {"class_type": "ImageBlend", "inputs": {"image1": ["10", 0], "image2": ["10", 0],
                                                          "blend_factor": math.nan, "blend_mode": "normal"}}}


@pytest.mark.server
def test_nan_image_is_refused_naming_node_and_input(comfy_server):
    prompt = {**_nan_frames(),
              "1": {"class_type": "Diff2LipFaceDetectorLoader",
                    "inputs": {"detector": "BlazeFace short-range (built-in)", "min_confidence": 0.5, "max_side": 0}},
              "2": {"class_type": "Diff2LipCropFaces",
                    "inputs": {"frames": ["11", 0], "detector": ["1", 0], "crop_size": 128, "face": "largest",
                               "face_index": 0, "pad_top": 0, "pad_bottom": 10, "pad_left": 0, "pad_right": 0}},
              "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}
    state, message = _outcome(comfy_server, prompt)
    assert state == "error"
    assert "Diff2Lip Crop Faces: input 'frames' holds 24576 NaN/inf value(s) of 24576" in message


@pytest.mark.server
def test_nan_latent_is_refused_before_the_refiner_runs(comfy_server):
    from test_gagavatar_model import tiny_checkpoint

    torch.save(tiny_checkpoint(), comfy_server.models / "gagavatar" / "tiny_gagavatar.pt")
    prompt = {"1": {"class_type": "GAGAvatarModelLoader", "inputs": {"ckpt_name": "tiny_gagavatar.pt",
                                                                     "precision": "fp32"}},
              "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
              "3": {"class_type": "LatentMultiply", "inputs": {"samples": ["2", 0], "multiplier": math.nan}},
              "4": {"class_type": "GAGAvatarRefine", "inputs": {"model": ["1", 0], "splats": ["3", 0],
                                                                "reference_noise": False, "batch_size": 1}},
              "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}}}
    state, message = _outcome(comfy_server, prompt)
    assert state == "error" and "Refine (GAGAvatar): input 'splats' holds 256 NaN/inf value(s) of 256" in message


def _lipsync(fps_value, frames: int = 2, audio: str = "sync.wav") -> dict:
    return {"10": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": frames,
                                                          "color": 0}},
            "20": {"class_type": "TalkingHeadLoadAudio", "inputs": {"audio": audio}},
            "1": {"class_type": "Diff2LipModelLoader",
                  "inputs": {"ckpt_name": "tiny_unet.pt", "precision": "auto", "num_head_channels": 32}},
            "2": {"class_type": "Diff2LipFaceDetectorLoader",
                  "inputs": {"detector": "BlazeFace short-range (built-in)", "min_confidence": 0.5, "max_side": 0}},
            "3": {"class_type": "Diff2LipLipSync",
                  "inputs": {"frames": ["10", 0], "audio": ["20", 0], "fps": fps_value, "model": ["1", 0],
                             "detector": ["2", 0], "quality": "custom", "custom_steps": 2, "seed": 7,
                             "batch_size": 2, "face": "largest", "face_index": 0, "pad_top": 0, "pad_bottom": 10,
                             "pad_left": 0, "pad_right": 0, "close_mouth_in_silence": False,
                             "flow_guided_start": 0.0}},
            "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 3]}}}


@pytest.mark.server
@pytest.mark.parametrize("fps", [1000.0, math.nan, 0.5])
def test_fps_on_a_link_must_be_a_frame_rate(comfy_server, fps):
    _wav(comfy_server.input / "sync.wav")
    prompt = _lipsync(["30", 0])
    prompt["30"] = {"class_type": "PrimitiveFloat", "inputs": {"value": fps}}
    state, message = _outcome(comfy_server, prompt)
    assert state == "error"
    assert "Diff2Lip Lip Sync: input 'fps' is" in message and "from 1 to 240" in message


@pytest.mark.server
def test_one_frame_clip_is_synced_not_blamed_on_the_audio(comfy_server):
    _wav(comfy_server.input / "sync.wav")
    result = comfy_server.run(_with_defaults(comfy_server, _lipsync(25.0, frames=1)), timeout=300)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    report = json.loads(result["history"]["outputs"]["4"]["text"][0])
    # 1/25 s of audio is 4 mel frames, a window needs 16: before the padding this was "audio too short"
    assert report["frames"] == 1 and report["passed_through"] == 1  # an empty image has no face


def test_mel_windows_pad_a_clip_shorter_than_one_window():
    from talkinghead.pipelines.diff2lip import mel_windows, melspectrogram

    speech = np.sin(np.arange(640) * 0.3).astype(np.float32) * 0.5  # one 25-fps frame of audio: 4 mel frames
    mel = melspectrogram(speech)
    assert mel.shape[1] < 16
    windows = mel_windows(mel, fps=25.0, num_frames=1)
    assert windows.shape == (1, 80, 16)
    np.testing.assert_array_equal(windows[0, :, :mel.shape[1]], mel.astype(np.float32))
    assert (windows[0, :, mel.shape[1]:] == -4.0).all()  # the mel of silence
    with pytest.raises(ValueError, match="audio too short"):  # without a frame count the reference rule stays
        mel_windows(mel, fps=25.0)


def test_validation_helpers_directly(tmp_path):
    from talkinghead.pipelines.validation import check_audio, check_fps, output_folder_inside, resolve_inside

    assert check_fps(29.97, "N") == 29.97
    for bad in (0.99, 241, math.inf, -math.inf, math.nan, "x", None, True):
        with pytest.raises(ValueError, match="N: input 'fps' is"):
            check_fps(bad, "N")
    with pytest.raises(ValueError, match="sample rate 0"):
        check_audio({"waveform": torch.zeros(1, 1, 4), "sample_rate": 0}, "N")
    (tmp_path / "root").mkdir()
    with pytest.raises(ValueError):
        output_folder_inside(tmp_path / "root", "a/../..", "N", "folder")
    assert output_folder_inside(tmp_path / "root", "a/b", "N", "folder") == (tmp_path / "root" / "a" / "b").resolve()
    with pytest.raises(FileNotFoundError):
        resolve_inside([tmp_path / "root"], "", "N", "path")


# ----------------------------------------------------------------------------------------------------------------
# FLAME conversion from the command line; .npy landmarks without allow_pickle


def test_flame_convert_command_writes_the_model_and_never_runs_code(tmp_path):
    from talkinghead.models.flame import load_flame
    from talkinghead.weights.fetch import missing_message

    models = tmp_path / "models"
    flame = synth.synthetic_flame(num_vertices=20, num_faces=10, seed=2)
    synth.write_generic_model_pkl(tmp_path / "generic_model.pkl", flame)
    marker = tmp_path / "pwned_by_npy"
    np.save(tmp_path / "evil_embedding.npy", np.array([{"lmk_face_idx": _Marker(marker)}], dtype=object),
            allow_pickle=True)
    command = [sys.executable, str(REPO / "scripts" / "talkinghead.py"), "flame", "convert",
               str(tmp_path / "generic_model.pkl")]
    bad = subprocess.run([*command, str(tmp_path / "evil_embedding.npy"), "--models-dir", str(models)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "refusing to load" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "not_flame.pkl").write_bytes(pickle.dumps({"v_template": np.zeros((3, 3))}, protocol=2))
    wrong = subprocess.run([*command[:-1], str(tmp_path / "not_flame.pkl"), "--models-dir", str(models)],
                           capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 1 and "is not a FLAME model file: missing ['f', 'shapedirs'" in wrong.stderr
    assert not marker.exists() and not (models / "flame" / "FLAME_with_eye.pt").exists()

    good = subprocess.run([*command, "--models-dir", str(models)], capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    written = models / "flame" / "FLAME_with_eye.pt"
    assert load_flame(written).num_vertices == 20
    assert [p.name for p in (models / "flame").iterdir()] == ["FLAME_with_eye.pt"]  # no temp file left
    again = subprocess.run([*command, "--models-dir", str(models)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "flame convert /path/to/generic_model.pkl" in missing_message("flame_with_eye", tmp_path / "elsewhere")


def test_npy_header_is_parsed_and_plain_arrays_need_no_pickle(tmp_path):
    from talkinghead.models.flame import load_npy

    np.save(tmp_path / "plain.npy", np.arange(6, dtype=np.int64).reshape(2, 3))
    np.testing.assert_array_equal(load_npy(tmp_path / "plain.npy"), np.arange(6).reshape(2, 3))
    np.save(tmp_path / "dict.npy", {"lmk_face_idx": np.arange(3)}, allow_pickle=True)
    assert load_npy(tmp_path / "dict.npy").item()["lmk_face_idx"].tolist() == [0, 1, 2]
    (tmp_path / "fake.npy").write_bytes(b"\x93NUMPY\x01\x00" + b"\x10\x00" + b"__import__('os') ".ljust(16))
    with pytest.raises(ValueError, match="not a .npy file"):
        load_npy(tmp_path / "fake.npy")


# ----------------------------------------------------------------------------------------------------------------
# the weights command: pinned hashes, trust on first use, truncation, redirects


class _WeightsServer:
    """Serves ``files``; ``no_length`` paths are sent without Content-Length (``cut`` bytes only); ``redirects`` map a
    path to a Location."""

    def __init__(self):
        self.files, self.no_length, self.redirects, self.cut = {}, set(), {}, {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.end_headers()
                    return
                data = server.files.get(self.path)
                if data is None:
                    return self.send_error(404)
                self.send_response(200)
                if self.path not in server.no_length:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:server.cut.get(self.path, len(data))])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def weights_server():
    server = _WeightsServer()
    yield server
    server.close()


def _manifest(tmp_path, url: str, hosts=None) -> Path:
    entry = {"id": "blob", "title": "test blob", "filename": "blob.bin", "target": "diff2lip/", "url": url,
             "size": None, "sha256": None, "licence": "test", "consent": [], "features": ["test"], "optional": True,
             "download": True, "instructions": None}
    if hosts is not None:
        entry["hosts"] = hosts
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"entries": [entry]}))
    return path


def _weights(*args) -> int:
    from talkinghead.weights.fetch import main

    return main(list(args))


def test_unpinned_weights_need_the_flag_then_are_locked(tmp_path, weights_server, capsys):
    import hashlib

    payload = random.Random(3).randbytes(50_000)
    weights_server.files["/blob.bin"] = payload
    manifest, models = _manifest(tmp_path, weights_server.url + "/blob.bin"), tmp_path / "models"
    models.mkdir()
    common = ["--models-dir", str(models), "--manifest", str(manifest)]
    assert _weights("fetch", "blob", *common) == 1
    assert "--trust-on-first-use" in capsys.readouterr().err
    assert not (models / "diff2lip" / "blob.bin").exists()

    assert _weights("fetch", "blob", "--trust-on-first-use", *common) == 0
    digest = hashlib.sha256(payload).hexdigest()
    out = capsys.readouterr().out
    assert digest in out and "50000 bytes" in out
    lock = json.loads((models / "talkinghead_weights.lock.json").read_text())
    assert lock["entries"]["blob"] == {"filename": "blob.bin", "target": "diff2lip/", "size": 50000, "sha256": digest}
    assert _weights("verify", *common) == 0 and "verified" in capsys.readouterr().out

    (models / "diff2lip" / "blob.bin").write_bytes(payload[:-1] + b"x")  # same size, other content
    assert _weights("verify", *common) == 1 and "bad-checksum" in capsys.readouterr().out
    (models / "diff2lip" / "blob.bin").unlink()
    weights_server.files["/blob.bin"] = payload[:40_000]  # the source changed: the recorded size refuses it
    assert _weights("fetch", "blob", *common) == 1
    assert "40000 bytes but the manifest expects 50000" in capsys.readouterr().err
    assert not (models / "diff2lip" / "blob.bin").exists()


def test_a_transfer_without_declared_length_is_never_installed(tmp_path, weights_server, capsys):
    weights_server.files["/blob.bin"] = random.Random(4).randbytes(50_000)
    weights_server.no_length.add("/blob.bin")
    weights_server.cut["/blob.bin"] = 20_000  # the connection closes early; nothing tells the client
    manifest, models = _manifest(tmp_path, weights_server.url + "/blob.bin"), tmp_path / "models"
    assert _weights("fetch", "blob", "--trust-on-first-use", "--models-dir", str(models), "--manifest",
                    str(manifest)) == 1
    assert "did not declare the file's length" in capsys.readouterr().err
    assert not (models / "diff2lip" / "blob.bin").exists()
    assert not (models / "talkinghead_weights.lock.json").exists()


def test_redirects_are_followed_only_to_listed_hosts(tmp_path, weights_server, capsys):
    payload = random.Random(5).randbytes(10_000)
    weights_server.files["/real.bin"] = payload
    port = weights_server.httpd.server_address[1]
    weights_server.redirects["/blob.bin"] = f"http://localhost:{port}/real.bin"  # another host name, same server
    models = tmp_path / "models"
    manifest = _manifest(tmp_path, weights_server.url + "/blob.bin")
    args = ["fetch", "blob", "--trust-on-first-use", "--models-dir", str(models), "--manifest", str(manifest)]
    assert _weights(*args) == 1
    assert "redirects to http://localhost, which is not a host listed" in capsys.readouterr().err
    assert not (models / "diff2lip" / "blob.bin").exists()
    _manifest(tmp_path, weights_server.url + "/blob.bin", hosts=["localhost"])
    assert _weights(*args) == 0
    assert (models / "diff2lip" / "blob.bin").read_bytes() == payload


def test_real_manifest_lists_redirect_hosts_for_every_download():
    from talkinghead.weights.manifest import load_manifest

    for entry in load_manifest().values():
        if entry["download"]:
            assert entry.get("hosts"), entry["id"]


# ----------------------------------------------------------------------------------------------------------------
# the runner


def _runner(*args) -> int:
    from talkinghead.scripts.runner import main

    return main([str(a) for a in args])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_runner_usage_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert _runner(tmp_path / "absent_api.json") == 2
    assert "not found" in _one_line_error(capsys)
    (tmp_path / "broken.json").write_text('{"1": {"class_type": ')
    assert _runner(tmp_path / "broken.json") == 2
    assert "is not valid JSON (line 1" in _one_line_error(capsys)
    (tmp_path / "list.json").write_text("[1, 2]")
    assert _runner(tmp_path / "list.json") == 2
    assert "is not an API-format workflow" in _one_line_error(capsys)
    workflow = REPO / "workflows" / "diff2lip_api.json"
    node_id, node = next((k, v) for k, v in json.loads(workflow.read_text()).items()
                         if v["class_type"] == "Diff2LipLipSyncStream")
    assert _runner(workflow, "--set", f"{node_id}.sed=3", "--models-dir", tmp_path) == 2
    err = _one_line_error(capsys)
    assert f"node {node_id} (Diff2LipLipSyncStream) has no input 'sed'" in err and "seed" in err and "stream" in err
    assert _runner(workflow, "--set", "NoSuchNode.seed=3", "--models-dir", tmp_path) == 2
    assert "matches 0 nodes" in _one_line_error(capsys)
    assert _runner(workflow, "--input", tmp_path / "absent.wav", "--models-dir", tmp_path) == 2
    assert "absent.wav: not a file" in _one_line_error(capsys)


def test_runner_reports_unreachable_and_foreign_servers(tmp_path, capsys, weights_server):
    workflow = REPO / "workflows" / "diff2lip_api.json"
    assert _runner(workflow, "--url", f"http://127.0.0.1:{free_port()}", "--output-dir", tmp_path) == 2
    assert "cannot reach ComfyUI at" in _one_line_error(capsys)
    assert _runner(workflow, "--url", weights_server.url, "--output-dir", tmp_path) == 2  # answers 404
    assert "does not answer like a ComfyUI server" in _one_line_error(capsys)
    weights_server.files["/object_info"] = b"<html>hello</html>"
    assert _runner(workflow, "--url", weights_server.url, "--output-dir", tmp_path) == 2
    assert "does not answer like a ComfyUI server" in _one_line_error(capsys)


def test_output_names_from_a_server_are_reduced_to_base_names(tmp_path, weights_server):
    from talkinghead.scripts.comfy_client import ComfyClient
    from talkinghead.scripts.runner import fetch_outputs

    weights_server.files["/view?filename=..%2F..%2Fescape.txt&subfolder=&type=output"] = b"data"
    out = tmp_path / "a" / "out"
    saved = fetch_outputs(ComfyClient(weights_server.url),
                          [{"filename": "../../escape.txt"}, {"filename": ".."}], out)
    assert saved == [out / "escape.txt"] and (out / "escape.txt").read_bytes() == b"data"
    assert not (tmp_path / "escape.txt").exists() and sorted(os.listdir(tmp_path / "a")) == ["out"]


@pytest.mark.server
def test_runner_unknown_node_and_input_on_a_real_server(comfy_server, tmp_path, capsys):
    workflow = tmp_path / "w_api.json"
    workflow.write_text(json.dumps({"1": {"class_type": "NoSuchNode", "inputs": {}}}))
    assert _runner(workflow, "--url", comfy_server.url, "--output-dir", tmp_path) == 2
    assert "has no node NoSuchNode" in _one_line_error(capsys)
    workflow.write_text(json.dumps(_load_audio("speech.wav")))
    assert _runner(workflow, "--url", comfy_server.url, "--set", "1.audio_file=x", "--output-dir", tmp_path) == 2
    assert "has no input 'audio_file'; its inputs: audio" in _one_line_error(capsys)


@pytest.mark.server
def test_runner_timeout_interrupts_its_prompt_on_the_server(comfy_server, tmp_path, capsys):
    frames = 40
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 384, "height": 384, "batch_size": frames,
                                                           "color": 0xFF2040}},
              "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "red"}},
              "3": {"class_type": "Diff2LipDenoiseRegion", "inputs": {"frames": ["1", 0], "mask": ["2", 0],
                                                                      "method": "nlm", "strength": 0.7}},
              "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}}
    workflow = tmp_path / "slow_api.json"
    workflow.write_text(json.dumps(prompt))
    started = time.monotonic()
    assert _runner(workflow, "--url", comfy_server.url, "--timeout", 3, "--output-dir", tmp_path / "out") == 2
    assert time.monotonic() - started < 15
    assert "it was interrupted on the server" in capsys.readouterr().err
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        queue = comfy_server.get("/queue")
        if not queue["queue_running"] and not queue["queue_pending"]:
            break
        time.sleep(0.2)
    stopped_after = time.monotonic() - started
    history = comfy_server.get("/history")
    entry = max(history.values(), key=lambda e: e["prompt"][0])  # the latest prompt
    kinds = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds and "execution_success" not in kinds, kinds
    assert stopped_after < 30, f"the prompt kept running {stopped_after:.0f}s after the runner gave up"
