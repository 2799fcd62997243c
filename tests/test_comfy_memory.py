"""The pack's networks belong to ComfyUI's memory manager: registered on load, reused from the cache, released by
``POST /free`` (checked in the real server, on CPU)."""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.server


def _prompt(precision: str) -> dict:
    return {
        "1": {"class_type": "Diff2LipModelLoader",
              "inputs": {"ckpt_name": "tiny_unet.pt", "precision": precision, "num_head_channels": 32}},
        "2": {"class_type": "Diff2LipModelInfo", "inputs": {"model": ["1", 0]}},
    }


def _info(server, precision: str) -> str:
    result = server.run(_prompt(precision), timeout=300)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    return result["history"]["outputs"]["2"]["text"][0]


def _count(server, text: str) -> int:
    return server.log().count(text)


def _wait_for_log(server, text: str, at_least: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while _count(server, text) < at_least:
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} did not appear {at_least} time(s) in the server log:\n{server.log()[-3000:]}")
        time.sleep(0.2)


def test_loaded_model_is_registered_reused_and_released_by_free(comfy_server):
    loading, reusing = "TalkingHead: loading tiny_unet.pt", "TalkingHead: reusing loaded tiny_unet.pt"
    unloaded = "TalkingHead: ComfyUI unloaded tiny_unet.pt"
    # Start from a known state: whatever earlier tests loaded is freed first.
    comfy_server.post("/free", {"unload_models": True, "free_memory": True})
    time.sleep(1.0)

    loads, reuses, unloads = (_count(comfy_server, t) for t in (loading, reusing, unloaded))
    text = _info(comfy_server, "auto")
    assert "managed by ComfyUI's model manager (loaded on cpu)" in text, text
    assert _count(comfy_server, loading) == loads + 1

    # Same file, device and precision (fp32 = what auto means on CPU): the loader runs again, the cache answers.
    text = _info(comfy_server, "fp32")
    assert "managed by ComfyUI's model manager (loaded on cpu)" in text, text
    assert _count(comfy_server, loading) == loads + 1
    assert _count(comfy_server, reusing) == reuses + 1

    status, _ = comfy_server.post("/free", {"unload_models": True, "free_memory": True})
    assert status == 200
    _wait_for_log(comfy_server, unloaded, unloads + 1)

    # Released: neither ComfyUI's output cache nor the pack's cache holds it, so the file is read again.
    text = _info(comfy_server, "auto")
    assert "managed by ComfyUI's model manager (loaded on cpu)" in text, text
    assert _count(comfy_server, loading) == loads + 2


def test_free_with_several_pack_models_keeps_the_prompt_worker_alive(comfy_server):
    """ComfyUI unloads models inside a loop over its list of loaded models; a pack network freed inside that loop
    would run ComfyUI's finalizer, shrink the list mid-loop and kill the prompt worker (every later prompt hangs)."""
    comfy_server.post("/free", {"unload_models": True, "free_memory": True})
    time.sleep(1.0)
    unloaded = "TalkingHead: ComfyUI unloaded tiny_unet.pt"
    before = _count(comfy_server, unloaded)
    for precision in ("fp32", "bf16", "fp16"):  # three cache entries, three registered networks
        _info(comfy_server, precision)
    status, _ = comfy_server.post("/free", {"unload_models": True, "free_memory": True})
    assert status == 200
    _wait_for_log(comfy_server, unloaded, before + 2)
    time.sleep(1.0)
    assert "Exception in thread" not in comfy_server.log()
    text = _info(comfy_server, "fp32")  # the worker still runs prompts
    assert "managed by ComfyUI's model manager (loaded on cpu)" in text, text
