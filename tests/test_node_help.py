"""Help text written once, as a real ComfyUI server declares it: inputs that several nodes share carry one wording,
and search aliases are declared only where this ComfyUI's io.Schema supports them."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.server

SHARED_TOOLTIPS = {  # input name -> the nodes whose input of that name must read the same
    "close_mouth_in_silence": ("Diff2LipLipSync", "Diff2LipSampleFaces"),
    "upscale_model": ("Diff2LipLipSync", "Diff2LipPasteFaces"),
    "audio": ("Diff2LipLipSync", "Diff2LipSampleFaces"),
    "reference_noise": ("GAGAvatarRefine", "GAGAvatarAnimateImages"),
    "source": ("GAGAvatarGazeCorrect", "GAGAvatarEyeEnhance"),
}


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.get("/object_info")


def _tooltip(info: dict, node: str, name: str) -> str:
    declared = info[node]["input"]
    spec = {**declared.get("required", {}), **declared.get("optional", {})}[name]
    return spec[1].get("tooltip", "") if len(spec) > 1 else ""


@pytest.mark.parametrize("name", sorted(SHARED_TOOLTIPS))
def test_a_shared_input_reads_the_same_on_every_node(object_info, name):
    tooltips = {node: _tooltip(object_info, node, name) for node in SHARED_TOOLTIPS[name]}
    assert len(set(tooltips.values())) == 1 and all(tooltips.values()), tooltips


def test_every_batch_size_says_what_one_call_takes_in_one_wording(object_info):
    ours = {node: info for node, info in object_info.items() if info.get("python_module", "").startswith(
        "custom_nodes.") and "batch_size" in {**info["input"].get("required", {}), **info["input"].get("optional", {})}}
    assert len(ours) >= 5
    for node in ours:
        tooltip = _tooltip(object_info, node, "batch_size")
        assert " per call: larger is faster where memory allows." in tooltip, (node, tooltip)


PROBE = """
import importlib.util, inspect, json, sys
sys.path.insert(0, sys.argv[1])
from comfy_api.latest import io
spec = importlib.util.spec_from_file_location("help_text", sys.argv[2])  # alone: the node package needs a server
help_text = importlib.util.module_from_spec(spec)
spec.loader.exec_module(help_text)
schema = help_text.schema(search_aliases=["lipsync"], node_id="Probe", inputs=[], outputs=[])
print(json.dumps({"supported": "search_aliases" in inspect.signature(io.Schema).parameters,
                  "flag": help_text.SCHEMA_HAS_SEARCH_ALIASES,
                  "passed": getattr(schema, "search_aliases", None)}))
"""


def test_search_aliases_only_where_the_schema_has_them(object_info):
    """In a separate interpreter with the vendored ComfyUI on sys.path (its top-level ``nodes`` module must not
    shadow anything in this test session)."""
    import json
    import subprocess
    import sys

    from conftest import REPO

    from talkinghead.scripts.comfy_client import vendored_comfyui

    result = subprocess.run([sys.executable, "-c", PROBE, str(vendored_comfyui()),
                             str(REPO / "nodes" / "help_text.py")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["flag"] == probe["supported"]
    assert probe["passed"] == (["lipsync"] if probe["supported"] else None)
    lip_sync = object_info["Diff2LipLipSync"]
    if probe["supported"]:  # a newer ComfyUI: the aliases reach the node list the frontend searches
        assert "wav2lip" in lip_sync.get("search_aliases", [])
    else:  # ComfyUI 0.3.75 has no such field: the nodes load without it
        assert "search_aliases" not in lip_sync and lip_sync["display_name"] == "Diff2Lip Lip Sync"
