"""The command-line runner: overrides, missing-weights pre-flight, and a whole run on an embedded ComfyUI."""
from __future__ import annotations

import shutil

import pytest

from talkinghead.pipelines.media import read_video
from talkinghead.scripts.build_workflows import WORKFLOWS, diff2lip_enhanced
from talkinghead.scripts.runner import (ProgressPrinter, apply_overrides, load_api_workflow, main,
                                       missing_model_files, point_loaders)


def test_overrides_address_nodes_by_id_title_or_unique_class():
    prompt = diff2lip_enhanced()
    out = apply_overrides(prompt, ["7.seed=11", "Diff2Lip Model.ckpt_name=mine.pt", "Diff2LipSharpenStream.strength=0.5",
                                   'Lip Sync.quality="ultra"'])
    assert out["7"]["inputs"]["seed"] == 11 and out["7"]["inputs"]["quality"] == "ultra"
    assert out["5"]["inputs"]["ckpt_name"] == "mine.pt" and out["13"]["inputs"]["strength"] == 0.5
    assert prompt["7"]["inputs"]["seed"] == 7  # the original graph is not modified
    with pytest.raises(SystemExit, match="matches 0 nodes"):
        apply_overrides(prompt, ["NoSuchNode.seed=1"])
    with pytest.raises(SystemExit, match="NODE.INPUT=VALUE"):
        apply_overrides(prompt, ["seed=1"])


def test_ui_format_is_refused_with_a_pointer_to_the_api_file():
    with pytest.raises(SystemExit, match="UI-format"):
        load_api_workflow(WORKFLOWS / "diff2lip.json")


def test_missing_weights_stop_before_any_server_starts(tmp_path, capsys):
    assert main([str(WORKFLOWS / "diff2lip_enhanced_api.json"), "--models-dir", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "checkpoint.pt" in err and "RealESRGAN_x2plus.pth" in err
    assert "weights fetch diff2lip --accept-licence cc-by-nc-4.0" in err
    found = missing_model_files(load_api_workflow(WORKFLOWS / "gagavatar_api.json"), tmp_path)
    assert len(found) == 2 and "FLAME" in found[1]


@pytest.mark.server
def test_runner_runs_the_plain_workflow_on_sample_media(tmp_path, diff2lip_fixtures, capsys):
    models = tmp_path / "models"
    (models / "diff2lip").mkdir(parents=True)
    shutil.copy(diff2lip_fixtures / "tiny_unet.pt", models / "diff2lip" / "checkpoint.pt")
    out_dir = tmp_path / "out"
    rc = main([str(WORKFLOWS / "diff2lip_api.json"), "--models-dir", str(models), "--sample-media",
               "--output-dir", str(out_dir), "--set", "Diff2Lip Model.num_head_channels=32",
               "--set", 'Lip Sync.quality="fast"', "--sample-seconds", "1.0", "--timeout", "900"])
    assert rc == 0, capsys.readouterr().err
    videos = list(out_dir.glob("*.mp4"))
    assert len(videos) == 1
    frames, fps, audio = read_video(videos[0])
    assert len(frames) == 25 and abs(fps - 25.0) < 1e-3 and audio is not None
    assert f"output: {videos[0]}" in capsys.readouterr().out


def test_user_files_are_set_on_the_workflows_loaders():
    prompt = load_api_workflow(WORKFLOWS / "diff2lip_enhanced_api.json")
    assert point_loaders(prompt, "video", "me.mov") == ["1"] and prompt["1"]["inputs"]["video"] == "me.mov"
    assert point_loaders(prompt, "audio", "talk.m4a") == ["3"] and prompt["3"]["inputs"]["audio"] == "talk.m4a"
    with pytest.raises(SystemExit, match="--source: this workflow has no source loader"):
        point_loaders(prompt, "source", "face.png")
    images = load_api_workflow(WORKFLOWS / "gagavatar_from_images_api.json")
    assert point_loaders(images, "source", "face.png") == ["3"] and images["3"]["inputs"]["image"] == "face.png"
    assert point_loaders(images, "video", "drive.mp4") == ["4"] and images["4"]["inputs"]["file"] == "drive.mp4"


def test_missing_user_file_stops_before_any_server_starts(tmp_path, capsys):
    assert main([str(WORKFLOWS / "diff2lip_api.json"), "--video", str(tmp_path / "nope.mp4")]) == 2
    err = capsys.readouterr().err
    assert "--video" in err and "no such file" in err


def test_progress_shows_frames_and_an_eta_for_the_stream_sink():
    now = [100.0]
    printer = ProgressPrinter(load_api_workflow(WORKFLOWS / "diff2lip_api.json"), clock=lambda: now[0])
    printer(None, {"type": "executing", "data": {"node": "14"}})
    now[0] += 30.0  # 30 s for the first 250 of 1000 frames -> 90 s left
    assert printer.line(250, 1000).split() == ["250/1000", "frames", "25%", "ETA", "1m30s"]
    assert "ETA" not in printer.line(1000, 1000)


@pytest.mark.server
def test_runner_runs_a_bundled_workflow_on_the_users_own_clip_and_speech(tmp_path, diff2lip_fixtures, capsys):
    import numpy as np

    import media
    from talkinghead.pipelines.media import write_video, write_wav
    from talkinghead.pipelines.stream import probe_video

    models = tmp_path / "models"
    (models / "diff2lip").mkdir(parents=True)
    shutil.copy(diff2lip_fixtures / "tiny_unet.pt", models / "diff2lip" / "checkpoint.pt")
    clip = write_video(tmp_path / "my clip.mp4", media.talking_clip(frames=12, size=(128, 128)).frames, 29.97)
    speech = write_wav(tmp_path / "my speech.wav", media.speech_16k(seconds=0.3), 16000)
    out_dir = tmp_path / "out"
    rc = main([str(WORKFLOWS / "diff2lip_api.json"), "--video", str(clip), "--audio", str(speech),
               "--models-dir", str(models), "--output-dir", str(out_dir),
               "--set", "Diff2Lip Model.num_head_channels=32", "--set", 'Lip Sync.quality="fast"',
               "--timeout", "900"])
    out = capsys.readouterr().out
    assert rc == 0
    videos = list(out_dir.glob("*.mp4"))
    assert len(videos) == 1
    probe = probe_video(videos[0])
    assert probe.num_frames == 12 and probe.fps == probe_video(clip).fps
    frames, _, audio = read_video(videos[0])
    assert audio["sample_rate"] == 16000 and abs(audio["waveform"].shape[-1] / 16000 - 12 / 29.97) < 0.03
    assert "12/12 frames" in out or "running node 14 (Encode Video)" in out
    assert np.abs(frames.astype(int) - read_video(clip)[0].astype(int)).max() > 0  # something was synced
