"""Node defaults, as a real ComfyUI server declares them, are the pipeline defaults and the release's settings:
each default is defined once, on the pipeline side."""
from __future__ import annotations

import inspect

import pytest

from talkinghead.pipelines.diff2lip.presets import PASTE_MODES, RELEASE_PADS, RELEASE_PASTE
from talkinghead.pipelines.diff2lip_enhance import lip_composite_masks

pytestmark = pytest.mark.server


def _inputs(info: dict, node: str) -> dict:
    declared = info[node]["input"]
    return {**declared.get("required", {}), **declared.get("optional", {})}


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.get("/object_info")


def test_lip_mask_composite_node_defaults_are_the_pipeline_defaults(object_info):
    inputs = _inputs(object_info, "Diff2LipLipMaskComposite")
    parameters = inspect.signature(lip_composite_masks).parameters
    shared = [name for name in ("expansion", "feather", "adaptive_gain", "smooth_window") if name in inputs]
    assert shared == ["expansion", "feather", "adaptive_gain", "smooth_window"]
    for name in shared:
        assert inputs[name][1]["default"] == parameters[name].default, name
    assert parameters["adaptive_gain"].default > 0  # the mask follows the mouth opening by default


@pytest.mark.parametrize("node", ["Diff2LipLipSync", "Diff2LipCropFaces"])
def test_lip_sync_pads_default_to_the_release(object_info, node):
    inputs = _inputs(object_info, node)
    pads = tuple(inputs[f"pad_{side}"][1]["default"] for side in ("top", "bottom", "left", "right"))
    assert pads == RELEASE_PADS == (0, 0, 0, 0)
    assert "Wav2Lip" in inputs["pad_bottom"][1]["tooltip"]  # says where the old 10 came from


@pytest.mark.parametrize("node", ["Diff2LipLipSync", "Diff2LipPasteFaces"])
def test_paste_choice_defaults_to_the_release(object_info, node):
    spec = _inputs(object_info, node)["paste"]
    options = spec[0] if isinstance(spec[0], list) else spec[1]["options"]
    assert list(options) == list(PASTE_MODES) and spec[1]["default"] == RELEASE_PASTE
