"""SyncNet and the LSE-C / LSE-D evaluation against the reference fixtures (tests/fixtures/syncnet, produced by
joonson/syncnet_python's own code with seeded weights)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

import syncnet_synth

from talkinghead.models.syncnet import SyncNet, load_syncnet
from talkinghead.pipelines.metrics.lip_sync import mfcc, syncnet_scores, to_int16, window_count

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def recipe(fixtures_dir):
    return json.loads((fixtures_dir / "syncnet" / "syncnet_seeded_weights_recipe.json").read_text())


@pytest.fixture(scope="module")
def seeded_state(recipe):
    return syncnet_synth.seeded_state(recipe)


@pytest.fixture(scope="module")
def seeded_model(seeded_state):
    return load_syncnet(seeded_state)


@pytest.fixture(scope="module")
def eval_case(fixtures_dir):
    with np.load(fixtures_dir / "syncnet" / "syncnet_eval_case.npz") as data:
        return {key: data[key] for key in data.files}


def test_regenerated_weights_match_the_recipe_hashes(recipe, seeded_state):
    assert len(seeded_state) == len(recipe["tensors"]) == 88
    for entry in recipe["tensors"]:
        digest = hashlib.sha256(seeded_state[entry["key"]].numpy().tobytes()).hexdigest()
        assert digest == entry["sha256_float32"], entry["key"]


def test_state_dict_layout_equals_the_release(fixtures_dir):
    manifest = json.loads((fixtures_dir / "syncnet" / "syncnet_keys.json").read_text())["keys"]
    state = SyncNet().state_dict()
    assert [(k, list(v.shape)) for k, v in state.items()] == [(e["key"], e["shape"]) for e in manifest]


def test_loads_a_saved_state_dict_file_without_num_batches_tracked(tmp_path, seeded_state):
    path = tmp_path / "syncnet_v2.model"
    torch.save(seeded_state, path)
    model = load_syncnet(str(path))
    assert not model.training
    assert torch.equal(model.state_dict()["netcnnlip.18.weight"], seeded_state["netcnnlip.18.weight"])


def test_unknown_or_missing_keys_are_refused(seeded_state):
    with pytest.raises(KeyError, match="does not know"):
        load_syncnet({**seeded_state, "module.extra": torch.zeros(1)})
    partial = dict(seeded_state)
    del partial["netfclip.3.weight"]
    with pytest.raises(KeyError, match="lack"):
        load_syncnet(partial)


def test_forward_matches_the_reference(fixtures_dir, seeded_model):
    with np.load(fixtures_dir / "syncnet" / "syncnet_tiny_forward.npz") as data:
        case = {key: data[key] for key in data.files}
    lip_in = torch.from_numpy(case["lip_in_uint8"]).float()
    with torch.no_grad():
        aud = seeded_model.forward_aud(torch.from_numpy(case["aud_in"]))
        lip = seeded_model.forward_lip(lip_in)
        lipfeat = seeded_model.forward_lipfeat(lip_in)
    np.testing.assert_allclose(aud.numpy(), case["aud_out"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(lip.numpy(), case["lip_out"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(lipfeat.numpy(), case["lipfeat_out"], atol=1e-4, rtol=0)
    assert np.abs(case["lip_out"]).max() > 0.1  # the case is not degenerate


def test_mfcc_equals_python_speech_features(eval_case):
    ours = mfcc(eval_case["wav"], 16000).T
    assert ours.shape == eval_case["mfcc"].shape == (13, 199)
    np.testing.assert_allclose(ours, eval_case["mfcc"], rtol=1e-9, atol=0)
    # scaling the samples to [-1, 1] changes c0 (log energy): the trap the reference data would catch
    scaled = mfcc(eval_case["wav"] / 32768.0, 16000).T
    assert np.abs(scaled[0] - eval_case["mfcc"][0]).min() > 1.0


def test_evaluation_matches_the_reference_end_to_end(seeded_model, eval_case):
    result = syncnet_scores(seeded_model, eval_case["frames_bgr"], eval_case["wav"], sample_rate=16000,
                            vshift=int(eval_case["vshift"]), batch_size=int(eval_case["batch_size"]))
    assert result["num_windows"] == int(eval_case["num_windows"]) == 45
    np.testing.assert_allclose(result["lip_embeddings"], eval_case["im_feat"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(result["audio_embeddings"], eval_case["cc_feat"], atol=1e-4, rtol=0)
    assert result["dists"].shape == (45, 31)
    np.testing.assert_allclose(result["dists"], eval_case["dists"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(result["mean_dist"], eval_case["mean_dist"], atol=1e-3, rtol=0)
    assert result["offset"] == int(eval_case["offset"])
    assert result["lse_d"] == pytest.approx(float(eval_case["lse_d"]), abs=1e-3)
    assert result["lse_c"] == pytest.approx(float(eval_case["lse_c"]), abs=1e-3)
    assert result["median_dist"] == pytest.approx(float(eval_case["median_dist"]), abs=1e-3)
    np.testing.assert_allclose(result["frame_conf_medfilt"], eval_case["frame_conf_medfilt"], atol=1e-3, rtol=0)


def test_zero_padded_shifts_count_in_the_mean(seeded_model, eval_case):
    """Averaging only the valid pairs (a common re-implementation) would give another mean at the edge shifts."""
    result = syncnet_scores(seeded_model, eval_case["frames_bgr"][:12], eval_case["wav"][:12 * 640], vshift=3)
    dists = result["dists"]
    assert dists.shape == (7, 7)
    # column 0 (audio window i-3) is a zero vector for windows 0..2: there the distance is the lip embedding's norm
    norms = np.linalg.norm(result["lip_embeddings"][:3] + 1e-6, axis=1)
    np.testing.assert_allclose(dists[:3, 0], norms, rtol=1e-5)
    np.testing.assert_allclose(result["mean_dist"][0], dists[:, 0].mean(), rtol=1e-6)


def test_window_count_and_input_checks(seeded_model, eval_case):
    assert window_count(50, 32000) == 45 and window_count(60, 32000) == 45 and window_count(30, 32000) == 25
    with pytest.raises(ValueError, match="int16"):
        syncnet_scores(seeded_model, eval_case["frames_bgr"], eval_case["wav"] / 32768.0)
    with pytest.raises(ValueError, match="no 5-frame window"):
        syncnet_scores(seeded_model, eval_case["frames_bgr"][:5], eval_case["wav"])
    with pytest.raises(ValueError, match="uint8"):
        syncnet_scores(seeded_model, eval_case["frames_bgr"].astype(np.float32), eval_case["wav"])


def test_other_sample_rates_are_resampled_to_16k(seeded_model, eval_case):
    from scipy.signal import resample_poly

    wav48 = to_int16(resample_poly(eval_case["wav"] / 32768.0, 3, 1))
    frames = eval_case["frames_bgr"][:20]
    direct = syncnet_scores(seeded_model, frames, eval_case["wav"][:20 * 640], vshift=4)
    resampled = syncnet_scores(seeded_model, frames, wav48[:20 * 1920], sample_rate=48000, vshift=4)
    assert resampled["num_windows"] == direct["num_windows"] == 15
    assert resampled["offset"] == direct["offset"]
    assert resampled["lse_d"] == pytest.approx(direct["lse_d"], rel=0.02)
