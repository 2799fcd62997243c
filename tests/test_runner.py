"""The command-line runner: overrides, missing-weights pre-flight, and a whole run on an embedded ComfyUI."""
from __future__ import annotations

import shutil

import pytest

from talkinghead.pipelines.media import read_video
from talkinghead.scripts.build_workflows import WORKFLOWS, diff2lip_enhanced
from talkinghead.scripts.runner import apply_overrides, load_api_workflow, main, missing_model_files


def test_overrides_address_nodes_by_id_title_or_unique_class():
    prompt = diff2lip_enhanced()
    out = apply_overrides(prompt, ["7.seed=11", "Diff2Lip Model.ckpt_name=mine.pt", "Diff2LipSharpen.strength=0.5",
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
